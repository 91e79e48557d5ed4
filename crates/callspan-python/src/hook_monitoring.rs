//! The profile hook on CPython 3.12+: `sys.monitoring` with a tool id of callspan's own.
//!
//! The callbacks are C-level callables, as `_lsprof` registers C functions: no Python frame runs
//! per event. Each is an instance of a small type of our own ([`Callback`]) whose vectorcall slot
//! is the event's function, so CPython calls straight into it (a `PyCFunction` would add a call
//! layer with a recursion-depth check per event). The tool id is the first free one of 3, 4, 5,
//! 1, 0 — never `PROFILER_ID` (2), so cProfile, yappi and debuggers keep working beside callspan.
//!
//! * `PY_START` is the only event on for all code. Its first call of a code object decides
//!   (`hook::decision`); code that is not profiled returns `sys.monitoring.DISABLE`, so CPython
//!   removes the event from that code object: the filter costs nothing after the first call.
//!   A profiled code object gets its local events (`PY_RETURN`, `PY_YIELD`, `PY_RESUME`) on.
//! * `PY_RETURN`, `PY_YIELD` and `PY_UNWIND` end or suspend this thread's innermost running call
//!   when the event's code object (and, for a generator or coroutine, its frame) is that call's:
//!   they read no decision. `PY_UNWIND` and `PY_THROW` cannot be local (CPython refuses them per
//!   code object): they are global, and return at once for code that is not running profiled
//!   (`PY_UNWIND`: the innermost running call is another's; `PY_THROW`: one extra-slot read).
//! * `stop` turns every event off, unregisters the callbacks and frees the tool id;
//!   `sys.monitoring.restart_events()` at the next start re-arms the code DISABLE turned off.

use crate::hook::{self, End, Profiled};
use crate::python_frame;
use crate::steps::Kind;
use crate::traced::{member, slot};
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::ffi::c_void;
use std::mem::offset_of;
use std::ptr;
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

/// `(event attribute, callback)` for each event callspan listens to.
const CALLBACKS: [(&str, ffi::vectorcallfunc); 6] = [
    ("PY_START", py_start),
    ("PY_RETURN", py_return),
    ("PY_YIELD", py_yield),
    ("PY_RESUME", py_resume),
    ("PY_THROW", py_resume),
    ("PY_UNWIND", py_unwind),
];

/// The object layout of a callback: `#[repr(C)]` because CPython reads `vectorcall` at the
/// offset published as `__vectorcalloffset__`.
#[repr(C)]
struct Callback {
    ob_base: ffi::PyObject,
    /// The event's function; CPython calls through this slot.
    vectorcall: Option<ffi::vectorcallfunc>,
}

/// `callspan._callspan.MonitoringCallback`, the type of every callback (made at the first
/// install; a strong reference for the life of the process).
static CALLBACK_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn callback_type(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    CALLBACK_TYPE.get_or_try_init(py, || {
        // CPython keeps pointers into these tables for the life of the type: leak them.
        let members: &'static mut [ffi::PyMemberDef] = Box::leak(Box::new([
            member(c"__vectorcalloffset__", offset_of!(Callback, vectorcall)),
            ffi::PyMemberDef::default(),
        ]));
        let slots: &'static mut [ffi::PyType_Slot] = Box::leak(Box::new([
            slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
            slot(ffi::Py_tp_members, members.as_mut_ptr().cast()),
            slot(
                ffi::Py_tp_doc,
                c"A sys.monitoring callback of callspan's profile hook.".as_ptr() as *mut c_void,
            ),
            slot(0, ptr::null_mut()),
        ]));
        let flags = ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_HAVE_VECTORCALL
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION
            | ffi::Py_TPFLAGS_IMMUTABLETYPE;
        let spec: &'static mut ffi::PyType_Spec = Box::leak(Box::new(ffi::PyType_Spec {
            name: c"callspan._callspan.MonitoringCallback".as_ptr(),
            basicsize: std::mem::size_of::<Callback>() as std::ffi::c_int,
            itemsize: 0,
            flags: flags as _,
            slots: slots.as_mut_ptr(),
        }));
        // SAFETY: the spec and everything it points to live forever; GIL held.
        let tp = unsafe { ffi::PyType_FromSpec(spec) };
        // SAFETY: a new reference, or null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, tp) }.map(Bound::unbind)
    })
}

