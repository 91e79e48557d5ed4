//! Micro-benchmarks of the Rust work one sampled call does, piece by piece and together.
//!
//! `cargo bench -p callspan-core --bench hot_path` (or `make bench`). `cargo test --benches`
//! runs each benchmark once, as a smoke test. `sampled_call_rust_side` adds up what the span
//! lifecycle (`callspan-python/src/span.rs`) does per sampled call in callspan-core, apart from
//! Python itself and from the binding's caller-site resolution (a per-thread cache in
//! callspan-python, which goes to the registry only on a miss): the real decision
//! ([`HotState::decide`]: sampler, the function's own rate, the rate limit), ids, context
//! push/pop, two clock reads and the queue push, with a pop standing in for the exporter's drain.

use callspan_core::clock::{self, now_unix_ns};
use callspan_core::config::Config;
use callspan_core::context::{self, ParentSpan};
use callspan_core::hot::{self, FunctionRate, HotState};
use callspan_core::ids;
use callspan_core::record::{CallerSite, SpanRecord};
use callspan_core::registry::{intern, CodeInfo, Registry};
use callspan_core::sink::SpanSink;
use divan::{black_box, Bencher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn main() {
    // The clock reads CLOCK_MONOTONIC while it calibrates (its first CALIBRATION_NS): let that
    // pass, so that the clock rows measure the clock a running program has.
    let start = std::time::Instant::now();
    while !clock::uses_tsc() && start.elapsed() < std::time::Duration::from_millis(100) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    divan::main();
}

fn record(span_id: u64) -> SpanRecord {
    SpanRecord {
        trace_id: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        span_id,
        parent_span_id: 0,
        parent_is_remote: false,
        start_unix_ns: 1_700_000_000_000_000_000,
        end_unix_ns: 1_700_000_000_000_000_250,
        function: 1,
        caller: CallerSite {
            code: 3,
            line: 31,
            class: 2,
        },
        thread: 1,
        error: None,
        omitted: 0,
        instance: 0,
        stack: None,
    }
}

/// The bounded queue: the one push every sampled call makes.
#[divan::bench_group]
mod sink {
    use super::*;

    /// Push one record and pop it again: the uncontended cost of a round trip through the ring.
    #[divan::bench]
    fn push_then_pop(bencher: Bencher) {
        let sink = SpanSink::new(2048);
        sink.set_waker(512, Some(Box::new(|| {})));
        bencher.bench_local(|| {
            sink.push(black_box(record(7)));
            black_box(sink.pop())
        });
    }

    /// Push into a full queue: the drop path (count, wake already pending).
    #[divan::bench]
    fn push_when_full(bencher: Bencher) {
        let sink = SpanSink::new(64);
        sink.set_waker(512, Some(Box::new(|| {})));
        while sink.push(record(1)) {}
        bencher.bench_local(|| black_box(sink.push(black_box(record(7)))));
    }

    /// Push while another thread drains the queue, as the exporter does: the cache-line
    /// traffic a hot thread pays when producer and consumer share the ring.
    #[divan::bench]
    fn push_with_draining_thread(bencher: Bencher) {
        let sink = Arc::new(SpanSink::new(2048));
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (sink, stop) = (Arc::clone(&sink), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if sink.pop().is_none() {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        bencher.bench_local(|| black_box(sink.push(black_box(record(7)))));
        stop.store(true, Ordering::Relaxed);
        drainer.join().unwrap();
    }
}

/// Random ids from the per-thread generator.
#[divan::bench_group]
mod id_generation {
    use super::*;

    #[divan::bench]
    fn span_id() -> u64 {
        ids::span_id()
    }

    #[divan::bench]
    fn trace_id() -> u128 {
        ids::trace_id()
    }
}

/// The clock as such (the calibrated TSC read with `rdtscp` where usable, else the vDSO's
/// CLOCK_MONOTONIC): the rate limiter's and the metrics' reading.
#[divan::bench]
fn clock_now_unix_ns() -> u64 {
    now_unix_ns()
}

/// What a span reads at its start and at its end (a plain `rdtsc` where the TSC is usable), and
/// what counting an unsampled call reads twice.
#[divan::bench]
fn clock_ticks() -> u64 {
    clock::ticks()
}

/// A span's two tick readings converted to Unix time at its end, the readings included.
#[divan::bench]
fn clock_span_times() -> (u64, u64) {
    let start = clock::ticks();
    clock::span_unix_ns(start, clock::ticks())
}

/// The sampling decision for a root span, as the hot path makes it: the configured sampler's
/// rule, the function's own rate (`CALLSPAN_SAMPLE`, none matching here) and the rate limit.
#[divan::bench_group]
mod decision {
    use super::*;

    #[divan::bench(args = ["always_on", "always_off", "traceidratio", "parentbased_always_on"])]
    fn decide_root(bencher: Bencher, sampler: &str) {
        let hot = configured(&[
            ("OTEL_TRACES_SAMPLER", sampler),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ]);
        let rate = FunctionRate::new(None);
        let trace_id = ids::trace_id();
        bencher.bench_local(|| {
            let rule = hot.sampling_rule();
            black_box(rule.never_samples())
                || hot.decide(rule, None, black_box(trace_id), &rate, 1, now_unix_ns)
        });
    }

    /// With `CALLSPAN_MAX_SPANS_PER_SECOND` set: one clock read and one CAS more.
    #[divan::bench]
    fn decide_root_rate_limited(bencher: Bencher) {
        let hot = configured(&[("CALLSPAN_MAX_SPANS_PER_SECOND", "1e12")]);
        let rate = FunctionRate::new(None);
        let trace_id = ids::trace_id();
        bencher.bench_local(|| {
            let rule = hot.sampling_rule();
            hot.decide(rule, None, black_box(trace_id), &rate, 1, now_unix_ns)
        });
    }
}

/// The process's hot state, configured from `pairs` as the environment (benchmarks run one at a
/// time on the main thread, so reconfiguring the one global state per benchmark is safe).
fn configured(pairs: &[(&str, &str)]) -> &'static HotState {
    let (config, warnings) = Config::from_pairs(pairs, &[]);
    assert!(warnings.is_empty(), "{warnings:?}");
    hot::state().apply(&config);
    hot::state()
}

/// The per-thread context stack: one push and one pop per traced call.
#[divan::bench]
fn context_push_pop(bencher: Bencher) {
    bencher.bench_local(|| {
        context::push(black_box(ParentSpan {
            trace_id: 1,
            span_id: 2,
            sampled: true,
            remote: false,
        }));
        black_box(context::current());
        context::pop();
    });
}

fn registry_with_codes(n: usize) -> Registry {
    let registry = Registry::new();
    for i in 0..n {
        registry.add_code(
            0x1000 + i * 64,
            CodeInfo {
                function_name: intern(&format!("app.module.function_{i}")),
                file: intern("/app/module.py"),
            },
        );
        registry.add_class(0x90_0000 + i * 64, intern(&format!("app.Class{i}")));
    }
    registry
}

/// Interned-id look-ups by object address (a read lock and a hash probe each): the calling code
/// object and the caller's class, as the binding does when its per-thread cache misses.
#[divan::bench(args = [1, 1000])]
fn registry_code_and_class_lookup(bencher: Bencher, registered: usize) {
    let registry = registry_with_codes(registered);
    bencher.bench_local(|| {
        (
            registry.code_id(black_box(0x1000)),
            registry.class_id(black_box(0x90_0000)),
        )
    });
}

/// Everything callspan-core does for one sampled root call, minus the binding's work (reading
/// the Python frame, its caller-site cache) and the wrapped call itself.
#[divan::bench]
fn sampled_call_rust_side(bencher: Bencher) {
    let sink = SpanSink::new(2048);
    sink.set_waker(512, Some(Box::new(|| {})));
    let hot = configured(&[("OTEL_TRACES_SAMPLER", "always_on")]);
    let rate = FunctionRate::new(None);
    bencher.bench_local(|| {
        let rule = hot.sampling_rule();
        let parent = context::current();
        let trace_id = match parent {
            Some(p) => p.trace_id,
            None => ids::trace_id(),
        };
        if !hot.decide(
            rule,
            parent.map(|p| p.sampled),
            trace_id,
            &rate,
            1,
            now_unix_ns,
        ) {
            return;
        }
        let span_id = ids::span_id();
        context::push(ParentSpan {
            trace_id,
            span_id,
            sampled: true,
            remote: false,
        });
        let start_ticks = clock::ticks();
        let end_ticks = clock::ticks();
        context::pop();
        let (start_unix_ns, end_unix_ns) = clock::span_unix_ns(start_ticks, end_ticks);
        sink.push(SpanRecord {
            trace_id,
            parent_span_id: parent.map_or(0, |p| p.span_id),
            start_unix_ns,
            end_unix_ns,
            caller: black_box(CallerSite {
                code: 3,
                line: 31,
                class: 2,
            }),
            ..record(span_id)
        });
        black_box(sink.pop());
    });
}
