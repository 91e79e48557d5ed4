//! Reading the *caller's* Python frame from C level, cheaply and without running user code.
//!
//! callspan's traced callable is a C-level callable: when its Rust code runs, the thread's
//! innermost Python frame is the frame that called the traced function. Each sampled call needs
//! that frame's code object, the offset of the call instruction (→ line), the first argument when
//! it is `self`/`cls` (→ caller class) and the module name. [`CallerFrame`] hands these out; how it
//! gets them is one of two *routes*, chosen at build time by `build.rs`:
//!
//! * the **direct route** (`cfg(callspan_frame_direct)`: GIL-enabled, version-specific CPython
//!   3.9–3.13) reads the interpreter's own structs, because the public C API allocates a frame
//!   object per call on 3.11+ (`direct` says why that matters and which struct each version
//!   uses);
//! * the **public-API route** (`public_api`: any other CPython build, or
//!   `CALLSPAN_FRAME_PUBLIC_API=1` on 3.11–3.13) uses only documented functions: exact, slower.
//!
//! The direct route is split by concern:
//!
//! | module | job |
//! |---|---|
//! | `layout` | `#[repr(C)]` mirrors of the CPython structs, per version, with compile-time offset checks |
//! | `direct` | reading frame and code fields through those layouts |
//! | `quirks` | what the versions *mean* differently: incomplete and shim frames, `lasti` units, arguments moved into cells |
//! | `qualname_search` | the one large quirk: 3.9/3.10 code objects have no `co_qualname` |
//! | `evaluated` | 3.9–3.11: the frame a PEP 523 frame-evaluation function (the profile hook) is given, before and after it runs |
//! | `verify` | the start-up check that the layouts match the running interpreter |
//!
//! # What happens when the layouts do not match
//!
//! A build only takes the direct route for interpreter versions whose layouts are declared here,
//! and the offsets are asserted at compile time; but a mismatch could still come from a patched
//! or differently configured interpreter with the same version number. So [`verify_layout`] runs
//! once at module import (`caller::check_frame_layout`) and compares every field the direct route
//! reads with what the public API reports for the same frame. On a mismatch the binding logs one
//! warning naming the field and leaves caller attributes out of every span (the call itself is
//! still traced); it never reads memory whose layout it has not confirmed. Rebuilding with
//! `CALLSPAN_FRAME_PUBLIC_API=1` (3.11–3.13) switches such an interpreter to the public-API route.
//!
//! # Invariants
//!
//! * The GIL is held (a [`Python`] token is required) and every pointer handed out is *borrowed*:
//!   valid while the traced call is in progress and no Python code has run since (anything that
//!   runs Python code may pop, resume or rebind frames and locals). Incref what you keep.
//! * Only complete Python frames are handed out (`quirks` skips C-owned and half-initialised
//!   frames exactly as `PyEval_GetFrame`/`PyFrame_GetBack` do). Consequently every `MAKE_CELL` of
//!   a handed-out frame has run, so a cell-kind argument slot holds a cell (what makes
//!   [`CallerFrame::first_arg_slot`] exact and O(1)).
//! * Nothing here runs user code: no `f_locals`, no `repr`/`getattr` on user objects, no audit
//!   hooks (`frame.f_code` would fire `object.__getattr__`). Dict lookups are `PyDict_*` on the
//!   frame's globals with an interned exact `str` key; the only way for such a lookup to call
//!   Python is a key object of another type whose `__hash__` equals `hash("__name__")`.
//!   Allocation (string conversion) may trigger the cyclic GC, which may run finalizers: the
//!   qualname search holds strong references to everything it walks for that reason.

#[cfg(any(Py_LIMITED_API, PyPy, GraalPy, RustPython))]
compile_error!(
    "python_frame reads CPython frames through the version-specific C API: \
     build callspan per interpreter (not abi3), for CPython"
);

#[cfg(callspan_frame_direct)]
mod direct;
#[cfg(all(callspan_frame_direct, not(Py_3_12)))]
mod evaluated;
#[cfg(callspan_frame_direct)]
mod layout;
#[cfg(not(callspan_frame_direct))]
mod public_api;
#[cfg(all(callspan_frame_direct, not(Py_3_11)))]
mod qualname_search;
#[cfg(callspan_frame_direct)]
mod quirks;
#[cfg(callspan_frame_direct)]
mod verify;

