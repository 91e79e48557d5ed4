//! The process-wide pipeline: configuration, the span sink, and the exporter's lifecycle.
//!
//! The binding calls [`global`] on first use; it reads the configuration then (lazily, as the
//! OpenTelemetry SDKs do) unless `callspan.configure()` came first. The exporter thread starts
//! with the first span, not at import, so importing callspan costs nothing. After `fork()` the
//! child discards the parent's queued spans (the parent still sends them), forgets — never drops
//! or joins — the parent's exporter, and starts its own with its next span.

use crate::exporter::BatchExporter;
use crate::resource::build_resource;
use callspan_core::config::{Capture, Config};
use callspan_core::record::SpanRecord;
use callspan_core::registry::Registry;
use callspan_core::sampler::{RootRule, Sampler, SamplingRule};
use callspan_core::sink::SpanSink;
use callspan_core::stats::{Stats, StatsSnapshot};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The sampler's [`SamplingRule`] in two atomics, so the hot path reads it without a lock.
#[derive(Debug, Default)]
struct SamplerCell {
    /// `FOLLOWS_PARENT` | one of `ROOT_*`.
    kind: AtomicU8,
    /// The bound of `RootRule::Below`.
    bound: AtomicU64,
}

const FOLLOWS_PARENT: u8 = 4;
const ROOT_ALL: u8 = 0;
const ROOT_NONE: u8 = 1;
const ROOT_BELOW: u8 = 2;

impl SamplerCell {
    fn store(&self, sampler: Sampler) {
        let rule = sampler.rule();
        let (root, bound) = match rule.root {
            RootRule::All => (ROOT_ALL, 0),
            RootRule::None => (ROOT_NONE, 0),
            RootRule::Below(bound) => (ROOT_BELOW, bound),
        };
        let follows = if rule.follows_parent {
            FOLLOWS_PARENT
        } else {
            0
        };
        self.bound.store(bound, Ordering::Relaxed);
        self.kind.store(follows | root, Ordering::Release);
    }

    #[inline]
    fn load(&self) -> SamplingRule {
        let kind = self.kind.load(Ordering::Acquire);
        let root = match kind & !FOLLOWS_PARENT {
            ROOT_NONE => RootRule::None,
            ROOT_BELOW => RootRule::Below(self.bound.load(Ordering::Relaxed)),
            _ => RootRule::All,
        };
        SamplingRule {
            follows_parent: kind & FOLLOWS_PARENT != 0,
            root,
        }
    }
}

/// `CALLSPAN_MAX_SPANS_PER_SECOND` as a lock-free GCRA (generic cell rate algorithm) limiter:
/// a token bucket of one second's worth of spans, refilled continuously. One CAS per decision.
#[derive(Debug, Default)]
struct RateLimiter {
    /// Nanoseconds per span; 0: no limit.
    interval_ns: AtomicU64,
    /// Theoretical arrival time of the next span.
    tat: AtomicU64,
}

impl RateLimiter {
    fn set(&self, per_second: f64) {
        let interval = if per_second > 0.0 {
            (1e9 / per_second).max(1.0) as u64
        } else {
            0
        };
        self.interval_ns.store(interval, Ordering::Relaxed);
        self.tat.store(0, Ordering::Relaxed);
    }

