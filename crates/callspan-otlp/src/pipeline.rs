//! The process-wide pipeline: configuration, the span sink, and the exporter's lifecycle.
//!
//! The binding calls [`global`] on first use; it reads the configuration then (lazily, as the
//! OpenTelemetry SDKs do) unless `callspan.configure()` came first, and hands the settings every
//! call reads to [`callspan_core::hot`]: a traced call decides there, in core, and comes here
//! only to [`Pipeline::submit`] a finished span. The exporter thread starts
//! with the first span, not at import, so importing callspan costs nothing. After `fork()` the
//! child discards the parent's queued spans (the parent still sends them), forgets — never drops
//! or joins — the parent's exporter, and starts its own with its next span.

use crate::exporter::BatchExporter;
use crate::metrics_exporter::MetricsExporter;
use crate::resource::build_resource;
use callspan_core::config::Config;
use callspan_core::hot;
use callspan_core::per_thread::PerThread;
use callspan_core::record::SpanRecord;
use callspan_core::registry;
use callspan_core::sink::SpanSink;
use callspan_core::stats::{Stats, StatsSnapshot};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug)]
struct State {
    arguments: HashMap<String, String>,
    config: Config,
    exporter: Option<BatchExporter>,
    /// The `callspan-metrics` thread, while metrics are exported.
    metrics: Option<MetricsExporter>,
    shut_down: bool,
}

/// Everything callspan keeps per process, apart from the hot state (in core).
#[derive(Debug)]
pub struct Pipeline {
    sink: SpanSink,
    /// True while an exporter thread of this process is draining the sink.
    exporter_running: AtomicBool,
    state: Mutex<State>,
    /// held across a whole reconfiguration (the old exporter's drain
    /// included), so that two never overlap; `state` is not held across the drain.
    reconfiguring: Mutex<()>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

fn report(warnings: Vec<String>) {
    for w in warnings {
        // Its own target: the diagnostics layer rate-limits these per message, not per
        // callsite, so that every bad setting gets its warning.
        tracing::warn!(target: crate::diagnostic::CONFIG_TARGET, "{w}");
    }
}

/// The process's pipeline, created from the environment on first use.
pub fn global() -> &'static Pipeline {
    PIPELINE.get_or_init(|| Pipeline::new(HashMap::new()))
}

/// The process's pipeline if it exists already.
pub fn get() -> Option<&'static Pipeline> {
    PIPELINE.get()
}

/// Creates the pipeline with `callspan.configure()` arguments, or reconfigures it.
pub fn configure(arguments: HashMap<String, String>) -> &'static Pipeline {
    let mut fresh = false;
    let p = PIPELINE.get_or_init(|| {
        fresh = true;
        Pipeline::new(arguments.clone())
    });
    if !fresh {
        p.reconfigure(arguments);
    }
    p
}

impl Pipeline {
    fn new(arguments: HashMap<String, String>) -> Pipeline {
        crate::diagnostic::install();
        let (config, warnings) = Config::from_env(&arguments);
        report(warnings);
        let p = Pipeline {
            sink: SpanSink::new(config.max_queue_size),
            exporter_running: AtomicBool::new(false),
            state: Mutex::new(State {
                arguments,
                config: config.clone(),
                exporter: None,
                metrics: MetricsExporter::start(
                    &config,
                    build_resource(&config),
                    registry::global(),
                ),
                shut_down: false,
            }),
            reconfiguring: Mutex::new(()),
        };
        hot::state().apply(&config);
        callspan_core::fork::around_fork(lock_all_for_fork, unlock_all_after_fork);
        callspan_core::fork::on_fork_child(after_fork_in_child);
        p
    }

    fn reconfigure(&self, arguments: HashMap<String, String>) {
        let (config, warnings) = Config::from_env(&arguments);
        report(warnings);
        if config.max_queue_size != self.sink.capacity() {
            tracing::warn!(
                "OTEL_BSP_MAX_QUEUE_SIZE / CALLSPAN_MAX_QUEUE_BYTES: the queue was created with {} slots \
                 on first use and keeps them; {} applies from the next process",
                self.sink.capacity(),
                config.max_queue_size
            );
        }
        // The new configuration is put in place under the state lock, but the old exporters
        // are drained outside it: threads that wait on that lock hold the GIL (a first traced
        // call, `destination()`), and a silent collector can make the drain last the whole
        // export timeout. Meanwhile `exporter_running` stays true, so traced calls keep
        // queueing and none starts the new exporter before the old one has let go of the
        // queue; the first call after that starts it, and it takes the rest.
        let _one_at_a_time = self.reconfiguring.lock();
        let drain_timeout = config.export_timeout;
        let metrics_timeout = config.metric_export_timeout;
        let fresh_metrics =
            MetricsExporter::start(&config, build_resource(&config), registry::global());
        let (old, old_metrics) = {
            let mut state = self.state.lock();
            state.arguments = arguments;
            state.shut_down = false;
            hot::state().apply(&config);
            state.config = config;
            let old_metrics = std::mem::replace(&mut state.metrics, fresh_metrics);
            (state.exporter.take(), old_metrics)
        };
        if let Some(metrics) = old_metrics {
            metrics.shutdown(metrics_timeout);
        }
        if let Some(exporter) = old {
            exporter.shutdown(&self.sink, drain_timeout);
        }
        self.exporter_running.store(false, Ordering::Release);
    }

