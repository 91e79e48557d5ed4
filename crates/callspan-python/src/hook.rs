//! Profile-hook mode: a span for every call of matching Python functions, without decorating them.
//!
//! `callspan.start_profile(include, exclude)` installs an interpreter hook — `sys.monitoring` on
//! 3.12+ (`hook_monitoring`), a PEP 523 frame-evaluation function on 3.9–3.11 (`hook_eval`) —
//! which comes here. What this module does for both:
//!
//! * **Which code.** Each code object is decided once per profile session: its
//!   `code.function.name` (module-qualified qualname, as the decorator names it) against the
//!   include and exclude globs (`callspan_core::profile_filter`). The decision is cached in the
//!   code object's extra slot (`PyUnstable_Code_SetExtra`), so a call's start costs one slot read
//!   (in place, `python_frame::code_extra`) and a session compare; its end reads no decision.
//!   A matching code object becomes a registry function (`Registry::add_code_function`: the
//!   registry's code object → function id map) with its own [`FunctionRate`], exactly what
//!   `@callspan.trace` registers for the function: span name `__qualname__`, the def line, file.
//!   Code the decorator wraps ([`exclude_decorated`]) never matches: one span per call, not two.
//! * **Each call.** The span lifecycle in `span`, as the decorator runs it: decide
//!   ([`start_call`]), the caller, enter ([`enter_step`]), and at the return or unwind, exit and
//!   finish ([`end_call`]). On 3.12+ start and end are separate events: the running calls are a
//!   per-thread stack matched by code object, reached through the thread's [`PerThread`] (one
//!   thread-local look-up per event). On 3.9–3.11 both happen in one C call around the frame's
//!   evaluation, which keeps the call's state on the C stack.
//! * **Generators, coroutines, async generators.** One span per call across its steps: the span
//!   opens at the first step, leaves the thread at each yield/await (kept by the object's frame,
//!   whose address is fixed for the object's life: [`suspend_step`], [`take_suspended`]) and
//!   re-enters at each resume, as `steps` does for decorated ones. A coroutine's first step
//!   takes its parent from the task's published span first (the hook sees the coroutine only
//!   when it first runs, possibly in a task of its own; the published span is the one that
//!   created it).

use crate::python_frame::{self, CallerFrame};
#[cfg(not(Py_3_12))]
use crate::span::PlainCall;
use crate::span::{self, Active, CountedCall, Decision, OpenSpan};
use crate::steps::{self, Kind};
use callspan_core::context::ParentSpan;
use callspan_core::hot::{self, FunctionRate, HotState, Mode};
use callspan_core::per_thread::{self, PerThread};
use callspan_core::profile_filter::{is_comprehension, Filter};
use callspan_core::record::{ClassId, ExceptionInfo, FunctionId};
use callspan_core::registry::{self, intern, FunctionInfo};
use parking_lot::Mutex;
use pyo3::exceptions::{PyGeneratorExit, PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
#[cfg(Py_3_13)]
use pyo3::types::PyCFunction;
#[cfg(Py_3_12)]
use std::cell::UnsafeCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::c_void;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
#[cfg(Py_3_12)]
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Which code: the filter and the per-code-object decision
// ---------------------------------------------------------------------------------------------

/// A profiled function: what a `TracedFunction` holds for the decorator. Leaked (one per code
/// object for the life of the process, like the registry entry) and only touched with the GIL.
#[derive(Debug)]
pub(crate) struct Profiled {
    pub(crate) id: FunctionId,
    pub(crate) rate: FunctionRate,
    pub(crate) kind: Kind,
}

/// The decision cached in a code object's extra slot.
pub(crate) struct CodeDecision {
    /// The profile session it was made for (decisions of earlier sessions are stale).
    session: u64,
    /// Null: not profiled.
    profiled: *const Profiled,
    /// 3.12+: the code's local events are on for this session.
    #[cfg_attr(not(Py_3_12), allow(dead_code))]
    local_events: bool,
}

/// The code extra index (-1: not requested yet).
static EXTRA_INDEX: AtomicIsize = AtomicIsize::new(-1);
/// The current session (0: no profile has run; every start takes the next number).
static SESSION: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn free_decision(decision: *mut c_void) {
    if !decision.is_null() {
        // SAFETY: every extra we store is a `Box<CodeDecision>`; CPython frees it once.
        drop(unsafe { Box::from_raw(decision.cast::<CodeDecision>()) });
    }
}

/// Requests the code extra index (once), and checks that `python_frame::code_extra` reads it.
fn extra_index() -> PyResult<isize> {
    let index = EXTRA_INDEX.load(Ordering::Relaxed);
    if index >= 0 {
        return Ok(index);
    }
    // SAFETY: GIL held (called from `start` only).
    let index = unsafe { ffi::PyUnstable_Eval_RequestCodeExtraIndex(free_decision) };
    if index < 0 {
        return Err(PyRuntimeError::new_err(
            "callspan.start_profile: no code object extra index is left in this interpreter \
             (other tools requested them all)",
        ));
    }
    let probe = Box::into_raw(Box::new(CodeDecision {
        session: 0,
        profiled: std::ptr::null(),
        local_events: false,
    }));
    // SAFETY: GIL held; `free_decision` frees a `Box<CodeDecision>`.
    unsafe {
        python_frame::verify_code_extra(index as ffi::Py_ssize_t, probe.cast(), free_decision)
    }
    .map_err(|why| {
        PyRuntimeError::new_err(format!(
            "callspan.start_profile: this interpreter's code objects are not laid out as \
                 callspan was built for them ({why}); the profile hook cannot run on it"
        ))
    })?;
    EXTRA_INDEX.store(index as isize, Ordering::Relaxed);
    Ok(index as isize)
}

/// The cached decision of `code` for this session (None: not decided yet in this session).
///
/// # Safety
/// GIL held; `code` is a live code object.
#[inline]
pub(crate) unsafe fn cached(code: *mut ffi::PyObject) -> Option<&'static mut CodeDecision> {
    let index = EXTRA_INDEX.load(Ordering::Relaxed);
    if index < 0 {
        return None;
    }
    // SAFETY: the caller's contract; the index was requested.
    let extra = unsafe { python_frame::code_extra(code, index as ffi::Py_ssize_t) };
    // SAFETY: our extra is a `Box<CodeDecision>` owned by the code object; the GIL serializes
    // every access, and no reference is kept across Python code.
    let decision = unsafe { extra.cast::<CodeDecision>().as_mut()? };
    (decision.session == SESSION.load(Ordering::Relaxed)).then_some(decision)
}

