//! The bounded queue between traced calls and the exporter thread.
//!
//! A traced call must never block and never allocate for the queue, so the sink is a fixed-size
//! lock-free ring ([`crossbeam_queue::ArrayQueue`]). When it is full the new record is dropped and
//! counted. When it holds the exporter's wake threshold (a few batches) the exporter is woken
//! once — the `wake_pending` flag keeps a hot loop from signalling on every push. The queue's
//! length is read only every few pushes ([`SpanSink::set_waker`]): reading it loads the head
//! index, a cache line the exporter writes at every pop, and a wake a few records late costs
//! nothing.

use crate::record::SpanRecord;
use crate::stats::Stats;
use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes one queued record takes in the ring: the record and the slot's sequence stamp, as
/// [`ArrayQueue`] lays out a slot (`CALLSPAN_MAX_QUEUE_BYTES` is counted in these).
pub const SLOT_BYTES: usize = std::mem::size_of::<SlotLayout>();

/// The shape of one of [`ArrayQueue`]'s slots (a stamp, then the value), for [`SLOT_BYTES`].
#[allow(dead_code)]
struct SlotLayout {
    stamp: AtomicUsize,
    record: SpanRecord,
}

/// A wake-up call into the exporter thread.
pub type Waker = Box<dyn Fn() + Send + Sync>;

/// The bounded span queue plus the counters that describe it.
pub struct SpanSink {
    queue: ArrayQueue<SpanRecord>,
    /// Counters shared with the exporter.
    pub stats: Stats,
    /// Pushes so far, to check the length every `check_mask + 1` of them. Producers racing may
    /// lose an increment, which only moves a check; its own cache line, written by producers only.
    pushes: PushCounter,
    check_mask: AtomicUsize,
    batch_threshold: AtomicUsize,
    wake_pending: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// [`SpanSink::pushes`], alone on its cache lines (128 bytes: the adjacent-line prefetcher
/// pairs them).
#[repr(align(128))]
#[derive(Default)]
struct PushCounter(AtomicUsize);

/// The most pushes between two reads of the queue length.
const MAX_CHECK_INTERVAL: usize = 64;

impl std::fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanSink")
            .field("len", &self.queue.len())
            .field("capacity", &self.queue.capacity())
            .finish_non_exhaustive()
    }
}

impl SpanSink {
    /// A sink holding at most `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        SpanSink {
            queue: ArrayQueue::new(capacity.max(1)),
            stats: Stats::default(),
            pushes: PushCounter::default(),
            check_mask: AtomicUsize::new(0),
            batch_threshold: AtomicUsize::new(usize::MAX),
            wake_pending: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    /// Queues a finished span. Returns false (and counts the drop) when the queue is full.
    #[inline]
    pub fn push(&self, record: SpanRecord) -> bool {
        if self.queue.push(record).is_err() {
            self.drop_full();
            return false;
        }
        let pushes = self.pushes.0.load(Ordering::Relaxed);
        self.pushes
            .0
            .store(pushes.wrapping_add(1), Ordering::Relaxed);
        if pushes & self.check_mask.load(Ordering::Relaxed) == 0
            && self.queue.len() >= self.batch_threshold.load(Ordering::Relaxed)
        {
            self.wake();
        }
        true
    }

    /// Whether a push now would find the queue full (the exporter may take records meanwhile).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// Counts a span dropped because the queue is full, and wakes the exporter to drain it.
    #[cold]
    pub fn drop_full(&self) {
        Stats::add(&self.stats.dropped_queue_full, 1);
        self.wake();
    }

    #[inline]
    fn wake(&self) {
        // Only the first push past the threshold signals; the exporter clears the flag.
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Some(waker) = self.waker.lock().as_ref() {
                waker();
            }
        }
    }

    /// Takes the oldest queued record.
    #[inline]
    pub fn pop(&self) -> Option<SpanRecord> {
        self.queue.pop()
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Installs the exporter's wake-up call and the queue length that triggers it. The length
    /// is read every power-of-two pushes up to a quarter of the threshold (at most 64), so the
    /// wake comes at most that many records late.
    pub fn set_waker(&self, batch_threshold: usize, waker: Option<Waker>) {
        *self.waker.lock() = waker;
        let threshold = batch_threshold.max(1);
        let interval = (threshold / 4).clamp(1, MAX_CHECK_INTERVAL);
        // the largest power of two not above `interval`, less one: a mask
        let mask = (1usize << (usize::BITS - 1 - interval.leading_zeros())) - 1;
        self.check_mask.store(mask, Ordering::Relaxed);
        self.batch_threshold.store(threshold, Ordering::Relaxed);
        self.wake_pending.store(false, Ordering::Release);
    }

    /// Called by the exporter when it wakes, so the next full batch signals again.
    pub fn clear_wake(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// Drops every queued record, counting them as `dropped_shutdown`; returns how many.
    pub fn discard_all(&self) -> usize {
        let mut n = 0;
        while self.queue.pop().is_some() {
            n += 1;
        }
        Stats::add(&self.stats.dropped_shutdown, n as u64);
        n
    }

    /// Holds the waker lock across `fork()`.
    pub fn lock_for_fork(&self) {
        std::mem::forget(self.waker.lock());
    }

    /// Releases the lock taken by [`SpanSink::lock_for_fork`].
    ///
    /// # Safety
    /// Must be paired with exactly one earlier `lock_for_fork` in this process image.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.waker.force_unlock() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[test]
    fn full_queue_drops_and_counts() {
        let sink = SpanSink::new(2);
        assert!(sink.push(SpanRecord::default()));
        assert!(sink.push(SpanRecord::default()));
        assert!(!sink.push(SpanRecord::default()));
        let snap = sink.stats.snapshot(sink.len());
        assert_eq!(snap.dropped_queue_full, 1);
        assert_eq!(snap.queue_len, 2);
    }

    #[test]
    fn wakes_once_per_batch() {
        let sink = SpanSink::new(100);
        let wakes = Arc::new(AtomicU32::new(0));
        let w = wakes.clone();
        sink.set_waker(
            3,
            Some(Box::new(move || {
                w.fetch_add(1, Ordering::Relaxed);
            })),
        );
        for _ in 0..10 {
            sink.push(SpanRecord::default());
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        sink.clear_wake();
        sink.push(SpanRecord::default());
        assert_eq!(wakes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_large_threshold_wakes_within_the_check_interval() {
        let sink = SpanSink::new(10_000);
        let wakes = Arc::new(AtomicU32::new(0));
        let w = wakes.clone();
        sink.set_waker(
            2048,
            Some(Box::new(move || {
                w.fetch_add(1, Ordering::Relaxed);
            })),
        );
        for _ in 0..2047 {
            sink.push(SpanRecord::default());
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 0);
        for _ in 0..MAX_CHECK_INTERVAL {
            sink.push(SpanRecord::default());
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn concurrent_pushes_lose_nothing() {
        let sink = Arc::new(SpanSink::new(40_000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        sink.push(SpanRecord {
                            span_id: t * 100_000 + i + 1,
                            ..Default::default()
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut ids = std::collections::HashSet::new();
        while let Some(r) = sink.pop() {
            ids.insert(r.span_id);
        }
        assert_eq!(ids.len(), 40_000);
    }

    #[test]
    fn discard_counts() {
        let sink = SpanSink::new(4);
        sink.push(SpanRecord::default());
        assert_eq!(sink.discard_all(), 1);
        assert_eq!(sink.stats.snapshot(0).dropped_shutdown, 1);
        assert!(sink.is_empty());
    }
}
