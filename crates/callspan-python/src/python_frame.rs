//! Reading the *caller's* Python frame from C level, cheaply and without running user code.
//!
//! # Why this module reads interpreter internals
//!
//! callspan's traced callable is a `#[pyclass]` with `__call__`: when its Rust code runs, the
//! thread's innermost Python frame is the frame that called the traced function. Each sampled call
//! needs that frame's code object, the offset of the call instruction (→ line), the first argument
//! when it is `self`/`cls` (→ caller class) and the module name. The public C API for this costs
//! more than the rest of the hot path on 3.11+:
//!
//! * `PyEval_GetFrame()` / `PyThreadState_GetFrame()` return a `PyFrameObject`. Since 3.11 frames
//!   live in `_PyInterpreterFrame` structs on a per-thread data stack and the `PyFrameObject` is
//!   created lazily (`_PyFrame_GetFrameObject` → `_PyFrame_MakeAndSetFrameObject`: a GC-tracked
//!   allocation that stays attached to the frame and is freed, or takes over the frame's data, when
//!   the frame exits). A caller frame that is new on each call (the common case: the caller is a
//!   function called in a loop) pays that allocation on every sampled call.
//! * `PyFrame_GetVar()` (3.12+) reads the fast locals directly (no `f_locals` dict) but needs that
//!   frame object, searches the names linearly with string comparison, and for a cell variable scans
//!   the bytecode (`_PyFrame_OpAlreadyRan`) to know whether `MAKE_CELL` already ran. 3.11 has no
//!   `PyFrame_GetVar` at all, only `f_locals` materialisation, which is forbidden here.
//!
//! So on the versions whose layouts are declared and checked below, the module reads the frame
//! directly ("direct route", `cfg(callspan_frame_direct)`, set by `build.rs`):
//!
//! | version | current frame | frame struct | lasti (bytes) |
//! |---|---|---|---|
//! | 3.9, 3.10 | `PyEval_GetFrame()` (borrowed `tstate->frame`, never allocates) | `PyFrameObject` (public `cpython/frameobject.h`) | `f_lasti` (3.9: bytes; 3.10: code units ×2) |
//! | 3.11 | `tstate->cframe->current_frame` | `_PyInterpreterFrame` (`internal/pycore_frame.h`) | `(prev_instr - _PyCode_CODE(f_code)) * 2` |
//! | 3.12 | `tstate->cframe->current_frame` | `_PyInterpreterFrame`, `f_code` first | same |
//! | 3.13 | `tstate->current_frame` | `_PyInterpreterFrame`, `f_executable` first | `(instr_ptr - _PyCode_CODE(code)) * 2` |
//!
//! `lasti` is the byte offset CPython itself exposes as `frame.f_lasti` and feeds to
//! `PyCode_Addr2Line` for tracebacks; the line number is `PyCode_Addr2Line(code, lasti)` on every
//! version, so `(code, lasti)` → line is a pure function (cacheable).
//!
//! Other CPython builds (≥ 3.14 until its layout is added here, free-threaded, or
//! `CALLSPAN_FRAME_PUBLIC_API=1` at build time on 3.11–3.13) use the public, version-specific C API
//! (`PyEval_GetFrame`, `PyFrame_GetCode`, `PyFrame_GetLasti`, `PyFrame_GetBack`,
//! `PyFrame_GetGlobals`, `PyFrame_GetVar`), which is exact but allocates frame objects as above; on
//! 3.11 built that way [`CallerFrame::first_arg`] returns `None` (no safe public API exists). The
//! fallback was tested on 3.11–3.13 only. abi3 and non-CPython builds are refused at compile time.
//!
//! # Invariants
//!
//! * The GIL is held (a [`Python`] token is required) and every pointer handed out is *borrowed*:
//!   valid while the traced call is in progress and no Python code has run since (anything that
//!   runs Python code may pop, resume or rebind frames and locals). Incref what you keep.
//! * Only complete Python frames are handed out. 3.11+ links C-owned and half-initialised frames
//!   into the same chain; they are skipped exactly as `PyEval_GetFrame`/`PyFrame_GetBack` skip them:
//!   `owner == FRAME_OWNED_BY_CSTACK` (3.12+: the shim "entry frame" each C→Python call pushes), a
//!   non-code `f_executable` (3.13), and `_PyFrame_IsIncomplete` (not a generator and the
//!   instruction pointer is before `_co_firsttraceable`, i.e. the `COPY_FREE_VARS`/`MAKE_CELL`
//!   prologue has not finished). Consequently every `MAKE_CELL` of a handed-out frame has run, so a
//!   cell-kind argument slot holds a cell (what makes [`CallerFrame::first_arg`] exact and O(1)).
//! * Nothing here runs user code: no `f_locals`, no `repr`/`getattr` on user objects, no audit
//!   hooks (`frame.f_code` would fire `object.__getattr__`). Dict lookups are `PyDict_*` on the
//!   frame's globals with an interned exact `str` key; the only way for such a lookup to call
//!   Python is a key object of another type whose `__hash__` equals `hash("__name__")`.
//!   Allocation (string conversion) may trigger the cyclic GC, which may run finalizers: the
//!   qualname search holds strong references to everything it walks for that reason.
//! * The struct layouts were taken from the 3.9.18, 3.10.13, 3.11.7, 3.12.1 and 3.13.0 headers;
//!   CPython keeps these layouts fixed within a minor release. On 64-bit targets their offsets are
//!   asserted at compile time against the values `offsetof` gave on those headers, and
//!   [`verify_layout`] cross-checks them at run time against the public API (call it once at
//!   module init and refuse the direct route if it fails).
#![allow(dead_code)] // parts of the API (back, from_frame_object, verify_layout) serve later features

#[cfg(any(Py_LIMITED_API, PyPy, GraalPy, RustPython))]
compile_error!(
    "python_frame reads CPython frames through the version-specific C API: \
     build callspan per interpreter (not abi3), for CPython"
);

use std::fmt;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The frame that called the traced function (borrowed; valid only while the GIL is held and the
/// call is in progress).
#[derive(Clone, Copy)]
pub(crate) struct CallerFrame<'py> {
    raw: imp::RawFrame,
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
    unsafe { imp::current(py) }.map(|raw| CallerFrame { raw, py })
}

