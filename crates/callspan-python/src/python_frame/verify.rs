//! Layout verification: the start-up check that the [`layout`](super::layout) structs match the
//! running interpreter, before the direct route reads anything through them.
//!
//! The compile-time asserts in `layout` prove the structs match the *headers* they were copied
//! from; this proves the *running* interpreter is laid out like those headers (a patched or
//! differently configured build with the same version number would not be). It runs once, at
//! module import, on the frame that imports callspan, and compares, each against an independent
//! public source:
//!
//! * the interpreter's minor version against the one this build was compiled for;
//! * the type sizes CPython reports (`tp_basicsize` of frame and code objects, and on 3.11 of
//!   generators, coroutines and async generators, whose frame trails them) against the
//!   structs' sizes, which pins the trailing fields;
//! * on 3.11+, the thread state's interpreter and current-frame pointers against
//!   `PyThreadState_GetInterpreter` and `PyEval_GetFrame` (before anything read through the
//!   thread-state layout is dereferenced further);
//! * for the current frame and its caller: the frame itself (also as reached from the public frame
//!   object by `CallerFrame::from_frame_object`, the profile hook's way in), its code object,
//!   `lasti` against `frame.f_lasti`, its globals, and the code object's integer and object fields
//!   against the code object's own attributes (C getters of a built-in type: no user code).
//!
//! The first mismatch is returned as an `Err` naming the field and both values; the caller
//! (`caller::check_frame_layout`) then logs it and turns caller attributes off for the process.

use std::mem::offset_of;
use std::ptr;

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

use super::direct::{
    back, code, context_vars, current, first_param_name, globals, lasti, RawFrame,
};
use super::layout::*;
#[cfg(Py_3_11)]
use super::quirks::first_complete;
use super::CallerFrame;

/// Runs every check on the calling thread's current frame; `Err` names the first mismatch.
pub(super) fn verify_layout(py: Python<'_>) -> Result<(), String> {
    verify_version()?;
    // SAFETY: GIL held (`py`). The type objects are static; reads through the thread-state
    // layout are only dereferenced further once the pointer read has matched the public API.
    unsafe {
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
            let expect = offset_of!(FrameObject, _f_frame_data) + offset_of!(IFrame, localsplus);
            check(basic == expect, "frame type size", basic, expect)?;
            #[cfg(not(Py_3_12))]
            for (name, tp) in [
                ("generator", ptr::addr_of!(ffi::PyGen_Type)),
                ("coroutine", ptr::addr_of!(ffi::PyCoro_Type)),
                ("async generator", ptr::addr_of!(ffi::PyAsyncGen_Type)),
            ] {
                // The object's frame trails it: `tp_basicsize` is the frame's offset plus the
                // frame's fixed part.
                let basic = (*tp).tp_basicsize as usize;
                let expect = offset_of!(GenObject, gi_iframe) + offset_of!(IFrame, localsplus);
                check(basic == expect, name, basic, expect)?;
            }
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
    }

    // SAFETY: GIL held; `current` and `back` return frames of the live chain, `PyEval_GetFrame`
    // a borrowed frame object of the running frame and `PyFrame_GetBack` a new reference, released
    // below.
    unsafe {
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

/// Compares the direct route's view of frame `f` with the public frame object `public` of the
/// same frame.
///
/// # Safety
/// GIL held; `f` is a frame of the live chain and `public` a live frame object.
unsafe fn verify_frame(
    py: Python<'_>,
    f: RawFrame,
    public: *mut ffi::PyFrameObject,
) -> Result<(), String> {
    // SAFETY: `f` and `public` are live (contract); `PyFrame_GetCode` returns a new reference to
    // the code the frame keeps alive (released at once, the pointer stays valid); the code object
    // is read through the layout only after it matched the public one; attribute reads are C
    // getters of the built-in frame and code types.
    unsafe {
        let via_object = CallerFrame::from_frame_object(py, public).map(|frame| frame.raw);
        check(
            via_object == Some(f),
            "frame object -> frame",
            via_object.map_or(0, |p| p as usize),
            f as usize,
        )?;
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

/// Checks that [`context_vars`] reads the thread's current context's variables: a copy of the
/// current context, entered with `PyContext_Enter`, must be the context found through the
/// thread-state layout, its variables a `hamt` that a `ContextVar.set` in it replaces with one
/// holding one entry more. Runs on the calling thread, which is left in the context it was in.
pub(super) fn verify_context_vars(_py: Python<'_>) -> Result<(), String> {
    let is_hamt = |vars: *mut PyObject| {
        // SAFETY: GIL held; `vars` is checked non-null and then is a live object (read from a
        // context confirmed to be the entered one), whose type's name is a static C string.
        !vars.is_null()
            && unsafe { std::ffi::CStr::from_ptr((*ffi::Py_TYPE(vars)).tp_name) }.to_bytes()
                == b"hamt"
    };
    // SAFETY: GIL held. `copy` is a new context, entered and exited here; the thread state's
    // `context` field is read as a pointer only, and dereferenced (through `context_vars`) after
    // it matched the entered context; every new reference is released.
    unsafe {
        let copy = ffi::PyContext_CopyCurrent();
        if copy.is_null() {
            ffi::PyErr_Clear();
            return Err("PyContext_CopyCurrent failed".to_owned());
        }
        if ffi::PyContext_Enter(copy) != 0 {
            ffi::PyErr_Clear();
            ffi::Py_DECREF(copy);
            return Err("PyContext_Enter failed".to_owned());
        }
        let result = (|| {
            let tstate = ffi::PyThreadState_Get().cast::<u8>();
            let found = *tstate.add(THREAD_STATE_CONTEXT).cast::<*mut PyObject>();
            check(
                found == copy,
                "tstate->context",
                found as usize,
                copy as usize,
            )?;
            let before = context_vars();
            check(
                is_hamt(before),
                "context variables type",
                before as usize,
                0,
            )?;
            let var = ffi::PyContextVar_New(c"callspan-layout-check".as_ptr(), ptr::null_mut());
            if var.is_null() {
                ffi::PyErr_Clear();
                return Err("PyContextVar_New failed".to_owned());
            }
            let token = ffi::PyContextVar_Set(var, ffi::Py_None());
            let after = context_vars();
            let sizes = (ffi::PyObject_Size(before), ffi::PyObject_Size(after));
            ffi::PyErr_Clear();
            if !token.is_null() {
                ffi::Py_DECREF(token);
            }
            ffi::Py_DECREF(var);
            check(!token.is_null(), "ContextVar.set", 0, 0)?;
            check(
                after != before && is_hamt(after),
                "context variables after a set",
                after as usize,
                before as usize,
            )?;
            check(
                sizes.0 >= 0 && sizes.1 == sizes.0 + 1,
                "context variables count after a set",
                sizes.1 as usize,
                sizes.0 as usize + 1,
            )
        })();
        if ffi::PyContext_Exit(copy) != 0 {
            ffi::PyErr_Clear();
        }
        ffi::Py_DECREF(copy);
        result
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
fn verify_version() -> Result<(), String> {
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
    // SAFETY: `Py_GetVersion` returns a static NUL-terminated string.
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
