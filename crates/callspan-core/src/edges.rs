//! Caller-edge counting: every traced call, sampled or not, counted per callee and call site.
//!
//! An edge is a callee × caller code × call line × caller class (× the exception type, for
//! failed calls): what `callspan.calls` and `callspan.call.duration` are broken down by, and what
//! the report and the pstats file show. Each edge gets a small integer id the first time any
//! thread sees it ([`EdgeTable`], behind a lock, off the hot path); past `CALLSPAN_MAX_EDGES`
//! new edges fold into one overflow edge per callee (and exception type), so memory is bounded.
//!
//! The counts themselves live per thread, like the call counts of [`crate::stats`], in a
//! [`crate::thread_slots`] slot of counter pages indexed by edge id: only the owning thread
//! writes it, with plain relaxed loads and stores (no locked instruction, no shared cache line).
//! A thread reaches its slot through [`ThreadEdges`], a field of its
//! [`crate::per_thread::PerThread`] (no thread-local look-up of its own), whose two
//! direct-mapped caches lead straight to this thread's counters of an edge, without the lock
//! or the page table: one by edge key, and one by call site (the calling instruction, the
//! callee, and the class of the caller's `self`), which the binding fills so that a call from
//! a site seen before finds its site and its counters in one look-up, reading no line table
//! and building no key. Readers ([`snapshot`]: the metrics exporter thread,
//! `callspan.report()`) sum the slots.
//!
//! A sampled call also leaves an exemplar (trace id, span id, duration, time) in the histogram
//! bucket its duration fell in: each bucket keeps its latest sampled call, written under a
//! per-bucket sequence number so that a reader never sees half of one. A thread's exemplar
//! cells of an edge are made on its first sampled call of that edge, so edges only ever called
//! unsampled cost no exemplar memory.

use crate::per_thread;
use crate::record::{CallerSite, ClassId, CodeId, FunctionId};
use crate::registry::{Interned, RegistryView};
use crate::thread_slots::{Claim, Slot, SlotList};
use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::HashMap;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

/// [`EdgeKey::code`] of a callee's overflow edge (callers past `CALLSPAN_MAX_EDGES`).
pub const OVERFLOW_CODE: CodeId = CodeId::MAX;

/// What a call is counted under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EdgeKey {
    /// The traced function called.
    pub callee: FunctionId,
    /// The calling code (0: called from C; [`OVERFLOW_CODE`]: the overflow edge).
    pub code: CodeId,
    /// The line of the call.
    pub line: u32,
    /// The class of the caller's `self`/`cls` (0: none).
    pub class: ClassId,
    /// The class of the exception that ended the call (0: it returned).
    pub error: ClassId,
}

impl EdgeKey {
    /// The edge of a call of `callee` from `site` that ended with `error` (0: it returned).
    #[inline]
    pub fn of(callee: FunctionId, site: CallerSite, error: ClassId) -> EdgeKey {
        EdgeKey {
            callee,
            code: site.code,
            line: site.line,
            class: site.class,
            error,
        }
    }

    /// The overflow edge of this key's callee.
    fn overflow(self) -> EdgeKey {
        EdgeKey {
            callee: self.callee,
            code: OVERFLOW_CODE,
            line: 0,
            class: 0,
            error: self.error,
        }
    }

    /// Whether this is a callee's overflow edge.
    pub fn is_overflow(&self) -> bool {
        self.code == OVERFLOW_CODE
    }
}

/// Upper bounds of the duration histogram's buckets, in nanoseconds (the last bucket has none):
/// 1 µs to 10 s in 1-2.5-5 steps, the range of a Python function call.
pub const BUCKET_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Buckets of the histogram: one per bound and one above the last.
pub const BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// The bucket a duration falls in (a bound is inclusive, as in OTLP explicit buckets). A scan
/// from the shortest: most calls end in the first few buckets, so it stops after one or two
/// well-predicted compares where a binary search takes five.
#[inline]
pub fn bucket_of(duration_ns: u64) -> usize {
    let mut bucket = 0;
    while bucket < BUCKET_BOUNDS_NS.len() && BUCKET_BOUNDS_NS[bucket] < duration_ns {
        bucket += 1;
    }
    bucket
}