impl<'py> CallerFrame<'py> {
    /// Wraps a live `PyFrameObject` (e.g. the frame handed to a `PyEval_SetProfile` hook).
    ///
    /// # Safety
    /// `frame` must be a frame object whose frame is still executing (or suspended in a generator).
    pub(crate) unsafe fn from_frame_object(
        py: Python<'py>,
        frame: *mut ffi::PyFrameObject,
    ) -> Option<CallerFrame<'py>> {
        // SAFETY: forwarded contract.
        unsafe { imp::from_frame_object(frame) }.map(|raw| CallerFrame { raw, py })
    }

    /// The GIL token this frame is tied to.
    pub(crate) fn py(&self) -> Python<'py> {
        self.py
    }

    /// The frame's code object, borrowed.
    #[inline]
    pub(crate) fn code(&self) -> *mut ffi::PyCodeObject {
        // SAFETY: `raw` is a complete frame of the live chain (type invariant).
        unsafe { imp::code(self.raw) }
    }

    /// Byte offset of the instruction currently executing in this frame — for the caller frame, the
    /// call instruction (for outer frames: the call in progress, possibly one of its inline cache
    /// entries on 3.11+, which map to the same line). Equal to Python's `frame.f_lasti`. With the
    /// code object it is a cache key for the line number: the same code + offset always gives the
    /// same line. `-1` if the frame has not started (never the case for a frame handed out here).
    #[inline]
    pub(crate) fn lasti(&self) -> i32 {
        // SAFETY: as in `code`.
        unsafe { imp::lasti(self.raw) }
    }

    /// The line number of [`Self::lasti`] (`PyCode_Addr2Line`: decodes the line table, so callers
    /// cache it by `(code, lasti)`). Ignores a trace function's `f_lineno` override (3.9/3.10), which
    /// keeps the `(code, lasti) → line` mapping pure. `-1` if the instruction has no line.
    pub(crate) fn line_number(&self) -> i32 {
        // SAFETY: a live code object and an offset inside it.
        unsafe { ffi::PyCode_Addr2Line(self.code(), self.lasti()) }
    }

    /// The value of the frame's first positional argument when the code's first parameter is named
    /// `self` or `cls` (`co_argcount >= 1`), else `None`. Borrowed.
    ///
    /// Reads the argument's fast-local slot, following it into its cell when a closure captured the
    /// argument (3.9/3.10: `co_cell2arg` maps a cell to the argument, whose own slot was cleared;
    /// 3.11+: the slot's `co_localspluskinds` entry has `CO_FAST_CELL` and `MAKE_CELL` replaced the
    /// value by a cell). It is what the slot holds *now*: if the function rebound `self` before the
    /// call, that new value is returned; `None` if it was deleted (`del self`). Never runs user code.
    #[inline]
    pub(crate) fn first_arg(&self) -> Option<*mut ffi::PyObject> {
        // SAFETY: as in `code`; the name check only reads the code's names tuple.
        if !unsafe { code_first_param_is_self_or_cls(self.py, self.code()) } {
            return None;
        }
        // SAFETY: the check above.
        unsafe { self.first_arg_slot() }
    }

    /// [`Self::first_arg`] without the parameter-name check, for callers that cached
    /// [`code_first_param_is_self_or_cls`] per code object.
    ///
    /// # Safety
    /// The frame's code must have `self` or `cls` as its first positional parameter.
    #[inline]
    pub(crate) unsafe fn first_arg_slot(&self) -> Option<*mut ffi::PyObject> {
        // SAFETY: guaranteed by the caller; the frame is live (see `code`).
        unsafe { imp::first_arg_slot(self.py, self.raw) }
    }

    /// The calling frame of this frame (next complete Python frame outwards), if any.
    #[inline]
    pub(crate) fn back(&self) -> Option<CallerFrame<'py>> {
        // SAFETY: as in `code`.
        unsafe { imp::back(self.raw) }.map(|raw| CallerFrame { raw, py: self.py })
    }

    /// The frame's globals dict, borrowed (null only for exotic frames).
    #[inline]
    pub(crate) fn globals(&self) -> *mut ffi::PyObject {
        // SAFETY: as in `code`.
        unsafe { imp::globals(self.raw) }
    }

    /// `__name__` from the frame's globals, borrowed, if it is a `str` (plain dict lookup).
    pub(crate) fn module_name_ptr(&self) -> Option<*mut ffi::PyObject> {
        // SAFETY: `globals()` is null or the frame's live globals.
        unsafe { dict_get_str_item(self.py, self.globals(), pyo3::intern!(self.py, "__name__")) }
    }

    /// `__name__` from the frame's globals (plain dict lookup), copied into a `String`.
    pub(crate) fn module_name(&self) -> Option<String> {
        // SAFETY: `module_name_ptr` returns a live `str`.
        self.module_name_ptr()
            .map(|p| unsafe { str_lossy(self.py, p) })
    }

    /// The qualified name of this frame's code object (see [`code_qualname`]).
    pub(crate) fn code_qualname(&self) -> String {
        // SAFETY: the frame's code and globals are live.
        unsafe { code_qualname(self.py, self.code(), self.globals()) }
    }
}

/// The qualified name of a code object: `co_qualname` on 3.11+. On 3.9/3.10 (no `co_qualname`) it
/// is derived from the objects reachable from `globals` (the globals of a frame running `code`;
/// may be null): a function whose `__code__` is `code` and whose `__name__` is still the code's
/// `co_name` (so a `functools.wraps` wrapper, renamed after what it wraps, is not mistaken for it)
/// gives its `__qualname__`; functions are found in `globals`, in the `__dict__` of classes there
/// (nested classes up to three levels; `staticmethod`/`classmethod` wrappers and `property`
/// accessors unwrapped), behind `__wrapped__` and in decorator closures; code objects nested in a
/// found function's `co_consts` (inner functions, lambdas, comprehensions, classes and their
/// methods) get the name the compiler would give them (`outer.<locals>.inner`,
/// `outer.<locals>.C.m`, `f.<locals>.<listcomp>`). Falls back to `co_name`. Slow (walks the
/// module): call once per code object and cache. Never runs user code (dict/tuple/struct access
/// only, type checks without `__instancecheck__`).
///
/// Known 3.9/3.10 gaps, where the fallback or a base name is used: code only reachable through
/// objects of other types (e.g. callspan's own decorator object: register the wrapped function's
/// `__qualname__` for its `__code__` at decoration time instead), a `__qualname__` assigned by
/// hand, and a nested `def` whose name the enclosing function declares `global` (the compiler then
/// drops the `<locals>` prefix).
///
/// # Safety
/// `code` must be a live code object and `globals` null or a live dict.
pub(crate) unsafe fn code_qualname(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
    globals: *mut ffi::PyObject,
) -> String {
    // SAFETY: forwarded contract.
    unsafe { imp::code_qualname(py, code, globals) }
}

/// The code object's `co_name`.
///
/// # Safety
/// `code` must be a live code object.
pub(crate) unsafe fn code_name(py: Python<'_>, code: *mut ffi::PyCodeObject) -> String {
    // SAFETY: forwarded contract.
    unsafe { imp::code_str_field(py, code, imp::CodeStr::Name) }
}

/// The code object's `co_filename`.
///
/// # Safety
/// `code` must be a live code object.
pub(crate) unsafe fn code_filename(py: Python<'_>, code: *mut ffi::PyCodeObject) -> String {
    // SAFETY: forwarded contract.
    unsafe { imp::code_str_field(py, code, imp::CodeStr::Filename) }
}

