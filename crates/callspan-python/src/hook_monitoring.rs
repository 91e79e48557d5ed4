//! The profile hook on CPython 3.12+: `sys.monitoring` with a tool id of callspan's own.
//!
//! The callbacks are C functions (`METH_FASTCALL` builtins), as `_lsprof` registers them: no
//! Python frame runs per event. The tool id is the first free one of 3, 4, 5, 1, 0 — never
//! `PROFILER_ID` (2), so cProfile, yappi and debuggers keep working beside callspan.
//!
//! * `PY_START` is the only event on for all code. Its first call of a code object decides
//!   (`hook::decision`); code that is not profiled returns `sys.monitoring.DISABLE`, so CPython
//!   removes the event from that code object: the filter costs nothing after the first call.
//!   A profiled code object gets its local events (`PY_RETURN`, `PY_YIELD`, `PY_RESUME`) on.
//! * `PY_UNWIND` and `PY_THROW` cannot be local (CPython refuses them per code object): they are
//!   global and return at once for code that is not profiled (one extra-slot read).
//! * `stop` turns every event off, unregisters the callbacks and frees the tool id;
//!   `sys.monitoring.restart_events()` at the next start re-arms the code DISABLE turned off.

use crate::hook::{self, End, Profiled};
use crate::python_frame;
use crate::steps::Kind;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

/// The tool id in use (-1: none).
static TOOL: AtomicI32 = AtomicI32::new(-1);

/// `PY_RETURN | PY_YIELD | PY_RESUME`: the local events of a profiled code object (read at
/// install).
static LOCAL_EVENTS: AtomicI64 = AtomicI64::new(0);

/// `sys.monitoring.DISABLE`.
static DISABLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The code objects whose local events are on (kept alive by the registry).
static LOCAL: parking_lot::Mutex<Vec<usize>> = parking_lot::Mutex::new(Vec::new());

const PREFERRED_TOOLS: [i32; 5] = [3, 4, 5, 1, 0];

/// `(name, event attribute, callback)` for each event callspan listens to.
const CALLBACKS: [(&std::ffi::CStr, &str, ffi::PyCFunctionFast); 6] = [
    (c"callspan_py_start", "PY_START", py_start),
    (c"callspan_py_return", "PY_RETURN", py_return),
    (c"callspan_py_yield", "PY_YIELD", py_yield),
    (c"callspan_py_resume", "PY_RESUME", py_resume),
    (c"callspan_py_throw", "PY_THROW", py_resume),
    (c"callspan_py_unwind", "PY_UNWIND", py_unwind),
];

fn monitoring(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import("sys")?.getattr("monitoring")
}

fn event(py: Python<'_>, name: &str) -> PyResult<i64> {
    monitoring(py)?.getattr("events")?.getattr(name)?.extract()
}

/// Takes a tool id and turns the hook on.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let mon = monitoring(py)?;
    let mut holders = Vec::new();
    let mut tool = None;
    for id in PREFERRED_TOOLS {
        let holder = mon.call_method1("get_tool", (id,))?;
        if holder.is_none() {
            tool = Some(id);
            break;
        }
        holders.push(format!("{id}: {}", holder.str()?));
    }
    let Some(tool) = tool else {
        return Err(PyRuntimeError::new_err(format!(
            "callspan.start_profile: every sys.monitoring tool id callspan may use is taken ({}); \
             free one with sys.monitoring.free_tool_id()",
            holders.join(", ")
        )));
    };
    DISABLE.get_or_try_init(py, || mon.getattr("DISABLE").map(Bound::unbind))?;
    LOCAL_EVENTS.store(
        event(py, "PY_RETURN")? | event(py, "PY_YIELD")? | event(py, "PY_RESUME")?,
        Ordering::Relaxed,
    );
    mon.call_method1("use_tool_id", (tool, "callspan"))?;
    TOOL.store(tool, Ordering::Relaxed);
    let result = (|| {
        for (name, event_name, callback) in CALLBACKS {
            // The definitions live for the process: CPython keeps pointers into them.
            let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFast: callback,
                },
                ml_flags: ffi::METH_FASTCALL,
                ml_doc: c"callspan's profile hook callback.".as_ptr(),
            }));
            // SAFETY: a static method definition, GIL held.
            let func = unsafe { ffi::PyCFunction_New(def, std::ptr::null_mut()) };
            if func.is_null() {
                return Err(PyErr::fetch(py));
            }
            // SAFETY: a new reference.
            let func = unsafe { Bound::from_owned_ptr(py, func) };
            let func = func.cast_into::<PyCFunction>()?;
            mon.call_method1("register_callback", (tool, event(py, event_name)?, func))?;
        }
        let global = event(py, "PY_START")? | event(py, "PY_UNWIND")? | event(py, "PY_THROW")?;
        mon.call_method1("restart_events", ())?;
        mon.call_method1("set_events", (tool, global))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = uninstall(py);
    }
    result
}

/// Turns the hook off and frees the tool id.
pub(crate) fn uninstall(py: Python<'_>) -> PyResult<()> {
    let tool = TOOL.swap(-1, Ordering::Relaxed);
    if tool < 0 {
        return Ok(());
    }
    let mon = monitoring(py)?;
    mon.call_method1("set_events", (tool, 0))?;
    for code in std::mem::take(&mut *LOCAL.lock()) {
        // SAFETY: the registry keeps profiled code objects alive.
        let code = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code as *mut ffi::PyObject) };
        mon.call_method1("set_local_events", (tool, code, 0))?;
    }
    for (_, event_name, _) in CALLBACKS {
        mon.call_method1(
            "register_callback",
            (tool, event(py, event_name)?, py.None()),
        )?;
    }
    mon.call_method1("free_tool_id", (tool,))?;
    Ok(())
}