/// A sampled call, as an exemplar of its edge's histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exemplar {
    /// The span's trace.
    pub trace_id: u128,
    /// The span.
    pub span_id: u64,
    /// The call's duration.
    pub duration_ns: u64,
    /// When the call ended, Unix nanoseconds.
    pub time_unix_ns: u64,
}

/// One sampled call kept as its bucket's exemplar, under a sequence number (odd while being
/// written; 0: none yet).
#[derive(Debug, Default)]
struct ExemplarCell {
    seq: AtomicU32,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span_id: AtomicU64,
    duration_ns: AtomicU64,
    time_unix_ns: AtomicU64,
}

impl ExemplarCell {
    fn set(&self, e: &Exemplar) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq | 1, Relaxed);
        fence(Release);
        self.trace_hi.store((e.trace_id >> 64) as u64, Relaxed);
        self.trace_lo.store(e.trace_id as u64, Relaxed);
        self.span_id.store(e.span_id, Relaxed);
        self.duration_ns.store(e.duration_ns, Relaxed);
        self.time_unix_ns.store(e.time_unix_ns, Relaxed);
        self.seq.store((seq | 1).wrapping_add(1), Release);
    }

    fn get(&self) -> Option<Exemplar> {
        for _ in 0..16 {
            let before = self.seq.load(Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let e = Exemplar {
                trace_id: (u128::from(self.trace_hi.load(Relaxed)) << 64)
                    | u128::from(self.trace_lo.load(Relaxed)),
                span_id: self.span_id.load(Relaxed),
                duration_ns: self.duration_ns.load(Relaxed),
                time_unix_ns: self.time_unix_ns.load(Relaxed),
            };
            fence(Acquire);
            if self.seq.load(Relaxed) == before {
                return Some(e);
            }
        }
        None
    }
}

type Exemplars = [ExemplarCell; BUCKETS];

/// One thread's counts of one edge. Only the owning thread writes them.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    total_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    /// One exemplar per bucket; null until this thread's first sampled call of the edge.
    exemplars: AtomicPtr<Exemplars>,
}

#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    #[inline]
    fn add(&self, duration_ns: u64, exemplar: Option<&Exemplar>) {
        let bucket = bucket_of(duration_ns);
        bump(&self.calls, 1);
        bump(&self.total_ns, duration_ns);
        bump(&self.buckets[bucket], 1);
        if let Some(e) = exemplar {
            self.set_exemplar(bucket, e);
        }
    }

    fn set_exemplar(&self, bucket: usize, e: &Exemplar) {
        let mut cells = self.exemplars.load(Acquire);
        if cells.is_null() {
            cells = new_exemplars();
            self.exemplars.store(cells, Release);
        }
        // SAFETY: exemplar cells are never freed.
        unsafe { &(*cells)[bucket] }.set(e);
    }

    fn exemplar(&self, bucket: usize) -> Option<Exemplar> {
        // SAFETY: exemplar cells are never freed.
        unsafe { self.exemplars.load(Acquire).as_ref() }.and_then(|cells| cells[bucket].get())
    }

    fn reset(&self) {
        self.calls.store(0, Relaxed);
        self.total_ns.store(0, Relaxed);
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        // SAFETY: exemplar cells are never freed.
        if let Some(cells) = unsafe { self.exemplars.load(Acquire).as_ref() } {
            for cell in cells {
                cell.seq.store(0, Relaxed);
            }
        }
    }
}

#[cold]
fn new_exemplars() -> *mut Exemplars {
    Box::into_raw(Box::new(std::array::from_fn(|_| ExemplarCell::default())))
}