// The route: both modules provide the same functions over their own `RawFrame`.
#[cfg(callspan_frame_direct)]
use direct as route;
#[cfg(not(callspan_frame_direct))]
use public_api as route;

#[cfg(all(callspan_frame_direct, not(Py_3_12)))]
pub(crate) use evaluated::EvalFrame;

use std::fmt;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The frame that called the traced function (borrowed; valid only while the GIL is held and the
/// call is in progress).
#[derive(Clone, Copy)]
pub(crate) struct CallerFrame<'py> {
    raw: route::RawFrame,
    py: Python<'py>,
}

impl fmt::Debug for CallerFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pointers only: formatting must not touch Python objects.
        f.debug_struct("CallerFrame")
            .field("frame", &self.raw)
            .field("code", &self.code())
            .field("lasti", &self.lasti())
            .finish()
    }
}

/// The currently executing Python frame of this thread (the caller of our C-level callable), or
/// `None` (e.g. called from C with no Python frame).
///
/// # Safety
/// The returned frame borrows interpreter state: use it only during the current call and before
/// any Python code runs (see the module docs).
#[inline]
pub(crate) unsafe fn caller_frame(py: Python<'_>) -> Option<CallerFrame<'_>> {
    // SAFETY: the GIL is held (we have `py`), so the thread state and its frame chain are stable.
    unsafe { route::current(py) }.map(|raw| CallerFrame { raw, py })
}

/// The frame that called the function starting now, for a `sys.monitoring` `PY_START` callback of
/// `code` (3.12+): the event runs in the callee's frame, so the caller is the next complete frame
/// below it (if the frame running now is not `code`'s, it is the caller itself).
///
/// # Safety
/// Called from a `PY_START` callback, with the GIL held.
#[cfg(Py_3_12)]
#[inline]
pub(crate) unsafe fn caller_of_starting(
    py: Python<'_>,
    code: *mut ffi::PyObject,
) -> Option<CallerFrame<'_>> {
    // The direct route reads the top frame, complete or not, and skips the callee's own
    // completeness test.
    #[cfg(callspan_frame_direct)]
    // SAFETY: the caller's contract.
    if let Some(caller) = unsafe { direct::caller_below_top(code) } {
        return caller.map(|raw| CallerFrame { raw, py });
    }
    // SAFETY: the caller's contract.
    unsafe { caller_by_code(py, code) }
}

