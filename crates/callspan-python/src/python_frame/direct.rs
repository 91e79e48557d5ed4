//! Direct access: reading frame and code-object fields through the [`layout`](super::layout)
//! structs, without the public C API.
//!
//! # Why the layouts are read directly
//!
//! The public C API costs more than the rest of the hot path on 3.11+:
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
//! So this route reads, per version:
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
//! version, so `(code, lasti)` → line is a pure function (cacheable). Where a field means
//! different things on different versions, the translation lives in [`quirks`](super::quirks).
//!
//! Every function here takes a frame of the live chain handed out by [`current`], [`back`] or
//! [`from_frame_object`] (a complete Python frame; the GIL is held), or a live code object.

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;
use std::ffi::c_void;

use super::layout::*;
use super::quirks;
use super::str_lossy;

/// A complete Python frame: `PyFrameObject` on 3.9/3.10, `_PyInterpreterFrame` on 3.11+.
#[cfg(not(Py_3_11))]
pub(super) type RawFrame = *mut Frame;
/// A complete Python frame: `PyFrameObject` on 3.9/3.10, `_PyInterpreterFrame` on 3.11+.
#[cfg(Py_3_11)]
pub(super) type RawFrame = *mut IFrame;

// ---- locating frames ----------------------------------------------------------------------------

/// The innermost complete Python frame of this thread.
///
/// # Safety
/// The GIL is held by this thread.
#[cfg(not(Py_3_11))]
#[inline]
pub(super) unsafe fn current(_py: Python<'_>) -> Option<RawFrame> {
    // SAFETY: GIL held. 3.9/3.10: `tstate->frame`, borrowed; frame objects always exist on these
    // versions, so this never allocates.
    let f = unsafe { ffi::PyEval_GetFrame() }.cast::<Frame>();
    (!f.is_null()).then_some(f)
}

/// The innermost Python frame of this thread, complete or not (null: none).
///
/// # Safety
/// The GIL is held by this thread.
#[cfg(Py_3_11)]
#[inline]
unsafe fn top() -> *mut IFrame {
    // SAFETY: GIL held, so the thread state is attached and non-null, and its current-frame
    // pointer (3.11/3.12: through the non-null `cframe`) is null or the top of the live chain.
    // The unchecked read: `PyThreadState_Get`'s own null check costs as much again.
    unsafe {
        let tstate = ffi::compat::PyThreadState_GetUnchecked().cast::<ThreadState>();
        #[cfg(not(Py_3_13))]
        let top = (*(*tstate).cframe).current_frame;
        #[cfg(Py_3_13)]
        let top = (*tstate).current_frame;
        top
    }
}

/// The innermost complete Python frame of this thread.
///
/// # Safety
/// The GIL is held by this thread.
#[cfg(Py_3_11)]
#[inline]
pub(super) unsafe fn current(_py: Python<'_>) -> Option<RawFrame> {
    // SAFETY: GIL held; `top` is null or the top of the live chain.
    unsafe { quirks::first_complete(top()) }
}

/// The frame below the top one when the top frame runs `code` (`sys.monitoring`'s `PY_START`
/// fires in the callee's own frame, complete or not yet): the next complete frame, which is the
/// caller (`Some(None)`: none). `None` when the top frame is not `code`'s.
///
/// # Safety
/// The GIL is held by this thread.
#[cfg(Py_3_12)]
#[inline]
pub(super) unsafe fn caller_below_top(code: *mut ffi::PyObject) -> Option<Option<RawFrame>> {
    // SAFETY: GIL held; `top` is null or the top of the live chain, whose `previous` is null or
    // the next frame of it.
    unsafe {
        let top = top();
        (!top.is_null() && quirks::runs_code(top, code))
            .then(|| quirks::first_complete((*top).previous))
    }
}

/// The complete frame a frame object stands for.
///
/// # Safety
/// `frame` is null or a live frame object whose frame is executing or suspended.
#[cfg(not(Py_3_11))]
pub(super) unsafe fn from_frame_object(frame: *mut ffi::PyFrameObject) -> Option<RawFrame> {
    // 3.9/3.10: the frame object *is* the frame.
    let f = frame.cast::<Frame>();
    (!f.is_null()).then_some(f)
}

