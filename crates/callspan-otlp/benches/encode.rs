//! Micro-benchmarks of the exporter's per-batch work: span records to OTLP protobuf bytes, and
//! those bytes to the file exporter's OTLP JSON.
//!
//! `cargo bench -p callspan-otlp --bench encode` (or `make bench`). Each benchmark handles one
//! batch of `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`-like size and reports throughput in spans, so the
//! per-span cost is time / spans. `direct_encode` is what the exporter thread does for every
//! output: `callspan_otlp::encode::RequestEncoder`, records straight to bytes from cached
//! per-id fragments (warm caches, as in a running process). `direct_encode_exceptions` is the
//! same with every span failed (an exception event and an error status), `direct_encode_stacks`
//! with `CALLSPAN_CAPTURE=stack` (a `code.stacktrace` of five frames per span). `otlp_json` is
//! the file exporter's extra step: decoding the request and writing it as OTLP JSON. The
//! network is not part of any of them.

use callspan_core::config::Config;
use callspan_core::record::{CallerSite, ExceptionInfo, SpanRecord, TracebackEntry};
use callspan_core::registry::{
    intern, AttributeValue, CodeInfo, FunctionInfo, Registry, ThreadInfo,
};
use callspan_otlp::encode::{EncodedRequest, Limits, RequestEncoder};
use callspan_otlp::resource::build_resource;
use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn main() {
    divan::main();
}

const BATCH_SIZES: &[usize] = &[512, 4096];

/// A registry shaped like a small application: a few traced functions, callers and classes.
fn registry() -> Registry {
    let registry = Registry::new();
    for i in 0..4 {
        registry.add_function(FunctionInfo {
            span_name: intern(&format!("Transformer.apply_transform_{i}")),
            function_name: intern(&format!("imgpipe.Transformer.apply_transform_{i}")),
            file: Some(intern("/srv/app/src/imgpipe/transform.py")),
            line: 12 + i,
            attributes: if i == 0 {
                vec![(intern("team"), AttributeValue::Str(intern("img")))]
            } else {
                vec![]
            },
        });
    }
    for i in 0..16usize {
        registry.add_code(
            0x1000 + i * 64,
            CodeInfo {
                function_name: intern(&format!("imgpipe.Rotator.rotate_image_{i}")),
                file: intern("/srv/app/src/imgpipe/rotate.py"),
            },
        );
    }
    registry.add_class(0x9000, intern("imgpipe.Rotator"));
    registry.add_thread(ThreadInfo {
        id: 140_211_234_567_890,
        name: intern("MainThread"),
    });
    registry
}

/// The kinds of span a batch holds.
#[derive(Clone, Copy)]
enum Shape {
    /// Returned normally.
    Plain,
    /// Raised: `ValueError` with a message and a four-frame traceback.
    Exception,
    /// With the five frames beyond the caller.
    Stack,
}

fn records(n: usize, shape: Shape) -> Vec<SpanRecord> {
    (0..n as u64)
        .map(|i| SpanRecord {
            trace_id: 0x0123_4567_89ab_cdef_0000_0000_0000_0000 | u128::from(i + 1),
            span_id: 0xfeed_0000_0000_0000 | (i + 1),
            parent_span_id: if i % 2 == 0 { 0 } else { i },
            parent_is_remote: false,
            start_unix_ns: 1_700_000_000_000_000_000 + i * 1_000,
            end_unix_ns: 1_700_000_000_000_000_250 + i * 1_000,
            function: (i % 4) as u32 + 1,
            caller: CallerSite {
                code: (i % 16) as u32 + 1,
                line: 31 + (i % 7) as u32,
                class: if i % 3 == 0 { 0 } else { 1 },
            },
            thread: 1,
            error: matches!(shape, Shape::Exception).then(|| {
                Box::new(ExceptionInfo {
                    type_name: "ValueError".into(),
                    message: format!("pixel {i} out of range").into(),
                    // Four frames, as the exception's traceback is captured (code ids, lines).
                    traceback: (0..4u32).rev().fold(None, |next, f| {
                        Some(std::sync::Arc::new(TracebackEntry {
                            site: CallerSite {
                                code: (i as u32 + f) % 16 + 1,
                                line: 31 + f,
                                class: 0,
                            },
                            next,
                        }))
                    }),
                })
            }),
            omitted: 0,
            instance: 0,
            stack: matches!(shape, Shape::Stack).then(|| {
                (0..5u32)
                    .map(|f| CallerSite {
                        code: (i as u32 + f) % 16 + 1,
                        line: 40 + f,
                        class: 0,
                    })
                    .collect::<Box<[CallerSite]>>()
                    .into()
            }),
        })
        .collect()
}

fn encoder() -> RequestEncoder {
    let mut config = Config::defaults();
    config.service_name = Some("imgpipe".to_owned());
    RequestEncoder::new(&build_resource(&config), Limits::default(), usize::MAX)
}

fn encode(
    encoder: &mut RequestEncoder,
    registry: &Registry,
    batch: &[SpanRecord],
) -> Vec<EncodedRequest> {
    let view = registry.view();
    for r in batch {
        encoder.add(r, &view);
    }
    encoder.finish()
}

/// Records → request bytes, fragment caches warm (as after a process's first batch).
fn bench_encode(bencher: Bencher, n: usize, shape: Shape) {
    let registry = registry();
    let mut encoder = encoder();
    encode(&mut encoder, &registry, &records(n, shape));
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| records(n, shape))
        .bench_local_refs(|batch| black_box(encode(&mut encoder, &registry, batch)));
}

/// Spans that returned normally.
#[divan::bench(args = BATCH_SIZES)]
fn direct_encode(bencher: Bencher, n: usize) {
    bench_encode(bencher, n, Shape::Plain);
}

/// Spans that raised: the exception event and the error status.
#[divan::bench(args = BATCH_SIZES)]
fn direct_encode_exceptions(bencher: Bencher, n: usize) {
    bench_encode(bencher, n, Shape::Exception);
}

/// Spans with `code.stacktrace` (`CALLSPAN_CAPTURE=stack`).
#[divan::bench(args = BATCH_SIZES)]
fn direct_encode_stacks(bencher: Bencher, n: usize) {
    bench_encode(bencher, n, Shape::Stack);
}

/// The file exporter's step after encoding: request bytes → prost → OTLP JSON.
#[divan::bench(args = BATCH_SIZES)]
fn otlp_json(bencher: Bencher, n: usize) {
    let registry = registry();
    let requests = encode(&mut encoder(), &registry, &records(n, Shape::Plain));
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        for request in &requests {
            let decoded = ExportTraceServiceRequest::decode(&request.body[..]).unwrap();
            black_box(serde_json::to_vec(&decoded).unwrap());
        }
    });
}