    /// Queues a finished sampled span from the thread whose state is `local`, counting it as
    /// sampled there; never blocks. Starts the exporter on first use.
    ///
    /// Inlined, with the push's common path, into the span's end: no call of its own per span.
    #[inline(always)]
    pub fn submit(&'static self, record: SpanRecord, local: &PerThread) {
        local.counts.sampled();
        if !self.exporter_running.load(Ordering::Acquire) {
            return self.submit_first(record, local);
        }
        self.sink.push_from(local, record);
    }

    /// [`Self::submit`] while no exporter runs: starts it (or drops the span after shutdown).
    #[cold]
    #[inline(never)]
    fn submit_first(&'static self, record: SpanRecord, local: &PerThread) {
        if !self.start_exporter() {
            Stats::add(&self.sink.stats.dropped_shutdown, 1);
            return;
        }
        self.sink.push_from(local, record);
    }

    /// Drops a span before it is built if the queue is full now (counted as the queue's drop,
    /// as [`Self::submit`] would count it): true if it was dropped. For records that cost the
    /// application to build (an exception's description runs the exception's `__str__`): under
    /// a backlog, the spans the queue drops would cost it as much as those it keeps.
    #[inline]
    pub fn dropped_if_full(&'static self, local: &PerThread) -> bool {
        if self.exporter_running.load(Ordering::Acquire) && self.sink.is_full_for(local) {
            local.counts.sampled();
            self.sink.drop_full();
            return true;
        }
        false
    }

    /// Starts the exporter unless shut down; false if spans must be dropped.
    #[cold]
    fn start_exporter(&'static self) -> bool {
        let mut state = self.state.lock();
        if state.shut_down {
            return false;
        }
        if state.exporter.is_none() {
            let resource = build_resource(&state.config);
            match BatchExporter::start(&state.config, resource, &self.sink, registry::global()) {
                Ok(exporter) => state.exporter = Some(exporter),
                Err(e) => {
                    tracing::warn!("{e}; spans are dropped");
                    return false;
                }
            }
        }
        self.exporter_running.store(true, Ordering::Release);
        true
    }

    /// Where spans go, for humans (`OTLP/gRPC to http://localhost:4317`).
    pub fn destination(&self) -> String {
        let state = self.state.lock();
        if let Some(e) = &state.exporter {
            return e.destination().to_owned();
        }
        let c = &state.config;
        use callspan_core::config::ExporterKind::*;
        // In the order the transport describes them: OTLP first, then the local outputs.
        let otlp_first = c
            .exporters
            .iter()
            .filter(|k| **k == Otlp)
            .chain(c.exporters.iter().filter(|k| **k != Otlp));
        let all: Vec<String> = otlp_first
            .map(|kind| match kind {
                Otlp => format!(
                    "OTLP/{} to {}",
                    match c.traces.protocol {
                        callspan_core::config::Protocol::Grpc => "gRPC",
                        callspan_core::config::Protocol::HttpProtobuf => "HTTP",
                    },
                    c.traces.endpoint
                ),
                File => format!("OTLP JSON lines in {}", c.file),
                Console => "the console (stderr)".into(),
            })
            .collect();
        if all.is_empty() {
            return "nowhere (exporter none)".into();
        }
        all.join(" and ")
    }

    /// The effective configuration.
    pub fn config(&self) -> Config {
        self.state.lock().config.clone()
    }

    /// Exports everything queued; true when all of it went out within `timeout`
    /// (default `OTEL_BSP_EXPORT_TIMEOUT`).
    pub fn flush(&self, timeout: Option<Duration>) -> bool {
        let (flusher, default_timeout) = {
            let state = self.state.lock();
            (
                state.exporter.as_ref().map(BatchExporter::flusher),
                state.config.export_timeout,
            )
        };
        let spans_ok = match flusher {
            Some(f) => f.flush(timeout.unwrap_or(default_timeout)),
            // Nothing was ever started: nothing can be queued.
            None => self.sink.is_empty(),
        };
        self.flush_metrics(timeout) && spans_ok
    }