/// The profiled function `code` stands for in this session, if already decided and matching.
///
/// # Safety
/// As [`cached`].
#[cfg(Py_3_12)]
#[inline]
pub(crate) unsafe fn profiled_if_decided(code: *mut ffi::PyObject) -> Option<&'static Profiled> {
    // SAFETY: forwarded contract; `profiled` is null or leaked.
    unsafe { cached(code).and_then(|d| d.profiled.as_ref()) }
}

/// The decision for `code`: cached, else made now (`frame` finds the code's running frame, which
/// gives its module and qualname; asked only the first time).
///
/// # Safety
/// GIL held; `code` is a live code object and `frame`, if it finds one, a frame running it.
#[inline]
pub(crate) unsafe fn decision<'py>(
    py: Python<'py>,
    code: *mut ffi::PyObject,
    frame: impl FnOnce() -> Option<CallerFrame<'py>>,
) -> Option<&'static mut CodeDecision> {
    // SAFETY: forwarded contract.
    if let Some(d) = unsafe { cached(code) } {
        return Some(d);
    }
    // SAFETY: forwarded contract.
    unsafe { decide_code(py, code, frame()) }
}

/// Whether `decision` is a profiled function; for the 3.12+ hook, which turns on the code's
/// local events on the first call of a session.
pub(crate) fn profiled_of(decision: &CodeDecision) -> Option<&'static Profiled> {
    // SAFETY: null or leaked.
    unsafe { decision.profiled.as_ref() }
}

/// Marks the code's local events as on; true the first time in this session.
#[cfg(Py_3_12)]
#[inline]
pub(crate) fn first_local_events(decision: &mut CodeDecision) -> bool {
    // Read on every call, written once (not a store per event).
    if decision.local_events {
        return false;
    }
    decision.local_events = true;
    true
}

/// Code objects the decorator wraps (their spans come from the `TracedFunction`).
static DECORATED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// Keeps the profile hook off `code`, whose function `@callspan.trace` wraps (the registry watches
/// the code object: its address is forgotten here when it dies, [`forget_decorated`]).
pub(crate) fn exclude_decorated(code: *mut ffi::PyObject) {
    DECORATED
        .lock()
        .get_or_insert_with(HashSet::new)
        .insert(code as usize);
    // A decision made before the decoration (the function was called under the hook first).
    // SAFETY: GIL held (called from `traced`); the code object is alive.
    if let Some(d) = unsafe { cached(code) } {
        d.profiled = std::ptr::null();
    }
}

/// The code object at `code` is being freed (`watched`): its address may mean another one next.
pub(crate) fn forget_decorated(code: usize) {
    if let Some(decorated) = DECORATED.lock().as_mut() {
        decorated.remove(&code);
    }
}

/// One profiled function per code object, across sessions.
static PROFILED: Mutex<Option<HashMap<FunctionId, usize>>> = Mutex::new(None);

const CO_OPTIMIZED: i64 = 0x1;
const CO_GENERATOR: i64 = 0x20;
const CO_COROUTINE: i64 = 0x80;
const CO_ITERABLE_COROUTINE: i64 = 0x100;
const CO_ASYNC_GENERATOR: i64 = 0x200;

fn kind_of(flags: i64) -> Kind {
    if flags & CO_ASYNC_GENERATOR != 0 {
        Kind::AsyncGenerator
    } else if flags & CO_COROUTINE != 0 {
        Kind::Coroutine
    } else if flags & (CO_GENERATOR | CO_ITERABLE_COROUTINE) != 0 {
        Kind::Generator
    } else {
        Kind::Plain
    }
}