/// The code object's `co_firstlineno` (the `def` line for a function).
///
/// # Safety
/// `code` must be a live code object.
pub(crate) unsafe fn code_firstlineno(py: Python<'_>, code: *mut ffi::PyCodeObject) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { imp::code_firstlineno(py, code) }
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
    let Some(name) = (unsafe { imp::first_param_name(py, code) }) else {
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

/// Checks, on the frame that calls it (call it from module init), that the direct route agrees
/// with the public C API and with the code objects' own attributes: thread-state and frame
/// offsets, code object field offsets, `lasti`, globals, the back link, and the type sizes CPython
/// reports. `Err` describes the first mismatch; then the direct route must not be used.
pub(crate) fn verify_layout(py: Python<'_>) -> Result<(), String> {
    imp::verify_layout(py)
}

/// Whether this build reads interpreter structs directly (else it uses the public API).
pub(crate) const DIRECT_ROUTE: bool = cfg!(callspan_frame_direct);

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The text of a `str` object (lossy for lone surrogates; empty for null or a non-`str`). No user
/// code: reads the string's data.
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

/// `dict[key]` for an exact-`str` key, borrowed, only if `dict` is a dict and the value is a `str`.
unsafe fn dict_get_str_item(
    _py: Python<'_>,
    dict: *mut ffi::PyObject,
    key: &Bound<'_, PyString>,
) -> Option<*mut ffi::PyObject> {
    // SAFETY: `dict` is null or live; a failed lookup's error is cleared.
    unsafe {
        if dict.is_null() || ffi::PyDict_Check(dict) == 0 {
            return None;
        }
        let value = ffi::PyDict_GetItemWithError(dict, key.as_ptr());
        if value.is_null() {
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
            }
            return None;
        }
        (ffi::PyUnicode_Check(value) != 0).then_some(value)
    }
}

// ---------------------------------------------------------------------------------------------
// Direct route: CPython 3.9–3.13 layouts
// ---------------------------------------------------------------------------------------------

#[cfg(callspan_frame_direct)]
mod layout {
    //! `#[repr(C)]` mirrors of the CPython structs read by the direct route. Each is complete up to
    //! the last field read (later fields are not declared). Field order and types follow the
    //! headers of the named version exactly; the object header is PyO3's `ffi::PyObject` /
    //! `ffi::PyVarObject`, which already follows `Py_TRACE_REFS` builds.
    #![allow(non_snake_case, non_camel_case_types, dead_code)]

    use std::ffi::{c_char, c_int, c_void};

    #[cfg(not(Py_3_11))]
    use pyo3::ffi::Py_ssize_t;
    use pyo3::ffi::{self, PyObject};

    /// `struct _frame` (`Include/cpython/frameobject.h`), 3.9 and 3.10.
    #[cfg(not(Py_3_11))]
    #[repr(C)]
    pub(super) struct Frame {
        pub(super) ob_base: ffi::PyVarObject,
        pub(super) f_back: *mut Frame,
        pub(super) f_code: *mut Code,
        pub(super) f_builtins: *mut PyObject,
        pub(super) f_globals: *mut PyObject,
        pub(super) f_locals: *mut PyObject,
        pub(super) f_valuestack: *mut *mut PyObject,
        #[cfg(not(Py_3_10))]
        pub(super) f_stacktop: *mut *mut PyObject,
        pub(super) f_trace: *mut PyObject,
        #[cfg(Py_3_10)]
        pub(super) f_stackdepth: c_int,
        pub(super) f_trace_lines: c_char,
        pub(super) f_trace_opcodes: c_char,
        pub(super) f_gen: *mut PyObject,
        /// 3.9: byte offset; 3.10: index in code units.
        pub(super) f_lasti: c_int,
        pub(super) f_lineno: c_int,
        pub(super) f_iblock: c_int,
        /// 3.9 `char f_executing`, 3.10 `PyFrameState f_state` (signed char).
        pub(super) f_executing_or_state: c_char,
        pub(super) f_blockstack: [PyTryBlock; 20],
        pub(super) f_localsplus: [*mut PyObject; 1],
    }

    #[cfg(not(Py_3_11))]
    #[repr(C)]
    pub(super) struct PyTryBlock {
        b_type: c_int,
        b_handler: c_int,
        b_level: c_int,
    }

    /// `struct PyCodeObject` (`Include/cpython/code.h`), 3.9 and 3.10 (identical layouts).
    #[cfg(not(Py_3_11))]
    #[repr(C)]
    pub(super) struct Code {
        pub(super) ob_base: PyObject,
        pub(super) co_argcount: c_int,
        pub(super) co_posonlyargcount: c_int,
        pub(super) co_kwonlyargcount: c_int,
        pub(super) co_nlocals: c_int,
        pub(super) co_stacksize: c_int,
        pub(super) co_flags: c_int,
        pub(super) co_firstlineno: c_int,
        pub(super) co_code: *mut PyObject,
        pub(super) co_consts: *mut PyObject,
        pub(super) co_names: *mut PyObject,
        pub(super) co_varnames: *mut PyObject,
        pub(super) co_freevars: *mut PyObject,
        pub(super) co_cellvars: *mut PyObject,
        pub(super) co_cell2arg: *mut Py_ssize_t,
        pub(super) co_filename: *mut PyObject,
        pub(super) co_name: *mut PyObject,
        /// 3.9 `co_lnotab`, 3.10 `co_linetable`.
        pub(super) co_lnotab: *mut PyObject,
        pub(super) co_zombieframe: *mut c_void,
        pub(super) co_weakreflist: *mut PyObject,
        pub(super) co_extra: *mut c_void,
        pub(super) co_opcache_map: *mut u8,
        pub(super) co_opcache: *mut c_void,
        pub(super) co_opcache_flag: c_int,
        pub(super) co_opcache_size: u8,
    }

    /// `struct PyCodeObject` (`_PyCode_DEF` in `Include/cpython/code.h`), 3.11–3.13.
    #[cfg(Py_3_11)]
    #[repr(C)]
    pub(super) struct Code {
        pub(super) ob_base: ffi::PyVarObject,
        pub(super) co_consts: *mut PyObject,
        pub(super) co_names: *mut PyObject,
        pub(super) co_exceptiontable: *mut PyObject,
        pub(super) co_flags: c_int,
        #[cfg(not(Py_3_12))]
        pub(super) co_warmup: i16,
        #[cfg(not(Py_3_12))]
        pub(super) _co_linearray_entry_size: i16,
        pub(super) co_argcount: c_int,
        pub(super) co_posonlyargcount: c_int,
        pub(super) co_kwonlyargcount: c_int,
        pub(super) co_stacksize: c_int,
        pub(super) co_firstlineno: c_int,
        pub(super) co_nlocalsplus: c_int,
        #[cfg(Py_3_12)]
        pub(super) co_framesize: c_int,
        pub(super) co_nlocals: c_int,
        #[cfg(not(Py_3_12))]
        pub(super) co_nplaincellvars: c_int,
        pub(super) co_ncellvars: c_int,
        pub(super) co_nfreevars: c_int,
        #[cfg(Py_3_12)]
        pub(super) co_version: u32,
        pub(super) co_localsplusnames: *mut PyObject,
        pub(super) co_localspluskinds: *mut PyObject,
        pub(super) co_filename: *mut PyObject,
        pub(super) co_name: *mut PyObject,
        pub(super) co_qualname: *mut PyObject,
        pub(super) co_linetable: *mut PyObject,
        pub(super) co_weakreflist: *mut PyObject,
        #[cfg(not(Py_3_12))]
        pub(super) _co_code: *mut PyObject,
        #[cfg(not(Py_3_12))]
        pub(super) _co_linearray: *mut c_char,
        #[cfg(Py_3_13)]
        pub(super) co_executors: *mut c_void,
        #[cfg(Py_3_12)]
        pub(super) _co_cached: *mut c_void,
        #[cfg(all(Py_3_12, not(Py_3_13)))]
        pub(super) _co_instrumentation_version: u64,
        #[cfg(Py_3_13)]
        pub(super) _co_instrumentation_version: usize,
        #[cfg(Py_3_12)]
        pub(super) _co_monitoring: *mut c_void,
        pub(super) _co_firsttraceable: c_int,
        pub(super) co_extra: *mut c_void,
        /// `char co_code_adaptive[]`: the (quickened) bytecode, `_PyCode_CODE(co)`.
        pub(super) co_code_adaptive: [u16; 1],
    }

    /// `_PyInterpreterFrame` (`Include/internal/pycore_frame.h`), 3.11.
    #[cfg(all(Py_3_11, not(Py_3_12)))]
    #[repr(C)]
    pub(super) struct IFrame {
        pub(super) f_func: *mut PyObject,
        pub(super) f_globals: *mut PyObject,
        pub(super) f_builtins: *mut PyObject,
        pub(super) f_locals: *mut PyObject,
        pub(super) f_code: *mut Code,
        pub(super) frame_obj: *mut PyObject,
        pub(super) previous: *mut IFrame,
        /// `prev_instr`: the code unit before the next instruction (the one executing).
        pub(super) instr: *mut u16,
        pub(super) stacktop: c_int,
        pub(super) is_entry: bool,
        pub(super) owner: c_char,
        pub(super) localsplus: [*mut PyObject; 1],
    }

    /// `_PyInterpreterFrame` (`Include/internal/pycore_frame.h`), 3.12 and 3.13.
    #[cfg(Py_3_12)]
    #[repr(C)]
    pub(super) struct IFrame {
        /// 3.12 `PyCodeObject *f_code`; 3.13 `PyObject *f_executable` (a code object, or `None` for
        /// the C-stack entry frame).
        pub(super) executable: *mut PyObject,
        pub(super) previous: *mut IFrame,
        pub(super) f_funcobj: *mut PyObject,
        pub(super) f_globals: *mut PyObject,
        pub(super) f_builtins: *mut PyObject,
        pub(super) f_locals: *mut PyObject,
        pub(super) frame_obj: *mut PyObject,
        /// 3.12 `prev_instr`; 3.13 `instr_ptr` (the instruction executing, or about to begin).
        pub(super) instr: *mut u16,
        pub(super) stacktop: c_int,
        pub(super) return_offset: u16,
        pub(super) owner: c_char,
        pub(super) localsplus: [*mut PyObject; 1],
    }

    /// `enum _frameowner` values.
    #[cfg(Py_3_11)]
    pub(super) const FRAME_OWNED_BY_GENERATOR: c_char = 1;
    #[cfg(Py_3_12)]
    pub(super) const FRAME_OWNED_BY_CSTACK: c_char = 3;

    /// `_PyLocals_Kind` bit (`Include/internal/pycore_code.h`), 3.11+.
    #[cfg(Py_3_11)]
    pub(super) const CO_FAST_CELL: u8 = 0x40;

    /// `struct _frame` (`Include/internal/pycore_frame.h`), 3.11+: the lazily created frame object.
    #[cfg(Py_3_11)]
    #[repr(C)]
    pub(super) struct FrameObject {
        pub(super) ob_base: PyObject,
        pub(super) f_back: *mut PyObject,
        pub(super) f_frame: *mut IFrame,
        pub(super) f_trace: *mut PyObject,
        pub(super) f_lineno: c_int,
        pub(super) f_trace_lines: c_char,
        pub(super) f_trace_opcodes: c_char,
        #[cfg(not(Py_3_13))]
        pub(super) f_fast_as_locals: c_char,
        #[cfg(Py_3_13)]
        pub(super) f_extra_locals: *mut PyObject,
        #[cfg(Py_3_13)]
        pub(super) f_locals_cache: *mut PyObject,
        /// Storage for the interpreter frame once the frame object owns it; `PyFrame_Type`'s
        /// `tp_basicsize` is this offset plus `offsetof(_PyInterpreterFrame, localsplus)`.
        pub(super) _f_frame_data: [*mut PyObject; 1],
    }

    /// `_PyCFrame` (`Include/cpython/pystate.h`), 3.11.
    #[cfg(all(Py_3_11, not(Py_3_12)))]
    #[repr(C)]
    pub(super) struct CFrame {
        pub(super) use_tracing: u8,
        pub(super) current_frame: *mut IFrame,
        pub(super) previous: *mut CFrame,
    }

    /// `_PyCFrame` (`Include/cpython/pystate.h`), 3.12.
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    #[repr(C)]
    pub(super) struct CFrame {
        pub(super) current_frame: *mut IFrame,
        pub(super) previous: *mut CFrame,
    }

    /// Prefix of `struct _ts` (`PyThreadState`, `Include/cpython/pystate.h`), 3.11.
    #[cfg(all(Py_3_11, not(Py_3_12)))]
    #[repr(C)]
    pub(super) struct ThreadState {
        pub(super) prev: *mut c_void,
        pub(super) next: *mut c_void,
        pub(super) interp: *mut ffi::PyInterpreterState,
        pub(super) _initialized: c_int,
        pub(super) _static: c_int,
        pub(super) recursion_remaining: c_int,
        pub(super) recursion_limit: c_int,
        pub(super) recursion_headroom: c_int,
        pub(super) tracing: c_int,
        pub(super) tracing_what: c_int,
        pub(super) cframe: *mut CFrame,
    }

    /// Prefix of `struct _ts` (`PyThreadState`, `Include/cpython/pystate.h`), 3.12.
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    #[repr(C)]
    pub(super) struct ThreadState {
        pub(super) prev: *mut c_void,
        pub(super) next: *mut c_void,
        pub(super) interp: *mut ffi::PyInterpreterState,
        /// `struct { unsigned int initialized:1; … :24; } _status`
        pub(super) _status: u32,
        pub(super) py_recursion_remaining: c_int,
        pub(super) py_recursion_limit: c_int,
        pub(super) c_recursion_remaining: c_int,
        pub(super) recursion_headroom: c_int,
        pub(super) tracing: c_int,
        pub(super) what_event: c_int,
        pub(super) cframe: *mut CFrame,
    }

    /// Prefix of `struct _ts` (`PyThreadState`, `Include/cpython/pystate.h`), 3.13.
    #[cfg(Py_3_13)]
    #[repr(C)]
    pub(super) struct ThreadState {
        pub(super) prev: *mut c_void,
        pub(super) next: *mut c_void,
        pub(super) interp: *mut ffi::PyInterpreterState,
        pub(super) eval_breaker: usize,
        /// `struct { unsigned int initialized:1; … :23; } _status`
        pub(super) _status: u32,
        pub(super) _whence: c_int,
        pub(super) state: c_int,
        pub(super) py_recursion_remaining: c_int,
        pub(super) py_recursion_limit: c_int,
        pub(super) c_recursion_remaining: c_int,
        pub(super) recursion_headroom: c_int,
        pub(super) tracing: c_int,
        pub(super) what_event: c_int,
        pub(super) current_frame: *mut IFrame,
    }

    /// `staticmethod` / `classmethod` objects (`Objects/funcobject.c`): the callable comes first.
    #[repr(C)]
    pub(super) struct MethodWrapper {
        pub(super) ob_base: PyObject,
        pub(super) callable: *mut PyObject,
    }

    /// `property` objects (`Objects/descrobject.c`): getter, setter, deleter come first.
    #[repr(C)]
    pub(super) struct Property {
        pub(super) ob_base: PyObject,
        pub(super) prop_get: *mut PyObject,
        pub(super) prop_set: *mut PyObject,
        pub(super) prop_del: *mut PyObject,
    }

    // Compile-time checks against `offsetof()` on the headers of each version (x86-64/aarch64
    // Linux), written relative to the object header so that `Py_TRACE_REFS` builds also pass.
    #[cfg(target_pointer_width = "64")]
    mod asserts {
        use super::*;
        use std::mem::{offset_of, size_of};

        const OBJ: usize = size_of::<PyObject>();
        const VAR: usize = size_of::<ffi::PyVarObject>();

        macro_rules! at {
            ($ty:ty, $field:ident, $head:expr, $c_offset:expr, $c_head:expr) => {
                const _: () = assert!(
                    offset_of!($ty, $field) - $head == $c_offset - $c_head,
                    concat!(
                        "layout mismatch: ",
                        stringify!($ty),
                        ".",
                        stringify!($field)
                    )
                );
            };
        }

        #[cfg(not(Py_3_11))]
        const _: () = {
            at!(Code, co_argcount, OBJ, 16, 16);
            at!(Code, co_nlocals, OBJ, 28, 16);
            at!(Code, co_flags, OBJ, 36, 16);
            at!(Code, co_firstlineno, OBJ, 40, 16);
            at!(Code, co_consts, OBJ, 56, 16);
            at!(Code, co_varnames, OBJ, 72, 16);
            at!(Code, co_cellvars, OBJ, 88, 16);
            at!(Code, co_cell2arg, OBJ, 96, 16);
            at!(Code, co_filename, OBJ, 104, 16);
            at!(Code, co_name, OBJ, 112, 16);
            assert!(size_of::<Code>() - OBJ == 176 - 16);
            at!(Frame, f_back, VAR, 24, 24);
            at!(Frame, f_code, VAR, 32, 24);
            at!(Frame, f_globals, VAR, 48, 24);
        };
        #[cfg(all(Py_3_9, not(Py_3_10)))]
        const _: () = {
            at!(Frame, f_lasti, VAR, 104, 24);
            at!(Frame, f_localsplus, VAR, 360, 24);
            assert!(size_of::<Frame>() - VAR == 368 - 24);
        };
        #[cfg(all(Py_3_10, not(Py_3_11)))]
        const _: () = {
            at!(Frame, f_lasti, VAR, 96, 24);
            at!(Frame, f_localsplus, VAR, 352, 24);
            assert!(size_of::<Frame>() - VAR == 360 - 24);
        };
        #[cfg(Py_3_11)]
        const _: () = {
            at!(Code, co_consts, VAR, 24, 24);
            at!(Code, co_flags, VAR, 48, 24);
            at!(Code, co_localsplusnames, VAR, 96, 24);
            at!(Code, co_localspluskinds, VAR, 104, 24);
            at!(Code, co_filename, VAR, 112, 24);
            at!(Code, co_name, VAR, 120, 24);
            at!(Code, co_qualname, VAR, 128, 24);
            at!(FrameObject, f_frame, OBJ, 24, 16);
            at!(FrameObject, f_trace, OBJ, 32, 16);
            assert!(offset_of!(IFrame, localsplus) == 72);
            assert!(offset_of!(IFrame, instr) == 56);
        };
        #[cfg(all(Py_3_11, not(Py_3_12)))]
        const _: () = {
            at!(Code, co_argcount, VAR, 56, 24);
            at!(Code, co_firstlineno, VAR, 72, 24);
            at!(Code, co_nlocalsplus, VAR, 76, 24);
            at!(Code, co_nlocals, VAR, 80, 24);
            at!(Code, _co_firsttraceable, VAR, 168, 24);
            at!(Code, co_code_adaptive, VAR, 184, 24);
            at!(FrameObject, _f_frame_data, OBJ, 48, 16);
            assert!(offset_of!(IFrame, f_globals) == 8);
            assert!(offset_of!(IFrame, f_code) == 32);
            assert!(offset_of!(IFrame, previous) == 48);
            assert!(offset_of!(IFrame, owner) == 69);
            assert!(offset_of!(ThreadState, cframe) == 56);
            assert!(offset_of!(CFrame, current_frame) == 8);
        };
        #[cfg(Py_3_12)]
        const _: () = {
            at!(Code, co_argcount, VAR, 52, 24);
            at!(Code, co_firstlineno, VAR, 68, 24);
            at!(Code, co_nlocalsplus, VAR, 72, 24);
            at!(Code, co_nlocals, VAR, 80, 24);
            assert!(offset_of!(IFrame, executable) == 0);
            assert!(offset_of!(IFrame, previous) == 8);
            assert!(offset_of!(IFrame, f_globals) == 24);
            assert!(offset_of!(IFrame, owner) == 70);
        };
        #[cfg(all(Py_3_12, not(Py_3_13)))]
        const _: () = {
            at!(Code, _co_firsttraceable, VAR, 176, 24);
            at!(Code, co_code_adaptive, VAR, 192, 24);
            at!(FrameObject, _f_frame_data, OBJ, 48, 16);
            assert!(offset_of!(ThreadState, cframe) == 56);
            assert!(offset_of!(CFrame, current_frame) == 0);
        };
        #[cfg(Py_3_13)]
        const _: () = {
            at!(Code, _co_firsttraceable, VAR, 184, 24);
            at!(Code, co_code_adaptive, VAR, 200, 24);
            at!(FrameObject, _f_frame_data, OBJ, 64, 16);
            assert!(offset_of!(ThreadState, current_frame) == 72);
        };
    }
}

#[cfg(callspan_frame_direct)]
mod imp {
    use std::mem::offset_of;
    use std::ptr;

    use pyo3::ffi::{self, PyObject};
    use pyo3::prelude::*;

    use super::layout::*;
    use super::str_lossy;

    /// A complete Python frame: `PyFrameObject` on 3.9/3.10, `_PyInterpreterFrame` on 3.11+.
    #[cfg(not(Py_3_11))]
    pub(super) type RawFrame = *mut Frame;
    #[cfg(Py_3_11)]
    pub(super) type RawFrame = *mut IFrame;

    // ---- locating frames ----------------------------------------------------------------------

    #[cfg(not(Py_3_11))]
    #[inline]
    pub(super) unsafe fn current(_py: Python<'_>) -> Option<RawFrame> {
        // 3.9/3.10: `tstate->frame`, borrowed; frame objects always exist on these versions.
        let f = unsafe { ffi::PyEval_GetFrame() }.cast::<Frame>();
        (!f.is_null()).then_some(f)
    }

    #[cfg(Py_3_11)]
    #[inline]
    pub(super) unsafe fn current(_py: Python<'_>) -> Option<RawFrame> {
        // SAFETY: GIL held, so the thread state is attached and non-null.
        unsafe {
            let tstate = ffi::PyThreadState_Get().cast::<ThreadState>();
            #[cfg(not(Py_3_13))]
            let top = (*(*tstate).cframe).current_frame;
            #[cfg(Py_3_13)]
            let top = (*tstate).current_frame;
            first_complete(top)
        }
    }

    #[cfg(not(Py_3_11))]
    pub(super) unsafe fn from_frame_object(frame: *mut ffi::PyFrameObject) -> Option<RawFrame> {
        let f = frame.cast::<Frame>();
        (!f.is_null()).then_some(f)
    }

    #[cfg(Py_3_11)]
    pub(super) unsafe fn from_frame_object(frame: *mut ffi::PyFrameObject) -> Option<RawFrame> {
        if frame.is_null() {
            return None;
        }
        // SAFETY: a live frame object points at its (live) interpreter frame.
        unsafe { first_complete((*frame.cast::<FrameObject>()).f_frame) }
    }

    /// The code object of a 3.11+ interpreter frame, or null when it is not a Python frame.
    #[cfg(Py_3_11)]
    #[inline]
    unsafe fn iframe_code(f: *mut IFrame) -> *mut Code {
        // SAFETY: `f` is a frame of the live chain.
        unsafe {
            #[cfg(not(Py_3_12))]
            {
                (*f).f_code
            }
            #[cfg(Py_3_12)]
            {
                if (*f).owner == FRAME_OWNED_BY_CSTACK {
                    // Shim frame pushed by C code entering the interpreter; its other fields are
                    // not valid.
                    return ptr::null_mut();
                }
                let exe = (*f).executable;
                #[cfg(Py_3_13)]
                if exe.is_null() || ffi::PyCode_Check(exe) == 0 {
                    return ptr::null_mut();
                }
                exe.cast::<Code>()
            }
        }
    }

    #[cfg(Py_3_11)]
    #[inline]
    unsafe fn code_start(code: *mut Code) -> *mut u16 {
        // `_PyCode_CODE(co)`
        unsafe { ptr::addr_of_mut!((*code).co_code_adaptive).cast::<u16>() }
    }

    /// Skips C-stack shim frames and frames still in their prologue (`_PyFrame_GetFirstComplete`).
    #[cfg(Py_3_11)]
    #[inline]
    unsafe fn first_complete(mut f: *mut IFrame) -> Option<*mut IFrame> {
        // SAFETY: walking the live `previous` chain under the GIL.
        unsafe {
            while !f.is_null() {
                let code = iframe_code(f);
                if !code.is_null() {
                    if (*f).owner == FRAME_OWNED_BY_GENERATOR {
                        return Some(f);
                    }
                    let first_traceable =
                        code_start(code).wrapping_add((*code)._co_firsttraceable as usize);
                    // `_PyFrame_IsIncomplete`: instr < _PyCode_CODE(co) + co->_co_firsttraceable.
                    // Compared as addresses: a new frame's `prev_instr` is one before the start.
                    if (*f).instr as usize >= first_traceable as usize {
                        return Some(f);
                    }
                }
                f = (*f).previous;
            }
            None
        }
    }

    // ---- frame accessors ------------------------------------------------------------------------

    #[cfg(not(Py_3_11))]
    #[inline]
    unsafe fn frame_code(f: RawFrame) -> *mut Code {
        unsafe { (*f).f_code }
    }

    #[cfg(Py_3_11)]
    #[inline]
    unsafe fn frame_code(f: RawFrame) -> *mut Code {
        // Non-null for frames returned by `first_complete`.
        unsafe { iframe_code(f) }
    }

    #[inline]
    pub(super) unsafe fn code(f: RawFrame) -> *mut ffi::PyCodeObject {
        unsafe { frame_code(f) }.cast()
    }

    #[inline]
    pub(super) unsafe fn lasti(f: RawFrame) -> i32 {
        unsafe {
            #[cfg(not(Py_3_10))]
            {
                (*f).f_lasti
            }
            #[cfg(all(Py_3_10, not(Py_3_11)))]
            {
                let l = (*f).f_lasti;
                if l < 0 {
                    -1
                } else {
                    l * 2
                }
            }
            #[cfg(Py_3_11)]
            {
                let start = code_start(frame_code(f)) as isize;
                let bytes = (*f).instr as isize - start;
                if bytes < 0 {
                    -1
                } else {
                    bytes as i32
                }
            }
        }
    }

    #[inline]
    pub(super) unsafe fn back(f: RawFrame) -> Option<RawFrame> {
        unsafe {
            #[cfg(not(Py_3_11))]
            {
                let b = (*f).f_back;
                (!b.is_null()).then_some(b)
            }
            #[cfg(Py_3_11)]
            {
                first_complete((*f).previous)
            }
        }
    }

    #[inline]
    pub(super) unsafe fn globals(f: RawFrame) -> *mut PyObject {
        unsafe { (*f).f_globals }
    }

    /// The first fast local, following a cell; only called when `co_argcount >= 1`.
    #[inline]
    pub(super) unsafe fn first_arg_slot(_py: Python<'_>, f: RawFrame) -> Option<*mut PyObject> {
        unsafe {
            let code = frame_code(f);
            #[cfg(not(Py_3_11))]
            let value = {
                let base = ptr::addr_of_mut!((*f).f_localsplus).cast::<*mut PyObject>();
                let cell2arg = (*code).co_cell2arg;
                let mut value = *base;
                if !cell2arg.is_null() {
                    // Argument 0 captured by a closure: at frame creation CPython moved it into a
                    // cell (cell slot `co_nlocals + i`) and cleared the argument slot.
                    let ncells = ffi::PyTuple_GET_SIZE((*code).co_cellvars);
                    for i in 0..ncells {
                        if *cell2arg.offset(i) == 0 {
                            let cell = *base.offset((*code).co_nlocals as isize + i);
                            value = cell_contents(cell);
                            break;
                        }
                    }
                }
                value
            };
            #[cfg(Py_3_11)]
            let value = {
                let mut value = (*f).localsplus[0];
                let kinds = ffi::PyBytes_AS_STRING((*code).co_localspluskinds);
                if (*kinds as u8) & CO_FAST_CELL != 0 {
                    // MAKE_CELL (in the prologue, done for every complete frame) replaced the
                    // argument by a cell holding it.
                    value = cell_contents(value);
                }
                value
            };
            (!value.is_null()).then_some(value)
        }
    }

    #[inline]
    unsafe fn cell_contents(cell: *mut PyObject) -> *mut PyObject {
        unsafe {
            if cell.is_null() || ffi::PyCell_Check(cell) == 0 {
                return ptr::null_mut();
            }
            (*cell.cast::<ffi::PyCellObject>()).ob_ref
        }
    }

    // ---- code objects ---------------------------------------------------------------------------

    pub(super) enum CodeStr {
        Name,
        Filename,
    }

    pub(super) unsafe fn code_str_field(
        py: Python<'_>,
        code: *mut ffi::PyCodeObject,
        which: CodeStr,
    ) -> String {
        let code = code.cast::<Code>();
        unsafe {
            let p = match which {
                CodeStr::Name => (*code).co_name,
                CodeStr::Filename => (*code).co_filename,
            };
            str_lossy(py, p)
        }
    }

    pub(super) unsafe fn code_firstlineno(_py: Python<'_>, code: *mut ffi::PyCodeObject) -> i32 {
        unsafe { (*code.cast::<Code>()).co_firstlineno }
    }

    /// Name of the first positional parameter, borrowed, if `co_argcount >= 1`.
    #[inline]
    pub(super) unsafe fn first_param_name(
        _py: Python<'_>,
        code: *mut ffi::PyCodeObject,
    ) -> Option<*mut PyObject> {
        let code = code.cast::<Code>();
        unsafe {
            if (*code).co_argcount < 1 {
                return None;
            }
            // Parameters come first in both `co_varnames` (3.9/3.10) and `co_localsplusnames`.
            #[cfg(not(Py_3_11))]
            let names = (*code).co_varnames;
            #[cfg(Py_3_11)]
            let names = (*code).co_localsplusnames;
            Some(ffi::PyTuple_GET_ITEM(names, 0))
        }
    }

    #[cfg(Py_3_11)]
    pub(super) unsafe fn code_qualname(
        py: Python<'_>,
        code: *mut ffi::PyCodeObject,
        _globals: *mut PyObject,
    ) -> String {
        unsafe { str_lossy(py, (*code.cast::<Code>()).co_qualname) }
    }

    #[cfg(not(Py_3_11))]
    pub(super) unsafe fn code_qualname(
        py: Python<'_>,
        code: *mut ffi::PyCodeObject,
        globals: *mut PyObject,
    ) -> String {
        let code = code.cast::<Code>();
        // SAFETY: live code object and globals (contract).
        unsafe {
            let mut search = QualnameSearch {
                py,
                target: code,
                budget: 50_000,
            };
            if let Some(q) = search.in_globals(globals) {
                return q;
            }
            str_lossy(py, (*code).co_name)
        }
    }

    /// 3.9/3.10 qualname derivation (see `super::code_qualname`).
    #[cfg(not(Py_3_11))]
    struct QualnameSearch<'py> {
        py: Python<'py>,
        target: *mut Code,
        /// Objects left to visit; bounds the one-time cost on huge modules.
        budget: usize,
    }

    #[cfg(not(Py_3_11))]
    impl<'py> QualnameSearch<'py> {
        fn spend(&mut self) -> bool {
            if self.budget == 0 {
                return false;
            }
            self.budget -= 1;
            true
        }

        /// Values of a dict, as strong references (so that nothing we walk can be freed under us
        /// should an allocation run the GC and a finalizer mutate the dict).
        unsafe fn dict_values(&self, dict: *mut PyObject) -> Vec<Bound<'py, PyAny>> {
            let mut out = Vec::new();
            unsafe {
                if dict.is_null() || ffi::PyDict_Check(dict) == 0 {
                    return out;
                }
                let mut pos: ffi::Py_ssize_t = 0;
                let mut key = ptr::null_mut();
                let mut value = ptr::null_mut();
                while ffi::PyDict_Next(dict, &mut pos, &mut key, &mut value) != 0 {
                    out.push(Bound::from_borrowed_ptr(self.py, value));
                }
            }
            out
        }

        unsafe fn in_globals(&mut self, globals: *mut PyObject) -> Option<String> {
            let values = unsafe { self.dict_values(globals) };
            // Plain functions first (the common case), then classes, then nested code.
            for v in &values {
                if unsafe { ffi::PyFunction_Check(v.as_ptr()) } != 0 {
                    if let Some(q) = unsafe { self.function_direct(v.as_ptr()) } {
                        return Some(q);
                    }
                }
            }
            for v in &values {
                if let Some(q) = unsafe { self.in_class(v.as_ptr(), 0) } {
                    return Some(q);
                }
            }
            for v in &values {
                if unsafe { ffi::PyFunction_Check(v.as_ptr()) } != 0 {
                    if let Some(q) = unsafe { self.function_nested(v.as_ptr(), 0) } {
                        return Some(q);
                    }
                }
            }
            None
        }

        /// The function's own `__qualname__` if its code is the target and it was not renamed.
        unsafe fn function_direct(&mut self, func: *mut PyObject) -> Option<String> {
            if !self.spend() {
                return None;
            }
            unsafe {
                let f = func.cast::<ffi::PyFunctionObject>();
                if (*f).func_code.cast::<Code>() != self.target || !self.unrenamed(f) {
                    return None;
                }
                Some(str_lossy(self.py, (*f).func_qualname))
            }
        }

        /// `__name__` still equals `co_name`, so `__qualname__` was not copied from elsewhere.
        unsafe fn unrenamed(&self, f: *mut ffi::PyFunctionObject) -> bool {
            unsafe {
                let code = (*f).func_code.cast::<Code>();
                let name = (*f).func_name;
                let co_name = (*code).co_name;
                name == co_name
                    || (ffi::PyUnicode_Check(name) != 0
                        && ffi::PyUnicode_Check(co_name) != 0
                        && ffi::PyUnicode_Compare(name, co_name) == 0)
            }
        }

        /// Code nested in a function (by its compiler-given qualname), and what the function wraps.
        unsafe fn function_nested(&mut self, func: *mut PyObject, depth: u32) -> Option<String> {
            if depth > 2 || !self.spend() {
                return None;
            }
            unsafe {
                let f = func.cast::<ffi::PyFunctionObject>();
                // Keep the function alive while we allocate.
                let _hold = Bound::from_borrowed_ptr(self.py, func);
                let code = (*f).func_code.cast::<Code>();
                if is_code(code.cast()) && self.unrenamed(f) {
                    if depth > 0 && code == self.target {
                        return Some(str_lossy(self.py, (*f).func_qualname));
                    }
                    let qual = str_lossy(self.py, (*f).func_qualname);
                    if let Some(q) = self.in_code_consts(code, &qual) {
                        return Some(q);
                    }
                }
                // Decorator patterns: `functools.wraps` stores the original in `__wrapped__`;
                // plain closures keep it in a cell.
                let mut inner = Vec::new();
                if let Some(w) = super::dict_get_any_item(
                    self.py,
                    (*f).func_dict,
                    pyo3::intern!(self.py, "__wrapped__"),
                ) {
                    inner.push(w);
                }
                let closure = (*f).func_closure;
                if !closure.is_null() && ffi::PyTuple_Check(closure) != 0 {
                    for i in 0..ffi::PyTuple_GET_SIZE(closure) {
                        let c = cell_contents(ffi::PyTuple_GET_ITEM(closure, i));
                        if !c.is_null() {
                            inner.push(Bound::from_borrowed_ptr(self.py, c));
                        }
                    }
                }
                for w in inner {
                    let w = unwrap_method(self.py, w.as_ptr());
                    if !w.is_null() && ffi::PyFunction_Check(w) != 0 {
                        if let Some(q) = self.function_nested(w, depth + 1) {
                            return Some(q);
                        }
                    }
                }
            }
            None
        }

        /// Walks `co_consts` of `parent` (whose qualname is `qual`) applying the compiler's rule
        /// (`compiler_set_qualname`): a function, lambda or class nested in a function or lambda is
        /// `<parent>.<locals>.<name>`; in a class body or a comprehension, `<parent>.<name>`.
        unsafe fn in_code_consts(&mut self, parent: *mut Code, qual: &str) -> Option<String> {
            unsafe {
                let consts = (*parent).co_consts;
                if consts.is_null() || ffi::PyTuple_Check(consts) == 0 {
                    return None;
                }
                let parent_name = str_lossy(self.py, (*parent).co_name);
                let is_function_scope = (*parent).co_flags & ffi::CO_NEWLOCALS != 0
                    && !matches!(
                        parent_name.as_str(),
                        "<listcomp>" | "<setcomp>" | "<dictcomp>" | "<genexpr>"
                    );
                let _hold = Bound::from_borrowed_ptr(self.py, consts);
                for i in 0..ffi::PyTuple_GET_SIZE(consts) {
                    let c = ffi::PyTuple_GET_ITEM(consts, i);
                    if !is_code(c) || !self.spend() {
                        continue;
                    }
                    let child = c.cast::<Code>();
                    let name = str_lossy(self.py, (*child).co_name);
                    let child_qual = if is_function_scope {
                        format!("{qual}.<locals>.{name}")
                    } else {
                        format!("{qual}.{name}")
                    };
                    if child == self.target {
                        return Some(child_qual);
                    }
                    if let Some(q) = self.in_code_consts(child, &child_qual) {
                        return Some(q);
                    }
                    if self.budget == 0 {
                        return None;
                    }
                }
            }
            None
        }

        /// Functions in a class `__dict__` (unwrapping staticmethod/classmethod/property), nested
        /// classes up to depth 3.
        unsafe fn in_class(&mut self, obj: *mut PyObject, depth: u32) -> Option<String> {
            unsafe {
                if depth > 2 || ffi::PyType_Check(obj) == 0 || !self.spend() {
                    return None;
                }
                let ty = obj.cast::<ffi::PyTypeObject>();
                // Only classes defined in Python: built-in types hold no Python functions.
                if ffi::PyType_HasFeature(ty, ffi::Py_TPFLAGS_HEAPTYPE) == 0 {
                    return None;
                }
                let _hold = Bound::from_borrowed_ptr(self.py, obj);
                let values = self.dict_values((*ty).tp_dict);
                let mut funcs = Vec::new();
                for v in &values {
                    let p = v.as_ptr();
                    if ffi::PyType_Check(p) != 0 {
                        if let Some(q) = self.in_class(p, depth + 1) {
                            return Some(q);
                        }
                        continue;
                    }
                    if ffi::PyObject_TypeCheck(p, ptr::addr_of_mut!(ffi::PyProperty_Type)) != 0 {
                        let prop = p.cast::<Property>();
                        funcs.extend([(*prop).prop_get, (*prop).prop_set, (*prop).prop_del]);
                        continue;
                    }
                    funcs.push(unwrap_method(self.py, p));
                }
                for &f in &funcs {
                    if !f.is_null() && ffi::PyFunction_Check(f) != 0 {
                        if let Some(q) = self.function_direct(f) {
                            return Some(q);
                        }
                    }
                }
                for &f in &funcs {
                    if !f.is_null() && ffi::PyFunction_Check(f) != 0 {
                        if let Some(q) = self.function_nested(f, 0) {
                            return Some(q);
                        }
                    }
                }
            }
            None
        }
    }

    #[cfg(not(Py_3_11))]
    fn is_code(p: *mut PyObject) -> bool {
        !p.is_null() && unsafe { ffi::PyCode_Check(p) } != 0
    }

    /// The callable inside a `staticmethod`/`classmethod` (or subclass), else `p` itself.
    #[cfg(not(Py_3_11))]
    unsafe fn unwrap_method(py: Python<'_>, p: *mut PyObject) -> *mut PyObject {
        let (sm, cm) = method_wrapper_types(py);
        unsafe {
            if ffi::PyObject_TypeCheck(p, sm) != 0 || ffi::PyObject_TypeCheck(p, cm) != 0 {
                (*p.cast::<MethodWrapper>()).callable
            } else {
                p
            }
        }
    }

    /// `staticmethod` and `classmethod` type objects. Not exported as data by PyO3's FFI, and not
    /// looked up in `builtins` (which user code may patch): taken from instances made by the C API.
    #[cfg(not(Py_3_11))]
    fn method_wrapper_types(py: Python<'_>) -> (*mut ffi::PyTypeObject, *mut ffi::PyTypeObject) {
        // `PyOnceLock`, not `OnceLock`: initialisation allocates (may run the GC and let another
        // thread take the GIL), and a thread blocked in `OnceLock` while holding the GIL deadlocks.
        static TYPES: pyo3::sync::PyOnceLock<(usize, usize)> = pyo3::sync::PyOnceLock::new();
        let (sm, cm) = *TYPES.get_or_init(py, || unsafe {
            let probe = ffi::Py_None();
            let sm = ffi::PyStaticMethod_New(probe);
            let cm = ffi::PyClassMethod_New(probe);
            let types = (ffi::Py_TYPE(sm) as usize, ffi::Py_TYPE(cm) as usize);
            ffi::Py_DECREF(sm);
            ffi::Py_DECREF(cm);
            types
        });
        (sm as *mut _, cm as *mut _)
    }

    // ---- run-time verification --------------------------------------------------------------

    pub(super) fn verify_layout(py: Python<'_>) -> Result<(), String> {
        unsafe {
            verify_version()?;
            #[cfg(not(Py_3_11))]
            {
                let basic = (*ptr::addr_of!(ffi::PyFrame_Type)).tp_basicsize as usize;
                let expect = offset_of!(Frame, f_localsplus) + std::mem::size_of::<*mut PyObject>();
                check(basic == expect, "frame type size", basic, expect)?;
                let basic = (*ptr::addr_of!(ffi::PyCode_Type)).tp_basicsize as usize;
                let expect = std::mem::size_of::<Code>();
                check(basic == expect, "code type size", basic, expect)?;
            }
            #[cfg(Py_3_11)]
            {
                let basic = (*ptr::addr_of!(ffi::PyCode_Type)).tp_basicsize as usize;
                let expect = offset_of!(Code, co_code_adaptive);
                check(basic == expect, "code type size", basic, expect)?;
                let basic = (*ptr::addr_of!(ffi::PyFrame_Type)).tp_basicsize as usize;
                let expect =
                    offset_of!(FrameObject, _f_frame_data) + offset_of!(IFrame, localsplus);
                check(basic == expect, "frame type size", basic, expect)?;
                let tstate = ffi::PyThreadState_Get();
                let interp = (*tstate.cast::<ThreadState>()).interp;
                let expect = ffi::PyThreadState_GetInterpreter(tstate);
                check(
                    interp == expect,
                    "tstate->interp",
                    interp as usize,
                    expect as usize,
                )?;
                // Compare the thread state's frame pointer with the public API's before walking
                // (dereferencing) anything read through the thread-state layout.
                let public = ffi::PyEval_GetFrame();
                if !public.is_null() {
                    let tstate = tstate.cast::<ThreadState>();
                    #[cfg(not(Py_3_13))]
                    let top = (*(*tstate).cframe).current_frame;
                    #[cfg(Py_3_13)]
                    let top = (*tstate).current_frame;
                    let expect = (*public.cast::<FrameObject>()).f_frame;
                    if top != expect && first_complete(top) != Some(expect) {
                        return check(false, "tstate current frame", top as usize, expect as usize);
                    }
                }
            }

            let ours = current(py);
            let public = ffi::PyEval_GetFrame();
            let Some(f) = ours else {
                return check(public.is_null(), "frame presence", 0, public as usize);
            };
            check(!public.is_null(), "frame presence", f as usize, 0)?;
            verify_frame(py, f, public)?;
            // One level out too (exercises `back`).
            let public_back = ffi::PyFrame_GetBack(public);
            let result = match back(f) {
                Some(b) if !public_back.is_null() => verify_frame(py, b, public_back),
                None if public_back.is_null() => Ok(()),
                b => check(false, "back frame presence", b.map_or(0, |b| b as usize), 0),
            };
            if !public_back.is_null() {
                ffi::Py_DECREF(public_back.cast());
            }
            result
        }
    }

    unsafe fn verify_frame(
        py: Python<'_>,
        f: RawFrame,
        public: *mut ffi::PyFrameObject,
    ) -> Result<(), String> {
        unsafe {
            #[cfg(Py_3_11)]
            {
                let inner = (*public.cast::<FrameObject>()).f_frame;
                check(
                    inner == f,
                    "frame object -> interpreter frame",
                    inner as usize,
                    f as usize,
                )?;
            }
            #[cfg(not(Py_3_11))]
            check(
                public.cast::<Frame>() == f,
                "frame",
                public as usize,
                f as usize,
            )?;

            let pub_code = ffi::PyFrame_GetCode(public);
            ffi::Py_DECREF(pub_code.cast());
            check(
                pub_code == code(f),
                "frame code",
                code(f) as usize,
                pub_code as usize,
            )?;

            let frame_obj = Bound::from_borrowed_ptr(py, public.cast::<PyObject>());
            let attr_i32 = |o: &Bound<'_, PyAny>, name: &str| -> Result<i32, String> {
                o.getattr(name)
                    .and_then(|v| v.extract::<i32>())
                    .map_err(|e| e.to_string())
            };
            let l_pub = attr_i32(&frame_obj, "f_lasti")?;
            check(
                l_pub == lasti(f),
                "f_lasti",
                lasti(f) as usize,
                l_pub as usize,
            )?;
            let g_pub = frame_obj.getattr("f_globals").map_err(|e| e.to_string())?;
            check(g_pub.as_ptr() == globals(f), "f_globals", 0, 0)?;

            // Code object fields against the code object's own attributes (C getters/members of a
            // built-in type: no user code).
            let c = code(f).cast::<Code>();
            let code_obj = Bound::from_borrowed_ptr(py, c.cast::<PyObject>());
            let same_int = |name: &str, ours: i32| -> Result<(), String> {
                let theirs = attr_i32(&code_obj, name)?;
                check(theirs == ours, name, ours as usize, theirs as usize)
            };
            same_int("co_argcount", (*c).co_argcount)?;
            same_int("co_nlocals", (*c).co_nlocals)?;
            same_int("co_flags", (*c).co_flags)?;
            same_int("co_firstlineno", (*c).co_firstlineno)?;
            let same = |name: &str, p: *mut PyObject| -> Result<(), String> {
                let v = code_obj.getattr(name).map_err(|e| e.to_string())?;
                check(v.as_ptr() == p, name, p as usize, v.as_ptr() as usize)
            };
            same("co_name", (*c).co_name)?;
            same("co_filename", (*c).co_filename)?;
            same("co_consts", (*c).co_consts)?;
            #[cfg(Py_3_11)]
            same("co_qualname", (*c).co_qualname)?;
            #[cfg(not(Py_3_11))]
            {
                same("co_varnames", (*c).co_varnames)?;
                same("co_cellvars", (*c).co_cellvars)?;
            }
            if (*c).co_argcount >= 1 {
                let varnames = code_obj.getattr("co_varnames").map_err(|e| e.to_string())?;
                let v0 = varnames.get_item(0).map_err(|e| e.to_string())?;
                let ours = first_param_name(py, c.cast()).unwrap_or(ptr::null_mut());
                check(
                    v0.as_ptr() == ours,
                    "first parameter name",
                    ours as usize,
                    0,
                )?;
            }
            Ok(())
        }
    }

    fn check(ok: bool, what: &str, ours: usize, expected: usize) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "python_frame layout check failed: {what} (direct {ours:#x}, public {expected:#x})"
            ))
        }
    }

    /// The running interpreter must be the minor version this was compiled for.
    unsafe fn verify_version() -> Result<(), String> {
        let compiled: (u32, u32) = if cfg!(Py_3_13) {
            (3, 13)
        } else if cfg!(Py_3_12) {
            (3, 12)
        } else if cfg!(Py_3_11) {
            (3, 11)
        } else if cfg!(Py_3_10) {
            (3, 10)
        } else {
            (3, 9)
        };
        let version = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) };
        let version = version.to_string_lossy();
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let major = parts.next().and_then(|s| s.parse::<u32>().ok());
        let minor = parts.next().and_then(|s| s.parse::<u32>().ok());
        if (major, minor) == (Some(compiled.0), Some(compiled.1)) {
            Ok(())
        } else {
            Err(format!(
                "python_frame compiled for {}.{} but running on {version}",
                compiled.0, compiled.1
            ))
        }
    }
}