    /// Exports the caller-edge counts now (true also when metrics are not exported).
    pub fn flush_metrics(&self, timeout: Option<Duration>) -> bool {
        // The answer is waited for outside the state lock (other threads take it holding the
        // GIL).
        let (answer, default_timeout) = {
            let state = self.state.lock();
            let Some(metrics) = &state.metrics else {
                return true;
            };
            (metrics.request_flush(), state.config.metric_export_timeout)
        };
        answer.is_some_and(|a| {
            a.recv_timeout(timeout.unwrap_or(default_timeout))
                .unwrap_or(false)
        })
    }

    /// Starts the metrics exporter of a forked child (counting from zero under its own
    /// `process.pid`); called by the binding right after the fork, with the GIL.
    pub fn restart_metrics_after_fork(&self) {
        let mut state = self.state.lock();
        if state.metrics.is_none() && !state.shut_down {
            state.metrics = MetricsExporter::start(
                &state.config,
                build_resource(&state.config),
                registry::global(),
            );
        }
    }

    /// Asks for a flush of everything queued without waiting; also returns the default wait
    /// (`OTEL_BSP_EXPORT_TIMEOUT`). the binding waits in slices so that
    /// Ctrl-C interrupts it.
    pub fn request_flush(&self) -> (crate::exporter::PendingFlush, Duration) {
        let (flusher, default_timeout) = {
            let state = self.state.lock();
            (
                state.exporter.as_ref().map(BatchExporter::flusher),
                state.config.export_timeout,
            )
        };
        let pending = match flusher {
            Some(f) => f.request(),
            // Nothing was ever started: nothing can be queued.
            None => crate::exporter::PendingFlush::Answered(self.sink.is_empty()),
        };
        (pending, default_timeout)
    }

    /// Flushes and stops the exporter, waiting at most `timeout` (default
    /// `OTEL_BSP_EXPORT_TIMEOUT`). Later spans are dropped and counted until `configure()`.
    pub fn shutdown(&self, timeout: Option<Duration>) -> bool {
        let (exporter, metrics, default_timeout) = {
            let mut state = self.state.lock();
            state.shut_down = true;
            self.exporter_running.store(false, Ordering::Release);
            (
                state.exporter.take(),
                state.metrics.take(),
                state.config.export_timeout,
            )
        };
        // The last metric export runs while the spans drain, both within the same bound.
        let timeout = timeout.unwrap_or(default_timeout);
        let deadline = std::time::Instant::now() + timeout;
        let metrics = metrics.map(MetricsExporter::begin_shutdown);
        let ok = match exporter {
            Some(e) => e.shutdown(&self.sink, timeout),
            None => true,
        };
        // Whatever is still queued now will never be sent.
        self.sink.discard_all();
        let metrics_ok = metrics.is_none_or(|m| m.wait(deadline));
        ok && metrics_ok
    }

    /// Every counter, plus the queue length.
    pub fn stats(&self) -> StatsSnapshot {
        self.sink.stats.snapshot(self.sink.len())
    }
}

fn lock_all_for_fork() {
    if let Some(p) = PIPELINE.get() {
        std::mem::forget(p.state.lock());
        registry::global().lock_for_fork();
        p.sink.lock_for_fork();
    }
    crate::diagnostic::lock_for_fork();
}

fn unlock_all_after_fork() {
    // SAFETY: each pairs with the matching lock in `lock_all_for_fork`, same process image.
    unsafe {
        crate::diagnostic::unlock_after_fork();
        if let Some(p) = PIPELINE.get() {
            p.sink.unlock_after_fork();
            registry::global().unlock_after_fork();
            p.state.force_unlock();
        }
    }
}

fn after_fork_in_child() {
    let Some(p) = PIPELINE.get() else { return };
    p.exporter_running.store(false, Ordering::Release);
    let mut state = p.state.lock();
    // The parent's exporter thread does not exist here, and its tokio runtime must not be
    // dropped (that would try to join dead threads): forget it.
    if let Some(exporter) = state.exporter.take() {
        std::mem::forget(exporter);
    }
    // Likewise the parent's metrics thread; the child's starts from Python's after-fork hook
    // (`restart_metrics_after_fork`), its counts zeroed by `edges`' own fork handler.
    if let Some(metrics) = state.metrics.take() {
        metrics.forget_after_fork();
    }
    // No waker: the child's exporter installs its own.
    p.sink.set_waker(usize::MAX, None);
    // The parent sends what was queued before the fork; the child must not send it twice.
    p.sink.reset_in_child();
}
