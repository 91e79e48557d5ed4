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

#[inline]
fn ratio_decision(ratio: f64, trace_id: u128) -> bool {
    let low = trace_id as u64;
    ratio >= 1.0 || low < ratio_bound(ratio)
}

impl Sampler {
    /// Decides whether a span in `trace_id` is sampled. `parent` is the parent span's sampled
    /// flag, or `None` for a root span.
    #[inline]
    pub fn should_sample(&self, parent: Option<bool>, trace_id: u128) -> bool {
        match *self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(r) => ratio_decision(r, trace_id),
            Sampler::ParentBased(root) => match parent {
                Some(sampled) => sampled,
                None => match root {
                    RootSampler::AlwaysOn => true,
                    RootSampler::AlwaysOff => false,
                    RootSampler::TraceIdRatio(r) => ratio_decision(r, trace_id),
                },
            },
        }
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