const PAGE: usize = 256;
/// Edge ids past `PAGE * PAGES` are not counted apart (`CALLSPAN_MAX_EDGES` is capped below).
const PAGES: usize = 1024;
/// The largest `CALLSPAN_MAX_EDGES` honoured; overflow edges need ids too.
pub const MAX_EDGES_CAP: usize = PAGE * PAGES / 2;

type Page = [Counters; PAGE];

/// One thread's counters, page by page.
struct Pages {
    pages: Box<[AtomicPtr<Page>]>,
    /// Where the calls of an edge id past the pages go: counted nowhere, never read
    /// (`CALLSPAN_MAX_EDGES` is capped well below the pages, so only overflow edges of more
    /// than [`MAX_EDGES_CAP`] callees could get there). Every edge has counters to bump, so
    /// the hot path never checks for none.
    unkept: Counters,
}

impl Pages {
    fn new() -> Pages {
        Pages {
            pages: (0..PAGES)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            unkept: Counters::default(),
        }
    }

    /// The counters of `id`, made on first use (only by the owning thread).
    fn counters(&'static self, id: u32) -> &'static Counters {
        let (page, index) = (id as usize / PAGE, id as usize % PAGE);
        let Some(cell) = self.pages.get(page) else {
            return &self.unkept;
        };
        let mut p = cell.load(Acquire);
        if p.is_null() {
            p = new_page();
            cell.store(p, Release);
        }
        // SAFETY: pages are never freed.
        unsafe { &(*p)[index] }
    }

    /// The counters of `id` if this slot ever counted on its page.
    fn existing(&self, id: u32) -> Option<&'static Counters> {
        let (page, index) = (id as usize / PAGE, id as usize % PAGE);
        let p = self.pages.get(page)?.load(Acquire);
        // SAFETY: pages are never freed.
        (!p.is_null()).then(|| unsafe { &(*p)[index] })
    }
}

#[cold]
fn new_page() -> *mut Page {
    let page: Box<Page> = Box::new(std::array::from_fn(|_| Counters::default()));
    Box::into_raw(page)
}

/// Every thread's counters.
static SLOTS: SlotList<Pages> = SlotList::new();

/// Edge keys and their ids, shared by every thread; taken only on a thread's first sight of
/// an edge.
#[derive(Debug, Default)]
pub struct EdgeTable {
    ids: HashMap<EdgeKey, u32>,
    keys: Vec<EdgeKey>,
    /// Edges counted apart (overflow edges not included).
    apart: usize,
}

impl EdgeTable {
    /// The id of `key`, or of its callee's overflow edge once `max_edges` edges exist.
    fn id(&mut self, key: EdgeKey, max_edges: usize) -> u32 {
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let key = if !key.is_overflow() && self.apart >= max_edges {
            key.overflow()
        } else {
            key
        };
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        if !key.is_overflow() {
            self.apart += 1;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key);
        self.ids.insert(key, id);
        id
    }
}

static TABLE: Mutex<Option<EdgeTable>> = Mutex::new(None);
static MAX_EDGES: AtomicUsize = AtomicUsize::new(10_000);
/// Counts made by a thread during its exit, after its slot was released.
static LATE: Mutex<Option<&'static Slot<Pages>>> = Mutex::new(None);

/// Sets `CALLSPAN_MAX_EDGES` (capped at [`MAX_EDGES_CAP`]); edges already counted apart stay.
pub fn set_max_edges(max_edges: usize) {
    MAX_EDGES.store(max_edges.clamp(1, MAX_EDGES_CAP), Relaxed);
    install_fork_handler();
}

fn edge_id(key: EdgeKey) -> u32 {
    TABLE
        .lock()
        .get_or_insert_with(EdgeTable::default)
        .id(key, MAX_EDGES.load(Relaxed))
}

/// Entries of a thread's edge-key cache ([`ThreadEdges::counters`]): 32 bytes each.
const KEY_SLOTS: usize = 512;
/// Entries of a thread's call-site cache ([`ThreadEdges::site_edge`]): 56 bytes each, 14 KiB a
/// thread; a hot loop calls traced functions from far fewer sites, and a miss costs a few
/// hundred instructions (the binding's own caches, then the edge key).
const SITE_EDGE_SLOTS: usize = 256;

