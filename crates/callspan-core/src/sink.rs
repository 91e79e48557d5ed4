//! The bounded queue between traced calls and the exporter thread.
//!
//! A traced call must never block and never allocate for the queue on its common path, and it
//! should not write a cache line that another thread writes. So the queue is a set of
//! single-producer lanes, one per thread that has queued a span ([`ThreadLane`], kept in the
//! thread's [`crate::per_thread::PerThread`]), which the exporter thread — the one consumer —
//! drains. A push writes the record into the thread's current segment and publishes its count
//! with one release store: no compare-and-swap, no counter shared with other producers. (A
//! shared lock-free ring cost ~60 instructions and a locked compare-and-swap per span.)
//!
//! A lane is a chain of fixed segments of [`SEGMENT_SLOTS`] records. When the thread's segment
//! is full it takes a new one from the sink's budget: the configured capacity, counted in whole
//! segments. With the budget spent the record is dropped and counted, so memory is bounded by
//! the capacity plus one segment per lane (every lane keeps the segment it writes to, outside
//! the budget, so that a lane never waits on itself) — at most 6 KiB per thread that queues.
//! Segments read past are kept for reuse (`Segments::spare`), not freed: the queue's memory
//! stays at its high-water mark. The exporter frees a segment once it has
//! read past it, which returns it to the budget. A lane whose thread has exited is removed once
//! it is drained.
//!
//! The exporter is woken when the queue holds its wake threshold (a few batches): a producer
//! looks every few pushes ([`SpanSink::set_waker`]) at its own lane's backlog and at the
//! segments taken from the budget by all lanes, and the `wake_pending` flag keeps a hot loop
//! from signalling on every push. A wake a few records late costs nothing.
//!
//! After `fork()` the child forgets the parent's lanes ([`SpanSink::reset_in_child`]): their
//! spans are the parent's to send. Every push happens with the GIL held, and so does `fork()`,
//! so no push is half done in the child.

use crate::per_thread::PerThread;
use crate::record::SpanRecord;
use crate::stats::Stats;
use parking_lot::Mutex;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes one queued record takes in the queue (`CALLSPAN_MAX_QUEUE_BYTES` is counted in these).
pub const SLOT_BYTES: usize = std::mem::size_of::<SpanRecord>();

/// Records per segment (fewer are used when the capacity is small: [`SpanSink::new`]).
pub const SEGMENT_SLOTS: usize = 64;

/// A wake-up call into the exporter thread.
pub type Waker = Box<dyn Fn() + Send + Sync>;

/// The most pushes between two looks at the backlog.
const MAX_CHECK_INTERVAL: usize = 64;

/// A source of sink ids: a producer's lane belongs to the sink whose id it carries.
static NEXT_SINK_ID: AtomicU64 = AtomicU64::new(1);

/// A block of record slots; a lane's segments are linked oldest first.
struct Segment {
    /// The segment after this one (null until the producer moves on).
    next: AtomicPtr<Segment>,
    slots: [UnsafeCell<MaybeUninit<SpanRecord>>; SEGMENT_SLOTS],
}

impl Segment {
    /// A fresh segment on the heap, its slots uninitialised.
    fn alloc() -> *mut Segment {
        let mut segment = Box::<Segment>::new_uninit();
        // SAFETY: `next` is the only field that needs a value; the slots are `MaybeUninit`.
        unsafe {
            ptr::addr_of_mut!((*segment.as_mut_ptr()).next).write(AtomicPtr::new(ptr::null_mut()));
            Box::into_raw(segment.assume_init())
        }
    }

    /// Frees a segment made by [`Segment::alloc`] (its records already taken or dropped).
    ///
    /// # Safety
    /// `segment` came from [`Segment::alloc`] and nothing uses it any more.
    unsafe fn free(segment: *mut Segment) {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(segment) });
    }

    /// The slot at `index` (below [`SEGMENT_SLOTS`]).
    ///
    /// # Safety
    /// `segment` is live and `index < SEGMENT_SLOTS`.
    #[inline(always)]
    unsafe fn slot(segment: *mut Segment, index: usize) -> *mut MaybeUninit<SpanRecord> {
        // SAFETY: the caller's contract.
        unsafe { (*segment).slots.get_unchecked(index).get() }
    }
}