/// `dict[key]` for an exact-`str` key as a strong reference, any value type.
#[cfg(all(callspan_frame_direct, not(Py_3_11)))]
unsafe fn dict_get_any_item<'py>(
    py: Python<'py>,
    dict: *mut ffi::PyObject,
    key: &Bound<'_, PyString>,
) -> Option<Bound<'py, PyAny>> {
    unsafe {
        if dict.is_null() || ffi::PyDict_Check(dict) == 0 {
            return None;
        }
        let value = ffi::PyDict_GetItemWithError(dict, key.as_ptr());
        if value.is_null() {
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
            }
            return None;
        }
        Some(Bound::from_borrowed_ptr(py, value))
    }
}

// ---------------------------------------------------------------------------------------------
// Public-API route (any other build)
// ---------------------------------------------------------------------------------------------

#[cfg(not(callspan_frame_direct))]
mod imp {
    //! Exact but allocating on 3.11+: `PyEval_GetFrame` creates the frame object of the caller's
    //! interpreter frame if it has none yet. Frame objects obtained here stay owned by their
    //! interpreter frames (`frame_obj`), so returning them borrowed is sound while the frames run.

    use pyo3::ffi::{self, PyObject};
    use pyo3::prelude::*;

    use super::str_lossy;

    pub(super) type RawFrame = *mut ffi::PyFrameObject;

