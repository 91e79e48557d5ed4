//! The state every traced call reads before it decides, and the decision itself.
//!
//! A call is recorded when three checks in a row say yes: the sampler (`OTEL_TRACES_SAMPLER`,
//! reduced to a [`SamplingRule`] once per configuration), the function's own rate
//! (`@callspan.trace(sample_rate=...)` or `CALLSPAN_SAMPLE`, reduced to an integer threshold once
//! per function and configuration: [`FunctionRate`]) and the process-wide rate limit
//! (`CALLSPAN_MAX_SPANS_PER_SECOND`, a lock-free GCRA: [`RateLimiter`]). [`HotState::decide`]
//! makes that decision; every entry point (the decorator, the coroutine and generator wrappers,
//! the profile hook) calls it and nothing else decides.
//!
//! Everything here is atomics read with relaxed loads: the exporter crate's pipeline writes them
//! when it is (re)configured, traced calls on any thread read them without a lock. A
//! configuration change bumps [`HotState::epoch`], so per-function decisions cached under an
//! older one are made again.

use crate::config::{Capture, Config, SampleRule};
use crate::record::FunctionId;
use crate::sampler::{RootRule, Sampler, SamplingRule};
use parking_lot::RwLock;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The sampler's [`SamplingRule`] in two atomics, so the hot path reads it without a lock.
#[derive(Debug)]
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
    const fn new() -> SamplerCell {
        // parentbased_always_on, the spec's default.
        SamplerCell {
            kind: AtomicU8::new(FOLLOWS_PARENT | ROOT_ALL),
            bound: AtomicU64::new(0),
        }
    }

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
#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds per span; 0: no limit.
    interval_ns: AtomicU64,
    /// Theoretical arrival time of the next span.
    tat: AtomicU64,
}

impl RateLimiter {
    /// A limiter that admits everything until [`RateLimiter::set`].
    pub const fn new() -> RateLimiter {
        RateLimiter {
            interval_ns: AtomicU64::new(0),
            tat: AtomicU64::new(0),
        }
    }

    /// Limits to `per_second` spans a second; 0 or less: no limit.
    pub fn set(&self, per_second: f64) {
        let interval = if per_second > 0.0 {
            (1e9 / per_second).max(1.0) as u64
        } else {
            0
        };
        self.interval_ns.store(interval, Ordering::Relaxed);
        self.tat.store(0, Ordering::Relaxed);
    }

    /// Whether a limit is set at all (no clock read is needed when not).
    #[inline]
    pub fn is_limited(&self) -> bool {
        self.interval_ns.load(Ordering::Relaxed) != 0
    }

    /// Whether one more span fits at `now_ns`.
    #[inline]
    pub fn allow(&self, now_ns: u64) -> bool {
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

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

/// Whether callspan has read its configuration yet, and whether it is on.
const UNCONFIGURED: u8 = 0;
const ENABLED: u8 = 1;
const DISABLED: u8 = 2;

/// What [`HotState::mode`] says a traced call must do first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No configuration was read yet: the caller creates the pipeline (which applies it here).
    Unconfigured,
    /// Tracing is on.
    Enabled,
    /// `OTEL_SDK_DISABLED`: traced functions are plain calls.
    Disabled,
}

/// The settings and limiters a traced call reads. One per process: [`state`].
#[derive(Debug)]
pub struct HotState {
    mode: AtomicU8,
    sampler: SamplerCell,
    limiter: RateLimiter,
    /// `CALLSPAN_CAPTURE` bits that are *not* captured.
    omitted: AtomicU8,
    /// `CALLSPAN_CAPTURE` names `instance`.
    instance: AtomicBool,
    min_duration_ns: AtomicU64,
    stack_depth: AtomicU8,
    otel_context: AtomicBool,
    /// Every call is counted per caller edge ([`crate::edges`]): a metrics exporter or
    /// `CALLSPAN_REPORT` is configured.
    counting: AtomicBool,
    /// Bumped by every (re)configuration, so per-function decisions are made again.
    epoch: AtomicU32,
    /// `CALLSPAN_SAMPLE`, read once per function and configuration (never per call).
    sample_rules: RwLock<Vec<SampleRule>>,
}

static STATE: HotState = HotState::new();

/// The process's hot state.
#[inline]
pub fn state() -> &'static HotState {
    &STATE
}