/// A segment pointer that may cross threads (the consumer hands read segments back to
/// producers through [`Segments::spare`]).
struct SegmentPtr(*mut Segment);

// SAFETY: a segment in the spare list belongs to no lane; whoever takes it owns it.
unsafe impl Send for SegmentPtr {}

/// The queue's segments: the budget lanes take them from, and those read past, kept for reuse.
struct Segments {
    /// Segments lanes may take beyond the one each keeps.
    budget: isize,
    /// Of `budget`, the segments not taken.
    available: AtomicIsize,
    /// Segments the consumer has read past, for the next ones producers take. Kept rather
    /// than freed: a freed segment goes back to the allocator, which returns memory to the
    /// kernel when the queue shrinks, and a hot thread then pays a page fault every few
    /// dozen spans as it grows again. Never more than the budget; locked once a segment.
    spare: Mutex<Vec<SegmentPtr>>,
}

impl Segments {
    /// A segment for a lane's first: outside the budget.
    fn first(&self) -> *mut Segment {
        match self.spare.lock().pop() {
            Some(SegmentPtr(segment)) => {
                // SAFETY: a spare segment is owned by whoever takes it.
                unsafe { (*segment).next.store(ptr::null_mut(), Ordering::Relaxed) };
                segment
            }
            None => Segment::alloc(),
        }
    }

    /// A segment from the budget; None when it is spent.
    fn take(&self) -> Option<*mut Segment> {
        if self.available.fetch_sub(1, Ordering::Relaxed) <= 0 {
            self.available.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.first())
    }

    /// A segment the consumer has read past, back to the budget.
    fn give_back(&self, segment: *mut Segment) {
        self.spare.lock().push(SegmentPtr(segment));
        self.available.fetch_add(1, Ordering::Relaxed);
    }

    /// Segments taken from the budget now.
    fn taken(&self) -> u64 {
        (self.budget - self.available.load(Ordering::Relaxed)).max(0) as u64
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        for SegmentPtr(segment) in self.spare.get_mut().drain(..) {
            // SAFETY: spare segments belong to no lane.
            unsafe { Segment::free(segment) };
        }
    }
}

/// [`Lane::written`] alone on its cache lines (128 bytes: the adjacent-line prefetcher pairs
/// them), so that the consumer's reads of the lane's other fields do not pull it away.
#[repr(align(128))]
struct Published(AtomicU64);

/// One producer thread's records, read by the consumer.
struct Lane {
    /// Records the producer has published, ever (its next record's position).
    written: Published,
    /// Records the consumer has taken, ever: read by the producer only to estimate its
    /// backlog for the wake-up.
    read: AtomicU64,
    /// Set (release) after the producer's last push: its thread has exited or moved to
    /// another sink.
    closed: AtomicBool,
    /// Records per segment in this lane.
    segment_len: usize,
    /// The consumer's position: only touched under the sink's consumer lock, or by `Drop`.
    head: UnsafeCell<Head>,
}

/// Where the consumer reads a lane.
struct Head {
    /// The segment holding position `read`.
    segment: *mut Segment,
    /// The position of that segment's first slot.
    base: u64,
    /// The next position to read.
    read: u64,
    /// The lane's end at the consumer's last [`SpanSink::mark_queued`]: what
    /// [`Take::Queued`] may take.
    mark: u64,
    /// `written` as the consumer last loaded it: it loads it again only when it has read that
    /// far, so that the producer's line moves to the consumer once per catch-up, not once per
    /// record.
    known_written: u64,
}

impl Head {
    /// The index of the next record to read in `segment`, moving on to the next segment when
    /// this one is read to its end (`segment_len` records); returns the segment left behind.
    /// Call only with a record published past `read`: the producer links the next segment
    /// (release) before it publishes a record in it.
    fn next_index(&mut self, segment_len: usize) -> (usize, Option<*mut Segment>) {
        let index = (self.read - self.base) as usize;
        if index < segment_len {
            return (index, None);
        }
        let left = self.segment;
        // SAFETY: `left` is live and fully read; its `next` was set before the record past it
        // was published.
        self.segment = unsafe { (*left).next.load(Ordering::Acquire) };
        debug_assert!(!self.segment.is_null());
        self.base += segment_len as u64;
        (0, Some(left))
    }
}

