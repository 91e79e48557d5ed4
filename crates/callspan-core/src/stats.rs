//! Counters for everything that happens to a span, shown by `callspan.stats()`.
//!
//! Nothing is lost silently: every span that is not exported is counted under the reason it
//! was dropped. Counters are relaxed atomics; they are statistics, not synchronisation.
//!
//! The two counters every traced call bumps, calls started and calls sampled, are kept per
//! thread ([`count_started`], [`count_sampled`]; on the hot path [`ThreadCounts`], a field of
//! [`crate::per_thread::PerThread`]) in [`crate::thread_slots`]: a plain load and store instead
//! of a locked add; reading sums the slots.

use crate::per_thread;
use crate::thread_slots::{Claim, Slot, SlotList};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// Live counters, shared by the hot path and the exporter thread (calls started and sampled
/// are process-wide and per thread: [`count_started`], [`count_sampled`]).
#[derive(Debug, Default)]
pub struct Stats {
    /// Spans the receiver acknowledged (or the file/console exporter wrote).
    pub spans_exported: AtomicU64,
    /// Sampled spans dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Spans dropped because their export failed after retries.
    pub dropped_export_failed: AtomicU64,
    /// Spans still queued or in flight when a shutdown ran out of time, or discarded by a fork
    /// child.
    pub dropped_shutdown: AtomicU64,
    /// Export requests that failed (after the exporter's own retries).
    pub export_errors: AtomicU64,
    /// Export requests that succeeded.
    pub export_batches: AtomicU64,
}

/// A point-in-time copy of [`Stats`] plus the queue length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Calls of traced functions, sampled or not ([`count_started`]).
    pub spans_started: u64,
    /// Calls the sampler kept ([`count_sampled`]).
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
    /// Calls the sampler kept but `CALLSPAN_MAX_SPANS_PER_SECOND` refused ([`count_rate_limited`]).
    pub spans_rate_limited: u64,
    /// Sampled spans shorter than `CALLSPAN_MIN_DURATION`, not exported
    /// ([`count_below_min_duration`]).
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
        reset_call_counts();
        for c in [
            &self.spans_exported,
            &self.dropped_queue_full,
            &self.dropped_export_failed,
            &self.dropped_shutdown,
            &self.export_errors,
            &self.export_batches,
            &RATE_LIMITED,
            &BELOW_MIN_DURATION,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Reads every counter; `queue_len` is supplied by the queue's owner.
    pub fn snapshot(&self, queue_len: usize) -> StatsSnapshot {
        let queue_full = self.dropped_queue_full.load(Relaxed);
        let failed = self.dropped_export_failed.load(Relaxed);
        let shutdown = self.dropped_shutdown.load(Relaxed);
        let (started, sampled) = call_counts();
        StatsSnapshot {
            spans_started: started,
            spans_sampled: sampled,
            spans_exported: self.spans_exported.load(Relaxed),
            spans_dropped: queue_full + failed + shutdown,
            dropped_queue_full: queue_full,
            dropped_export_failed: failed,
            dropped_shutdown: shutdown,
            export_errors: self.export_errors.load(Relaxed),
            spans_rate_limited: RATE_LIMITED.load(Relaxed),
            spans_below_min_duration: BELOW_MIN_DURATION.load(Relaxed),
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

/// One thread's call counts. Only the thread that holds the slot writes its counts.
#[derive(Debug, Default)]
struct CallCounts {
    started: AtomicU64,
    sampled: AtomicU64,
}

static SLOTS: SlotList<CallCounts> = SlotList::new();
/// Counts from threads whose slot is gone (a call made by a thread-local destructor during
/// thread exit, after this thread's claim was released).
static LATE: Slot<CallCounts> = Slot::detached(CallCounts {
    started: AtomicU64::new(0),
    sampled: AtomicU64::new(0),
});

/// One thread's call counts (a field of [`crate::per_thread::PerThread`]): its slot, claimed on
/// first use and released for reuse when the thread exits.
#[derive(Debug)]
pub struct ThreadCounts(Claim<CallCounts>);

impl ThreadCounts {
    pub(crate) const fn new() -> ThreadCounts {
        ThreadCounts(Claim::new())
    }

    /// Counts one call of a traced function (sampled or not).
    #[inline]
    pub fn started(&self) {
        bump(&self.slot().started);
    }

    /// Counts one call the sampler kept.
    #[inline]
    pub fn sampled(&self) {
        bump(&self.slot().sampled);
    }

    #[inline]
    fn slot(&self) -> &'static CallCounts {
        self.0.slot(&SLOTS, CallCounts::default)
    }
}

/// Adds one to a counter that only this thread writes: a plain load and store.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Adds one to `counter` of this thread's slot, or of the shared late slot once this thread's
/// state is gone (a call made by a thread-local destructor during thread exit).
#[inline]
fn add_one(counter: fn(&CallCounts) -> &AtomicU64) {
    if per_thread::with(|t| bump(counter(t.counts.slot()))).is_none() {
        counter(&LATE).fetch_add(1, Relaxed);
    }
}

fn for_each_slot(mut f: impl FnMut(&CallCounts)) {
    f(&LATE);
    SLOTS.for_each(f);
}

/// Sampled calls refused by the rate limit, and sampled calls too short to export: counted by
/// the span lifecycle before any exporter exists, so process-wide like the call counts (rare
/// events: a shared atomic add is fine).
static RATE_LIMITED: AtomicU64 = AtomicU64::new(0);
static BELOW_MIN_DURATION: AtomicU64 = AtomicU64::new(0);

/// Counts one call the sampler kept but `CALLSPAN_MAX_SPANS_PER_SECOND` refused.
#[inline]
pub fn count_rate_limited() {
    RATE_LIMITED.fetch_add(1, Relaxed);
}

/// Counts one sampled span dropped for being shorter than `CALLSPAN_MIN_DURATION` (it was
/// sampled, so it counts there too).
#[inline]
pub fn count_below_min_duration() {
    count_sampled();
    BELOW_MIN_DURATION.fetch_add(1, Relaxed);
}

/// Counts one call of a traced function (sampled or not).
#[inline]
pub fn count_started() {
    add_one(|slot| &slot.started);
}

/// Counts one call the sampler kept.
#[inline]
pub fn count_sampled() {
    add_one(|slot| &slot.sampled);
}

/// Calls started and sampled, summed over every thread.
pub fn call_counts() -> (u64, u64) {
    let (mut started, mut sampled) = (0u64, 0u64);
    for_each_slot(|slot| {
        started = started.wrapping_add(slot.started.load(Relaxed));
        sampled = sampled.wrapping_add(slot.sampled.load(Relaxed));
    });
    (started, sampled)
}

/// Zeroes the call counts. Only exact while no other thread counts (a forked child's only
/// thread, or tests).
fn reset_call_counts() {
    for_each_slot(|slot| {
        slot.started.store(0, Relaxed);
        slot.sampled.store(0, Relaxed);
    });
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

    #[test]
    fn call_counts_sum_every_thread_and_survive_thread_exit() {
        // The only test of this binary that counts calls; it compares differences all the same.
        let (started0, sampled0) = call_counts();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        count_started();
                    }
                    count_sampled();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Exited threads' slots are reused by new threads, which keep adding to them.
        std::thread::spawn(|| (0..5).for_each(|_| count_started()))
            .join()
            .unwrap();
        let (started, sampled) = call_counts();
        assert_eq!(started - started0, 80_005);
        assert_eq!(sampled - sampled0, 8);
    }
}
