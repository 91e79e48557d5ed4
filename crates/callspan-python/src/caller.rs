//! The caller of a traced call: which code, which line, which class — as registry ids.
//!
//! Code objects and classes are interned on first sight (strings copied while the GIL is held)
//! and watched weakly (`watched`): when one dies its address is forgotten, so that an address
//! reused by another object is never taken for the old one. Nothing here runs user code: names come from code objects,
//! frame globals and type slots, never from `getattr` on user objects.

use crate::python_frame::{self, CallerFrame};
use crate::watched;
use callspan_core::config::Capture;
use callspan_core::edges::{EdgeCounters, ResolvedSite};
use callspan_core::per_thread::{self, PerThread, SiteEntry};
use callspan_core::record::{CallerSite, ClassId, CodeId, FunctionId};
use callspan_core::registry::{intern, CodeInfo, Registry};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};

// The caches are direct-mapped and per thread (`PerThread::sites`, `PerThread::classes`). Keys
// are addresses of live code objects and classes; the caches are emptied when the
// [`watched::epoch`] they were filled in has passed (a watched object died, so an address may
// have come to mean another object: `fresh_caches`); a collision merely evicts. `(code, lasti)
// → line` is a pure function, which is what makes caching the line number exact (decoding the
// line table is the dearest step otherwise).
const SITE_SLOTS: usize = callspan_core::per_thread::SITE_SLOTS;
const CLASS_SLOTS: usize = callspan_core::per_thread::CLASS_SLOTS;

/// Empties this thread's caches if an address they hold may mean another object now.
#[inline]
fn fresh_caches(local: &PerThread) {
    let epoch = watched::epoch();
    if local.cache_epoch.get() != epoch {
        empty_caches(local, epoch);
    }
}

#[cold]
fn empty_caches(local: &PerThread, epoch: u32) {
    for slot in &local.sites {
        slot.set(SiteEntry::EMPTY);
    }
    for slot in &local.classes {
        slot.set((0, 0));
    }
    local.edges.forget_sites();
    local.cache_epoch.set(epoch);
}

#[inline]
fn site_slot(code: usize, lasti: i32) -> usize {
    let h = (code >> 4) ^ (lasti as usize).wrapping_mul(0x9E37_79B9);
    h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SITE_SLOTS.trailing_zeros())
}

#[inline]
fn class_slot(tp: usize) -> usize {
    (tp >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - CLASS_SLOTS.trailing_zeros())
}

/// The `CALLSPAN_CAPTURE` bits a call's site is read from its caller's frame for: with all of
/// them left out, a call has no site.
pub(crate) const FRAME_BITS: u8 =
    Capture::FUNCTION | Capture::FILE | Capture::LINE | Capture::CLASS;

/// Set at import when the frame layout check failed: caller attributes are then left out
/// rather than read from memory whose layout is not the one this build expects.
static FRAME_READING_DISABLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Checks (once, at import) that this build's view of interpreter frames matches the running
/// interpreter; on a mismatch caller attributes are disabled and the reason logged.
pub(crate) fn check_frame_layout(py: Python<'_>) {
    if let Err(why) = python_frame::verify_layout(py) {
        FRAME_READING_DISABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            "caller attributes are disabled: interpreter frame layout check failed: {why}"
        );
    }
}

/// Whether the interpreter's layout passed the check at import (what is read in place through
/// `python_frame`'s layouts may be trusted): the 3.9–3.11 profile hook reads every frame it is
/// handed that way.
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
pub(crate) fn frame_layout_verified() -> bool {
    !FRAME_READING_DISABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The class of the exception being raised now (0: none), for counting failed calls by
/// `error.type`. Reads the type slot only: no user code runs.
#[cold]
pub(crate) fn raised_class(py: Python<'_>) -> ClassId {
    // SAFETY: GIL held; PyErr_Occurred returns a borrowed type (or NULL).
    let tp = unsafe { ffi::PyErr_Occurred() };
    if tp.is_null() {
        return 0;
    }
    // SAFETY: a live exception type, GIL held.
    unsafe { class_of_type(py, tp.cast(), callspan_core::registry::global()) }
}

/// Where a call made from `frame` came from: the frame's code, its current line, and the class
/// of its `self`/`cls` when `with_class`. All zeros when frame reading is disabled. `local` is
/// this thread's state (its caches).
#[inline]
pub(crate) fn site_of(
    py: Python<'_>,
    frame: &CallerFrame<'_>,
    registry: &Registry,
    local: &PerThread,
    with_class: bool,
) -> CallerSite {
    resolve_site(py, frame, registry, local, with_class).site
}

/// [`site_of`], and the class it was read from (see [`ResolvedSite::class_type`]).
#[inline]
fn resolve_site(
    py: Python<'_>,
    frame: &CallerFrame<'_>,
    registry: &Registry,
    local: &PerThread,
    with_class: bool,
) -> ResolvedSite {
    if FRAME_READING_DISABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return ResolvedSite::NONE;
    }
    let entry = site_entry(py, frame, registry, local);
    let (class, class_type) = if entry.has_self && with_class {
        // SAFETY: `has_self` is the cached parameter-name check for this code object.
        let tp = unsafe { first_arg_class(frame) };
        let class = if tp.is_null() {
            0
        } else {
            // SAFETY: `tp` is alive (the argument, or its type).
            unsafe { cached_class_id(py, tp, registry, local) }
        };
        (class, Some(tp as usize))
    } else {
        (0, None)
    };
    ResolvedSite {
        site: CallerSite {
            code: entry.code_id,
            line: entry.line,
            class,
        },
        class_type,
    }
}

