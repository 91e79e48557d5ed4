//! Counters for everything that happens to a span, shown by `callspan.stats()`.
//!
//! Nothing is lost silently: every span that is not exported is counted under the reason it
//! was dropped. Counters are relaxed atomics; they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, shared by the hot path and the exporter thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls of traced functions.
    pub spans_started: AtomicU64,
    /// Calls the sampler kept.
    pub spans_sampled: AtomicU64,
    /// Spans the receiver acknowledged (or the file/console exporter wrote).
    pub spans_exported: AtomicU64,
    /// Sampled spans dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Spans dropped because their export failed after retries.
    pub dropped_export_failed: AtomicU64,
    /// Spans still queued when a shutdown or flush ran out of time, or discarded by a fork child.
    pub dropped_shutdown: AtomicU64,
    /// Export requests that failed (after the exporter's own retries).
    pub export_errors: AtomicU64,
    /// Calls the sampler kept but `CALLSPAN_MAX_SPANS_PER_SECOND` refused.
    pub spans_rate_limited: AtomicU64,
    /// Sampled spans shorter than `CALLSPAN_MIN_DURATION`, not exported.
    pub spans_below_min_duration: AtomicU64,
    /// Export requests that succeeded.
    pub export_batches: AtomicU64,
}

/// A point-in-time copy of [`Stats`] plus the queue length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::spans_started`].
    pub spans_started: u64,
    /// See [`Stats::spans_sampled`].
    pub spans_sampled: u64,
    /// See [`Stats::spans_exported`].
    pub spans_exported: u64,
    /// All drops, whatever the reason.
    pub spans_dropped: u64,
    /// See [`Stats::dropped_queue_full`].
    pub dropped_queue_full: u64,
    /// See [`Stats::dropped_export_failed`].
    pub dropped_export_failed: u64,
    /// See [`Stats::dropped_shutdown`].
    pub dropped_shutdown: u64,
    /// See [`Stats::export_errors`].
    pub export_errors: u64,
    /// See [`Stats::spans_rate_limited`].
    pub spans_rate_limited: u64,
    /// See [`Stats::spans_below_min_duration`].
    pub spans_below_min_duration: u64,
    /// See [`Stats::export_batches`].
    pub export_batches: u64,
    /// Spans waiting in the queue.
    pub queue_len: u64,
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Zeroes every counter (a forked child starts its own count).
    pub fn reset(&self) {
        for c in [
            &self.spans_started,
            &self.spans_sampled,
            &self.spans_exported,
            &self.dropped_queue_full,
            &self.dropped_export_failed,
            &self.dropped_shutdown,
            &self.export_errors,
            &self.export_batches,
            &self.spans_rate_limited,
            &self.spans_below_min_duration,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Reads every counter; `queue_len` is supplied by the queue's owner.
    pub fn snapshot(&self, queue_len: usize) -> StatsSnapshot {
        let queue_full = self.dropped_queue_full.load(Relaxed);
        let failed = self.dropped_export_failed.load(Relaxed);
        let shutdown = self.dropped_shutdown.load(Relaxed);
        StatsSnapshot {
            spans_started: self.spans_started.load(Relaxed),
            spans_sampled: self.spans_sampled.load(Relaxed),
            spans_exported: self.spans_exported.load(Relaxed),
            spans_dropped: queue_full + failed + shutdown,
            dropped_queue_full: queue_full,
            dropped_export_failed: failed,
            dropped_shutdown: shutdown,
            export_errors: self.export_errors.load(Relaxed),
            spans_rate_limited: self.spans_rate_limited.load(Relaxed),
            spans_below_min_duration: self.spans_below_min_duration.load(Relaxed),
            export_batches: self.export_batches.load(Relaxed),
            queue_len: queue_len as u64,
        }
    }
}

impl StatsSnapshot {
    /// Every counter by its `callspan.stats()` key.
    pub fn entries(&self) -> [(&'static str, u64); 12] {
        [
            ("spans_started", self.spans_started),
            ("spans_sampled", self.spans_sampled),
            ("spans_exported", self.spans_exported),
            ("spans_dropped", self.spans_dropped),
            ("dropped_queue_full", self.dropped_queue_full),
            ("dropped_export_failed", self.dropped_export_failed),
            ("dropped_shutdown", self.dropped_shutdown),
            ("export_errors", self.export_errors),
            ("export_batches", self.export_batches),
            ("spans_rate_limited", self.spans_rate_limited),
            ("spans_below_min_duration", self.spans_below_min_duration),
            ("queue_len", self.queue_len),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_sums_every_reason() {
        let s = Stats::default();
        Stats::add(&s.dropped_queue_full, 2);
        Stats::add(&s.dropped_export_failed, 3);
        Stats::add(&s.dropped_shutdown, 4);
        let snap = s.snapshot(5);
        assert_eq!(snap.spans_dropped, 9);
        assert_eq!(snap.queue_len, 5);
        assert_eq!(snap.entries().len(), 12);
    }
}