const EMPTY_KEY: EdgeKey = EdgeKey {
    callee: 0,
    code: 0,
    line: 0,
    class: 0,
    error: 0,
};

/// One thread's counters of one edge, as [`ThreadEdges`] hands them out: usable while the
/// thread's state (`'t`) is borrowed, on this thread only (not `Send`: only the owning thread
/// may write a slot).
#[derive(Clone, Copy, Debug)]
pub struct EdgeCounters<'t> {
    counters: &'t Counters,
    not_send: std::marker::PhantomData<*const ()>,
}

impl EdgeCounters<'_> {
    /// Counts one call: `duration_ns`, and `exemplar` for a sampled call.
    #[inline]
    pub fn add(self, duration_ns: u64, exemplar: Option<&Exemplar>) {
        self.counters.add(duration_ns, exemplar);
    }
}

/// What a call site is cached under in [`ThreadEdges::site_edge`]: the call instruction (as
/// the binding identifies an instruction of a live code object: by address, so the binding
/// empties the cache with [`ThreadEdges::forget_sites`] whenever an address may have come to
/// mean another object), the callee, and the `CALLSPAN_CAPTURE` bits left out when the site
/// was read; in two words, so that a look-up makes two compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SiteKey {
    /// The instruction's address (0: an empty entry).
    address: usize,
    /// The callee (bits 0–31), the capture bits (32–39) and the instruction's offset (40–63).
    rest: u64,
}

impl SiteKey {
    /// The largest offset a key holds; a call further into its code (more than 16 MiB of
    /// bytecode) is not cached.
    const MAX_OFFSET: i32 = (1 << 24) - 1;

    /// The key of a call of `callee` from `instruction` (an address and an offset: 0 where the
    /// address alone names the instruction) under capture bits `omitted`; None where the
    /// offset does not fit.
    #[inline(always)]
    fn new(instruction: (usize, i32), callee: FunctionId, omitted: u8) -> Option<SiteKey> {
        let (address, offset) = instruction;
        (0..=Self::MAX_OFFSET).contains(&offset).then_some(SiteKey {
            address,
            rest: u64::from(callee) | (u64::from(omitted) << 32) | ((offset as u64) << 40),
        })
    }

    fn callee(&self) -> FunctionId {
        self.rest as FunctionId
    }
}

/// A call site read the slow way, for [`ThreadEdges::site_edge`] to cache.
#[derive(Clone, Copy, Debug)]
pub struct ResolvedSite {
    /// The caller's code, line and class.
    pub site: CallerSite,
    /// When `site.class` was read from the caller's `self`/`cls`: the address of the class it
    /// was read from (0: no such argument). Every later call from the site has its class
    /// compared with it. None: the site has no class to read (a plain function, or classes not
    /// captured).
    pub class_type: Option<usize>,
}

impl ResolvedSite {
    /// No site: called from C, no frame capture, or frame reading disabled.
    pub const NONE: ResolvedSite = ResolvedSite {
        site: CallerSite {
            code: 0,
            line: 0,
            class: 0,
        },
        class_type: None,
    };
}

/// One entry of the call-site cache.
#[derive(Clone, Copy, Debug)]
struct SiteEdge {
    key: SiteKey,
    reads_class: bool,
    class_type: usize,
    site: CallerSite,
    /// This thread's counters of the site's edge (null: the entry is empty).
    counters: *const Counters,
}

const EMPTY_SITE: SiteEdge = SiteEdge {
    key: SiteKey {
        address: 0,
        rest: 0,
    },
    reads_class: false,
    class_type: 0,
    site: CallerSite {
        code: 0,
        line: 0,
        class: 0,
    },
    counters: ptr::null(),
};

