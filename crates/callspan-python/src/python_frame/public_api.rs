//! The public-API route: the same functions as `direct`, through documented C API only.
//!
//! `build.rs` selects it for every CPython build whose struct layouts `layout` does not declare
//! (3.14+ until its layout is added, free-threaded builds), and for 3.11–3.13 when built with
//! `CALLSPAN_FRAME_PUBLIC_API=1` (a way to compare the routes in tests and benchmarks, and the
//! remedy when `verify` rejects an interpreter's layout). It uses `PyEval_GetFrame`,
//! `PyFrame_GetCode`, `PyFrame_GetLasti`, `PyFrame_GetBack`, `PyFrame_GetGlobals` and
//! `PyFrame_GetVar`, which are exact but, on 3.11+, create the frame object of an interpreter
//! frame that has none yet (an allocation per sampled call when the caller is a fresh frame).
//! On 3.11, which has no `PyFrame_GetVar`, the caller's `self`/`cls` is not read, so spans carry
//! no `caller.class.name`. Tested on 3.11–3.13. The 3.9–3.11 profile hook needs the direct
//! route (it is handed `_PyInterpreterFrame`s on 3.11): in a 3.11 public-API build
//! `start_profile` raises RuntimeError saying so.
//!
//! Frame objects obtained here stay owned by their interpreter frames (`frame_obj`), so returning
//! them borrowed is sound while the frames run.

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

use super::str_lossy;

/// A frame object of a running (or suspended) frame.
pub(super) type RawFrame = *mut ffi::PyFrameObject;

/// The innermost complete Python frame of this thread.
///
/// # Safety
/// The GIL is held by this thread.
pub(super) unsafe fn current(_py: Python<'_>) -> Option<RawFrame> {
    // SAFETY: GIL held; returns a borrowed frame object (or null).
    let f = unsafe { ffi::PyEval_GetFrame() };
    (!f.is_null()).then_some(f)
}

/// The frame a frame object stands for: the object itself on this route.
///
/// # Safety
/// `frame` is null or a live frame object whose frame is executing or suspended.
pub(super) unsafe fn from_frame_object(frame: *mut ffi::PyFrameObject) -> Option<RawFrame> {
    (!frame.is_null()).then_some(frame)
}

/// The frame's code object, borrowed.
///
/// # Safety
/// `f` is a live frame object.
pub(super) unsafe fn code(f: RawFrame) -> *mut ffi::PyCodeObject {
    // SAFETY: `f` is live; `PyFrame_GetCode` returns a new reference, released at once: the frame
    // keeps its code alive.
    unsafe {
        let c = ffi::PyFrame_GetCode(f);
        ffi::Py_DECREF(c.cast());
        c
    }
}

/// The executing instruction as a cache key: the code object's address and the offset.
///
/// # Safety
/// `f` is a live frame object; the GIL is held.
pub(super) unsafe fn instruction(f: RawFrame) -> (usize, i32) {
    // SAFETY: forwarded contract.
    unsafe { (code(f) as usize, lasti(f)) }
}

/// `frame.f_lasti` in bytes.
///
/// # Safety
/// `f` is a live frame object; the GIL is held.
pub(super) unsafe fn lasti(f: RawFrame) -> i32 {
    #[cfg(Py_3_11)]
    // SAFETY: `f` is live.
    unsafe {
        ffi::PyFrame_GetLasti(f)
    }
    #[cfg(not(Py_3_11))]
    {
        Python::attach(|py| {
            // SAFETY: `f` is live; `f_lasti` is a member of the built-in frame type.
            unsafe { Bound::from_borrowed_ptr(py, f.cast::<PyObject>()) }
                .getattr("f_lasti")
                .and_then(|v| v.extract::<i32>())
                .unwrap_or(-1)
        })
    }
}

/// The calling frame.
///
/// # Safety
/// `f` is a live frame object.
pub(super) unsafe fn back(f: RawFrame) -> Option<RawFrame> {
    // SAFETY: `f` is live; `PyFrame_GetBack` returns a new reference (or null), released at once:
    // the calling frame is kept alive by its interpreter frame (3.11+) or by `f->f_back`.
    unsafe {
        let b = ffi::PyFrame_GetBack(f);
        if b.is_null() {
            return None;
        }
        ffi::Py_DECREF(b.cast());
        Some(b)
    }
}