// SAFETY: `head` is touched by one thread at a time (the consumer lock, or the last owner in
// `Drop`); the slots are handed over by the release/acquire pair on `written`.
unsafe impl Send for Lane {}
// SAFETY: as above.
unsafe impl Sync for Lane {}

impl Lane {
    /// Takes the lane's oldest record; None when it has none published.
    ///
    /// # Safety
    /// Called by one thread at a time (the sink's consumer lock).
    unsafe fn pop(&self, segments: &Segments, queued_before_mark: bool) -> Option<SpanRecord> {
        // SAFETY: the caller's contract.
        let head = unsafe { &mut *self.head.get() };
        if queued_before_mark && head.read >= head.mark {
            return None;
        }
        if head.read == head.known_written {
            head.known_written = self.written.0.load(Ordering::Acquire);
            if head.read == head.known_written {
                return None;
            }
        }
        let (index, left) = head.next_index(self.segment_len);
        if let Some(left) = left {
            // The producer has moved on from it, and every record in it was taken.
            segments.give_back(left);
        }
        // SAFETY: a published slot (acquire above), read once.
        let record = unsafe { Segment::slot(head.segment, index).read().assume_init() };
        head.read += 1;
        self.read.store(head.read, Ordering::Relaxed);
        Some(record)
    }

    /// Records published and not yet taken.
    ///
    /// # Safety
    /// As [`Lane::pop`].
    unsafe fn len(&self) -> u64 {
        // SAFETY: the caller's contract.
        let read = unsafe { (*self.head.get()).read };
        self.written.0.load(Ordering::Acquire) - read
    }
}

impl Drop for Lane {
    /// Drops the records never taken and frees the segments (the last owner: the producer has
    /// closed it or belongs to a process image that no longer runs it).
    fn drop(&mut self) {
        let head = self.head.get_mut();
        let written = *self.written.0.get_mut();
        while head.read < written {
            let (index, left) = head.next_index(self.segment_len);
            if let Some(left) = left {
                // SAFETY: fully read, and this lane's alone (the last owner).
                unsafe { Segment::free(left) };
            }
            // SAFETY: a published record never taken, dropped once.
            unsafe { ptr::drop_in_place(Segment::slot(head.segment, index).cast::<SpanRecord>()) };
            head.read += 1;
        }
        let mut segment = head.segment;
        while !segment.is_null() {
            // SAFETY: the chain from the head is this lane's alone now.
            let next = unsafe { (*segment).next.load(Ordering::Acquire) };
            // SAFETY: as above; its records were dropped or taken.
            unsafe { Segment::free(segment) };
            segment = next;
        }
    }
}

/// The producer's end of its lane.
struct Producer {
    lane: Arc<Lane>,
    /// The sink the lane belongs to (its `ProducerView::id`).
    sink_id: u64,
    /// The segment being written.
    segment: *mut Segment,
    /// The position of its first slot.
    base: u64,
    /// Records pushed into the lane (== `lane.written`).
    written: u64,
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.lane.closed.store(true, Ordering::Release);
    }
}

/// A thread's lane into the sink it last pushed to, kept in its
/// [`crate::per_thread::PerThread`]; empty until the thread's first push. Dropped when the thread
/// exits, which closes the lane.
pub struct ThreadLane(UnsafeCell<Option<Producer>>);

impl ThreadLane {
    /// No lane yet.
    pub const fn new() -> ThreadLane {
        ThreadLane(UnsafeCell::new(None))
    }
}

impl Default for ThreadLane {
    fn default() -> Self {
        ThreadLane::new()
    }
}

impl std::fmt::Debug for ThreadLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadLane")
    }
}

/// The sink's fields every push reads, alone on their cache lines (128 bytes: the adjacent-line
/// prefetcher pairs them): none of them is written while spans flow, so a push reads them from
/// its own cache however often the consumer writes its lock and counters.
#[repr(align(128))]
struct ProducerView {
    /// This sink's id: a producer whose lane carries another id makes a new lane here.
    id: AtomicU64,
    /// Records per segment.
    segment_len: usize,
    /// The backlog is looked at every `check_mask + 1` pushes.
    check_mask: AtomicUsize,
}