/// One thread's edge counting, a field of [`crate::per_thread::PerThread`]: its slot of
/// counters (claimed on first use, released when the thread's state is destroyed, and so never
/// reachable through a cache after that) and two direct-mapped caches leading to its counters:
/// by edge key, and by call site.
pub struct ThreadEdges {
    claim: Claim<Pages>,
    by_key: [Cell<(EdgeKey, *const Counters)>; KEY_SLOTS],
    by_site: [Cell<SiteEdge>; SITE_EDGE_SLOTS],
}

impl std::fmt::Debug for ThreadEdges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadEdges").finish_non_exhaustive()
    }
}

#[inline]
fn key_slot(key: &EdgeKey) -> usize {
    let h = u64::from(key.callee)
        ^ (u64::from(key.code) << 20)
        ^ (u64::from(key.line) << 40)
        ^ (u64::from(key.class) << 8)
        ^ (u64::from(key.error) << 28);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - KEY_SLOTS.trailing_zeros())) as usize
}

#[inline]
fn site_slot(key: &SiteKey) -> usize {
    // One multiply: instruction addresses are distinct and spread; the callee, the capture bits
    // and the offset are rotated to where the address has few distinct bits.
    let h = (key.address as u64) ^ key.rest.rotate_left(24);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SITE_EDGE_SLOTS.trailing_zeros())) as usize
}

impl ThreadEdges {
    /// Nothing counted yet (for the `const` initialiser of the thread's state).
    pub(crate) const fn new() -> ThreadEdges {
        ThreadEdges {
            claim: Claim::new(),
            // Callee 0 is no function and the pointer is null: an empty entry never matches.
            by_key: [const { Cell::new((EMPTY_KEY, ptr::null())) }; KEY_SLOTS],
            by_site: [const { Cell::new(EMPTY_SITE) }; SITE_EDGE_SLOTS],
        }
    }