impl HotState {
    const fn new() -> HotState {
        HotState {
            mode: AtomicU8::new(UNCONFIGURED),
            sampler: SamplerCell::new(),
            limiter: RateLimiter::new(),
            omitted: AtomicU8::new(0),
            instance: AtomicBool::new(false),
            min_duration_ns: AtomicU64::new(0),
            stack_depth: AtomicU8::new(0),
            otel_context: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
            sample_rules: RwLock::new(Vec::new()),
        }
    }

    /// Takes the hot settings of `config` (called by the pipeline at creation and at every
    /// `configure()`).
    pub fn apply(&self, config: &Config) {
        self.omitted
            .store(!config.capture.0 & Capture::ALL.0, Ordering::Relaxed);
        self.instance
            .store(config.capture.has(Capture::INSTANCE), Ordering::Relaxed);
        self.min_duration_ns
            .store(config.min_duration.as_nanos() as u64, Ordering::Relaxed);
        self.stack_depth
            .store(config.stack_depth.min(255) as u8, Ordering::Relaxed);
        self.otel_context
            .store(config.otel_context, Ordering::Relaxed);
        self.limiter.set(config.max_spans_per_second);
        crate::edges::set_max_edges(config.max_edges);
        self.counting.store(counts_calls(config), Ordering::Relaxed);
        self.sampler.store(config.sampler);
        *self.sample_rules.write() = config.sample_rules.clone();
        self.epoch.fetch_add(1, Ordering::Release);
        let mode = if config.disabled { DISABLED } else { ENABLED };
        self.mode.store(mode, Ordering::Release);
    }

    /// What a traced call does first: configure, trace, or pass straight through.
    #[inline]
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            ENABLED => Mode::Enabled,
            DISABLED => Mode::Disabled,
            _ => Mode::Unconfigured,
        }
    }

    /// The current sampler, as the rule a traced call applies.
    #[inline]
    pub fn sampling_rule(&self) -> SamplingRule {
        self.sampler.load()
    }

    /// `CALLSPAN_CAPTURE` bits that are not captured.
    #[inline]
    pub fn omitted(&self) -> u8 {
        self.omitted.load(Ordering::Relaxed)
    }

    /// Whether `caller.instance.id` is captured.
    #[inline]
    pub fn instance(&self) -> bool {
        self.instance.load(Ordering::Relaxed)
    }

    /// `CALLSPAN_MIN_DURATION` in nanoseconds.
    #[inline]
    pub fn min_duration_ns(&self) -> u64 {
        self.min_duration_ns.load(Ordering::Relaxed)
    }

    /// `CALLSPAN_STACK_DEPTH`.
    #[inline]
    pub fn stack_depth(&self) -> usize {
        usize::from(self.stack_depth.load(Ordering::Relaxed))
    }

    /// `CALLSPAN_OTEL_CONTEXT`.
    #[inline]
    pub fn otel_context(&self) -> bool {
        self.otel_context.load(Ordering::Relaxed)
    }

    /// Whether every call is counted per caller edge.
    #[inline]
    pub fn counting(&self) -> bool {
        self.counting.load(Ordering::Relaxed)
    }

    /// Changes with every (re)configuration.
    #[inline]
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The `CALLSPAN_SAMPLE` rate of a function: the first matching rule's, else 1. Not on the
    /// hot path: once per function and configuration.
    pub fn sample_rate_for(&self, function_name: &str) -> f64 {
        crate::config::sample_rate_for(&self.sample_rules.read(), function_name)
    }

    /// Whether a call of `function` in `trace_id`, whose parent's decision is `parent_sampled`
    /// (None for a root), is recorded: the sampler (`rule`, as [`HotState::sampling_rule`] read
    /// it once for this call), then the function's own rate, then the process-wide rate limit
    /// (its refusals counted in `spans_rate_limited`).
    #[inline]
    pub fn decide(
        &self,
        rule: SamplingRule,
        parent_sampled: Option<bool>,
        trace_id: u128,
        rate: &FunctionRate,
        function: FunctionId,
        now_ns: impl FnOnce() -> u64,
    ) -> bool {
        rule.should_sample(parent_sampled, trace_id)
            && rate.admits(self, function)
            && self.admit(now_ns)
    }

    /// `CALLSPAN_MAX_SPANS_PER_SECOND`: whether one more sampled span fits; refusals counted.
    #[inline]
    fn admit(&self, now_ns: impl FnOnce() -> u64) -> bool {
        if !self.limiter.is_limited() || self.limiter.allow(now_ns()) {
            return true;
        }
        crate::stats::count_rate_limited();
        false
    }
}