#[cold]
unsafe fn decide_code(
    py: Python<'_>,
    code: *mut ffi::PyObject,
    frame: Option<CallerFrame<'_>>,
) -> Option<&'static mut CodeDecision> {
    let session = SESSION.load(Ordering::Relaxed);
    let profiled = match what_to_profile(py, code, frame) {
        Ok(Some(profiled)) => profiled as *const Profiled,
        Ok(None) => std::ptr::null(),
        Err(e) => {
            tracing::warn!("profile hook: a code object could not be described: {e}");
            std::ptr::null()
        }
    };
    let index = EXTRA_INDEX.load(Ordering::Relaxed);
    if index < 0 {
        return None;
    }
    // SAFETY: GIL held; `code` is live. A stale decision (an earlier session's) is updated in
    // place: replacing an extra frees the old one on some versions and not on others.
    unsafe {
        let existing = python_frame::code_extra_public(code, index);
        if let Some(decision) = existing.cast::<CodeDecision>().as_mut() {
            *decision = CodeDecision {
                session,
                profiled,
                local_events: false,
            };
            return Some(decision);
        }
        let fresh = Box::into_raw(Box::new(CodeDecision {
            session,
            profiled,
            local_events: false,
        }));
        if ffi::PyUnstable_Code_SetExtra(code, index as ffi::Py_ssize_t, fresh.cast()) != 0 {
            ffi::PyErr_Clear();
            drop(Box::from_raw(fresh));
            return None;
        }
        Some(&mut *fresh)
    }
}

/// Describes `code` and matches it against the session's filter; registers it if it matches.
fn what_to_profile(
    py: Python<'_>,
    code_ptr: *mut ffi::PyObject,
    frame: Option<CallerFrame<'_>>,
) -> PyResult<Option<&'static Profiled>> {
    if DECORATED
        .lock()
        .as_ref()
        .is_some_and(|d| d.contains(&(code_ptr as usize)))
    {
        return Ok(None);
    }
    // SAFETY: a live code object (the caller's contract).
    let code = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code_ptr) };
    let flags: i64 = code.getattr("co_flags")?.extract()?;
    if flags & CO_OPTIMIZED == 0 {
        // A module or class body.
        return Ok(None);
    }
    // Everything read from the frame is read before any Python code runs.
    let frame = frame.filter(|f| f.code().cast::<ffi::PyObject>() == code_ptr);
    let module = frame
        .and_then(|f| f.module_name())
        .unwrap_or_else(|| "<unknown>".to_owned());
    let qualname = match frame {
        Some(f) => f.code_qualname(),
        // No running frame to search the module from (3.9/3.10 code has no co_qualname).
        None => code
            .getattr("co_qualname")
            .or_else(|_| code.getattr("co_name"))?
            .extract()?,
    };
    // SAFETY: a live code object.
    let file = unsafe { python_frame::code_filename(py, code_ptr.cast()) };
    let name = format!("{module}.{qualname}");
    let matched = !is_comprehension(&qualname)
        && with_session(|s| {
            if !module.starts_with("callspan") {
                s.modules_seen.insert(module.clone());
            }
            s.filter.matches(&name, &file)
        })
        .unwrap_or(false);
    if !matched {
        return Ok(None);
    }
    let registry = registry::global();
    let id = match registry.function_for_code(code_ptr as usize) {
        Some(id) => id,
        None => {
            let line = def_line(py, &code).unwrap_or(0);
            let id = registry.add_code_function(
                code_ptr as usize,
                FunctionInfo {
                    span_name: intern(&qualname),
                    function_name: intern(&name),
                    file: Some(intern(&file)),
                    line,
                    attributes: Vec::new(),
                },
            );
            // The registry keys the function by this address until the code object dies.
            crate::watched::watch(&code);
            id
        }
    };
    with_session(|s| s.matched += 1);
    let mut map = PROFILED.lock();
    let map = map.get_or_insert_with(HashMap::new);
    let ptr = *map.entry(id).or_insert_with(|| {
        Box::leak(Box::new(Profiled {
            id,
            rate: FunctionRate::new(None),
            kind: kind_of(flags),
        })) as *const Profiled as usize
    });
    // SAFETY: leaked above, never freed.
    Ok(Some(unsafe { &*(ptr as *const Profiled) }))
}

/// The `def` line, as `@callspan.trace` records it (`co_firstlineno` is the first decorator's).
fn def_line(py: Python<'_>, code: &Bound<'_, PyAny>) -> PyResult<u32> {
    py.import("callspan._trace")?
        .getattr("_def_line")?
        .call1((code,))?
        .extract()
}

// ---------------------------------------------------------------------------------------------
// The session: start, stop, what it saw
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Session {
    filter: Filter,
    modules_seen: BTreeSet<String>,
    matched: usize,
}

static STATE: Mutex<Option<Session>> = Mutex::new(None);

fn with_session<T>(f: impl FnOnce(&mut Session) -> T) -> Option<T> {
    STATE.lock().as_mut().map(f)
}

/// Whether a profile session is running.
pub(crate) fn running() -> bool {
    STATE.lock().is_some()
}

/// Starts a profile session: `include`/`exclude` globs, `library` path prefixes.
#[pyfunction]
pub(crate) fn start_profile(
    py: Python<'_>,
    include: Vec<String>,
    exclude: Vec<String>,
    library: Vec<String>,
) -> PyResult<()> {
    let filter = Filter::new(&include, &exclude, library)
        .map_err(|e| PyValueError::new_err(format!("callspan.start_profile: {e}")))?;
    if running() {
        return Err(PyRuntimeError::new_err(
            "callspan.start_profile: a profile is already running; call callspan.stop_profile() first",
        ));
    }
    extra_index()?;
    SESSION.fetch_add(1, Ordering::Relaxed);
    *STATE.lock() = Some(Session {
        filter,
        modules_seen: BTreeSet::new(),
        matched: 0,
    });
    if let Err(e) = install(py) {
        *STATE.lock() = None;
        return Err(e);
    }
    Ok(())
}