/// [`site_of`] for a call of `callee` while calls are counted (`omitted`: the capture bits left
/// out), with this thread's counters of the call's edge: from the per-thread call-site cache
/// keyed by the raw frame (its instruction, [`CallerFrame::instruction`], and the class of
/// `self`/`cls` when the site has one), so that a call from a site seen before reads no line
/// table, no class cache and builds no edge key.
#[inline(always)]
pub(crate) fn counted_site_of<'t>(
    py: Python<'_>,
    frame: CallerFrame<'_>,
    local: &'t PerThread,
    callee: FunctionId,
    omitted: u8,
) -> (CallerSite, EdgeCounters<'t>) {
    fresh_caches(local);
    // The instruction is read even where frame reading is disabled (a layout mismatch): it is
    // never dereferenced, and `resolve_site` then gives the all-zeros site without reading more.
    local.edges.site_edge(
        frame.instruction(),
        callee,
        omitted,
        // SAFETY: asked only for a site whose class was read from its first argument: the
        // same instruction of the same code object (its address is still its own in this cache
        // epoch), so its first parameter is `self` or `cls`.
        // The frame by value (a copy of its pointer), so that it is not kept in memory for
        // the closures to borrow.
        move || unsafe { first_arg_class(&frame) } as usize,
        move || {
            if omitted & FRAME_BITS == FRAME_BITS {
                // As `span::caller_site`: no site at all.
                return ResolvedSite::NONE;
            }
            let with_class = omitted & Capture::CLASS == 0;
            let registry = callspan_core::registry::global();
            resolve_site(py, &frame, registry, local, with_class)
        },
    )
}

/// The class `caller.class.name` names for `frame`'s first argument ([`class_object`]; null:
/// the slot is empty, or unreadable on this build).
///
/// # Safety
/// `frame`'s code has `self` or `cls` as its first parameter; GIL held.
#[inline]
unsafe fn first_arg_class(frame: &CallerFrame<'_>) -> *mut ffi::PyTypeObject {
    // SAFETY: the caller's contract.
    match unsafe { frame.first_arg_slot() } {
        // SAFETY: borrowed from the live frame.
        Some(arg) => unsafe { class_object(arg) },
        None => std::ptr::null_mut(),
    }
}

/// `caller.instance.id`: the address of the `self`/`cls` of `frame` (0: it has none). The
/// object is not touched: its identity is its address, as `id()` says.
pub(crate) fn instance_of(
    py: Python<'_>,
    frame: &CallerFrame<'_>,
    registry: &Registry,
    local: &PerThread,
) -> u64 {
    if FRAME_READING_DISABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return 0;
    }
    if !site_entry(py, frame, registry, local).has_self {
        return 0;
    }
    // SAFETY: `has_self` is the cached parameter-name check for this code object.
    unsafe { frame.first_arg_slot() }.map_or(0, |arg| arg as usize as u64)
}

/// The `depth` frames beyond `frame` (the caller), innermost first, for `code.stacktrace`.
pub(crate) fn outer_stack(
    py: Python<'_>,
    frame: &CallerFrame<'_>,
    registry: &Registry,
    local: &PerThread,
    depth: usize,
) -> Option<Box<[CallerSite]>> {
    if FRAME_READING_DISABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let mut frames = Vec::with_capacity(depth);
    let mut next = frame.back();
    while let Some(f) = next {
        if frames.len() == depth {
            break;
        }
        let entry = site_entry(py, &f, registry, local);
        frames.push(CallerSite {
            code: entry.code_id,
            line: entry.line,
            class: 0,
        });
        next = f.back();
    }
    (!frames.is_empty()).then(|| frames.into_boxed_slice())
}

