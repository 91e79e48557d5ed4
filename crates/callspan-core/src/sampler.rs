//! The sampling decision, made before anything else on the hot path and without allocation.
//!
//! The samplers are the OpenTelemetry SDK's, with the spec's names. `traceidratio` uses the
//! trace-id based rule of the OpenTelemetry Python SDK (the lower 64 bits of the trace id compared
//! with `round(ratio * (2^64 - 1))`), so that callspan and the Python SDK agree on every trace
//! they share.

/// A sampler configured from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// `always_on`: every span.
    AlwaysOn,
    /// `always_off`: no span.
    AlwaysOff,
    /// `traceidratio`: a fraction of traces, decided from the trace id.
    TraceIdRatio(f64),
    /// `parentbased_*`: follow the parent's decision; use the root sampler for root spans.
    ParentBased(RootSampler),
}

/// The root sampler of a parent-based sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RootSampler {
    /// `parentbased_always_on`.
    AlwaysOn,
    /// `parentbased_always_off`.
    AlwaysOff,
    /// `parentbased_traceidratio`.
    TraceIdRatio(f64),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(RootSampler::AlwaysOn)
    }
}

/// The largest lower-64-bit trace id value that is still sampled at `ratio` (exclusive bound).
fn ratio_bound(ratio: f64) -> u64 {
    let ratio = ratio.clamp(0.0, 1.0);
    // Matches opentelemetry-python's TraceIdRatioBased.get_bound_for_rate.
    (ratio * (u64::MAX as f64)).round() as u64
}

/// How a root span (or any span, without a parent-based sampler) is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootRule {
    /// Every trace.
    All,
    /// No trace.
    None,
    /// Traces whose id's lower 64 bits are below this bound.
    Below(u64),
}

impl RootRule {
    fn ratio(ratio: f64) -> RootRule {
        if ratio >= 1.0 {
            return RootRule::All;
        }
        match ratio_bound(ratio) {
            0 => RootRule::None,
            bound => RootRule::Below(bound),
        }
    }

    #[inline]
    fn admits(self, trace_id: u128) -> bool {
        match self {
            RootRule::All => true,
            RootRule::None => false,
            RootRule::Below(bound) => (trace_id as u64) < bound,
        }
    }
}

/// A sampler reduced to what a decision reads, once per configuration: whether the parent's
/// decision is followed, and the root rule with the ratio already turned into an integer bound
/// (no float rounding per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplingRule {
    /// `parentbased_*`: a span with a parent takes the parent's decision.
    pub follows_parent: bool,
    /// The decision for everything else.
    pub root: RootRule,
}

impl SamplingRule {
    /// Decides whether a span in `trace_id` is sampled; `parent` is the parent span's sampled
    /// flag, or `None` for a root span.
    #[inline]
    pub fn should_sample(self, parent: Option<bool>, trace_id: u128) -> bool {
        match parent {
            Some(sampled) if self.follows_parent => sampled,
            _ => self.root.admits(trace_id),
        }
    }

    /// True when no span can be sampled, whatever its parent and trace id: a call needs
    /// neither to look for its parent nor to draw a trace id.
    #[inline]
    pub fn never_samples(self) -> bool {
        !self.follows_parent && self.root == RootRule::None
    }
}

impl Sampler {
    /// The rule the hot path applies.
    pub fn rule(&self) -> SamplingRule {
        let (follows_parent, root) = match *self {
            Sampler::AlwaysOn => (false, RootRule::All),
            Sampler::AlwaysOff => (false, RootRule::None),
            Sampler::TraceIdRatio(r) => (false, RootRule::ratio(r)),
            Sampler::ParentBased(RootSampler::AlwaysOn) => (true, RootRule::All),
            Sampler::ParentBased(RootSampler::AlwaysOff) => (true, RootRule::None),
            Sampler::ParentBased(RootSampler::TraceIdRatio(r)) => (true, RootRule::ratio(r)),
        };
        SamplingRule {
            follows_parent,
            root,
        }
    }

