//! Everything a traced call keeps per thread, in one thread-local: [`PerThread`].
//!
//! callspan runs as a Python extension module, a shared library loaded with `dlopen`, where
//! every access to a thread-local is a call to `__tls_get_addr` (the general-dynamic TLS model;
//! stable Rust offers no other) plus the lazy-initialisation check of `thread_local!`: about 20
//! instructions. A sampled call used to make about ten such look-ups, one per thread-local it
//! touched (the context stack, the id generator, the call counters, the stack guard, the thread
//! key, the caller caches, the OpenTelemetry cache): ~185 instructions, 13 % of the call. They
//! are fields of one struct now, as are the caller-edge counters' caches; a traced call looks it
//! up once ([`current`]) and hands the reference down. Code off the hot path keeps its free
//! functions ([`crate::context::current`], [`crate::ids::span_id`],
//! [`crate::stats::count_started`], [`crate::edges::count`], …), which look it up themselves.
//!
//! The binding's fields (stack guard, thread key, caller caches, OpenTelemetry cache, profile-hook
//! call stack) are plain numbers kept here for the binding, so that its per-call state costs no
//! look-up of its own; their meaning is documented where the binding uses them.

use crate::context::{ContextStack, ParentSpan};
use crate::edges::ThreadEdges;
use crate::ids::ThreadRng;
use crate::record::{ClassId, CodeId, ThreadKey};
use crate::sink::ThreadLane;
use crate::stats::ThreadCounts;
use std::cell::Cell;

/// Direct-mapped call-site cache size (entries).
pub const SITE_SLOTS: usize = 1024;
/// Direct-mapped class cache size (entries).
pub const CLASS_SLOTS: usize = 128;

/// One call site seen before: a code object (by address) and an instruction offset in it, with
/// what the binding derived from them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteEntry {
    /// The code object's address (0: empty entry).
    pub code: usize,
    /// The instruction offset of the call in it.
    pub lasti: i32,
    /// The code object's registry id.
    pub code_id: CodeId,
    /// The line of that instruction.
    pub line: u32,
    /// Whether the code's first parameter is `self` or `cls`.
    pub has_self: bool,
}

impl SiteEntry {
    pub const EMPTY: SiteEntry = SiteEntry {
        code: 0,
        lasti: 0,
        code_id: 0,
        line: 0,
        has_self: false,
    };
}

/// What the binding's OpenTelemetry interop saw last on this thread (`otel.rs`).
#[derive(Debug)]
pub struct OtelSeen {
    /// Key of the thread's `contextvars` mapping at the last root call that looked it up: its
    /// address, 1 when the thread had no context, 0 before any; the binding holds a reference
    /// to the mapping, so the address cannot come to mean another object.
    pub vars: Cell<usize>,
    /// What that mapping resolved to.
    pub vars_parent: Cell<Option<ParentSpan>>,
    /// Address of the OpenTelemetry `Context` object current at the last root call (0: none);
    /// the binding holds a reference to it, so the address cannot come to mean another object.
    pub context: Cell<usize>,
    /// What that context resolved to.
    pub parent: Cell<Option<ParentSpan>>,
}

/// One thread's state: see the module documentation.
#[derive(Debug)]
pub struct PerThread {
    /// The open traced calls ([`crate::context`]).
    pub context: ContextStack,
    /// Trace and span ids ([`crate::ids`]).
    pub ids: ThreadRng,
    /// Calls started and sampled ([`crate::stats`]).
    pub counts: ThreadCounts,
    /// This thread's lane into the span queue ([`crate::sink`]).
    pub lane: ThreadLane,
    /// Caller-edge counters and their caches ([`crate::edges`]).
    pub edges: ThreadEdges,
    /// The binding's C-stack guard: the lowest stack address a traced call may start at
    /// (`usize::MAX`: not read yet; 0: unknown, never refuse).
    pub stack_limit: Cell<usize>,
    /// The binding's thread key cache: (fork epoch + 1, key); epoch 0: not looked up yet.
    pub thread_key: Cell<(u64, ThreadKey)>,
    /// The binding's call-site cache, indexed by a hash of (code address, offset).
    pub sites: [Cell<SiteEntry>; SITE_SLOTS],
    /// The binding's class cache: (type address, registry id), indexed by a hash of the address.
    pub classes: [Cell<(usize, ClassId)>; CLASS_SLOTS],
    /// The binding's epoch of dead watched objects that `sites` and `classes` were filled in
    /// (when it has passed, an address in them may mean another object).
    pub cache_epoch: Cell<u32>,
    /// The binding's OpenTelemetry interop state.
    pub otel: OtelSeen,
    /// The binding's profile-hook call stack on this thread, by address (null: none yet); the
    /// binding keeps it alive while the address is set here.
    pub hook_calls: Cell<*const ()>,
}

impl PerThread {
    const fn new() -> PerThread {
        PerThread {
            context: ContextStack::new(),
            ids: ThreadRng::new(),
            counts: ThreadCounts::new(),
            lane: ThreadLane::new(),
            edges: ThreadEdges::new(),
            stack_limit: Cell::new(usize::MAX),
            thread_key: Cell::new((0, 0)),
            sites: [const { Cell::new(SiteEntry::EMPTY) }; SITE_SLOTS],
            classes: [const { Cell::new((0, 0)) }; CLASS_SLOTS],
            cache_epoch: Cell::new(0),
            otel: OtelSeen {
                vars: Cell::new(0),
                vars_parent: Cell::new(None),
                context: Cell::new(0),
                parent: Cell::new(None),
            },
            hook_calls: Cell::new(std::ptr::null()),
        }
    }
}

thread_local! {
    static LOCAL: PerThread = const { PerThread::new() };
}

/// Runs `f` on this thread's state; None once the thread's thread-locals are being destroyed
/// (a call made from another thread-local's destructor at thread exit).
#[inline]
pub fn with<R>(f: impl FnOnce(&PerThread) -> R) -> Option<R> {
    LOCAL.try_with(f).ok()
}

/// This thread's state, for the duration of one traced call (None: see [`with`]).
///
/// # Safety
/// The reference must not outlive the thread's thread-locals: use it only on this thread (the
/// type is not `Sync`, so it cannot be sent) and never keep it where a thread-local destructor
/// could reach it. Holding it across a call into Python is fine: the thread cannot exit
/// meanwhile without also ending the call (`pthread_exit` runs none of our code again).
#[inline]
pub unsafe fn current<'a>() -> Option<&'a PerThread> {
    // SAFETY: the caller's contract keeps the reference inside the thread-local's life.
    LOCAL
        .try_with(|local| unsafe { &*std::ptr::from_ref(local) })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_state_per_thread() {
        with(|t| t.stack_limit.set(7)).unwrap();
        let other = std::thread::spawn(|| with(|t| t.stack_limit.get()).unwrap())
            .join()
            .unwrap();
        assert_eq!(other, usize::MAX);
        // SAFETY: used on this thread only, within the test.
        let here = unsafe { current() }.unwrap();
        assert_eq!(here.stack_limit.get(), 7);
    }
}
