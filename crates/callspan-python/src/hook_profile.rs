//! The profile hook on CPython 3.9–3.11: a C profile function (`PyEval_SetProfile` semantics).
//!
//! * **Every thread.** `install` sets it on every thread of the interpreter, the running ones
//!   too, with `_PyEval_SetProfile(tstate, ...)` — CPython's own setter, which takes any thread
//!   state and updates its tracing flags as the version needs (yappi does the same). Threads
//!   started later get it through `threading.setprofile(profile_thread_hook)`: on the thread's
//!   first profile event that Python-level hook replaces itself by the C function and hands it
//!   the event.
//! * **Per code object.** Every Python call reaches the function (there is no DISABLE before
//!   3.12); the decision is read from the code object's extra slot (`hook::decision`), so a call
//!   of code that is not profiled costs one slot read. C events return at once, except a
//!   `c_call` while a generator or coroutine of the session is suspended (it may be `close()`).
//! * **Generators and coroutines.** 'call' and 'return' come for each resume and yield; the
//!   frame object (fixed for the object's life) tells a resume from a new call, and the
//!   instruction a 'return' comes from tells a yield (`YIELD_VALUE`) from the real return
//!   (`RETURN_VALUE`).
//! * **Exceptions.** A call ended by an exception gets 'return' with no value; CPython sets the
//!   exception aside while the profile function runs (`call_trace_protected` fetches it into
//!   its own C locals: neither the frame nor the thread state holds it then), so the span has
//!   status ERROR with the type `<exception>` (3.12+ names it). A generator whose `close()`
//!   call was seen (`c_call`), or that exits at once from the yield it was resumed at, was
//!   closed: no error.
//! * **Another profiler.** `callspan.start_profile` refuses to start while `sys.getprofile()`
//!   or `threading.setprofile` hold another profiler on the calling thread (naming it); a
//!   profiler started later on a thread replaces callspan's hook on that thread. `stop` clears
//!   the profile function of every thread.

use crate::hook::{self, End};
use crate::python_frame::CallerFrame;
use crate::steps::Kind;
use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::collections::HashMap;
use std::ffi::c_int;

extern "C" {
    // Exported by CPython 3.9–3.11 (`Include/cpython/ceval.h`): sets the profile function of any
    // thread state; the GIL must be held.
    fn _PyEval_SetProfile(
        tstate: *mut ffi::PyThreadState,
        func: Option<ffi::Py_tracefunc>,
        arg: *mut ffi::PyObject,
    ) -> c_int;
}

/// `RETURN_VALUE` on 3.9–3.11.
const RETURN_VALUE: u8 = 83;

/// The `profile_thread_hook` builtin, which is also the profile object of every thread
/// (`sys.getprofile()` shows it while callspan profiles).
static THREAD_HOOK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn thread_hook(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    THREAD_HOOK
        .get_or_try_init(py, || {
            Ok(py
                .import("callspan._callspan")?
                .getattr("profile_thread_hook")?
                .unbind())
        })
        .map(|h| h.bind(py))
}

/// Sets `func` (None: clears) as the profile function of every thread.
fn set_on_every_thread(py: Python<'_>, func: Option<ffi::Py_tracefunc>) -> PyResult<()> {
    let obj = match func {
        Some(_) => thread_hook(py)?.as_ptr(),
        None => std::ptr::null_mut(),
    };
    // SAFETY: GIL held, so the thread list is stable while we walk it.
    unsafe {
        let interp = ffi::PyInterpreterState_Get();
        let mut tstate = ffi::PyInterpreterState_ThreadHead(interp);
        while !tstate.is_null() {
            if _PyEval_SetProfile(tstate, func, obj) != 0 {
                return Err(PyErr::fetch(py));
            }
            tstate = ffi::PyThreadState_Next(tstate);
        }
    }
    Ok(())
}

pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    set_on_every_thread(py, Some(profile))
}

pub(crate) fn uninstall(py: Python<'_>) -> PyResult<()> {
    RESUMED_AT.lock().take();
    CLOSING.lock().take();
    set_on_every_thread(py, None)
}

/// `threading.setprofile` hook: on a new thread's first event, installs the C profile
/// function on that thread and gives it the event.
#[pyfunction]
pub(crate) fn profile_thread_hook(
    py: Python<'_>,
    frame: &Bound<'_, PyAny>,
    event: &str,
    _arg: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if !hook::running() {
        return Ok(());
    }
    // SAFETY: GIL held; the hook object lives for the process.
    unsafe { ffi::PyEval_SetProfile(Some(profile), thread_hook(py)?.as_ptr()) };
    if event == "call" {
        // SAFETY: `frame` is the frame object of the call being reported.
        unsafe {
            profile(
                std::ptr::null_mut(),
                frame.as_ptr().cast(),
                ffi::PyTrace_CALL,
                std::ptr::null_mut(),
            )
        };
    }
    Ok(())
}

/// Where each running generator frame was last resumed (frame → lasti), to tell a close.
static RESUMED_AT: Mutex<Option<HashMap<usize, i32>>> = Mutex::new(None);

/// The profile function. Python calls and returns first; a C call matters only while a
/// generator or coroutine of the session is suspended (it may be its `close()`), and C returns
/// never.
unsafe extern "C" fn profile(
    _obj: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: CPython calls the profile function with the GIL held, a live frame and the
    // event's argument.
    unsafe {
        if what == ffi::PyTrace_CALL {
            on_call(frame);
        } else if what == ffi::PyTrace_RETURN {
            on_return(frame, arg);
        } else if what == ffi::PyTrace_C_CALL && hook::any_suspended() {
            note_close(arg);
        }
    }
    0
}