/// The cached (code id, line, has-self) of `frame`'s current instruction.
#[inline]
fn site_entry(
    py: Python<'_>,
    frame: &CallerFrame<'_>,
    registry: &Registry,
    local: &PerThread,
) -> SiteEntry {
    let code = frame.code() as usize;
    let lasti = frame.lasti();
    fresh_caches(local);
    let slot = &local.sites[site_slot(code, lasti)];
    let entry = slot.get();
    if entry.code == code && entry.lasti == lasti && code != 0 {
        return entry;
    }
    site_entry_missed(py, frame, registry, slot)
}

/// [`site_entry`] past a cache miss: out of line, so that the hit (every call but the first
/// from a call site) pays no register saves for it.
#[cold]
#[inline(never)]
fn site_entry_missed(
    py: Python<'_>,
    frame: &CallerFrame<'_>,
    registry: &Registry,
    slot: &std::cell::Cell<SiteEntry>,
) -> SiteEntry {
    let code = frame.code() as usize;
    let lasti = frame.lasti();
    let code_id = match registry.code_id(code) {
        Some(id) => id,
        None => register_code(py, frame, registry),
    };
    // SAFETY: the frame's code object is alive.
    let has_self = unsafe { python_frame::code_first_param_is_self_or_cls(py, frame.code()) };
    let line = u32::try_from(frame.line_number()).unwrap_or(0);
    let fresh = SiteEntry {
        code,
        lasti,
        code_id,
        line,
        has_self,
    };
    slot.set(fresh);
    fresh
}

/// The cached (code id, line) of byte offset `lasti` in `code`, for a frame met elsewhere than
/// as a caller (a traceback entry): the same cache as callers' sites, since `(code, lasti) →
/// line` does not depend on how the frame was found. On a miss `register` gives the code id
/// (registering the code object, which keeps its address its own) and `line` the line; a code
/// id of 0 (no code object) is not cached.
///
/// # Safety
/// `code` is a live code object; GIL held.
#[inline]
pub(crate) unsafe fn code_site(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
    lasti: i32,
    register: impl FnOnce() -> CodeId,
    line: impl FnOnce() -> u32,
) -> (CodeId, u32) {
    let key = code as usize;
    // SAFETY: used on this thread, within this call only.
    let local = unsafe { per_thread::current() };
    let slot = local.map(|local| {
        fresh_caches(local);
        &local.sites[site_slot(key, lasti)]
    });
    let entry = slot.map_or(SiteEntry::EMPTY, std::cell::Cell::get);
    if entry.code == key && entry.lasti == lasti && key != 0 {
        return (entry.code_id, entry.line);
    }
    let code_id = register();
    let line = line();
    if code_id != 0 {
        let fresh = SiteEntry {
            code: key,
            lasti,
            code_id,
            line,
            // SAFETY: a live code object (the caller's contract).
            has_self: unsafe { python_frame::code_first_param_is_self_or_cls(py, code) },
        };
        if let Some(slot) = slot {
            slot.set(fresh);
        }
    }
    (code_id, line)
}

#[cold]
fn register_code(py: Python<'_>, frame: &CallerFrame, registry: &Registry) -> CodeId {
    let code_ptr = frame.code();
    // SAFETY: the frame's code object is alive; we take our own strong reference below.
    let code = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code_ptr.cast()) };
    let qualname = frame.code_qualname();
    // Globals without `__name__` (code run by `exec`): the bare qualified name, as the callee
    // side names a function whose `__module__` is None.
    let function_name = match frame.module_name() {
        Some(module) => format!("{module}.{qualname}"),
        None => qualname,
    };
    // SAFETY: the frame's code object is alive.
    let file = unsafe { python_frame::code_filename(py, code_ptr) };
    let info = CodeInfo {
        function_name: intern(&function_name),
        file: intern(&file),
    };
    register_code_object(code, info, registry)
}

/// Interns `code` under its address with `info`, watching it so that the address is forgotten
/// when it dies. Returns the existing id if it was interned before.
pub(crate) fn register_code_object(
    code: Bound<'_, PyAny>,
    info: CodeInfo,
    registry: &Registry,
) -> CodeId {
    let key = code.as_ptr() as usize;
    if let Some(id) = registry.code_id(key) {
        return id;
    }
    let id = registry.add_code(key, info);
    watched::watch(&code);
    id
}