    /// This thread's counters of `key`'s edge.
    #[inline]
    pub fn counters(&self, key: EdgeKey) -> EdgeCounters<'_> {
        let slot = &self.by_key[key_slot(&key)];
        let (cached, counters) = slot.get();
        // SAFETY: cached counters are this thread's slot's, held as long as `self`; pages are
        // never freed.
        match unsafe { counters.as_ref() } {
            Some(counters) if cached == key => EdgeCounters {
                counters,
                not_send: std::marker::PhantomData,
            },
            _ => self.counters_missed(slot, key),
        }
    }

    /// [`ThreadEdges::counters`] past a cache miss: the edge's id (under the table's lock) and
    /// this thread's counters of it (its slot claimed on first use), remembered in the cache.
    #[cold]
    #[inline(never)]
    fn counters_missed(
        &self,
        slot: &Cell<(EdgeKey, *const Counters)>,
        key: EdgeKey,
    ) -> EdgeCounters<'_> {
        let counters = self.claim.slot(&SLOTS, Pages::new).counters(edge_id(key));
        slot.set((key, counters));
        EdgeCounters {
            counters,
            not_send: std::marker::PhantomData,
        }
    }

    /// Counts one call on `key`'s edge: `duration_ns`, and `exemplar` for a sampled call.
    #[inline]
    pub fn count(&self, key: EdgeKey, duration_ns: u64, exemplar: Option<&Exemplar>) {
        self.counters(key).add(duration_ns, exemplar);
    }

    /// The caller site of a call of `callee` from `instruction` (an address and an offset,
    /// as the binding identifies an instruction) under capture bits `omitted`, and this
    /// thread's counters of its edge (error 0), from the call-site cache: a hit compares the
    /// class of this call's `self`/`cls` (`class_type`, asked only when the site has a class)
    /// with the cached one, and reads nothing else. On a miss `resolve` reads the site the
    /// slow way.
    #[inline(always)]
    pub fn site_edge(
        &self,
        instruction: (usize, i32),
        callee: FunctionId,
        omitted: u8,
        class_type: impl FnOnce() -> usize,
        resolve: impl FnOnce() -> ResolvedSite,
    ) -> (CallerSite, EdgeCounters<'_>) {
        let Some(key) = SiteKey::new(instruction, callee, omitted) else {
            return self.uncached_site(callee, resolve);
        };
        let slot = &self.by_site[site_slot(&key)];
        let entry = slot.get();
        if entry.key != key || (entry.reads_class && entry.class_type != class_type()) {
            // The key's words one by one, in registers: nothing is spilled on the hit path.
            self.fill_site(slot, key.address, key.rest, resolve);
        }
        // Read from the entry, hit or filled (one path), and only the two fields wanted, so that
        // nothing is copied through a temporary.
        // SAFETY: this thread's own cell, and no reference into it is live.
        let (site, counters) = unsafe {
            let entry = slot.as_ptr();
            ((*entry).site, (*entry).counters)
        };
        let counters = EdgeCounters {
            // SAFETY: a filled entry's counters (the key matched, so the entry is filled) are
            // this thread's slot's, held as long as `self`; pages are never freed.
            counters: unsafe { &*counters },
            not_send: std::marker::PhantomData,
        };
        (site, counters)
    }

    /// [`ThreadEdges::site_edge`] past a miss: fills `slot` with the site `resolve` reads and
    /// this thread's counters of its edge.
    #[cold]
    #[inline(never)]
    fn fill_site(
        &self,
        slot: &Cell<SiteEdge>,
        address: usize,
        rest: u64,
        resolve: impl FnOnce() -> ResolvedSite,
    ) {
        let key = SiteKey { address, rest };
        let resolved = resolve();
        let site = resolved.site;
        let counters = self.counters(EdgeKey::of(key.callee(), site, 0));
        slot.set(SiteEdge {
            key,
            reads_class: resolved.class_type.is_some(),
            class_type: resolved.class_type.unwrap_or(0),
            site,
            counters: ptr::from_ref(counters.counters),
        });
    }

    /// [`ThreadEdges::site_edge`] of a call no key can hold: read the slow way every time.
    #[cold]
    #[inline(never)]
    fn uncached_site(
        &self,
        callee: FunctionId,
        resolve: impl FnOnce() -> ResolvedSite,
    ) -> (CallerSite, EdgeCounters<'_>) {
        let site = resolve().site;
        (site, self.counters(EdgeKey::of(callee, site, 0)))
    }

    /// Empties the call-site cache: an address in it may have come to mean another object.
    pub fn forget_sites(&self) {
        for slot in &self.by_site {
            slot.set(EMPTY_SITE);
        }
    }
}

/// Counts one call on `key`'s edge in this thread's counters (off the hot path: a traced call
/// counts through its thread's [`ThreadEdges`]); during thread exit, once the thread's state is
/// gone, in the shared late slot.
pub fn count(key: EdgeKey, duration_ns: u64, exemplar: Option<&Exemplar>) {
    if per_thread::with(|local| local.edges.count(key, duration_ns, exemplar)).is_none() {
        count_late(key, duration_ns, exemplar);
    }
}

#[cold]
fn count_late(key: EdgeKey, duration_ns: u64, exemplar: Option<&Exemplar>) {
    let id = edge_id(key);
    let mut late = LATE.lock();
    let slot = *late.get_or_insert_with(|| SLOTS.claim(Pages::new));
    slot.counters(id).add(duration_ns, exemplar);
}

/// One edge's counts summed over every thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeTotals {
    /// The edge.
    pub key: EdgeKey,
    /// Calls counted.
    pub calls: u64,
    /// Their summed duration.
    pub total_ns: u64,
    /// Calls per duration bucket ([`BUCKET_BOUNDS_NS`]).
    pub buckets: [u64; BUCKETS],
    /// The latest sampled call of each bucket that has one, in bucket order.
    pub exemplars: Vec<Exemplar>,
}

/// `caller.function.name` of a callee's overflow edge.
pub const OVERFLOW_CALLER: &str = "<other callers>";