/// A Python frame starts (a call, or a generator's resume).
///
/// # Safety
/// GIL held; `frame` is the live frame being called.
#[inline]
unsafe fn on_call(frame: *mut ffi::PyFrameObject) {
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `frame` is the live frame being called.
    let Some(callee) = (unsafe { CallerFrame::from_frame_object(py, frame) }) else {
        return;
    };
    let code = callee.code().cast::<ffi::PyObject>();
    // SAFETY: `code` is the live code object of the frame being called.
    let Some(profiled) =
        (unsafe { hook::decision(py, code, || Some(callee)) }).and_then(|d| hook::profiled_of(d))
    else {
        return;
    };
    if profiled.kind == Kind::Plain {
        hook::on_start(py, profiled, code, || callee.back(), 0);
        return;
    }
    let key = frame as usize;
    RESUMED_AT
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(key, callee.lasti());
    if hook::is_suspended(key) {
        hook::on_resume(py, code, key);
    } else {
        hook::on_start(py, profiled, code, || callee.back(), key);
    }
}

/// A Python frame returns (`arg` is the value; null: an exception ends it), or a generator
/// yields.
///
/// # Safety
/// GIL held; `frame` is the live frame returning.
#[inline]
unsafe fn on_return(frame: *mut ffi::PyFrameObject, arg: *mut ffi::PyObject) {
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `frame` is the live frame returning.
    let Some(callee) = (unsafe { CallerFrame::from_frame_object(py, frame) }) else {
        return;
    };
    let code = callee.code().cast::<ffi::PyObject>();
    // SAFETY: as above.
    let Some(profiled) = (unsafe { hook::profiled_if_decided(code) }) else {
        return;
    };
    if profiled.kind == Kind::Plain {
        let end = if arg.is_null() {
            End::Raise(None)
        } else {
            End::Return
        };
        hook::on_end(py, code, || 0, end);
        return;
    }
    let key = frame as usize;
    let lasti = callee.lasti();
    let resumed_at = RESUMED_AT.lock().as_mut().and_then(|m| m.remove(&key));
    if arg.is_null() {
        // `close()` (GeneratorExit, a normal end): the step came from a `close` call, or the
        // exception left at once from the yield it was resumed at (throw() also does that).
        let closing = CLOSING.lock().as_mut().is_some_and(|c| c.remove(&key));
        let closed = closing || resumed_at == Some(lasti);
        let end = if closed {
            End::Return
        } else {
            End::Raise(None)
        };
        hook::on_end(py, code, || key, end);
    } else if opcode_at(py, code, lasti) == Some(RETURN_VALUE) {
        hook::on_end(py, code, || key, End::Return);
    } else {
        hook::on_suspend(py, code, key);
    }
}

/// Frame objects of generators and coroutines whose `close()` is being called.
static CLOSING: Mutex<Option<std::collections::HashSet<usize>>> = Mutex::new(None);

/// On a `c_call` of `close` bound to a suspended generator or coroutine of this session,
/// remembers its frame: the 'return' without a value that follows is GeneratorExit, not an
/// error. A type check and a pointer read for every other C call.
///
/// # Safety
/// GIL held; `func` is null or a live object.
#[inline]
unsafe fn note_close(func: *mut ffi::PyObject) {
    // SAFETY: the caller's contract; a PyCFunction's layout is public.
    unsafe {
        if func.is_null() || ffi::PyCFunction_Check(func) == 0 {
            return;
        }
        let owner = (*func.cast::<ffi::PyCFunctionObject>()).m_self;
        if owner.is_null()
            || (ffi::PyGen_CheckExact(owner) == 0 && ffi::PyCoro_CheckExact(owner) == 0)
        {
            return;
        }
        let ml = (*func.cast::<ffi::PyCFunctionObject>()).m_ml;
        if ml.is_null() || std::ffi::CStr::from_ptr((*ml).ml_name) != c"close" {
            return;
        }
        let frame = ffi::PyObject_GetAttrString(owner, c"gi_frame".as_ptr());
        let frame = if frame.is_null() {
            ffi::PyErr_Clear();
            ffi::PyObject_GetAttrString(owner, c"cr_frame".as_ptr())
        } else {
            frame
        };
        if frame.is_null() {
            ffi::PyErr_Clear();
            return;
        }
        let key = frame as usize;
        ffi::Py_DecRef(frame);
        if hook::is_suspended(key) {
            CLOSING
                .lock()
                .get_or_insert_with(std::collections::HashSet::new)
                .insert(key);
        }
    }
}

/// The opcode at byte offset `lasti` of `code` (`co_code`, read once per code object).
fn opcode_at(py: Python<'_>, code: *mut ffi::PyObject, lasti: i32) -> Option<u8> {
    thread_local! {
        static CO_CODE: std::cell::RefCell<HashMap<usize, Vec<u8>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    let cached = CO_CODE.with(|c| {
        c.borrow()
            .get(&(code as usize))
            .and_then(|b| b.get(lasti as usize).copied())
    });
    if cached.is_some() {
        return cached;
    }
    // SAFETY: a live code object (profiled ones are kept alive by the registry).
    let obj = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code) };
    let bytes: Vec<u8> = obj.getattr("co_code").ok()?.extract().ok()?;
    let op = bytes.get(lasti as usize).copied();
    CO_CODE.with(|c| c.borrow_mut().insert(code as usize, bytes));
    op
}