/// Stops the profile session (no-op without one). Returns how many functions matched and the
/// modules whose functions were seen, for the "matched nothing" warning.
#[pyfunction]
pub(crate) fn stop_profile(py: Python<'_>) -> PyResult<Option<(usize, Vec<String>)>> {
    if !running() {
        return Ok(None);
    }
    let result = uninstall(py);
    end_running_calls(py);
    let session = STATE.lock().take();
    // Decisions of this session are stale from now on (the 3.9–3.11 hook reads them while any
    // frame it evaluates is still running).
    SESSION.fetch_add(1, Ordering::Relaxed);
    if callspan_otlp::diagnostic::pending() {
        crate::diagnostics::forward(py);
    }
    result?;
    Ok(session.map(|s| (s.matched, s.modules_seen.into_iter().collect())))
}

#[cfg(Py_3_12)]
fn install(py: Python<'_>) -> PyResult<()> {
    crate::hook_monitoring::install(py)
}

#[cfg(Py_3_12)]
fn uninstall(py: Python<'_>) -> PyResult<()> {
    crate::hook_monitoring::uninstall(py)
}

#[cfg(all(not(Py_3_12), callspan_frame_direct))]
fn install(py: Python<'_>) -> PyResult<()> {
    crate::hook_eval::install(py)
}

#[cfg(all(not(Py_3_12), callspan_frame_direct))]
fn uninstall(py: Python<'_>) -> PyResult<()> {
    crate::hook_eval::uninstall(py)
}

/// 3.11 built with `CALLSPAN_FRAME_PUBLIC_API=1`: no hook (it is handed `_PyInterpreterFrame`s,
/// which no public API reads).
#[cfg(all(not(Py_3_12), not(callspan_frame_direct)))]
fn install(_py: Python<'_>) -> PyResult<()> {
    Err(PyRuntimeError::new_err(
        "callspan.start_profile: this callspan was built with CALLSPAN_FRAME_PUBLIC_API=1, and \
         on Python 3.11 the profile hook (a frame-evaluation function) is handed interpreter \
         frames that no public C API can read; rebuild callspan without \
         CALLSPAN_FRAME_PUBLIC_API to profile, or decorate the functions with @callspan.trace",
    ))
}