/// The complete frame a frame object stands for.
///
/// # Safety
/// `frame` is null or a live frame object whose frame is executing or suspended.
#[cfg(Py_3_11)]
pub(super) unsafe fn from_frame_object(frame: *mut ffi::PyFrameObject) -> Option<RawFrame> {
    if frame.is_null() {
        return None;
    }
    // SAFETY: a live frame object of an executing (or suspended) frame points at its live
    // interpreter frame.
    unsafe { quirks::first_complete((*frame.cast::<FrameObject>()).f_frame) }
}

/// The calling frame (next complete Python frame outwards).
///
/// # Safety
/// `f` is a frame of the live chain.
#[inline]
pub(super) unsafe fn back(f: RawFrame) -> Option<RawFrame> {
    #[cfg(not(Py_3_11))]
    {
        // SAFETY: `f` is a live frame object; `f_back` is null or the live calling frame.
        let b = unsafe { (*f).f_back };
        (!b.is_null()).then_some(b)
    }
    #[cfg(Py_3_11)]
    // SAFETY: `f` is live; `previous` is null or the next live frame of the chain.
    unsafe {
        quirks::first_complete((*f).previous)
    }
}

// ---- frame fields -------------------------------------------------------------------------------

/// The frame's code object, borrowed (the frame keeps it alive).
///
/// # Safety
/// `f` is a frame of the live chain.
#[inline]
pub(super) unsafe fn code(f: RawFrame) -> *mut ffi::PyCodeObject {
    // SAFETY: forwarded contract.
    unsafe { frame_code(f) }.cast()
}

/// The frame's code object as its layout struct.
///
/// # Safety
/// `f` is a frame of the live chain.
#[inline]
pub(super) unsafe fn frame_code(f: RawFrame) -> *mut Code {
    #[cfg(not(Py_3_11))]
    // SAFETY: `f` is a live frame object, whose `f_code` is always set.
    unsafe {
        (*f).f_code
    }
    #[cfg(Py_3_11)]
    // SAFETY: `f` is live; non-null for frames handed out by `first_complete`.
    unsafe {
        quirks::iframe_code(f)
    }
}

/// Byte offset of the executing instruction (`frame.f_lasti`), `-1` before the first.
///
/// # Safety
/// `f` is a frame of the live chain.
#[inline]
pub(super) unsafe fn lasti(f: RawFrame) -> i32 {
    #[cfg(not(Py_3_11))]
    {
        // SAFETY: `f` is a live frame object.
        let raw = unsafe { (*f).f_lasti };
        quirks::lasti_bytes(raw)
    }
    #[cfg(Py_3_11)]
    // SAFETY: `f` is live; its instruction pointer points into (or one before) its code's
    // bytecode.
    unsafe {
        quirks::lasti_bytes(frame_code(f), (*f).instr)
    }
}

/// The executing instruction as a cache key (see `CallerFrame::instruction`): 3.11+ its address,
/// which lies inside the code object (`co_code_adaptive`), so no two live code objects share
/// one; 3.9/3.10 the code object's address and the offset (the bytecode is a `bytes` object
/// that two code objects may share).
///
/// # Safety
/// `f` is a frame of the live chain.
#[inline]
pub(super) unsafe fn instruction(f: RawFrame) -> (usize, i32) {
    #[cfg(not(Py_3_11))]
    // SAFETY: forwarded contract.
    unsafe {
        (frame_code(f) as usize, lasti(f))
    }
    #[cfg(Py_3_11)]
    // SAFETY: `f` is live.
    unsafe {
        ((*f).instr as usize, 0)
    }
}

/// The frame's globals dict, borrowed (the frame, or its function, keeps it alive).
///
/// # Safety
/// `f` is a frame of the live chain.
#[inline]
pub(super) unsafe fn globals(f: RawFrame) -> *mut PyObject {
    // SAFETY: `f` is live; `f_globals` is set for every Python frame.
    unsafe { (*f).f_globals }
}