/// Returns None (new reference).
fn none() -> *mut ffi::PyObject {
    // SAFETY: Py_None is immortal on 3.12+; the incref keeps the count honest anyway.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_IncRef(none);
        none
    }
}

/// The frame object of the running generator or coroutine frame (its identity across steps);
/// 0 for a plain function, whose calls need none.
fn frame_key(profiled: &Profiled) -> usize {
    if profiled.kind == Kind::Plain {
        return 0;
    }
    // SAFETY: GIL held; the current frame is the profiled one (callbacks run on top of it).
    unsafe { ffi::PyEval_GetFrame() as usize }
}

/// Turns on the local events of a profiled code object.
fn enable_local_events(py: Python<'_>, code: *mut ffi::PyObject) -> PyResult<()> {
    let tool = TOOL.load(Ordering::Relaxed);
    let events = LOCAL_EVENTS.load(Ordering::Relaxed);
    // SAFETY: the callback's live code object.
    let code_obj = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code) };
    monitoring(py)?.call_method1("set_local_events", (tool, code_obj, events))?;
    LOCAL.lock().push(code as usize);
    Ok(())
}

/// `PY_START(code, instruction_offset)`: decides a code object on its first call (DISABLE if it
/// is not profiled), else starts the call. The frame is looked up only to decide, and for the
/// caller only when the call is sampled or counted.
unsafe extern "C" fn py_start(
    _slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    if nargs < 1 {
        return none();
    }
    // SAFETY: CPython calls callbacks with the GIL held and valid arguments.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: nargs >= 1: the first argument is the code object.
    let code = unsafe { *args };
    // SAFETY: GIL held; the frame current now is the starting function's.
    let callee = || unsafe { python_frame::caller_frame(py) };
    // SAFETY: `code` is the live code object of the starting frame.
    let Some(decision) = (unsafe { hook::decision(py, code, callee) }) else {
        return none();
    };
    let Some(profiled) = hook::profiled_of(decision) else {
        // Never again for this code object (until restart_events()).
        return DISABLE
            .get(py)
            .map_or_else(none, |d| d.clone_ref(py).into_ptr());
    };
    if hook::first_local_events(decision) {
        if let Err(e) = enable_local_events(py, code) {
            tracing::warn!("profile hook: the return events could not be turned on: {e}");
            return none();
        }
    }
    // The caller is the callee frame's f_back (skip nothing if the callee is not yet listed).
    let caller = || match callee() {
        Some(f) if f.code().cast::<ffi::PyObject>() == code => f.back(),
        other => other,
    };
    hook::on_start(py, profiled, code, caller, frame_key(profiled));
    none()
}

/// A running call of a profiled function, as a callback sees it.
struct ProfiledCall {
    profiled: &'static Profiled,
    code: *mut ffi::PyObject,
    frame_key: usize,
}

/// What every callback but `PY_START` does first: its code object (the first argument) is a
/// profiled function's, else nothing is to be done; then `step` runs with it.
///
/// # Safety
/// CPython's callback contract: GIL held, `args` has `nargs` valid arguments.
#[inline]
unsafe fn on_profiled(
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    step: impl FnOnce(Python<'_>, ProfiledCall),
) -> *mut ffi::PyObject {
    if nargs >= 1 {
        // SAFETY: nargs >= 1: the first argument is the code object.
        let code = unsafe { *args };
        // SAFETY: GIL held; a live code object.
        if let Some(profiled) = unsafe { hook::profiled_if_decided(code) } {
            // SAFETY: callbacks run with the GIL held.
            let py = unsafe { Python::assume_attached() };
            let frame_key = frame_key(profiled);
            step(
                py,
                ProfiledCall {
                    profiled,
                    code,
                    frame_key,
                },
            );
        }
    }
    none()
}

/// `PY_RETURN(code, instruction_offset, retval)`.
unsafe extern "C" fn py_return(
    _slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    unsafe {
        on_profiled(args, nargs, |py, c| {
            hook::on_end(py, c.profiled, c.code, c.frame_key, End::Return)
        })
    }
}

/// `PY_UNWIND(code, instruction_offset, exception)`.
unsafe extern "C" fn py_unwind(
    _slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    unsafe {
        on_profiled(args, nargs, |py, c| {
            // SAFETY: the third argument, when given, is the exception (borrowed for the call).
            let exc = (nargs >= 3).then(|| Bound::from_borrowed_ptr(py, *args.add(2)));
            hook::on_end(py, c.profiled, c.code, c.frame_key, End::Raise(exc));
        })
    }
}

/// `PY_YIELD(code, instruction_offset, retval)`.
unsafe extern "C" fn py_yield(
    _slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    unsafe {
        on_profiled(args, nargs, |py, c| {
            hook::on_suspend(py, c.code, c.frame_key)
        })
    }
}

/// `PY_RESUME(code, instruction_offset)`, and `PY_THROW` (resumed by `throw()`).
unsafe extern "C" fn py_resume(
    _slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    unsafe {
        on_profiled(args, nargs, |py, c| {
            hook::on_resume(py, c.code, c.frame_key)
        })
    }
}