#[cfg(all(not(Py_3_12), not(callspan_frame_direct)))]
fn uninstall(_py: Python<'_>) -> PyResult<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Each call
// ---------------------------------------------------------------------------------------------

/// What a call records until it ends: its span, or, unsampled, the trace its children inherit
/// and (while calls are counted) its count. One variant's fields overlap the other's, which
/// keeps a running call small: it is written to the thread's stack and read back once per call.
#[derive(Debug)]
enum CallSpan {
    Sampled(OpenSpan),
    Unsampled {
        trace_id: u128,
        counted: Option<CountedCall>,
    },
}

impl CallSpan {
    /// What is left of a call whose span (or count) was taken: nothing to end.
    #[cfg(Py_3_12)]
    const TAKEN: CallSpan = CallSpan::Unsampled {
        trace_id: 0,
        counted: None,
    };

    /// What each step of the call makes current: the span, or the unsampled marker its
    /// children inherit.
    #[inline]
    fn current(&self) -> ParentSpan {
        match self {
            CallSpan::Sampled(open) => open.as_parent(),
            CallSpan::Unsampled { trace_id, .. } => Decision::unsampled_marker(*trace_id),
        }
    }
}

/// A call between two of its steps (a generator or coroutine), or while one runs.
#[derive(Debug)]
pub(crate) struct Step {
    span: CallSpan,
    /// Coroutines and async generators publish the span in the task's context too.
    publish: bool,
}

impl Step {
    /// The time the call ends at in [`callspan_core::clock::ticks`], read as it ends (only a
    /// span needs it; 0 otherwise).
    #[inline]
    pub(crate) fn end_ticks(&self) -> u64 {
        if matches!(self.span, CallSpan::Sampled(_)) {
            callspan_core::clock::ticks()
        } else {
            0
        }
    }
}

/// A call running on this thread.
#[cfg(Py_3_12)]
struct Running {
    code: usize,
    /// Generators and coroutines: the frame object (fixed for the object's life); 0 otherwise.
    frame_key: usize,
    step: Step,
    active: Active,
}

/// One thread's running calls, innermost last. Not a `RefCell`: the vector is touched only with
/// the GIL held and never across Python code (an event pushes or pops one entry; values leave
/// it before they are dropped), so no two borrows overlap, and none is counted per event.
#[cfg(Py_3_12)]
struct CallStack(UnsafeCell<Vec<Running>>);

// SAFETY: every access holds the GIL and no borrow spans Python code (type docs), so accesses
// from two threads (the owner, and `stop_profile` on another) never overlap.
#[cfg(Py_3_12)]
unsafe impl Sync for CallStack {}

#[cfg(Py_3_12)]
impl CallStack {
    /// Pushes `call` (dropped if no memory is left for it). Nothing on the way can panic, so
    /// that `call` is written once, where it goes, rather than moved through the stack.
    #[inline(always)]
    fn push(&self, call: Running) {
        // SAFETY: GIL held; no other borrow is live (type docs).
        let calls = unsafe { &mut *self.0.get() };
        if calls.try_reserve(1).is_err() {
            return;
        }
        let len = calls.len();
        if let Some(slot) = calls.spare_capacity_mut().first_mut() {
            slot.write(call);
            // SAFETY: the element at `len` was just written.
            unsafe { calls.set_len(len + 1) };
        }
    }

    /// Takes the innermost call if it is `code`'s and, for a generator or coroutine, the frame
    /// `frame_key` names (asked only then: a plain function's call has key 0).
    #[inline]
    fn pop_if(
        &self,
        code: *mut ffi::PyObject,
        frame_key: impl FnOnce() -> usize,
    ) -> Option<Running> {
        // SAFETY: as in `push`; `frame_key` runs no Python code.
        let calls = unsafe { &mut *self.0.get() };
        let top = calls.last()?;
        if top.code != code as usize || (top.frame_key != 0 && top.frame_key != frame_key()) {
            return None;
        }
        calls.pop()
    }

    fn take_all(&self) -> Vec<Running> {
        // SAFETY: as in `push`.
        std::mem::take(unsafe { &mut *self.0.get() })
    }

    /// Takes what each running call would end (its span, its count), leaving the entries.
    fn take_steps(&self) -> Vec<Step> {
        // SAFETY: as in `push`.
        let calls = unsafe { &mut *self.0.get() };
        calls
            .iter_mut()
            .map(|call| Step {
                span: std::mem::replace(&mut call.step.span, CallSpan::TAKEN),
                publish: call.step.publish,
            })
            .collect()
    }
}

/// Every thread's call stack, for `stop_profile` (which must end other threads' calls too).
#[cfg(Py_3_12)]
static STACKS: Mutex<Vec<Arc<CallStack>>> = Mutex::new(Vec::new());

/// A thread's own reference to its call stack. The events reach the stack through the thread's
/// [`PerThread`] (`hook_calls`, set by [`calls_of`]), so that an event looks up one thread-local,
/// not two; this reference keeps the stack alive while that pointer is set, and unsets it when
/// the thread's thread-locals are destroyed.
#[cfg(Py_3_12)]
struct ThreadCalls(Arc<CallStack>);

#[cfg(Py_3_12)]
impl Drop for ThreadCalls {
    fn drop(&mut self) {
        // The thread's state may be gone already (then nothing reads the pointer again).
        per_thread::with(|local| local.hook_calls.set(std::ptr::null()));
    }
}

#[cfg(Py_3_12)]
thread_local! {
    static RUNNING: ThreadCalls = {
        let stack = Arc::new(CallStack(UnsafeCell::new(Vec::new())));
        STACKS.lock().push(Arc::clone(&stack));
        ThreadCalls(stack)
    };
}

/// This thread's call stack, through its state `local` (None once the thread's thread-locals
/// are being destroyed).
#[cfg(Py_3_12)]
#[inline]
fn calls_of(local: &PerThread) -> Option<&CallStack> {
    let stack = local.hook_calls.get();
    if stack.is_null() {
        return publish_calls(local);
    }
    // SAFETY: set by `publish_calls` on this thread from its `ThreadCalls`, which keeps the stack
    // alive until it unsets the pointer.
    Some(unsafe { &*stack.cast::<CallStack>() })
}

/// Creates this thread's call stack and publishes it in `local` (once per thread).
#[cfg(Py_3_12)]
#[cold]
fn publish_calls(local: &PerThread) -> Option<&CallStack> {
    RUNNING
        .try_with(|calls| {
            let stack = Arc::as_ptr(&calls.0);
            local.hook_calls.set(stack.cast());
            // SAFETY: kept alive by this thread's `ThreadCalls` (see `calls_of`).
            unsafe { &*stack }
        })
        .ok()
}

/// Generators and coroutines between two steps, by frame.
static SUSPENDED: Mutex<Option<HashMap<usize, Step>>> = Mutex::new(None);

/// Takes the suspended step of a generator's or coroutine's frame, if any.
pub(crate) fn take_suspended(frame_key: usize) -> Option<Step> {
    SUSPENDED.lock().as_mut()?.remove(&frame_key)
}

/// Whether spans are made now (the first call of the process reads the configuration).
#[inline]
fn enabled(hot: &HotState) -> bool {
    match hot.mode() {
        Mode::Enabled => true,
        Mode::Disabled => false,
        Mode::Unconfigured => {
            callspan_otlp::pipeline::global();
            hot.mode() == Mode::Enabled
        }
    }
}

/// A profiled function starts (3.12+ `PY_START`): `code` is its code object, `caller` finds the
/// frame it was called from (asked only when the call is sampled or counted), `frame_key` its
/// frame if it is a generator or coroutine.
#[cfg(Py_3_12)]
pub(crate) fn on_start<'py>(
    py: Python<'py>,
    profiled: &Profiled,
    code: *mut ffi::PyObject,
    caller: impl FnOnce() -> Option<CallerFrame<'py>>,
    frame_key: usize,
) {
    // SAFETY: used on this thread, during this event only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        return;
    };
    let Some(calls) = calls_of(local) else {
        return;
    };
    if let Some(step) = start_call(py, local, profiled, caller, frame_key) {
        begin_step(py, local, calls, code, frame_key, step);
    }
}