/// Whether `config` asks for every call to be counted: metrics are exported, or a report is
/// printed at exit.
pub fn counts_calls(config: &Config) -> bool {
    !config.disabled && (!config.metrics_exporters.is_empty() || config.report.is_some())
}

/// One function's sampling rate (`sample_rate=` or `CALLSPAN_SAMPLE`) as a threshold for a
/// random u64, recomputed only when the configuration epoch changes. It lives in the object that
/// stands for the function (a `TracedFunction`, a profiled code object's entry) and is only
/// touched with the GIL held, hence plain cells.
#[derive(Debug)]
pub struct FunctionRate {
    /// The decorator's `sample_rate=`; NaN: none given (`CALLSPAN_SAMPLE` decides).
    decorator_rate: Cell<f64>,
    /// The epoch `threshold` was computed for.
    epoch: Cell<u32>,
    /// `u64::MAX`: every call.
    threshold: Cell<u64>,
}

impl FunctionRate {
    /// A rate fixed by the decorator, or (None) taken from `CALLSPAN_SAMPLE`.
    pub fn new(decorator_rate: Option<f64>) -> FunctionRate {
        FunctionRate {
            decorator_rate: Cell::new(decorator_rate.unwrap_or(f64::NAN)),
            // No epoch is u32::MAX before 4 billion reconfigurations: computed on first use.
            epoch: Cell::new(u32::MAX),
            threshold: Cell::new(u64::MAX),
        }
    }

    /// Whether this call passes the function's own rate.
    #[inline]
    pub fn admits(&self, hot: &HotState, function: FunctionId) -> bool {
        let epoch = hot.epoch();
        if self.epoch.get() != epoch {
            self.refresh(hot, function, epoch);
        }
        let threshold = self.threshold.get();
        threshold == u64::MAX || crate::ids::random_u64() < threshold
    }

    #[cold]
    fn refresh(&self, hot: &HotState, function: FunctionId, epoch: u32) {
        let decorator = self.decorator_rate.get();
        let rate = if decorator.is_nan() {
            let registry = crate::registry::global().view();
            let name = registry.function(function).map(|f| f.function_name);
            name.map_or(1.0, |n| hot.sample_rate_for(n))
        } else {
            decorator
        };
        let threshold = if rate >= 1.0 {
            u64::MAX
        } else {
            (rate.max(0.0) * u64::MAX as f64) as u64
        };
        self.threshold.set(threshold);
        self.epoch.set(epoch);
    }
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

    #[test]
    fn function_rate_follows_the_decorator_then_the_rules() {
        let hot = HotState::new();
        let (config, _) = Config::from_pairs(&[("CALLSPAN_SAMPLE", "app.*=0")], &[]);
        hot.apply(&config);
        let never = FunctionRate::new(Some(0.0));
        let always = FunctionRate::new(Some(1.0));
        assert!((0..100).all(|_| !never.admits(&hot, 1)));
        assert!((0..100).all(|_| always.admits(&hot, 1)));
        assert_eq!(hot.sample_rate_for("app.f"), 0.0);
        assert_eq!(hot.sample_rate_for("other.f"), 1.0);
    }

    #[test]
    fn mode_reflects_the_configuration() {
        let hot = HotState::new();
        assert_eq!(hot.mode(), Mode::Unconfigured);
        let (config, _) = Config::from_pairs(&[("OTEL_SDK_DISABLED", "true")], &[]);
        hot.apply(&config);
        assert_eq!(hot.mode(), Mode::Disabled);
        let (config, _) = Config::from_pairs(&[], &[]);
        hot.apply(&config);
        assert_eq!(hot.mode(), Mode::Enabled);
        assert_eq!(hot.sampling_rule(), Sampler::default().rule());
    }
}