/// The first fast local, following a cell; only called when `co_argcount >= 1`.
///
/// # Safety
/// `f` is a frame of the live chain whose code has at least one positional parameter.
#[inline]
pub(super) unsafe fn first_arg_slot(_py: Python<'_>, f: RawFrame) -> Option<*mut PyObject> {
    // SAFETY: forwarded contract.
    let value = unsafe { quirks::first_local_value(f) };
    (!value.is_null()).then_some(value)
}

// ---- code objects -------------------------------------------------------------------------------

/// `co_filename`, copied.
///
/// # Safety
/// `code` is a live code object.
pub(super) unsafe fn code_filename(py: Python<'_>, code: *mut ffi::PyCodeObject) -> String {
    // SAFETY: `code` is live; `co_filename` is a `str` it owns.
    unsafe { str_lossy(py, (*code.cast::<Code>()).co_filename) }
}

/// Name of the first positional parameter, borrowed, if `co_argcount >= 1`.
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub(super) unsafe fn first_param_name(
    _py: Python<'_>,
    code: *mut ffi::PyCodeObject,
) -> Option<*mut PyObject> {
    let code = code.cast::<Code>();
    // SAFETY: `code` is live; parameters come first in both `co_varnames` (3.9/3.10) and
    // `co_localsplusnames` (3.11+), tuples of at least `co_argcount` names owned by the code.
    unsafe {
        if (*code).co_argcount < 1 {
            return None;
        }
        #[cfg(not(Py_3_11))]
        let names = (*code).co_varnames;
        #[cfg(Py_3_11)]
        let names = (*code).co_localsplusnames;
        Some(ffi::PyTuple_GET_ITEM(names, 0))
    }
}

/// Extra slot `index` of a code object, what `PyUnstable_Code_GetExtra` returns (null when the
/// slot is unset), read without the call: the profile hook reads it for every frame (3.9–3.11)
/// or event (3.12+).
///
/// # Safety
/// `code` is a live code object; `index` was requested (`PyUnstable_Eval_RequestCodeExtraIndex`).
#[inline(always)]
pub(super) unsafe fn code_extra(code: *mut PyObject, index: ffi::Py_ssize_t) -> *mut c_void {
    // SAFETY: the caller's contract; `co_extra` is null or a `_PyCodeObjectExtra` with
    // `ce_size` slots.
    unsafe {
        let extra = (*code.cast::<Code>()).co_extra.cast::<CodeExtra>();
        if extra.is_null() || (*extra).ce_size <= index {
            return std::ptr::null_mut();
        }
        *std::ptr::addr_of!((*extra).ce_extras)
            .cast::<*mut c_void>()
            .offset(index)
    }
}

/// The variables of this thread's current `contextvars` context (`tstate->context->ctx_vars`,
/// borrowed), null while the thread has no context.
///
/// # Safety
/// The GIL is held by this thread.
#[inline(always)]
pub(super) unsafe fn context_vars() -> *mut PyObject {
    // SAFETY: GIL held, so the thread state is attached and non-null; its `context` field is
    // null or a live `PyContext`, whose `ctx_vars` is never null.
    unsafe {
        let tstate = ffi::compat::PyThreadState_GetUnchecked().cast::<u8>();
        let context = *tstate
            .add(THREAD_STATE_CONTEXT)
            .cast::<*mut ContextObject>();
        if context.is_null() {
            std::ptr::null_mut()
        } else {
            (*context).ctx_vars
        }
    }
}

/// The code's qualified name (see `CallerFrame::code_qualname`).
///
/// # Safety
/// `code` is a live code object and `globals` null or a live dict.
#[cfg(Py_3_11)]
pub(super) unsafe fn code_qualname(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
    _globals: *mut PyObject,
) -> String {
    // SAFETY: `code` is live; `co_qualname` is a `str` it owns.
    unsafe { str_lossy(py, (*code.cast::<Code>()).co_qualname) }
}

/// The code's qualified name (see `CallerFrame::code_qualname`).
///
/// # Safety
/// `code` is a live code object and `globals` null or a live dict.
#[cfg(not(Py_3_11))]
pub(super) unsafe fn code_qualname(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
    globals: *mut PyObject,
) -> String {
    // SAFETY: forwarded contract.
    unsafe { super::qualname_search::code_qualname(py, code.cast(), globals) }
}