/// A call of a profiled function starts (a generator's or coroutine's first step): decides it,
/// reads its caller from `caller` (asked only when the call is sampled or counted), and returns
/// its first step, not yet entered ([`enter_step`]); None while callspan is disabled.
/// `frame_key` is its frame if it is a generator or coroutine (0 otherwise).
#[inline(always)]
pub(crate) fn start_call<'py>(
    py: Python<'py>,
    local: &PerThread,
    profiled: &Profiled,
    caller: impl FnOnce() -> Option<CallerFrame<'py>>,
    frame_key: usize,
) -> Option<Step> {
    let hot = call_starts(local)?;
    let publish = matches!(profiled.kind, Kind::Coroutine | Kind::AsyncGenerator);
    let decision = span::decide_under(hot, local, profiled.id, &profiled.rate, || {
        span::current_parent(py, local, publish)
    });
    if frame_key != 0 {
        // A frame of a generator abandoned without an end event, now reused.
        drop(take_suspended(frame_key));
    }
    let span = match decision {
        Decision::Unsampled { trace_id } => CallSpan::Unsampled {
            trace_id,
            counted: hot.counting().then(|| {
                CountedCall::starting(
                    profiled.id,
                    span::caller_site(py, hot, local, caller().as_ref()),
                )
            }),
        },
        Decision::Sampled { trace_id, parent } => {
            let caller = span::read_caller(py, hot, local, caller());
            CallSpan::Sampled(OpenSpan::new(local, trace_id, parent, profiled.id, caller))
        }
    };
    Some(Step { span, publish })
}

/// A call of a profiled plain function starts (3.9–3.11): decided, its caller read from the
/// frame current now, its span (or unsampled marker) made current, exactly as a traced call's
/// (`span::PlainCall`); None while callspan is disabled.
///
/// # Safety
/// GIL held; the frame current now is the caller's (the callee's frame is not running yet).
#[cfg(not(Py_3_12))]
#[inline(always)]
pub(crate) unsafe fn start_plain_call<'t>(
    py: Python<'_>,
    local: &'t PerThread,
    profiled: &Profiled,
) -> Option<PlainCall<'t>> {
    let hot = call_starts(local)?;
    let decision = span::decide(py, hot, local, profiled.id, &profiled.rate);
    // SAFETY: the caller's contract.
    Some(unsafe { PlainCall::start(py, hot, local, profiled.id, decision) })
}

/// What every profiled call does first: nothing while callspan is disabled (None), else it
/// counts as started.
#[inline(always)]
fn call_starts(local: &PerThread) -> Option<&'static HotState> {
    let hot = hot::state();
    if !enabled(hot) {
        return None;
    }
    local.counts.started();
    Some(hot)
}

/// Makes a step's span (or unsampled marker) current on this thread (`local`) and starts the
/// span's clock at its first step; [`end_call`] or [`suspend_step`] undo it.
#[inline(always)]
pub(crate) fn enter_step(py: Python<'_>, local: &PerThread, step: &mut Step) -> Active {
    let active = span::enter(py, hot::state(), local, step.span.current(), step.publish);
    if let CallSpan::Sampled(open) = &mut step.span {
        open.start_clock();
    }
    active
}

/// Enters `step` and records it as this thread's innermost running call in `calls` (3.12+).
#[cfg(Py_3_12)]
#[inline(always)]
fn begin_step(
    py: Python<'_>,
    local: &PerThread,
    calls: &CallStack,
    code: *mut ffi::PyObject,
    frame_key: usize,
    mut step: Step,
) {
    let active = enter_step(py, local, &mut step);
    calls.push(Running {
        code: code as usize,
        frame_key,
        step,
        active,
    });
}

/// How a call ended.
pub(crate) enum End<'py> {
    Return,
    /// The exception escaping the frame, as the 3.12+ event hands it (None: not handed).
    #[cfg_attr(not(Py_3_12), allow(dead_code))]
    Raise(Option<Bound<'py, PyAny>>),
    /// The exception set in the thread state now, which stays set (3.9–3.11: the frame's
    /// evaluation returned NULL).
    #[cfg_attr(Py_3_12, allow(dead_code))]
    RaiseSet,
}

/// [`on_end`] of a frame whose code returned (3.12+ `PY_RETURN`).
#[cfg(Py_3_12)]
#[inline(never)]
pub(crate) fn on_return(
    py: Python<'_>,
    code: *mut ffi::PyObject,
    frame_key: impl FnOnce() -> usize,
) {
    // A function of its own with `End::Return` known: every test of how the call ended folds.
    on_end(py, code, frame_key, End::Return);
}

/// A frame of `code` returns or raises (for a generator or coroutine: its last step): if it is
/// this thread's innermost running call (for a generator or coroutine, the one running in frame
/// object `frame_key()`, asked only then), that call ends. A call that started before the
/// profile, or of code that is not profiled, was never pushed.
#[cfg(Py_3_12)]
#[inline(always)]
pub(crate) fn on_end(
    py: Python<'_>,
    code: *mut ffi::PyObject,
    frame_key: impl FnOnce() -> usize,
    end: End<'_>,
) {
    // SAFETY: used on this thread, during this event only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        return;
    };
    let Some(running) = calls_of(local).and_then(|calls| calls.pop_if(code, frame_key)) else {
        return;
    };
    // Read first, so that the span does not include this event's work.
    let end_ticks = running.step.end_ticks();
    // A generator's or coroutine's call (a plain function's call has no frame key).
    let stepped = running.frame_key != 0;
    #[cfg(Py_3_13)]
    if stepped {
        unwatch(running.frame_key);
    }
    end_call(
        py,
        local,
        stepped,
        running.step,
        running.active,
        end,
        end_ticks,
    );
}