/// An edge's names, as metric attributes and report rows show them (the span attributes'
/// values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeNames {
    /// `code.function.name`.
    pub function: Interned,
    /// `code.file.path` (empty: not Python code).
    pub function_file: Interned,
    /// `code.line.number` (0: unknown).
    pub function_line: u32,
    /// `caller.function.name` (empty: called from C; [`OVERFLOW_CALLER`]: the overflow edge).
    pub caller_function: Interned,
    /// `caller.file.path`.
    pub caller_file: Interned,
    /// `caller.line.number` (0: none).
    pub caller_line: u32,
    /// `caller.class.name` (empty: none).
    pub caller_class: Interned,
    /// `error.type` (empty: the calls returned).
    pub error_type: Interned,
}

impl EdgeKey {
    /// The names of this edge's callee, caller and error.
    pub fn names(&self, registry: &RegistryView<'_>) -> EdgeNames {
        let function = registry.function(self.callee);
        let code = if self.is_overflow() {
            None
        } else {
            registry.code(self.code)
        };
        EdgeNames {
            function: function.map_or("", |f| f.function_name),
            function_file: function.and_then(|f| f.file).unwrap_or(""),
            function_line: function.map_or(0, |f| f.line),
            caller_function: if self.is_overflow() {
                OVERFLOW_CALLER
            } else {
                code.map_or("", |c| c.function_name)
            },
            caller_file: code.map_or("", |c| c.file),
            caller_line: self.line,
            caller_class: registry.class(self.class).copied().unwrap_or(""),
            error_type: registry.class(self.error).copied().unwrap_or(""),
        }
    }
}

/// Every edge with at least one call, summed over every thread (off the hot path).
pub fn snapshot() -> Vec<EdgeTotals> {
    let keys: Vec<EdgeKey> = match TABLE.lock().as_ref() {
        Some(table) => table.keys.clone(),
        None => return Vec::new(),
    };
    let mut totals: Vec<EdgeTotals> = keys
        .iter()
        .map(|&key| EdgeTotals {
            key,
            calls: 0,
            total_ns: 0,
            buckets: [0; BUCKETS],
            exemplars: Vec::new(),
        })
        .collect();
    let mut latest: Vec<[Option<Exemplar>; BUCKETS]> = vec![[None; BUCKETS]; keys.len()];
    SLOTS.for_each(|pages| {
        for (id, (t, latest)) in totals.iter_mut().zip(&mut latest).enumerate() {
            let Some(c) = pages.existing(id as u32) else {
                continue;
            };
            t.calls = t.calls.wrapping_add(c.calls.load(Relaxed));
            t.total_ns = t.total_ns.wrapping_add(c.total_ns.load(Relaxed));
            for (sum, b) in t.buckets.iter_mut().zip(&c.buckets) {
                *sum = sum.wrapping_add(b.load(Relaxed));
            }
            for (bucket, kept) in latest.iter_mut().enumerate() {
                if let Some(e) = c.exemplar(bucket) {
                    if kept.is_none_or(|k| e.time_unix_ns > k.time_unix_ns) {
                        *kept = Some(e);
                    }
                }
            }
        }
    });
    for (t, latest) in totals.iter_mut().zip(latest) {
        t.exemplars = latest.into_iter().flatten().collect();
    }
    totals.retain(|t| t.calls > 0);
    totals
}

/// Zeroes every count (edge ids stay). Only exact while no other thread counts: a forked
/// child's only thread, or tests.
pub fn reset() {
    let ids = TABLE.lock().as_ref().map_or(0, |t| t.keys.len());
    SLOTS.for_each(|pages| {
        for id in 0..ids {
            if let Some(c) = pages.existing(id as u32) {
                c.reset();
            }
        }
    });
}

fn install_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::fork::around_fork(lock_for_fork, unlock_after_fork);
        crate::fork::on_fork_child(reset);
    });
}