/// A new callback calling `function`.
fn new_callback(py: Python<'_>, function: ffi::vectorcallfunc) -> PyResult<Bound<'_, PyAny>> {
    let tp = callback_type(py)?.as_ptr().cast::<ffi::PyTypeObject>();
    // SAFETY: GIL held; `tp` is our live type, whose instances are `Callback`s.
    unsafe {
        let obj = ffi::PyType_GenericAlloc(tp, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        (*obj.cast::<Callback>()).vectorcall = Some(function);
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

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
        for (event_name, function) in CALLBACKS {
            let callback = new_callback(py, function)?;
            mon.call_method1(
                "register_callback",
                (tool, event(py, event_name)?, callback),
            )?;
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
    for (event_name, _) in CALLBACKS {
        mon.call_method1(
            "register_callback",
            (tool, event(py, event_name)?, py.None()),
        )?;
    }
    mon.call_method1("free_tool_id", (tool,))?;
    Ok(())
}

/// Returns None (as a new reference: None is immortal on 3.12+, whose `Py_RETURN_NONE`
/// returns it without an incref, and so does this).
#[inline]
fn none() -> *mut ffi::PyObject {
    // SAFETY: a pointer to the static None; nothing is read or written through it.
    unsafe { ffi::Py_None() }
}

/// The frame object of the frame running now (a callback runs on top of the frame of its
/// event): the identity of a generator's or coroutine's call across its steps.
#[inline]
fn current_frame_key() -> usize {
    // SAFETY: GIL held (callbacks only). A generator's frame object lives with the generator.
    unsafe { ffi::PyEval_GetFrame() as usize }
}

/// The frame object of a profiled generator or coroutine running now; 0 for a plain function,
/// whose calls need none (and would otherwise get a frame object made for every call).
fn frame_key(profiled: &Profiled) -> usize {
    if profiled.kind == Kind::Plain {
        0
    } else {
        current_frame_key()
    }
}

/// Turns on the local events of a profiled code object (once per session); false, with a
/// warning, if they could not be.
#[cold]
fn enable_local_events(py: Python<'_>, code: *mut ffi::PyObject) -> bool {
    let tool = TOOL.load(Ordering::Relaxed);
    let events = LOCAL_EVENTS.load(Ordering::Relaxed);
    // SAFETY: the callback's live code object.
    let code_obj = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code) };
    match monitoring(py).and_then(|m| m.call_method1("set_local_events", (tool, code_obj, events)))
    {
        Ok(_) => {
            LOCAL.lock().push(code as usize);
            true
        }
        Err(e) => {
            tracing::warn!("profile hook: the return events could not be turned on: {e}");
            false
        }
    }
}

/// The event's code object: every callback's first argument.
///
/// # Safety
/// CPython's callback contract: `args` has `PyVectorcall_NARGS(nargsf)` valid arguments.
#[inline]
unsafe fn event_code(args: *const *mut ffi::PyObject, nargsf: usize) -> Option<*mut ffi::PyObject> {
    // SAFETY: the caller's contract.
    (unsafe { ffi::PyVectorcall_NARGS(nargsf) } >= 1).then(|| unsafe { *args })
}

/// `PY_START(code, instruction_offset)`: decides a code object on its first call (DISABLE if it
/// is not profiled), else starts the call. The frame is looked up only to decide, and for the
/// caller only when the call is sampled or counted.
unsafe extern "C" fn py_start(
    _callback: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    let Some(code) = (unsafe { event_code(args, nargsf) }) else {
        return none();
    };
    // SAFETY: CPython calls callbacks with the GIL held.
    let py = unsafe { Python::assume_attached() };
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
    if hook::first_local_events(decision) && !enable_local_events(py, code) {
        return none();
    }
    // SAFETY: a PY_START callback, GIL held.
    let caller = || unsafe { python_frame::caller_of_starting(py, code) };
    hook::on_start(py, profiled, code, caller, frame_key(profiled));
    none()
}

/// `PY_RETURN(code, instruction_offset, retval)`.
unsafe extern "C" fn py_return(
    _callback: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    if let Some(code) = unsafe { event_code(args, nargsf) } {
        // SAFETY: callbacks run with the GIL held.
        let py = unsafe { Python::assume_attached() };
        hook::on_return(py, code, current_frame_key);
    }
    none()
}

/// `PY_UNWIND(code, instruction_offset, exception)`.
unsafe extern "C" fn py_unwind(
    _callback: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    if let Some(code) = unsafe { event_code(args, nargsf) } {
        // SAFETY: callbacks run with the GIL held.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: the third argument, when given, is the exception (borrowed for the call).
        let exc = (unsafe { ffi::PyVectorcall_NARGS(nargsf) } >= 3)
            .then(|| unsafe { Bound::from_borrowed_ptr(py, *args.add(2)) });
        hook::on_end(py, code, current_frame_key, End::Raise(exc));
    }
    none()
}

/// `PY_YIELD(code, instruction_offset, retval)` (only generator and coroutine code yields).
unsafe extern "C" fn py_yield(
    _callback: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    if let Some(code) = unsafe { event_code(args, nargsf) } {
        // SAFETY: callbacks run with the GIL held.
        let py = unsafe { Python::assume_attached() };
        hook::on_suspend(py, code, current_frame_key());
    }
    none()
}

/// `PY_RESUME(code, instruction_offset)`, and `PY_THROW` (resumed by `throw()`): global, so the
/// code's decision is read first (no frame object is asked of code that is not profiled).
unsafe extern "C" fn py_resume(
    _callback: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's callback contract.
    if let Some(code) = unsafe { event_code(args, nargsf) } {
        // SAFETY: GIL held; a live code object.
        if let Some(profiled) = unsafe { hook::profiled_if_decided(code) } {
            // SAFETY: callbacks run with the GIL held.
            let py = unsafe { Python::assume_attached() };
            hook::on_resume(py, code, frame_key(profiled));
        }
    }
    none()
}