/// Which records [`SpanSink::pop_each`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// The oldest of any lane (a wake-up under a backlog).
    Any,
    /// Only those queued at the last [`SpanSink::mark_queued`] (a flush or a shutdown).
    Queued,
}

/// The consumer's list of lanes.
struct Lanes {
    all: Vec<Arc<Lane>>,
    /// The lane the next pop looks at first.
    cursor: usize,
}

/// The bounded span queue plus the counters that describe it.
pub struct SpanSink {
    /// What every push reads, on cache lines of its own.
    producers: ProducerView,
    /// The configured capacity in records.
    capacity: usize,
    /// The budget and the spare segments.
    segments: Segments,
    /// Every lane, for the consumer (held for one record at a time).
    lanes: Mutex<Lanes>,
    /// Lanes opened since the consumer last looked: a producer adding its lane never waits
    /// for the consumer.
    opened: Mutex<Vec<Arc<Lane>>>,
    /// Set when `opened` has lanes: the consumer locks it only then.
    any_opened: AtomicBool,
    /// Counters shared with the exporter.
    pub stats: Stats,
    batch_threshold: AtomicUsize,
    wake_pending: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl std::fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanSink")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SpanSink {
    /// A sink holding about `capacity` records (at least 1; see the module documentation for
    /// the one segment per lane beyond it).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // At least two segments' worth of capacity. The budget is the whole capacity: a lane
        // keeps the segment it last wrote, read or not, until it writes into the next, so a
        // lane alone holds up to its capacity plus that segment.
        let segment_len = (capacity / 2).clamp(1, SEGMENT_SLOTS);
        let budget = capacity.div_ceil(segment_len) as isize;
        SpanSink {
            producers: ProducerView {
                id: AtomicU64::new(NEXT_SINK_ID.fetch_add(1, Ordering::Relaxed)),
                segment_len,
                check_mask: AtomicUsize::new(0),
            },
            capacity,
            segments: Segments {
                budget,
                available: AtomicIsize::new(budget),
                spare: Mutex::new(Vec::new()),
            },
            lanes: Mutex::new(Lanes {
                all: Vec::new(),
                cursor: 0,
            }),
            opened: Mutex::new(Vec::new()),
            any_opened: AtomicBool::new(false),
            stats: Stats::default(),
            batch_threshold: AtomicUsize::new(usize::MAX),
            wake_pending: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    /// Queues a finished span from the thread whose state is `local`. Returns false (and
    /// counts the drop) when the queue is full.
    #[inline(always)]
    pub fn push_from(&self, local: &PerThread, record: SpanRecord) -> bool {
        // SAFETY: this thread's own lane; nothing below re-enters a push on this thread (the
        // waker only sends on a channel).
        let lane = unsafe { &mut *local.lane.0.get() };
        let producer = match lane {
            Some(p) if self.owns(p) => p,
            _ => return self.push_new_lane(lane, record),
        };
        if self.segment_full(producer) {
            return self.push_next_segment(producer, record);
        }
        let index = (producer.written - producer.base) as usize;
        // SAFETY: the producer's own segment, `index < segment_len <= SEGMENT_SLOTS`, a slot
        // the consumer reads only once `written` passes it.
        unsafe { Segment::slot(producer.segment, index).write(MaybeUninit::new(record)) };
        self.publish(producer);
        true
    }

    /// [`Self::push_from`] with the calling thread's state; counted as dropped at shutdown
    /// when the thread's state is gone (a push from a thread-local destructor).
    pub fn push(&self, record: SpanRecord) -> bool {
        crate::per_thread::with(|local| self.push_from(local, record)).unwrap_or_else(|| {
            Stats::add(&self.stats.dropped_shutdown, 1);
            false
        })
    }

    /// Publishes the record just written at the producer's position, and looks at the
    /// backlog every `check_mask + 1` pushes.
    #[inline(always)]
    fn publish(&self, producer: &mut Producer) {
        producer.written += 1;
        producer
            .lane
            .written
            .0
            .store(producer.written, Ordering::Release);
        if producer.written as usize & self.producers.check_mask.load(Ordering::Relaxed) == 0 {
            self.check_backlog(producer);
        }
    }

    /// Wakes the exporter when the queue holds its threshold: this lane's backlog, or the
    /// segments taken from the budget by every lane, whichever says more.
    #[inline(never)]
    fn check_backlog(&self, producer: &Producer) {
        let threshold = self.batch_threshold.load(Ordering::Relaxed);
        let own = producer.written - producer.lane.read.load(Ordering::Relaxed);
        let taken = self.segments.taken();
        if own.max(taken * self.producers.segment_len as u64) >= threshold as u64 {
            self.wake();
        }
    }

    /// A push into a full segment: the next one from the budget, or a counted drop.
    #[cold]
    #[inline(never)]
    fn push_next_segment(&self, producer: &mut Producer, record: SpanRecord) -> bool {
        let Some(segment) = self.segments.take() else {
            self.drop_full();
            return false;
        };
        // SAFETY: a segment of our own, slot 0; linked (release) before the record is published.
        unsafe {
            Segment::slot(segment, 0).write(MaybeUninit::new(record));
            (*producer.segment).next.store(segment, Ordering::Release);
        }
        producer.segment = segment;
        producer.base = producer.written;
        self.publish(producer);
        true
    }

    /// A thread's first push into this sink: a new lane (closing the thread's lane into
    /// another sink, if any), then the push.
    #[cold]
    #[inline(never)]
    fn push_new_lane(&self, slot: &mut Option<Producer>, record: SpanRecord) -> bool {
        let segment = self.segments.first();
        let lane = Arc::new(Lane {
            written: Published(AtomicU64::new(0)),
            read: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            segment_len: self.producers.segment_len,
            head: UnsafeCell::new(Head {
                segment,
                base: 0,
                read: 0,
                mark: 0,
                known_written: 0,
            }),
        });
        self.opened.lock().push(lane.clone());
        self.any_opened.store(true, Ordering::Release);
        let producer = slot.insert(Producer {
            lane,
            sink_id: self.producers.id.load(Ordering::Relaxed),
            segment,
            base: 0,
            written: 0,
        });
        // SAFETY: the new lane's first slot.
        unsafe { Segment::slot(segment, 0).write(MaybeUninit::new(record)) };
        self.publish(producer);
        true
    }

    /// Whether a push from this thread now would find the queue full (the exporter may take
    /// records meanwhile).
    #[inline]
    pub fn is_full_for(&self, local: &PerThread) -> bool {
        // SAFETY: this thread's own lane, read only.
        let lane = unsafe { &*local.lane.0.get() };
        match lane {
            Some(p) if self.owns(p) => {
                self.segment_full(p) && self.segments.available.load(Ordering::Relaxed) <= 0
            }
            _ => false,
        }
    }

    /// Whether `producer`'s lane is one of this sink's.
    #[inline(always)]
    fn owns(&self, producer: &Producer) -> bool {
        producer.sink_id == self.producers.id.load(Ordering::Relaxed)
    }

    /// Whether `producer`'s segment is full (its next push takes a segment from the budget).
    #[inline(always)]
    fn segment_full(&self, producer: &Producer) -> bool {
        (producer.written - producer.base) as usize == self.producers.segment_len
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

    /// Takes a queued record: lane by lane, each lane's oldest first. Removes the lanes of
    /// exited threads once they are drained.
    pub fn pop(&self) -> Option<SpanRecord> {
        let mut popped = None;
        self.pop_each(1, Take::Any, |record| popped = Some(record));
        popped
    }

    /// Notes what is queued now, for [`Take::Queued`]; returns how many records that is.
    ///
    /// A flush or a shutdown exports what was queued when it was asked for. With a lane per
    /// thread, taking that many records with [`Take::Any`] could take a later record of one
    /// thread and leave an earlier one of another behind: a flush would then return with a span
    /// made before it still queued, and a reconfiguration would send a span made after it with
    /// the old exporter.
    pub fn mark_queued(&self) -> usize {
        let lanes = self.lanes();
        let mut marked = 0;
        for lane in &lanes.all {
            // SAFETY: under the consumer lock.
            let head = unsafe { &mut *lane.head.get() };
            head.known_written = lane.written.0.load(Ordering::Acquire);
            head.mark = head.known_written;
            marked += head.mark - head.read;
        }
        marked as usize
    }

    /// Takes up to `n` records as `take` says, handing each to `f`; returns how many. Lane by
    /// lane, each lane's oldest first, under one lock (producers never take it: they only add
    /// lanes through `opened`), so `f` must not call back into the sink. Removes the lanes of
    /// exited threads once they are drained.
    pub fn pop_each(&self, n: usize, take: Take, mut f: impl FnMut(SpanRecord)) -> usize {
        let queued_before_mark = matches!(take, Take::Queued);
        let mut lanes = self.lanes();
        let Lanes { all, cursor } = &mut *lanes;
        let mut taken = 0;
        let mut looked = 0;
        while taken < n && looked < all.len() {
            if *cursor >= all.len() {
                *cursor = 0;
            }
            let lane = &all[*cursor];
            // Closed before the pops: a closed lane found empty stays empty.
            let closed = lane.closed.load(Ordering::Acquire);
            while taken < n {
                // SAFETY: under the consumer lock.
                match unsafe { lane.pop(&self.segments, queued_before_mark) } {
                    Some(record) => {
                        f(record);
                        taken += 1;
                    }
                    None => break,
                }
            }
            if taken == n {
                break;
            }
            // SAFETY: under the consumer lock.
            if closed && unsafe { lane.len() } == 0 {
                all.swap_remove(*cursor);
            } else {
                *cursor += 1;
                looked += 1;
            }
        }
        taken
    }

    /// The consumer's lanes, with those opened since it last looked.
    fn lanes(&self) -> parking_lot::MutexGuard<'_, Lanes> {
        let mut lanes = self.lanes.lock();
        if self.any_opened.load(Ordering::Acquire) {
            let mut opened = self.opened.lock();
            self.any_opened.store(false, Ordering::Relaxed);
            lanes.all.append(&mut opened);
        }
        lanes
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        let lanes = self.lanes();
        // SAFETY: under the consumer lock.
        lanes
            .all
            .iter()
            .map(|lane| unsafe { lane.len() } as usize)
            .sum()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured capacity in records.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Installs the exporter's wake-up call and the queue length that triggers it. The
    /// backlog is looked at every power-of-two pushes up to a quarter of the threshold (at
    /// most 64), so the wake comes at most that many records late.
    pub fn set_waker(&self, batch_threshold: usize, waker: Option<Waker>) {
        *self.waker.lock() = waker;
        let threshold = batch_threshold.max(1);
        let interval = (threshold / 4).clamp(1, MAX_CHECK_INTERVAL);
        // the largest power of two not above `interval`, less one: a mask
        let mask = (1usize << (usize::BITS - 1 - interval.leading_zeros())) - 1;
        self.producers.check_mask.store(mask, Ordering::Relaxed);
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
        while self.pop().is_some() {
            n += 1;
        }
        Stats::add(&self.stats.dropped_shutdown, n as u64);
        n
    }

    /// In the child after `fork()`: forgets the parent's lanes and what they hold (the parent
    /// sends it), zeroes the counters and gives the sink a new id, so that the forking
    /// thread's next push opens a lane of its own. Call with the locks released
    /// ([`SpanSink::unlock_after_fork`]).
    pub fn reset_in_child(&self) {
        self.producers.id.store(
            NEXT_SINK_ID.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        {
            let mut lanes = self.lanes();
            // A lane whose thread is gone is freed only as far as its consumer's end: its
            // producer's reference lives in that thread's (absent) state.
            for lane in lanes.all.drain(..) {
                // SAFETY: under the consumer lock.
                while unsafe { lane.pop(&self.segments, false) }.is_some() {}
            }
            lanes.cursor = 0;
        }
        self.segments
            .available
            .store(self.segments.budget, Ordering::Relaxed);
        self.wake_pending.store(false, Ordering::Release);
        self.stats.reset();
    }

    /// Holds the sink's locks across `fork()`.
    pub fn lock_for_fork(&self) {
        std::mem::forget(self.waker.lock());
        std::mem::forget(self.lanes.lock());
        std::mem::forget(self.opened.lock());
        std::mem::forget(self.segments.spare.lock());
    }

    /// Releases the locks taken by [`SpanSink::lock_for_fork`].
    ///
    /// # Safety
    /// Must be paired with exactly one earlier `lock_for_fork` in this process image.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            self.segments.spare.force_unlock();
            self.opened.force_unlock();
            self.lanes.force_unlock();
            self.waker.force_unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ExceptionInfo;
    use std::sync::atomic::AtomicU32;

    fn numbered(span_id: u64) -> SpanRecord {
        SpanRecord {
            span_id,
            ..Default::default()
        }
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let sink = SpanSink::new(2);
        // Two segments of one record from the budget, and the lane's first.
        assert!(sink.push(SpanRecord::default()));
        assert!(sink.push(SpanRecord::default()));
        assert!(sink.push(SpanRecord::default()));
        assert!(!sink.push(SpanRecord::default()));
        assert!(!sink.push(SpanRecord::default()));
        let snap = sink.stats.snapshot(sink.len());
        assert_eq!(snap.dropped_queue_full, 2);
        assert_eq!(snap.queue_len, 3);
    }

    #[test]
    fn a_small_queue_keeps_taking_spans_as_it_is_drained() {
        // A lane moves on to a new segment only while the budget lasts, and the consumer's
        // freeing of the segments behind it gives the budget back.
        for capacity in [1, 2, 3, 16, 100, 1000] {
            let sink = SpanSink::new(capacity);
            let mut next = 1;
            for _round in 0..50 {
                let mut queued = vec![];
                while sink.push(numbered(next)) {
                    queued.push(next);
                    next += 1;
                }
                next += 1;
                assert!(queued.len() >= capacity, "{capacity}: {}", queued.len());
                // The budget rounded up to whole segments, and the lane's own segment.
                assert!(
                    queued.len() <= capacity + 2 * sink.producers.segment_len,
                    "{capacity}"
                );
                assert!(sink.is_full_for(local()));
                let popped: Vec<u64> = std::iter::from_fn(|| sink.pop())
                    .map(|r| r.span_id)
                    .collect();
                assert_eq!(popped, queued, "{capacity}");
                assert!(!sink.is_full_for(local()));
            }
        }
    }

    /// Pushes `records` from a thread of their own, which then exits.
    fn push_on_another_thread(
        sink: &Arc<SpanSink>,
        records: impl Iterator<Item = SpanRecord> + Send + 'static,
    ) {
        let sink = sink.clone();
        std::thread::spawn(move || {
            for record in records {
                sink.push(record);
            }
        })
        .join()
        .unwrap();
    }

    fn local() -> &'static PerThread {
        // SAFETY: used on this thread, within the test.
        unsafe { crate::per_thread::current() }.unwrap()
    }

    /// Installs a waker at `threshold` that counts its calls.
    fn count_wakes(sink: &SpanSink, threshold: usize) -> Arc<AtomicU32> {
        let wakes = Arc::new(AtomicU32::new(0));
        let w = wakes.clone();
        sink.set_waker(
            threshold,
            Some(Box::new(move || {
                w.fetch_add(1, Ordering::Relaxed);
            })),
        );
        wakes
    }

    #[test]
    fn wakes_once_per_batch() {
        let sink = SpanSink::new(100);
        let wakes = count_wakes(&sink, 3);
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
        let wakes = count_wakes(&sink, 2048);
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
    fn many_threads_below_the_threshold_each_still_wake_the_exporter() {
        // Eight lanes of 400 records: none alone reaches 2048, their segments together do.
        let sink = Arc::new(SpanSink::new(100_000));
        let wakes = count_wakes(&sink, 2048);
        for _ in 0..8 {
            push_on_another_thread(&sink, (1..=400).map(numbered));
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        assert_eq!(sink.len(), 3200);
    }

    #[test]
    fn concurrent_pushes_lose_nothing() {
        let sink = Arc::new(SpanSink::new(40_000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        sink.push(numbered(t * 100_000 + i + 1));
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
        assert_eq!(sink.stats.snapshot(0).dropped_queue_full, 0);
    }

    #[test]
    fn pushes_and_pops_at_once_keep_each_threads_order() {
        let sink = Arc::new(SpanSink::new(1_000));
        let producers: Vec<_> = (0..3u64)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    let mut dropped = 0;
                    while i < 50_000 {
                        if sink.push(numbered((t << 32) | (i + 1))) {
                            i += 1;
                        } else {
                            dropped += 1;
                            std::thread::yield_now();
                        }
                    }
                    dropped
                })
            })
            .collect();
        let mut last = [0u64; 3];
        let mut seen = 0;
        while seen < 150_000 {
            match sink.pop() {
                Some(r) => {
                    let (t, i) = ((r.span_id >> 32) as usize, r.span_id & 0xffff_ffff);
                    assert_eq!(i, last[t] + 1, "thread {t}");
                    last[t] = i;
                    seen += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        let dropped: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(sink.stats.snapshot(0).dropped_queue_full, dropped);
        assert!(sink.pop().is_none());
        // Every producer has exited and its lane was drained: the pops removed them all.
        assert!(sink.pop().is_none());
        assert_eq!(sink.lanes().all.len(), 0);
        assert_eq!(sink.segments.taken(), 0);
    }

    #[test]
    fn records_never_taken_are_dropped_with_their_lane() {
        let message: Arc<str> = Arc::from("boom");
        let with_error = || SpanRecord {
            error: Some(Box::new(ExceptionInfo {
                message: message.clone(),
                ..Default::default()
            })),
            ..Default::default()
        };
        {
            let sink = Arc::new(SpanSink::new(1_000));
            push_on_another_thread(&sink, std::iter::repeat_n(with_error(), 300));
            drop(record_taken(&sink));
            assert_eq!(Arc::strong_count(&message), 1 + 299);
        }
        assert_eq!(Arc::strong_count(&message), 1);
    }

    fn record_taken(sink: &SpanSink) -> SpanRecord {
        sink.pop().unwrap()
    }

    #[test]
    fn after_fork_the_child_forgets_the_parents_spans() {
        let sink = Arc::new(SpanSink::new(1_000));
        push_on_another_thread(&sink, (1..=100).map(numbered));
        for i in 0..100 {
            sink.push(numbered(1_000 + i));
        }
        sink.reset_in_child();
        assert_eq!(sink.len(), 0);
        assert_eq!(sink.stats.snapshot(0).dropped_queue_full, 0);
        // This thread's next push opens a new lane; the old one goes with its records.
        assert!(sink.push(numbered(7)));
        assert_eq!(sink.pop().map(|r| r.span_id), Some(7));
        assert!(sink.pop().is_none());
    }

    #[test]
    fn a_thread_pushing_to_another_sink_moves_its_lane() {
        let first = SpanSink::new(100);
        let second = SpanSink::new(100);
        assert!(first.push(numbered(1)));
        assert!(second.push(numbered(2)));
        assert!(first.push(numbered(3)));
        let from_first: Vec<u64> = std::iter::from_fn(|| first.pop())
            .map(|r| r.span_id)
            .collect();
        assert_eq!(from_first, vec![1, 3]);
        assert_eq!(second.pop().map(|r| r.span_id), Some(2));
    }

    #[test]
    fn what_was_queued_at_the_mark_is_taken_and_nothing_after_it() {
        let sink = Arc::new(SpanSink::new(10_000));
        let (s, go, done) = (
            sink.clone(),
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicU32::new(0)),
        );
        let (g, d) = (go.clone(), done.clone());
        let other = std::thread::spawn(move || {
            for i in 0..100 {
                s.push(numbered(1_000 + i));
            }
            d.store(1, Ordering::Release);
            while g.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            for i in 100..200 {
                s.push(numbered(1_000 + i));
            }
        });
        while done.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        for i in 0..300 {
            sink.push(numbered(i + 1));
        }
        assert_eq!(sink.mark_queued(), 400);
        go.store(1, Ordering::Release);
        other.join().unwrap();
        for i in 300..350 {
            sink.push(numbered(i + 1));
        }
        let mut taken = vec![];
        while sink.pop_each(7, Take::Queued, |r| taken.push(r.span_id)) > 0 {}
        taken.sort_unstable();
        let expected: Vec<u64> = (1..=300).chain(1_000..1_100).collect();
        assert_eq!(taken, expected);
        // The rest is still there, for the next exporter.
        assert_eq!(sink.len(), 150);
        assert_eq!(std::iter::from_fn(|| sink.pop()).count(), 150);
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