fn lock_for_fork() {
    std::mem::forget(TABLE.lock());
    std::mem::forget(LATE.lock());
}

fn unlock_after_fork() {
    // SAFETY: `lock_for_fork` leaked exactly these guards on this thread.
    unsafe {
        LATE.force_unlock();
        TABLE.force_unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(callee: FunctionId, line: u32) -> EdgeKey {
        EdgeKey {
            callee,
            code: 7,
            line,
            class: 0,
            error: 0,
        }
    }

    fn totals_of(callee: FunctionId) -> Vec<EdgeTotals> {
        let mut t: Vec<_> = snapshot()
            .into_iter()
            .filter(|t| t.key.callee == callee)
            .collect();
        t.sort_by_key(|t| (t.key.code, t.key.line));
        t
    }

    #[test]
    fn buckets_include_their_bound() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(10_000_000_000), BUCKETS - 2);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn counts_every_thread_and_survive_thread_exit() {
        // Callee ids are unique to each test: tests of this binary share the table.
        let threads: Vec<_> = (0..6)
            .map(|i| {
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        count(key(100, 10 + i % 2), 2_000, None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        std::thread::spawn(|| count(key(100, 10), 3_000, None))
            .join()
            .unwrap();
        let t = totals_of(100);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].calls, 3001);
        assert_eq!(t[0].total_ns, 3000 * 2_000 + 3_000);
        assert_eq!((t[0].buckets[1], t[0].buckets[2]), (3000, 1));
        assert_eq!(t[1].calls, 3000);
    }

    fn sampled(span_id: u64, duration_ns: u64, time_unix_ns: u64) -> Exemplar {
        Exemplar {
            trace_id: (5u128 << 64) | u128::from(span_id),
            span_id,
            duration_ns,
            time_unix_ns,
        }
    }

    #[test]
    fn each_bucket_keeps_its_latest_sampled_call_across_threads() {
        count(key(200, 1), 4_000, None);
        count(key(200, 1), 4_000, Some(&sampled(1, 4_000, 10)));
        count(key(200, 1), 3_000, Some(&sampled(2, 3_000, 20)));
        count(key(200, 1), 700, Some(&sampled(3, 700, 30)));
        count(key(200, 1), 9_000, None);
        // Another thread's later call in the same bucket wins; its earlier one in another loses.
        std::thread::spawn(|| {
            count(key(200, 1), 4_500, Some(&sampled(4, 4_500, 40)));
            count(key(200, 1), 800, Some(&sampled(5, 800, 5)));
        })
        .join()
        .unwrap();
        let t = totals_of(200);
        assert_eq!(t[0].calls, 7);
        assert_eq!(
            t[0].exemplars,
            vec![sampled(3, 700, 30), sampled(4, 4_500, 40)]
        );
        for e in &t[0].exemplars {
            assert!(t[0].buckets[bucket_of(e.duration_ns)] > 0);
        }
    }

    #[test]
    fn bucket_of_agrees_with_a_binary_search() {
        for d in [
            0,
            1,
            999,
            1_000,
            1_001,
            2_500,
            2_501,
            7_777_777,
            10_000_000_000,
            u64::MAX,
        ] {
            assert_eq!(
                bucket_of(d),
                BUCKET_BOUNDS_NS.partition_point(|&bound| bound < d)
            );
        }
    }

    #[test]
    fn edges_past_the_bound_fold_into_one_overflow_edge_per_callee() {
        let mut table = EdgeTable::default();
        let a = table.id(key(1, 1), 2);
        let b = table.id(key(1, 2), 2);
        let c = table.id(key(1, 3), 2);
        let d = table.id(key(2, 3), 2);
        assert_ne!(a, b);
        assert_ne!(c, d);
        assert_eq!(table.id(key(1, 4), 2), c);
        assert_eq!(table.keys[c as usize], key(1, 3).overflow());
        assert_eq!(table.id(key(1, 1), 2), a);
        assert_eq!(table.keys.len(), 4);
    }
}