/// A profiled call ended at `end_ticks` ([`callspan_core::clock::ticks`]) as `end` says (a generator or coroutine, `stepped`:
/// its last step): its step leaves this thread (`local`), and its span ends or its count is
/// made. A generator's or coroutine's GeneratorExit (`close()`) is a normal end, as for
/// decorated ones.
#[inline(always)]
pub(crate) fn end_call(
    py: Python<'_>,
    local: &PerThread,
    stepped: bool,
    step: Step,
    active: Active,
    end: End<'_>,
    end_ticks: u64,
) {
    active.exit(py, local);
    let hot = hot::state();
    // The exception's class, for `error.type` of the call's count.
    let error_class = match &end {
        End::Return | End::Raise(None) => 0,
        _ if !hot.counting() => 0,
        End::Raise(Some(exc)) => raised_class(py, exc, stepped),
        End::RaiseSet => raised_set_class(py, hot, stepped),
    };
    let open = match step.span {
        CallSpan::Sampled(open) => open,
        CallSpan::Unsampled { counted, .. } => {
            if let Some(counted) = counted {
                counted.finish_on(local, error_class);
            }
            return;
        }
    };
    span::finish(
        py,
        hot,
        local,
        open,
        end_ticks,
        error_class,
        !matches!(end, End::Return),
        || match end {
            End::Return => None,
            End::Raise(exc) => raised_error(py, exc, stepped),
            End::RaiseSet => raised_set_error(py, stepped),
        },
    );
}

/// `close()` raises GeneratorExit into a generator or coroutine (`stepped`): a normal end, as
/// for decorated ones.
fn closed(stepped: bool, exc: &Bound<'_, PyAny>) -> bool {
    stepped && exc.is_instance_of::<PyGeneratorExit>()
}

/// The class of the exception `exc` that ends a call, for counting (0: a close). Out of line,
/// as [`raised_error`]: the return path stays short.
#[cold]
fn raised_class(py: Python<'_>, exc: &Bound<'_, PyAny>, stepped: bool) -> ClassId {
    if closed(stepped, exc) {
        return 0;
    }
    // SAFETY: a live type object, GIL held.
    unsafe {
        crate::caller::class_of_type(
            py,
            exc.get_type().as_type_ptr(),
            callspan_core::registry::global(),
        )
    }
}

/// The `exception` event of a span that `exc` ends (None: unknown, as on 3.9–3.11; no event for
/// a close).
#[cold]
fn raised_error(
    py: Python<'_>,
    exc: Option<Bound<'_, PyAny>>,
    stepped: bool,
) -> Option<ExceptionInfo> {
    match exc {
        None => Some(ExceptionInfo {
            type_name: "<exception>".into(),
            message: "an exception ended the call (the interpreter did not pass it)".into(),
            traceback: None,
        }),
        Some(exc) if closed(stepped, &exc) => None,
        Some(exc) => Some(steps::describe(py, &PyErr::from_value(exc))),
    }
}

/// The class of the exception set now that ends a call, for counting (0: a close; 3.9–3.11).
#[cold]
fn raised_set_class(py: Python<'_>, hot: &HotState, stepped: bool) -> ClassId {
    if closed_set(stepped) {
        return 0;
    }
    span::raised_class(py, hot)
}

/// The `exception` event of a span that the exception set now ends (none for a close; 3.9–3.11).
#[cold]
fn raised_set_error(py: Python<'_>, stepped: bool) -> Option<ExceptionInfo> {
    (!closed_set(stepped)).then(|| steps::describe_current(py))
}

/// Whether the exception set now is `close()`'s GeneratorExit in a generator or coroutine.
fn closed_set(stepped: bool) -> bool {
    // SAFETY: GIL held (every caller's); an exception is set.
    stepped && unsafe { ffi::PyErr_ExceptionMatches(ffi::PyExc_GeneratorExit) != 0 }
}

/// A generator or coroutine yields (or awaits), 3.12+ `PY_YIELD`: its span leaves the thread
/// until resumed.
#[cfg(Py_3_12)]
pub(crate) fn on_suspend(py: Python<'_>, code: *mut ffi::PyObject, frame_key: usize) {
    // SAFETY: used on this thread, during this event only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        return;
    };
    let Some(running) = calls_of(local).and_then(|calls| calls.pop_if(code, || frame_key)) else {
        return;
    };
    suspend_step(py, local, frame_key, running.step, running.active);
    #[cfg(Py_3_13)]
    watch(py, frame_key);
}

/// A generator or coroutine yields (or awaits): its step leaves this thread (`local`) and is
/// kept by its frame (`frame_key`) until [`take_suspended`] resumes it.
pub(crate) fn suspend_step(
    py: Python<'_>,
    local: &PerThread,
    frame_key: usize,
    step: Step,
    active: Active,
) {
    active.exit(py, local);
    SUSPENDED
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(frame_key, step);
}

/// A suspended generator or coroutine resumes (3.12+ `PY_RESUME`, `PY_THROW`).
#[cfg(Py_3_12)]
pub(crate) fn on_resume(py: Python<'_>, code: *mut ffi::PyObject, frame_key: usize) {
    let step = take_suspended(frame_key);
    // SAFETY: used on this thread, during this event only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        return;
    };
    if let (Some(step), Some(calls)) = (step, calls_of(local)) {
        begin_step(py, local, calls, code, frame_key, step);
    }
}