    pub(super) unsafe fn current(_py: Python<'_>) -> Option<RawFrame> {
        let f = unsafe { ffi::PyEval_GetFrame() };
        (!f.is_null()).then_some(f)
    }

    pub(super) unsafe fn from_frame_object(frame: *mut ffi::PyFrameObject) -> Option<RawFrame> {
        (!frame.is_null()).then_some(frame)
    }

    pub(super) unsafe fn code(f: RawFrame) -> *mut ffi::PyCodeObject {
        unsafe {
            let c = ffi::PyFrame_GetCode(f);
            // The frame keeps its code alive.
            ffi::Py_DECREF(c.cast());
            c
        }
    }

    pub(super) unsafe fn lasti(f: RawFrame) -> i32 {
        #[cfg(Py_3_11)]
        unsafe {
            ffi::PyFrame_GetLasti(f)
        }
        #[cfg(not(Py_3_11))]
        {
            Python::attach(|py| unsafe {
                Bound::from_borrowed_ptr(py, f.cast::<PyObject>())
                    .getattr("f_lasti")
                    .and_then(|v| v.extract::<i32>())
                    .unwrap_or(-1)
            })
        }
    }

    pub(super) unsafe fn back(f: RawFrame) -> Option<RawFrame> {
        unsafe {
            let b = ffi::PyFrame_GetBack(f);
            if b.is_null() {
                return None;
            }
            // Kept alive by its interpreter frame (3.11+) or by `f->f_back` (3.9/3.10).
            ffi::Py_DECREF(b.cast());
            Some(b)
        }
    }

