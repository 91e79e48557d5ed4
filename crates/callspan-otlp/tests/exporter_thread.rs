//! The exporter thread against real transports: an OTLP-JSON file and an unreachable collector.

use callspan_core::config::{Config, ExporterKind};
use callspan_core::record::SpanRecord;
use callspan_core::registry::{intern, FunctionInfo, Registry};
use callspan_core::sink::SpanSink;
use callspan_otlp::exporter::BatchExporter;
use callspan_otlp::resource::build_resource;
use std::time::{Duration, Instant};

fn leaked<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn setup(queue: usize) -> (&'static SpanSink, &'static Registry, u32) {
    let registry = leaked(Registry::new());
    let function = registry.add_function(FunctionInfo {
        span_name: intern("apply_transform"),
        function_name: intern("imgpipe.apply_transform"),
        file: Some(intern("/app/imgpipe.py")),
        line: 3,
        attributes: vec![],
    });
    (leaked(SpanSink::new(queue)), registry, function)
}

fn record(function: u32, i: u64) -> SpanRecord {
    SpanRecord {
        trace_id: u128::from(i) + 1,
        span_id: i + 1,
        start_unix_ns: 1_000 + i,
        end_unix_ns: 2_000 + i,
        function,
        ..Default::default()
    }
}

#[test]
fn file_transport_receives_every_span_in_batches() {
    let dir = std::env::temp_dir().join(format!("callspan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spans.jsonl");
    let _ = std::fs::remove_file(&path);

    let mut config = Config::defaults();
    config.exporters = vec![ExporterKind::File];
    config.file = path.to_string_lossy().into_owned();
    config.max_export_batch_size = 100;
    config.schedule_delay = Duration::from_secs(60);
    let (sink, registry, function) = setup(1000);
    let exporter = BatchExporter::start(&config, build_resource(&config), sink, registry).unwrap();
    assert!(exporter.destination().contains("spans.jsonl"));

    for i in 0..250 {
        assert!(sink.push(record(function, i)));
    }
    assert!(exporter.flusher().flush(Duration::from_secs(10)));
    assert!(exporter.shutdown(sink, Duration::from_secs(10)));

    let text = std::fs::read_to_string(&path).unwrap();
    let requests: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 250 spans at 100 per batch: at least three requests (a full batch may also leave early).
    assert!(requests.len() >= 3, "{} requests", requests.len());
    let spans: Vec<&serde_json::Value> = requests
        .iter()
        .flat_map(|r| {
            r["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
        })
        .collect();
    assert_eq!(spans.len(), 250);
    assert_eq!(spans[0]["name"], "apply_transform");
    assert_eq!(
        requests[0]["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"],
        "callspan"
    );
    let snap = sink.stats.snapshot(sink.len());
    assert_eq!(
        (snap.spans_exported, snap.spans_dropped, snap.queue_len),
        (250, 0, 0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreachable_collector_counts_drops_and_shutdown_is_bounded() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = Config::defaults();
    config.traces.endpoint = format!("http://127.0.0.1:{port}");
    config.export_timeout = Duration::from_secs(2);
    config.traces.timeout = Duration::from_millis(500);
    config.schedule_delay = Duration::from_millis(50);
    let (sink, registry, function) = setup(100);
    let exporter = BatchExporter::start(&config, build_resource(&config), sink, registry).unwrap();
    for i in 0..10 {
        sink.push(record(function, i));
    }
    let started = Instant::now();
    let delivered = exporter.shutdown(sink, Duration::from_secs(3));
    assert!(!delivered);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The export either failed (counted) or was still retrying when shutdown gave up.
    let snap = sink.stats.snapshot(sink.len());
    assert_eq!(snap.spans_exported, 0);
    assert!(snap.dropped_export_failed + snap.queue_len <= 10);
}

#[test]
fn full_queue_drops_are_counted_not_blocking() {
    let (sink, _registry, function) = setup(4);
    for i in 0..10 {
        sink.push(record(function, i));
    }
    let snap = sink.stats.snapshot(sink.len());
    // The capacity in whole segments (two of two records), and the thread's own segment.
    assert_eq!((snap.queue_len, snap.dropped_queue_full), (6, 4));
}