    #[inline]
    fn allow(&self, now_ns: u64) -> bool {
        let interval = self.interval_ns.load(Ordering::Relaxed);
        if interval == 0 {
            return true;
        }
        let burst = 1_000_000_000u64.saturating_sub(interval);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now_ns);
            if start > now_ns + burst {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

/// The settings a traced call reads, as atomics (no lock on the hot path).
#[derive(Debug, Default)]
struct HotSettings {
    /// `CALLSPAN_CAPTURE` bits that are *not* captured.
    omitted: AtomicU8,
    min_duration_ns: AtomicU64,
    stack_depth: AtomicU8,
    otel_context: AtomicBool,
    /// Bumped by every (re)configuration, so per-function decisions are made again.
    epoch: AtomicU32,
    limiter: RateLimiter,
}

impl HotSettings {
    fn apply(&self, config: &Config) {
        self.omitted
            .store(!config.capture.0 & Capture::ALL.0, Ordering::Relaxed);
        self.min_duration_ns
            .store(config.min_duration.as_nanos() as u64, Ordering::Relaxed);
        self.stack_depth
            .store(config.stack_depth.min(255) as u8, Ordering::Relaxed);
        self.otel_context
            .store(config.otel_context, Ordering::Relaxed);
        self.limiter.set(config.max_spans_per_second);
        self.epoch.fetch_add(1, Ordering::Release);
    }
}

#[derive(Debug)]
struct State {
    arguments: HashMap<String, String>,
    config: Config,
    exporter: Option<BatchExporter>,
    shut_down: bool,
}

/// Everything callspan keeps per process.
#[derive(Debug)]
pub struct Pipeline {
    sink: SpanSink,
    sampler: SamplerCell,
    hot: HotSettings,
    disabled: AtomicBool,
    /// True while an exporter thread of this process is draining the sink.
    exporter_running: AtomicBool,
    state: Mutex<State>,
    /// ISSUE-12 item 5: held across a whole reconfiguration (the old exporter's drain
    /// included), so that two never overlap; `state` is not held across the drain.
    reconfiguring: Mutex<()>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The process's intern tables. Separate from the pipeline so that decorating functions (at
/// import) does not read the configuration: `callspan.configure()` in `main()` still applies
/// in full, queue size included.
pub fn registry() -> &'static Registry {
    REGISTRY.get_or_init(Registry::new)
}

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
            sampler: SamplerCell::default(),
            hot: HotSettings::default(),
            disabled: AtomicBool::new(config.disabled),
            exporter_running: AtomicBool::new(false),
            state: Mutex::new(State {
                arguments,
                config: config.clone(),
                exporter: None,
                shut_down: false,
            }),
            reconfiguring: Mutex::new(()),
        };
        p.sampler.store(config.sampler);
        p.hot.apply(&config);
        callspan_core::fork::around_fork(lock_all_for_fork, unlock_all_after_fork);
        callspan_core::fork::on_fork_child(after_fork_in_child);
        p
    }

    fn reconfigure(&self, arguments: HashMap<String, String>) {
        let (config, warnings) = Config::from_env(&arguments);
        report(warnings);
        if config.max_queue_size != self.sink.capacity() {
            tracing::warn!(
                "OTEL_BSP_MAX_QUEUE_SIZE: the queue was created with {} slots on first use and keeps them; \
                 {} applies from the next process",
                self.sink.capacity(),
                config.max_queue_size
            );
        }
        // ISSUE-12 item 5: the new configuration is put in place under the state lock, but
        // the old exporter is drained outside it: threads that wait on that lock hold the GIL
        // (a first traced call, `destination()`), and a silent collector can make the drain
        // last the whole export timeout. Meanwhile `exporter_running` stays true, so traced
        // calls keep queueing and none starts the new exporter before the old one has let go
        // of the queue; the first call after that starts it, and it takes the rest.
        let _one_at_a_time = self.reconfiguring.lock();
        let drain_timeout = config.export_timeout;
        let old = {
            let mut state = self.state.lock();
            state.arguments = arguments;
            state.shut_down = false;
            self.sampler.store(config.sampler);
            self.disabled.store(config.disabled, Ordering::Relaxed);
            self.hot.apply(&config);
            state.config = config;
            state.exporter.take()
        };
        if let Some(exporter) = old {
            exporter.shutdown(&self.sink, drain_timeout);
        }
        self.exporter_running.store(false, Ordering::Release);
    }

    /// The intern tables shared with the exporter.
    pub fn registry(&self) -> &'static Registry {
        registry()
    }

    /// The current sampler, as the rule a traced call applies.
    #[inline]
    pub fn sampling_rule(&self) -> SamplingRule {
        self.sampler.load()
    }

    /// `OTEL_SDK_DISABLED`: traced functions become plain calls.
    #[inline]
    pub fn disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// `CALLSPAN_CAPTURE` bits that are not captured.
    #[inline]
    pub fn omitted(&self) -> u8 {
        self.hot.omitted.load(Ordering::Relaxed)
    }

    /// `CALLSPAN_MIN_DURATION` in nanoseconds.
    #[inline]
    pub fn min_duration_ns(&self) -> u64 {
        self.hot.min_duration_ns.load(Ordering::Relaxed)
    }

    /// `CALLSPAN_STACK_DEPTH`.
    #[inline]
    pub fn stack_depth(&self) -> usize {
        usize::from(self.hot.stack_depth.load(Ordering::Relaxed))
    }

    /// `CALLSPAN_OTEL_CONTEXT`.
    #[inline]
    pub fn otel_context(&self) -> bool {
        self.hot.otel_context.load(Ordering::Relaxed)
    }

    /// Changes with every (re)configuration: per-function decisions cached under an older
    /// epoch must be made again.
    #[inline]
    pub fn config_epoch(&self) -> u32 {
        self.hot.epoch.load(Ordering::Acquire)
    }

    /// The `CALLSPAN_SAMPLE` rate of a function (not on the hot path: once per function and
    /// configuration).
    pub fn sample_rate_for(&self, function_name: &str) -> f64 {
        self.state.lock().config.sample_rate_for(function_name)
    }

    /// `CALLSPAN_MAX_SPANS_PER_SECOND`: whether one more sampled span fits; refusals counted.
    #[inline]
    pub fn admit(&self, now_ns: impl FnOnce() -> u64) -> bool {
        if self.hot.limiter.interval_ns.load(Ordering::Relaxed) == 0
            || self.hot.limiter.allow(now_ns())
        {
            return true;
        }
        Stats::add(&self.sink.stats.spans_rate_limited, 1);
        false
    }

    /// Counts a sampled span dropped for being shorter than `CALLSPAN_MIN_DURATION` (it was
    /// sampled, so it counts there too).
    #[inline]
    pub fn count_below_min_duration(&self) {
        callspan_core::stats::count_sampled();
        Stats::add(&self.sink.stats.spans_below_min_duration, 1);
    }

    /// Counts one call of a traced function (sampled or not).
    #[inline]
    pub fn count_started(&self) {
        callspan_core::stats::count_started();
    }

    /// Queues a finished sampled span; never blocks. Starts the exporter on first use.
    #[inline]
    pub fn submit(&'static self, record: SpanRecord) {
        callspan_core::stats::count_sampled();
        if !self.exporter_running.load(Ordering::Acquire) && !self.start_exporter() {
            Stats::add(&self.sink.stats.dropped_shutdown, 1);
            return;
        }
        self.sink.push(record);
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
            match BatchExporter::start(&state.config, resource, &self.sink, registry()) {
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
        match c.exporter {
            Otlp => format!(
                "OTLP/{} to {}",
                match c.protocol {
                    callspan_core::config::Protocol::Grpc => "gRPC",
                    callspan_core::config::Protocol::HttpProtobuf => "HTTP",
                },
                c.endpoint
            ),
            File => format!("OTLP JSON lines in {}", c.file),
            Console => "the console (stderr)".into(),
            None => "nowhere (exporter none)".into(),
        }
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
        match flusher {
            Some(f) => f.flush(timeout.unwrap_or(default_timeout)),
            // Nothing was ever started: nothing can be queued.
            None => self.sink.is_empty(),
        }
    }

    /// Asks for a flush of everything queued without waiting; also returns the default wait
    /// (`OTEL_BSP_EXPORT_TIMEOUT`). ISSUE-12 item 6: the binding waits in slices so that
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
        let (exporter, default_timeout) = {
            let mut state = self.state.lock();
            state.shut_down = true;
            self.exporter_running.store(false, Ordering::Release);
            (state.exporter.take(), state.config.export_timeout)
        };
        let ok = match exporter {
            Some(e) => e.shutdown(&self.sink, timeout.unwrap_or(default_timeout)),
            None => true,
        };
        // Whatever is still queued now will never be sent.
        self.sink.discard_all();
        ok
    }

    /// Every counter, plus the queue length.
    pub fn stats(&self) -> StatsSnapshot {
        self.sink.stats.snapshot(self.sink.len())
    }
}

fn lock_all_for_fork() {
    if let Some(p) = PIPELINE.get() {
        std::mem::forget(p.state.lock());
        registry().lock_for_fork();
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
            registry().unlock_after_fork();
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
    // No waker: the child's exporter installs its own.
    p.sink.set_waker(usize::MAX, None);
    // The parent sends what was queued before the fork; the child must not send it twice.
    while p.sink.pop().is_some() {}
    p.sink.stats.reset();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_second_of_burst_then_the_rate() {
        let limiter = RateLimiter::default();
        assert!(limiter.allow(0));
        limiter.set(100.0);
        let start = 5_000_000_000;
        let burst = (0..1000).filter(|_| limiter.allow(start)).count();
        assert_eq!(burst, 100);
        // Half a second later: 50 more.
        let later = (0..1000)
            .filter(|_| limiter.allow(start + 500_000_000))
            .count();
        assert_eq!(later, 50);
        limiter.set(0.0);
        assert!((0..1000).all(|_| limiter.allow(start)));
    }
}