/// [`caller_of_starting`] through [`caller_frame`]: the current frame's caller if it is `code`'s,
/// else the current frame (on the direct route only when the top frame is not `code`'s, which
/// CPython's events do not do: out of line there).
///
/// # Safety
/// As [`caller_of_starting`].
#[cfg(Py_3_12)]
#[cfg_attr(callspan_frame_direct, cold, inline(never))]
unsafe fn caller_by_code(py: Python<'_>, code: *mut ffi::PyObject) -> Option<CallerFrame<'_>> {
    // SAFETY: the caller's contract.
    let frame = unsafe { caller_frame(py) }?;
    if frame.code().cast::<ffi::PyObject>() == code {
        frame.back()
    } else {
        Some(frame)
    }
}

impl<'py> CallerFrame<'py> {
    /// Wraps a live `PyFrameObject` (e.g. one from `PyEval_GetFrame`, or its `f_back`).
    /// [`verify_layout`] checks that this gives the same frame as [`caller_frame`].
    ///
    /// # Safety
    /// `frame` must be null or a frame object whose frame is still executing (or suspended in a
    /// generator).
    #[cfg_attr(
        not(callspan_frame_direct),
        expect(dead_code, reason = "only the direct route's layout check calls it")
    )]
    pub(crate) unsafe fn from_frame_object(
        py: Python<'py>,
        frame: *mut ffi::PyFrameObject,
    ) -> Option<CallerFrame<'py>> {
        // SAFETY: forwarded contract.
        unsafe { route::from_frame_object(frame) }.map(|raw| CallerFrame { raw, py })
    }

    /// The frame's code object, borrowed.
    #[inline]
    pub(crate) fn code(&self) -> *mut ffi::PyCodeObject {
        // SAFETY: `raw` is a complete frame of the live chain (type invariant).
        unsafe { route::code(self.raw) }
    }

    /// Byte offset of the instruction currently executing in this frame — for the caller frame, the
    /// call instruction (for outer frames: the call in progress, possibly one of its inline cache
    /// entries on 3.11+, which map to the same line). Equal to Python's `frame.f_lasti`. With the
    /// code object it is a cache key for the line number: the same code + offset always gives the
    /// same line. `-1` if the frame has not started (never the case for a frame handed out here).
    #[inline]
    pub(crate) fn lasti(&self) -> i32 {
        // SAFETY: as in `code`.
        unsafe { route::lasti(self.raw) }
    }

    /// The executing instruction as a cache key, cheaper to read than [`Self::code`] and
    /// [`Self::lasti`]: two frames give equal keys exactly when both are at the same offset of
    /// the same code object, as long as that code object lives (on 3.11+ the instruction's
    /// address, inside the code object; elsewhere the code object's address and the offset).
    /// A cache keyed by it is emptied when a code object it knows dies, as one keyed by code
    /// address is.
    #[inline]
    pub(crate) fn instruction(&self) -> (usize, i32) {
        // SAFETY: as in `code`.
        unsafe { route::instruction(self.raw) }
    }

    /// The line number of [`Self::lasti`] (`PyCode_Addr2Line`: decodes the line table, so callers
    /// cache it by `(code, lasti)`). Ignores a trace function's `f_lineno` override (3.9/3.10), which
    /// keeps the `(code, lasti) → line` mapping pure. `-1` if the instruction has no line.
    pub(crate) fn line_number(&self) -> i32 {
        // SAFETY: a live code object and an offset inside it.
        unsafe { ffi::PyCode_Addr2Line(self.code(), self.lasti()) }
    }

    /// The value of the frame's first positional argument, borrowed, for a code object whose first
    /// parameter is `self` or `cls` (callers cache [`code_first_param_is_self_or_cls`] per code
    /// object, so it is not checked again here).
    ///
    /// Reads the argument's fast-local slot, following it into its cell when a closure captured the
    /// argument (see `quirks`). It is what the slot holds *now*: if the function rebound `self`
    /// before the call, that new value is returned; `None` if it was deleted (`del self`), and on
    /// 3.11 built for the public-API route (no public API reads a local there). Never runs user
    /// code.
    ///
    /// # Safety
    /// The frame's code must have `self` or `cls` as its first positional parameter.
    #[inline]
    pub(crate) unsafe fn first_arg_slot(&self) -> Option<*mut ffi::PyObject> {
        // SAFETY: guaranteed by the caller; the frame is live (see `code`).
        unsafe { route::first_arg_slot(self.py, self.raw) }
    }

    /// The calling frame of this frame (next complete Python frame outwards), if any.
    #[inline]
    pub(crate) fn back(&self) -> Option<CallerFrame<'py>> {
        // SAFETY: as in `code`.
        unsafe { route::back(self.raw) }.map(|raw| CallerFrame { raw, py: self.py })
    }

    /// The frame's globals dict, borrowed (null only for exotic frames).
    #[inline]
    fn globals(&self) -> *mut ffi::PyObject {
        // SAFETY: as in `code`.
        unsafe { route::globals(self.raw) }
    }

    /// `__name__` from the frame's globals (plain dict lookup), copied into a `String`.
    pub(crate) fn module_name(&self) -> Option<String> {
        let key = pyo3::intern!(self.py, "__name__");
        // SAFETY: `globals()` is null or the frame's live globals.
        let name = unsafe { dict_get_item(self.globals(), key) }?;
        // SAFETY: `name` is live, held by the globals dict. A non-`str` `__name__` counts as none.
        let is_str = unsafe { ffi::PyUnicode_Check(name) } != 0;
        // SAFETY: as above.
        is_str.then(|| unsafe { str_lossy(self.py, name) })
    }

    /// The qualified name of this frame's code object: `co_qualname` on 3.11+; on 3.9/3.10 derived
    /// from the objects reachable from the frame's globals (`qualname_search`; slow, never runs
    /// user code): call once per code object and cache.
    pub(crate) fn code_qualname(&self) -> String {
        // SAFETY: the frame's code and globals are live.
        unsafe { route::code_qualname(self.py, self.code(), self.globals()) }
    }
}