    pub(super) unsafe fn globals(f: RawFrame) -> *mut PyObject {
        #[cfg(Py_3_11)]
        unsafe {
            let g = ffi::PyFrame_GetGlobals(f);
            if !g.is_null() {
                ffi::Py_DECREF(g); // owned by the frame's function
            }
            g
        }
        #[cfg(not(Py_3_11))]
        {
            Python::attach(|py| unsafe {
                Bound::from_borrowed_ptr(py, f.cast::<PyObject>())
                    .getattr("f_globals")
                    .map(|g| g.as_ptr())
                    .unwrap_or(std::ptr::null_mut())
            })
        }
    }

    pub(super) unsafe fn first_arg_slot(py: Python<'_>, f: RawFrame) -> Option<*mut PyObject> {
        #[cfg(Py_3_12)]
        unsafe {
            let name = first_param_name(py, code(f))?;
            let v = ffi::PyFrame_GetVar(f, name);
            if v.is_null() {
                ffi::PyErr_Clear(); // NameError: unbound/deleted
                return None;
            }
            ffi::Py_DECREF(v); // held by the frame's slot or cell
            Some(v)
        }
        #[cfg(not(Py_3_12))]
        {
            let _ = (py, f);
            None
        }
    }

    pub(super) enum CodeStr {
        Name,
        Filename,
    }