/// At stop: suspended generators and coroutines end now (their steps are no longer seen). On
/// 3.12+ every call still running ends now too, innermost first (its end event no longer
/// comes): this thread's calls also leave its context; a call running on another thread keeps
/// its context entry until that thread's next profiled call returns (no event of it comes
/// before), but its span ends and is exported now. On 3.9–3.11 a running call's state is on its
/// thread's C stack, around the frame's evaluation: it ends when the call does.
fn end_running_calls(py: Python<'_>) {
    let hot = hot::state();
    // SAFETY: used on this thread, during this function only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        return;
    };
    let end = callspan_core::clock::ticks();
    #[cfg(Py_3_12)]
    end_running_on_threads(py, hot, local, end);
    let suspended = SUSPENDED.lock().take();
    for step in suspended.into_iter().flat_map(|m| m.into_values()) {
        finish_step(py, hot, local, step, end);
    }
    #[cfg(Py_3_13)]
    WATCHED.lock().take();
}

/// [`end_running_calls`] of the calls running on every thread (3.12+).
#[cfg(Py_3_12)]
fn end_running_on_threads(py: Python<'_>, hot: &HotState, local: &PerThread, end: u64) {
    let mine = calls_of(local).map(CallStack::take_all).unwrap_or_default();
    let mut others = Vec::new();
    {
        let mut stacks = STACKS.lock();
        // A thread that ended (only the registry holds its stack) never pops its entries:
        // its contexts are gone with it, so they are forgotten, not dropped here.
        for stack in stacks.iter() {
            if Arc::strong_count(stack) == 1 {
                others.extend(stack.take_all().into_iter().rev().map(|call| {
                    std::mem::forget(call.active);
                    call.step
                }));
            } else if !calls_of(local).is_some_and(|mine| std::ptr::eq(mine, Arc::as_ptr(stack))) {
                others.extend(stack.take_steps().into_iter().rev());
            }
        }
        stacks.retain(|stack| Arc::strong_count(stack) > 1);
    }
    for call in mine.into_iter().rev() {
        call.active.exit(py, local);
        finish_step(py, hot, local, call.step, end);
    }
    for step in others {
        finish_step(py, hot, local, step, end);
    }
}

/// Ends the span (or the count) of a call that returned normally at `end` ([`callspan_core::clock::ticks`]).
fn finish_step(py: Python<'_>, hot: &HotState, local: &PerThread, step: Step, end: u64) {
    match step.span {
        CallSpan::Sampled(open) => span::finish(py, hot, local, open, end, 0, false, || None),
        CallSpan::Unsampled {
            counted: Some(counted),
            ..
        } => counted.finish_on(local, 0),
        CallSpan::Unsampled { counted: None, .. } => {}
    }
}

// ---------------------------------------------------------------------------------------------
// 3.13: generators closed without an event
// ---------------------------------------------------------------------------------------------

/// Weak references to suspended generators and coroutines, by frame object (3.13+).
///
/// CPython 3.13 closes a generator suspended at a `yield` outside any `try` block without
/// running its frame (`gen_close` clears it directly): no `PY_UNWIND` or `PY_THROW` comes, and
/// the call would stay suspended forever. A weak reference to the object, taken at its first
/// suspension, ends the span when the object is freed (for `close()` on an object still
/// referenced, that is later than the close; for the usual `for ...: break` or an object going
/// out of scope, it is the same moment). Dropped when the call ends with an event.
#[cfg(Py_3_13)]
static WATCHED: Mutex<Option<HashMap<usize, Py<PyAny>>>> = Mutex::new(None);

/// Watches the generator or coroutine running in frame object `frame_key` (once per call).
#[cfg(Py_3_13)]
fn watch(py: Python<'_>, frame_key: usize) {
    if WATCHED
        .lock()
        .as_ref()
        .is_some_and(|w| w.contains_key(&frame_key))
    {
        return;
    }
    // SAFETY: GIL held; `frame_key` is the live frame object of the suspending call.
    let generator = unsafe { ffi::PyFrame_GetGenerator(frame_key as *mut ffi::PyFrameObject) };
    // SAFETY: a new reference or null.
    let Some(generator) = (unsafe { Bound::from_owned_ptr_or_opt(py, generator) }) else {
        return;
    };
    let freed = PyCFunction::new_closure(py, None, None, move |args, _kwargs| {
        ended_without_event(args.py(), frame_key);
    });
    let weak = freed.and_then(|callback| {
        // SAFETY: GIL held; a live object and a callable.
        let weak = unsafe { ffi::PyWeakref_NewRef(generator.as_ptr(), callback.as_ptr()) };
        // SAFETY: a new reference or null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, weak) }
    });
    match weak {
        Ok(weak) => {
            WATCHED
                .lock()
                .get_or_insert_with(HashMap::new)
                .insert(frame_key, weak.unbind());
        }
        Err(e) => tracing::warn!("profile hook: a generator could not be watched: {e}"),
    }
}

/// A watched generator or coroutine was freed: if it was still suspended, it was closed without
/// an event, a normal end.
#[cfg(Py_3_13)]
fn ended_without_event(py: Python<'_>, frame_key: usize) {
    let weak = WATCHED.lock().as_mut().and_then(|w| w.remove(&frame_key));
    if let Some(step) = take_suspended(frame_key) {
        let end = callspan_core::clock::ticks();
        per_thread::with(|local| finish_step(py, hot::state(), local, step, end));
    }
    drop(weak);
}

/// The call in `frame_key` ended with an event: its watch is no longer needed.
#[cfg(Py_3_13)]
fn unwatch(frame_key: usize) {
    let weak = WATCHED.lock().as_mut().and_then(|w| w.remove(&frame_key));
    drop(weak);
}