/// A code object's extra slot `index` through the public C API (`PyUnstable_Code_GetExtra`), on
/// either route: for a slot that may not be set yet, or one [`code_extra`] was not checked for.
///
/// # Safety
/// GIL held; `code` is a live code object.
pub(crate) unsafe fn code_extra_public(
    code: *mut ffi::PyObject,
    index: isize,
) -> *mut std::ffi::c_void {
    let mut extra = std::ptr::null_mut();
    // SAFETY: GIL held; `code` is live. A failure (not a code object) sets an error, cleared.
    unsafe {
        if ffi::PyUnstable_Code_GetExtra(code, index as ffi::Py_ssize_t, &mut extra) != 0 {
            ffi::PyErr_Clear();
            return std::ptr::null_mut();
        }
    }
    extra
}

/// The code object's `co_filename`.
///
/// # Safety
/// `code` must be a live code object.
pub(crate) unsafe fn code_filename(py: Python<'_>, code: *mut ffi::PyCodeObject) -> String {
    // SAFETY: forwarded contract.
    unsafe { route::code_filename(py, code) }
}

/// Extra slot `index` of a code object: what `PyUnstable_Code_GetExtra` returns (null when the
/// slot is unset), read directly on the direct route ([`verify_code_extra`] checks that once).
///
/// # Safety
/// `code` is a live code object; `index` was requested (`PyUnstable_Eval_RequestCodeExtraIndex`).
#[inline(always)]
pub(crate) unsafe fn code_extra(
    code: *mut ffi::PyObject,
    index: ffi::Py_ssize_t,
) -> *mut std::ffi::c_void {
    // SAFETY: forwarded contract.
    unsafe { route::code_extra(code, index) }
}

/// Checks that [`code_extra`] reads extra slot `index` as `PyUnstable_Code_GetExtra` does, on a
/// code object of its own that carries `probe` in that slot (`free` is the index's free
/// function, which gets `probe` back when the code object dies). `Err` describes a mismatch.
///
/// # Safety
/// GIL held; `index` was requested with `free`, and `probe` is something `free` accepts.
pub(crate) unsafe fn verify_code_extra(
    index: ffi::Py_ssize_t,
    probe: *mut std::ffi::c_void,
    free: unsafe extern "C" fn(*mut std::ffi::c_void),
) -> Result<(), String> {
    // SAFETY: GIL held; a new code object, released below (its extra goes to `free`).
    unsafe {
        let code = ffi::PyCode_NewEmpty(c"<callspan>".as_ptr(), c"<probe>".as_ptr(), 1);
        if code.is_null() {
            ffi::PyErr_Clear();
            free(probe);
            return Err("no code object to check the extra slot on".to_owned());
        }
        let code = code.cast::<ffi::PyObject>();
        let result = if ffi::PyUnstable_Code_SetExtra(code, index, probe) != 0 {
            ffi::PyErr_Clear();
            free(probe);
            Err("the extra slot could not be set".to_owned())
        } else {
            let mut public = std::ptr::null_mut();
            let got = ffi::PyUnstable_Code_GetExtra(code, index, &mut public);
            let direct = code_extra(code, index);
            if got == 0 && public == probe && direct == probe {
                Ok(())
            } else {
                ffi::PyErr_Clear();
                Err(format!(
                    "code object extra slot {index}: read {direct:p} directly, \
                     PyUnstable_Code_GetExtra gives {public:p}"
                ))
            }
        };
        ffi::Py_DECREF(code);
        result
    }
}

/// The variables of this thread's current `contextvars` context, borrowed (null: the thread has
/// no context yet, and every variable has its default). The mapping is immutable (setting a
/// variable makes a new one, which the context then holds), so while it is kept alive, finding
/// the same address again means every variable still has the same value: a cache key for a
/// variable's value that costs two loads, where `PyContextVar_Get` walks the mapping whenever the
/// variable is not set in it (CPython caches hits only).
///
/// # Safety
/// GIL held, and [`verify_context_vars`] returned `Ok` in this process.
#[cfg(callspan_frame_direct)]
#[inline(always)]
pub(crate) unsafe fn context_vars() -> *mut ffi::PyObject {
    // SAFETY: the caller's contract.
    unsafe { direct::context_vars() }
}

