//! Says so when the queue was full and spans were dropped: how many, and which setting helps.
//!
//! The hot path only counts such drops (`dropped_queue_full`): a log call per dropped span would
//! cost most when the process is already overloaded. The exporter thread looks at the counter
//! each time it wakes and warns about the drops since its last warning, at most once per
//! [`RATE_LIMIT`](crate::diagnostic::RATE_LIMIT), and always at a flush or shutdown, so that
//! every drop is in some message by the time the application checks.

use crate::diagnostic::{RATE_LIMIT, SELF_LIMITED_TARGET};
use callspan_core::stats::Stats;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The exporter thread's memory of what it already reported.
#[derive(Debug, Default)]
pub(crate) struct QueueFullReport {
    reported: u64,
    last: Option<Instant>,
}

impl QueueFullReport {
    /// Warns about drops since the last warning if the rate limit allows (or `force`).
    pub(crate) fn check(&mut self, stats: &Stats, capacity: usize, force: bool) {
        let total = stats.dropped_queue_full.load(Ordering::Relaxed);
        if total <= self.reported {
            return;
        }
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|last| now.duration_since(last) < RATE_LIMIT)
        {
            return;
        }
        let new = total - self.reported;
        tracing::warn!(
            target: SELF_LIMITED_TARGET,
            "the span queue was full: {new} spans dropped ({total} in all); the queue holds \
             {capacity} spans (OTEL_BSP_MAX_QUEUE_SIZE, or CALLSPAN_MAX_QUEUE_BYTES when that is \
             unset): raise it, sample fewer calls \
             (OTEL_TRACES_SAMPLER_ARG, CALLSPAN_SAMPLE) or cap the rate \
             (CALLSPAN_MAX_SPANS_PER_SECOND)"
        );
        self.reported = total;
        self.last = Some(now);
    }
}