/// The class recorded as `caller.class.name` for a first argument `arg`: a `cls` argument is
/// the class itself (or, rarely, a metaclass method's `self`, reported as the class rather
/// than its metaclass); `self` contributes its type.
///
/// # Safety
/// `arg` must be a valid borrowed object pointer; GIL held.
#[inline]
unsafe fn class_object(arg: *mut ffi::PyObject) -> *mut ffi::PyTypeObject {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if ffi::PyType_Check(arg) != 0 {
            arg.cast()
        } else {
            ffi::Py_TYPE(arg)
        }
    }
}

/// The registry id of class `tp`, registered on first sight (cached per thread).
///
/// # Safety
/// `tp` must be a live type object; GIL held.
#[inline]
pub(crate) unsafe fn class_of_type(
    py: Python<'_>,
    tp: *mut ffi::PyTypeObject,
    registry: &Registry,
) -> ClassId {
    // SAFETY: the caller's contract.
    per_thread::with(|local| unsafe { cached_class_id(py, tp, registry, local) }).unwrap_or_else(
        || {
            let key = tp as usize;
            registry
                .class_id(key)
                .unwrap_or_else(|| register_class(py, tp, registry))
        },
    )
}

/// [`class_of_type`] with this thread's state at hand.
///
/// # Safety
/// As for [`class_of_type`].
#[inline]
unsafe fn cached_class_id(
    py: Python<'_>,
    tp: *mut ffi::PyTypeObject,
    registry: &Registry,
    local: &PerThread,
) -> ClassId {
    let key = tp as usize;
    fresh_caches(local);
    let slot = &local.classes[class_slot(key)];
    let (cached_key, cached_id) = slot.get();
    if cached_key == key {
        return cached_id;
    }
    let id = match registry.class_id(key) {
        Some(id) => id,
        None => register_class(py, tp, registry),
    };
    slot.set((key, id));
    id
}

#[cold]
fn register_class(py: Python<'_>, tp: *mut ffi::PyTypeObject, registry: &Registry) -> ClassId {
    let key = tp as usize;
    // SAFETY: `tp` is alive (the argument or the argument's type holds it).
    let ty = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, tp.cast()) };
    let ty = ty.cast_into::<PyType>().expect("a type object");
    let name = class_name(&ty);
    let id = registry.add_class(key, intern(&name));
    // Its address is the registry key until it dies.
    watched::watch(ty.as_any());
    id
}

/// `module.Qualname` of a class, read from type slots and the type's own `__dict__` so that a
/// metaclass property can never run. Builtins keep their bare name (`int`, `ValueError`).
pub(crate) fn class_name(ty: &Bound<'_, PyType>) -> String {
    let py = ty.py();
    let tp = ty.as_type_ptr();
    // SAFETY: GIL held; `tp` is a live type object.
    let is_heap = unsafe { ffi::PyType_HasFeature(tp, ffi::Py_TPFLAGS_HEAPTYPE) != 0 };
    // SAFETY: tp_name is a NUL-terminated C string for every type.
    let tp_name = unsafe { std::ffi::CStr::from_ptr((*tp).tp_name) }
        .to_string_lossy()
        .into_owned();
    if !is_heap {
        // Static types name themselves `module.Name` in tp_name, or just `Name` for builtins.
        return tp_name;
    }
    let qualname = heap_type_qualname(py, tp).unwrap_or_else(|| tp_name.clone());
    // SAFETY: heap types always have a tp_dict.
    let dict = unsafe { (*tp).tp_dict };
    let module = if dict.is_null() {
        None
    } else {
        // SAFETY: tp_dict is a dict owned by the type.
        let dict = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, dict) };
        dict.cast::<PyDict>()
            .ok()
            .and_then(|d| d.get_item("__module__").ok().flatten())
            .and_then(|m| m.cast::<PyString>().ok().map(|s| s.to_string()))
    };
    match module {
        Some(m) if m != "builtins" => format!("{m}.{qualname}"),
        _ => qualname,
    }
}

fn heap_type_qualname(py: Python<'_>, tp: *mut ffi::PyTypeObject) -> Option<String> {
    // SAFETY: heap types are PyHeapTypeObject; ht_qualname is a str they own.
    unsafe {
        let qualname = (*tp.cast::<ffi::PyHeapTypeObject>()).ht_qualname;
        if qualname.is_null() {
            return None;
        }
        Bound::<PyAny>::from_borrowed_ptr(py, qualname)
            .extract::<String>()
            .ok()
    }
}