    /// Decides whether a span in `trace_id` is sampled. `parent` is the parent span's sampled
    /// flag, or `None` for a root span.
    #[inline]
    pub fn should_sample(&self, parent: Option<bool>, trace_id: u128) -> bool {
        self.rule().should_sample(parent, trace_id)
    }

    /// The sampler's spec name, e.g. `parentbased_always_on`.
    pub fn name(&self) -> String {
        match self {
            Sampler::AlwaysOn => "always_on".into(),
            Sampler::AlwaysOff => "always_off".into(),
            Sampler::TraceIdRatio(r) => format!("traceidratio({r})"),
            Sampler::ParentBased(RootSampler::AlwaysOn) => "parentbased_always_on".into(),
            Sampler::ParentBased(RootSampler::AlwaysOff) => "parentbased_always_off".into(),
            Sampler::ParentBased(RootSampler::TraceIdRatio(r)) => {
                format!("parentbased_traceidratio({r})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_decides_for_parent_based() {
        let s = Sampler::ParentBased(RootSampler::AlwaysOff);
        assert!(!s.should_sample(None, 1));
        assert!(s.should_sample(Some(true), 1));
        let s = Sampler::ParentBased(RootSampler::AlwaysOn);
        assert!(s.should_sample(None, 1));
        assert!(!s.should_sample(Some(false), 1));
    }

    #[test]
    fn ratio_uses_low_64_bits() {
        let s = Sampler::TraceIdRatio(0.5);
        assert!(s.should_sample(None, (u128::from(u64::MAX) << 64) | 1));
        assert!(!s.should_sample(None, u128::from(u64::MAX - 1)));
        assert!(!Sampler::TraceIdRatio(0.0).should_sample(None, 0));
        assert!(Sampler::TraceIdRatio(1.0).should_sample(None, u128::MAX));
    }

    #[test]
    fn rules_decide_like_the_spec_samplers() {
        let parents = [None, Some(true), Some(false)];
        let ids = [
            0,
            1,
            u128::from(u64::MAX),
            u128::MAX,
            1 << 64,
            0x8000_0000_0000_0000,
        ];
        for sampler in [
            Sampler::AlwaysOn,
            Sampler::AlwaysOff,
            Sampler::TraceIdRatio(0.5),
            Sampler::TraceIdRatio(1e-30),
            Sampler::ParentBased(RootSampler::AlwaysOn),
            Sampler::ParentBased(RootSampler::AlwaysOff),
            Sampler::ParentBased(RootSampler::TraceIdRatio(0.5)),
        ] {
            for parent in parents {
                for id in ids {
                    let spec = match sampler {
                        Sampler::AlwaysOn => true,
                        Sampler::AlwaysOff => false,
                        Sampler::TraceIdRatio(r) => (id as u64) < ratio_bound(r),
                        Sampler::ParentBased(root) => parent.unwrap_or(match root {
                            RootSampler::AlwaysOn => true,
                            RootSampler::AlwaysOff => false,
                            RootSampler::TraceIdRatio(r) => (id as u64) < ratio_bound(r),
                        }),
                    };
                    assert_eq!(sampler.should_sample(parent, id), spec, "{sampler:?}");
                }
            }
        }
    }

    #[test]
    fn only_samplers_that_never_sample_say_so() {
        assert!(Sampler::AlwaysOff.rule().never_samples());
        assert!(Sampler::TraceIdRatio(0.0).rule().never_samples());
        assert!(!Sampler::TraceIdRatio(0.01).rule().never_samples());
        assert!(!Sampler::ParentBased(RootSampler::AlwaysOff)
            .rule()
            .never_samples());
    }

    #[test]
    fn ratio_is_statistically_right() {
        let s = Sampler::TraceIdRatio(0.1);
        let n = 200_000;
        let hits = (0..n)
            .filter(|_| s.should_sample(None, crate::ids::trace_id()))
            .count();
        let p = hits as f64 / n as f64;
        // 0.1 ± 5 standard deviations (σ ≈ 0.00067).
        assert!((p - 0.1).abs() < 0.0034, "{p}");
    }
}
