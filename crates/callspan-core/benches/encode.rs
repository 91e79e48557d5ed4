//! Micro-benchmarks of the exporter's per-batch work: span records to OTLP protobuf bytes.
//!
//! `cargo bench -p callspan-core --bench encode` (or `make bench`). Each benchmark handles one
//! batch of `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`-like size and reports throughput in spans, so the
//! per-span cost is time / spans. The steps are the exporter thread's: resolve ids through the
//! registry into `SpanData` (`callspan_otlp::convert::to_span_data`), group by resource and
//! scope into an `ExportTraceServiceRequest` (what opentelemetry-otlp does before sending), and
//! encode it with prost: the path through opentelemetry-otlp that callspan took before, and
//! still takes for the file and console exporters (`records_to_bytes`, split into its steps by
//! `convert_records`, `group_by_scope` and `prost_encode`). `direct_encode` is what the exporter
//! does for OTLP now: `callspan_otlp::encode::RequestEncoder`, records straight to bytes from
//! cached per-id fragments (warm caches, as in a running process). The network is not part of it.

use callspan_core::config::Config;
use callspan_core::record::{CallerSite, SpanRecord};
use callspan_core::registry::{
    intern, AttributeValue, CodeInfo, FunctionInfo, Registry, ThreadInfo,
};
use callspan_otlp::convert::{to_span_data, Limits};
use callspan_otlp::encode::RequestEncoder;
use callspan_otlp::resource::{build_resource, scope};
use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
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

fn records(n: usize) -> Vec<SpanRecord> {
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
            error: None,
            omitted: 0,
            stack: None,
        })
        .collect()
}

/// Records → `SpanData` under one registry read lock, as the file and console exporters do.
fn span_data(
    registry: &Registry,
    scope: &opentelemetry::InstrumentationScope,
    batch: Vec<SpanRecord>,
) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let view = registry.view();
    batch
        .into_iter()
        .filter_map(|r| to_span_data(r, &view, scope))
        .collect()
}

fn resource() -> ResourceAttributesWithSchema {
    let mut config = Config::defaults();
    config.service_name = Some("imgpipe".to_owned());
    (&build_resource(&config)).into()
}

/// Records → request bytes by the OTLP exporter's encoder (fragments cached per registry id).
#[divan::bench(args = BATCH_SIZES)]
fn direct_encode(bencher: Bencher, n: usize) {
    let registry = registry();
    let mut config = Config::defaults();
    config.service_name = Some("imgpipe".to_owned());
    let mut encoder = RequestEncoder::new(&build_resource(&config), Limits::default(), usize::MAX);
    // Warm the fragment caches, as the first batch of a process does.
    {
        let view = registry.view();
        for r in records(n) {
            encoder.add(r, &view);
        }
        encoder.finish();
    }
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| records(n))
        .bench_local_values(|batch| {
            let view = registry.view();
            for r in batch {
                encoder.add(r, &view);
            }
            black_box(encoder.finish())
        });
}

/// Records → `SpanData` (id resolution, attribute vectors, strings shared by `Arc`).
#[divan::bench(args = BATCH_SIZES)]
fn convert_records(bencher: Bencher, n: usize) {
    let registry = registry();
    let scope = scope();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| records(n))
        .bench_local_values(|batch| span_data(&registry, &scope, batch));
}

/// `SpanData` → `ExportTraceServiceRequest` → protobuf bytes (the two steps below together).
#[divan::bench(args = BATCH_SIZES)]
fn encode_request(bencher: Bencher, n: usize) {
    let registry = registry();
    let scope = scope();
    let resource = resource();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| span_data(&registry, &scope, records(n)))
        .bench_local_values(|spans| {
            let request = ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(spans, &resource),
            };
            request.encode_to_vec()
        });
}

/// `SpanData` → `ResourceSpans` only: opentelemetry-proto's conversion (attribute keys and
/// values become owned protobuf strings, spans are grouped by instrumentation scope).
#[divan::bench(args = BATCH_SIZES)]
fn group_by_scope(bencher: Bencher, n: usize) {
    let registry = registry();
    let scope = scope();
    let resource = resource();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| span_data(&registry, &scope, records(n)))
        .bench_local_values(|spans| group_spans_by_resource_and_scope(spans, &resource));
}

/// The protobuf encoding alone (prost), of a request built beforehand.
#[divan::bench(args = BATCH_SIZES)]
fn prost_encode(bencher: Bencher, n: usize) {
    let registry = registry();
    let scope = scope();
    let resource = resource();
    let spans = span_data(&registry, &scope, records(n));
    let request = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
    };
    bencher
        .counter(ItemsCount::new(n))
        .bench_local(|| black_box(&request).encode_to_vec());
}

/// The whole per-batch pipeline: records → `SpanData` → request → bytes.
#[divan::bench(args = BATCH_SIZES)]
fn records_to_bytes(bencher: Bencher, n: usize) {
    let registry = registry();
    let scope = scope();
    let resource = resource();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| records(n))
        .bench_local_values(|batch| {
            let spans = span_data(&registry, &scope, batch);
            let request = ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(spans, &resource),
            };
            black_box(request.encode_to_vec()).len()
        });
}