    fn code_attr<'py>(
        py: Python<'py>,
        code: *mut ffi::PyCodeObject,
        name: &str,
    ) -> Option<Bound<'py, PyAny>> {
        // Attributes of the built-in code type: C getters/members, no user code.
        unsafe { Bound::from_borrowed_ptr(py, code.cast::<PyObject>()) }
            .getattr(name)
            .ok()
    }

    pub(super) unsafe fn code_str_field(
        py: Python<'_>,
        code: *mut ffi::PyCodeObject,
        which: CodeStr,
    ) -> String {
        let name = match which {
            CodeStr::Name => "co_name",
            CodeStr::Filename => "co_filename",
        };
        code_attr(py, code, name)
            .map(|v| unsafe { str_lossy(py, v.as_ptr()) })
            .unwrap_or_default()
    }

    pub(super) unsafe fn code_firstlineno(py: Python<'_>, code: *mut ffi::PyCodeObject) -> i32 {
        code_attr(py, code, "co_firstlineno")
            .and_then(|v| v.extract().ok())
            .unwrap_or(0)
    }

    pub(super) unsafe fn first_param_name(
        py: Python<'_>,
        code: *mut ffi::PyCodeObject,
    ) -> Option<*mut PyObject> {
        let argc: i32 = code_attr(py, code, "co_argcount")?.extract().ok()?;
        if argc < 1 {
            return None;
        }
        let names = code_attr(py, code, "co_varnames")?;
        let first = names.get_item(0).ok()?;
        // Interned, and also held by the code's cached names tuple.
        Some(first.as_ptr())
    }

    pub(super) unsafe fn code_qualname(
        py: Python<'_>,
        code: *mut ffi::PyCodeObject,
        _globals: *mut PyObject,
    ) -> String {
        code_attr(py, code, "co_qualname")
            .or_else(|| code_attr(py, code, "co_name"))
            .map(|v| unsafe { str_lossy(py, v.as_ptr()) })
            .unwrap_or_default()
    }

    pub(super) fn verify_layout(_py: Python<'_>) -> Result<(), String> {
        Ok(())
    }
}