/// The frame's globals, borrowed.
///
/// # Safety
/// `f` is a live frame object; the GIL is held.
pub(super) unsafe fn globals(f: RawFrame) -> *mut PyObject {
    #[cfg(Py_3_11)]
    // SAFETY: `f` is live; `PyFrame_GetGlobals` returns a new reference, released at once: the
    // frame's function owns its globals.
    unsafe {
        let g = ffi::PyFrame_GetGlobals(f);
        if !g.is_null() {
            ffi::Py_DECREF(g);
        }
        g
    }
    #[cfg(not(Py_3_11))]
    {
        Python::attach(|py| {
            // SAFETY: `f` is live; `f_globals` is a member of the built-in frame type.
            unsafe { Bound::from_borrowed_ptr(py, f.cast::<PyObject>()) }
                .getattr("f_globals")
                .map(|g| g.as_ptr())
                .unwrap_or(std::ptr::null_mut())
        })
    }
}

/// The value of the first positional argument (3.12+), borrowed.
///
/// # Safety
/// `f` is a live frame object.
pub(super) unsafe fn first_arg_slot(py: Python<'_>, f: RawFrame) -> Option<*mut PyObject> {
    #[cfg(Py_3_12)]
    // SAFETY: `f` is live, so is its code; `PyFrame_GetVar` returns a new reference (released at
    // once: the frame's slot or cell holds it) or null with `NameError` set (unbound or deleted),
    // which is cleared.
    unsafe {
        let name = first_param_name(py, code(f))?;
        let v = ffi::PyFrame_GetVar(f, name);
        if v.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        ffi::Py_DECREF(v);
        Some(v)
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = (py, f);
        None
    }
}

/// Extra slot `index` of a code object (null when unset or on error).
///
/// # Safety
/// `code` is a live code object; `index` was requested.
pub(super) unsafe fn code_extra(
    code: *mut PyObject,
    index: ffi::Py_ssize_t,
) -> *mut std::ffi::c_void {
    // SAFETY: forwarded contract.
    unsafe { super::code_extra_public(code, index) }
}

/// An attribute of the built-in code type (C getters and members: no user code).
///
/// # Safety
/// `code` is a live code object.
unsafe fn code_attr<'py>(
    py: Python<'py>,
    code: *mut ffi::PyCodeObject,
    name: &str,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: forwarded contract.
    unsafe { Bound::from_borrowed_ptr(py, code.cast::<PyObject>()) }
        .getattr(name)
        .ok()
}

/// The text of a `str` attribute of the code object, empty when missing.
///
/// # Safety
/// `code` is a live code object.
unsafe fn code_str_attr(py: Python<'_>, code: *mut ffi::PyCodeObject, names: &[&str]) -> String {
    names
        .iter()
        // SAFETY: forwarded contract.
        .find_map(|name| unsafe { code_attr(py, code, name) })
        // SAFETY: `v` is a live object the code owns.
        .map(|v| unsafe { str_lossy(py, v.as_ptr()) })
        .unwrap_or_default()
}

/// `co_filename`, copied.
///
/// # Safety
/// `code` is a live code object.
pub(super) unsafe fn code_filename(py: Python<'_>, code: *mut ffi::PyCodeObject) -> String {
    // SAFETY: forwarded contract.
    unsafe { code_str_attr(py, code, &["co_filename"]) }
}

/// Name of the first positional parameter, borrowed, if `co_argcount >= 1`.
///
/// # Safety
/// `code` is a live code object.
pub(super) unsafe fn first_param_name(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
) -> Option<*mut PyObject> {
    // SAFETY: forwarded contract.
    let argc: i32 = unsafe { code_attr(py, code, "co_argcount") }?
        .extract()
        .ok()?;
    if argc < 1 {
        return None;
    }
    // SAFETY: forwarded contract.
    let names = unsafe { code_attr(py, code, "co_varnames") }?;
    let first = names.get_item(0).ok()?;
    // Interned, and also held by the code's cached names tuple.
    Some(first.as_ptr())
}

/// `co_qualname` (3.11+; `co_name` before, which this route does not search further).
///
/// # Safety
/// `code` is a live code object.
pub(super) unsafe fn code_qualname(
    py: Python<'_>,
    code: *mut ffi::PyCodeObject,
    _globals: *mut PyObject,
) -> String {
    // SAFETY: forwarded contract.
    unsafe { code_str_attr(py, code, &["co_qualname", "co_name"]) }
}