/// [`context_vars`] where it cannot be read (the public-API route): never called, since
/// [`verify_context_vars`] fails there.
///
/// # Safety
/// As the direct route's.
#[cfg(not(callspan_frame_direct))]
#[inline(always)]
pub(crate) unsafe fn context_vars() -> *mut ffi::PyObject {
    unreachable!("context variables are read directly only where verify_context_vars succeeded")
}

/// Checks, on the calling thread, that [`context_vars`] reads what the public C API says is the
/// current context's mapping (`verify` says how); `Err` says why it must not be used (always on
/// the public-API route, which has no such read).
pub(crate) fn verify_context_vars(py: Python<'_>) -> Result<(), String> {
    #[cfg(callspan_frame_direct)]
    return verify::verify_context_vars(py);
    #[cfg(not(callspan_frame_direct))]
    {
        let _ = py;
        Err("the public-API route reads no thread-state field".to_owned())
    }
}

/// Whether the code's first positional parameter exists and is named `self` or `cls`. Cheap (a
/// pointer comparison against the interned names, a short string comparison otherwise); callers
/// may still cache it per code object.
///
/// # Safety
/// `code` must be a live code object.
#[inline]
pub(crate) unsafe fn code_first_param_is_self_or_cls(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
) -> bool {
    // SAFETY: forwarded contract.
    let Some(name) = (unsafe { route::first_param_name(py, code) }) else {
        return false;
    };
    let self_ = pyo3::intern!(py, "self").as_ptr();
    let cls = pyo3::intern!(py, "cls").as_ptr();
    if name == self_ || name == cls {
        return true;
    }
    // Parameter names are interned by the code constructor on every supported version, so this is
    // normally a mismatch being confirmed; it keeps the check exact for any un-interned name.
    // SAFETY: `name` is a live object from the code's names tuple.
    unsafe {
        ffi::PyUnicode_Check(name) != 0
            && (ffi::PyUnicode_CompareWithASCIIString(name, c"self".as_ptr()) == 0
                || ffi::PyUnicode_CompareWithASCIIString(name, c"cls".as_ptr()) == 0)
    }
}

/// Checks, on the frame that calls it (module init), that the direct route agrees with the public
/// C API and with the code objects' own attributes (`verify` lists what is compared). `Err`
/// describes the first mismatch; then the direct route must not be used. Always `Ok` on the
/// public-API route, which reads nothing through a layout of its own.
pub(crate) fn verify_layout(py: Python<'_>) -> Result<(), String> {
    #[cfg(callspan_frame_direct)]
    return verify::verify_layout(py);
    #[cfg(not(callspan_frame_direct))]
    {
        let _ = py;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the routes
// ---------------------------------------------------------------------------------------------

/// The text of a `str` object (lossy for lone surrogates; empty for null or a non-`str`). No user
/// code: reads the string's data.
///
/// # Safety
/// `obj` must be null or a live object.
unsafe fn str_lossy(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    // SAFETY: caller passes null or a live object.
    let Some(bound) = (unsafe { Bound::from_borrowed_ptr_or_opt(py, obj) }) else {
        return String::new();
    };
    match bound.cast_into::<PyString>() {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::new(),
    }
}

/// `dict[key]` for an exact-`str` key, borrowed (any value type), if `dict` is a dict holding it.
///
/// # Safety
/// `dict` must be null or a live object; the GIL is held (`key` proves it).
unsafe fn dict_get_item(
    dict: *mut ffi::PyObject,
    key: &Bound<'_, PyString>,
) -> Option<*mut ffi::PyObject> {
    // SAFETY: `dict` is null or live and checked to be a dict before the lookup; an exact-`str`
    // key hashes and compares without Python code; a failed lookup's error is cleared.
    unsafe {
        if dict.is_null() || ffi::PyDict_Check(dict) == 0 {
            return None;
        }
        let value = ffi::PyDict_GetItemWithError(dict, key.as_ptr());
        if value.is_null() && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
        }
        (!value.is_null()).then_some(value)
    }
}
