//! An exception escaping a traced call, described for the span's `exception` event.
//!
//! The exception itself propagates unchanged: it is fetched, described, and restored as the
//! very same object. An exception unwinding through N traced layers is the same object at every
//! layer, so it is described once (type, message, traceback) and each further layer only reads
//! the traceback entries added since: O(1) per layer, not O(depth). The last exception described
//! on a thread is remembered by identity; to make that identity safe (its address cannot be reused
//! while remembered) the thread's state dict keeps the exception and the traceback head it was
//! described at until the next exception is described on that thread.
//!
//! Nothing here formats text: the traceback is kept as (code id, line) pairs — code objects
//! interned in the registry as the caller side does — and the `exception.stacktrace` string is
//! rendered on the exporter thread. The message is read from `args` when the type's `__str__` is
//! `BaseException`'s and `args` is empty or one exact `str`; otherwise `str(exc)` runs the
//! type's `__str__`, once per exception (a failure there is contained and noted in the message),
//! as an unsampled context: traced calls it makes are not recorded under a parent-based sampler.

use callspan_core::context::{self, ParentSpan};
use callspan_core::record::{CallerSite, ExceptionInfo, TracebackEntry};
use callspan_core::registry::{intern, CodeInfo, Registry};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use std::cell::RefCell;
use std::sync::Arc;

/// The last exception described on this thread. Plain addresses, no Python references: the
/// thread-state dict entry [`HELD_KEY`] holds the objects (and is cleared by CPython, with the
/// GIL, when the thread ends), and a thread's exit may drop this without the GIL.
struct Described {
    exception: usize,
    traceback: usize,
    info: ExceptionInfo,
}

thread_local! {
    static LAST: RefCell<Option<Described>> = const { RefCell::new(None) };
}

/// Key in the thread-state dict of `(exception, traceback head)` of [`LAST`].
static HELD_KEY: PyOnceLock<Py<PyString>> = PyOnceLock::new();

/// Describes the exception currently set (the call returned NULL) and leaves it set.
///
/// Out of line: the entry points that call it (`traced_vectorcall`) must keep no cleanup of
/// their own across their call into Python (see `thread_exit`), and the describing work, with
/// its thread-locals and reference-counted values, is the rare path.
#[inline(never)]
#[cold]
pub(crate) fn capture_current(py: Python<'_>) -> ExceptionInfo {
    let err = PyErr::fetch(py);
    // The traceback as the interpreter has it now (before 3.12 `__traceback__` of an exception
    // that has not reached a handler yet may lag behind it).
    let traceback = err.traceback(py).map(|tb| tb.into_any());
    let info = describe(py, err.value(py).as_any(), traceback.as_ref());
    err.restore(py);
    info
}

/// Describes `err`, an exception that is not currently set (one a coroutine or generator step
/// raised).
pub(crate) fn describe_error(py: Python<'_>, err: &PyErr) -> ExceptionInfo {
    let traceback = err.traceback(py).map(|tb| tb.into_any());
    describe(py, err.value(py).as_any(), traceback.as_ref())
}

fn describe(
    py: Python<'_>,
    exception: &Bound<'_, PyAny>,
    traceback: Option<&Bound<'_, PyAny>>,
) -> ExceptionInfo {
    let registry = callspan_core::registry::global();
    let exception_key = exception.as_ptr() as usize;
    let traceback_key = traceback.map_or(0, |tb| tb.as_ptr() as usize);
    let last = LAST.with(|last| last.borrow_mut().take());
    let same_exception = last
        .as_ref()
        .is_some_and(|d| d.exception == exception_key && held_exception(py) == exception_key);
    let info = match last {
        Some(last) if same_exception => {
            let frames = if last.traceback == traceback_key {
                last.info.traceback.clone()
            } else {
                let (new, reached) = walk(py, traceback, last.traceback, registry);
                let tail = if reached {
                    last.info.traceback.clone()
                } else {
                    None
                };
                prepend(new, tail)
            };
            ExceptionInfo {
                traceback: frames,
                ..last.info
            }
        }
        _ => {
            let ty = exception.get_type();
            let type_name = crate::caller::class_name(&ty);
            let message = message(py, exception, &ty, &type_name);
            let (frames, _) = walk(py, traceback, 0, registry);
            ExceptionInfo {
                type_name: type_name.into(),
                message: message.into(),
                traceback: prepend(frames, None),
            }
        }
    };
    // Describing may have run `__str__`, which may have described other exceptions: ours is
    // the last one now.
    hold(py, exception, traceback);
    LAST.with(|last| {
        *last.borrow_mut() = Some(Described {
            exception: exception_key,
            traceback: traceback_key,
            info: info.clone(),
        })
    });
    info
}

/// `str(exception)`, without running Python code when that is `BaseException.__str__` of an
/// empty or one-`str` `args`.
fn message(
    py: Python<'_>,
    exception: &Bound<'_, PyAny>,
    ty: &Bound<'_, PyType>,
    type_name: &str,
) -> String {
    // SAFETY: GIL held; an instance of a type whose `__str__` is BaseException's has
    // BaseException's layout (it is a BaseException subclass that did not replace `__str__`).
    unsafe {
        let tp = ty.as_type_ptr();
        let base = ffi::PyExc_BaseException.cast::<ffi::PyTypeObject>();
        // Both slots hold CPython function addresses (not Rust functions), so comparing them is exact.
        if (*tp).tp_str.map(|f| f as usize) == (*base).tp_str.map(|f| f as usize) {
            let args = (*exception.as_ptr().cast::<ffi::PyBaseExceptionObject>()).args;
            if !args.is_null() && ffi::PyTuple_CheckExact(args) != 0 {
                let args =
                    Bound::<PyAny>::from_borrowed_ptr(py, args).cast_into_unchecked::<PyTuple>();
                match args.len() {
                    0 => return String::new(),
                    1 => {
                        let arg = args.get_borrowed_item_unchecked(0);
                        if arg.is_exact_instance_of::<PyString>() {
                            return arg
                                .cast_unchecked::<PyString>()
                                .to_string_lossy()
                                .into_owned();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Traced functions that `__str__` calls are not part of the program's own work: under the
    // default parent-based sampler they are not recorded (an unsampled parent, as in an
    // always_off call).
    context::push(ParentSpan {
        trace_id: 0,
        span_id: 0,
        sampled: false,
        remote: false,
    });
    let text = exception.str();
    context::pop();
    match text {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => format!("<unprintable {type_name} object>"),
    }
}

/// The traceback entries from `traceback` inwards up to (not including) the one at address
/// `stop`, as sites; and whether `stop` was reached.
fn walk(
    py: Python<'_>,
    traceback: Option<&Bound<'_, PyAny>>,
    stop: usize,
    registry: &Registry,
) -> (Vec<CallerSite>, bool) {
    let mut sites = Vec::new();
    let mut current = traceback.map(|tb| tb.as_ptr());
    // SAFETY: GIL held; `tb_next` links are traceback objects (or NULL) kept alive by the head.
    unsafe {
        while let Some(tb) = current.filter(|tb| !tb.is_null() && ffi::PyTraceBack_Check(*tb) != 0)
        {
            if tb as usize == stop {
                return (sites, true);
            }
            let raw = &*tb.cast::<ffi::PyTracebackObject>();
            let (code, line) = entry_site(py, tb, raw, registry);
            sites.push(CallerSite {
                code,
                line,
                class: 0,
            });
            current = Some(raw.tb_next.cast());
        }
    }
    (sites, false)
}

/// A traceback entry's (code id, line), cached per (code object, instruction offset) with the
/// callers' sites: on 3.11+ the line is not stored in the entry and decoding it from the code's
/// line table walks the table from its start, thousands of instructions in a long function.
///
/// # Safety
/// `tb` is a live traceback object and `raw` its fields; GIL held.
unsafe fn entry_site(
    py: Python<'_>,
    tb: *mut ffi::PyObject,
    raw: &ffi::PyTracebackObject,
    registry: &Registry,
) -> (u32, u32) {
    let frame = raw.tb_frame;
    if frame.is_null() {
        // SAFETY: forwarded contract.
        return (0, unsafe { line_of(py, tb, raw.tb_lineno) });
    }
    // SAFETY: a live frame; PyFrame_GetCode returns a new reference.
    let code = unsafe { ffi::PyFrame_GetCode(frame) };
    if code.is_null() {
        // SAFETY: forwarded contract.
        return (0, unsafe { line_of(py, tb, raw.tb_lineno) });
    }
    // SAFETY: `code` is alive (our reference), GIL held; the closures run before it is dropped.
    let site = unsafe {
        crate::caller::code_site(
            py,
            code,
            raw.tb_lasti,
            || frame_code_id(py, frame, code, registry),
            || line_of(py, tb, raw.tb_lineno),
        )
    };
    // SAFETY: the reference PyFrame_GetCode gave us (the registry holds its own once registered).
    unsafe { ffi::Py_DecRef(code.cast()) };
    site
}

/// `sites` (outermost first) in front of `tail`.
fn prepend(
    sites: Vec<CallerSite>,
    tail: Option<Arc<TracebackEntry>>,
) -> Option<Arc<TracebackEntry>> {
    sites.into_iter().rev().fold(tail, |next, site| {
        Some(Arc::new(TracebackEntry { site, next }))
    })
}

/// A traceback entry's line: the field, or (where CPython computes it lazily) its getter.
///
/// # Safety
/// `tb` is a live traceback object; GIL held.
unsafe fn line_of(py: Python<'_>, tb: *mut ffi::PyObject, field: std::ffi::c_int) -> u32 {
    if field >= 0 {
        return field as u32;
    }
    // SAFETY: borrowed from the live traceback; the getter is C code.
    let tb = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, tb) };
    tb.getattr(pyo3::intern!(py, "tb_lineno"))
        .and_then(|line| line.extract::<u32>())
        .unwrap_or(0)
}

/// The registry id of `code`, the code of live frame object `frame`, interning the code object
/// on first sight.
///
/// # Safety
/// `frame` is a live frame object and `code` its code; GIL held.
unsafe fn frame_code_id(
    py: Python<'_>,
    frame: *mut ffi::PyFrameObject,
    code: *mut ffi::PyCodeObject,
    registry: &Registry,
) -> u32 {
    if let Some(id) = registry.code_id(code as usize) {
        return id;
    }
    // SAFETY: a live code object; the Bound takes a reference of its own.
    let code_obj = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code.cast()) };
    // SAFETY: borrowed from the live frame.
    let frame_obj = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, frame.cast()) };
    let text = |obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>| {
        obj.getattr(name)
            .ok()
            .and_then(|v| v.cast_into::<PyString>().ok())
            .map(|s| s.to_string_lossy().into_owned())
    };
    // Code objects and frames are not subclassable: these getters are C code.
    let qualname = text(&code_obj, pyo3::intern!(py, "co_qualname"))
        .or_else(|| text(&code_obj, pyo3::intern!(py, "co_name")))
        .unwrap_or_default();
    let module = frame_obj
        .getattr(pyo3::intern!(py, "f_globals"))
        .ok()
        .and_then(|g| g.cast_into::<PyDict>().ok())
        .and_then(|g| g.get_item(pyo3::intern!(py, "__name__")).ok().flatten())
        .and_then(|n| n.cast_into::<PyString>().ok())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "<unknown>".to_owned());
    // SAFETY: a live code object.
    let file = unsafe { crate::python_frame::code_filename(py, code) };
    let info = CodeInfo {
        function_name: intern(&format!("{module}.{qualname}")),
        file: intern(&file),
    };
    crate::caller::register_code_object(code_obj, info, registry)
}

fn held_key(py: Python<'_>) -> &Bound<'_, PyString> {
    HELD_KEY
        .get_or_init(py, || {
            PyString::intern(py, "callspan.described_exception").unbind()
        })
        .bind(py)
}

/// The address of the exception the thread-state dict holds for [`LAST`] (0: none).
fn held_exception(py: Python<'_>) -> usize {
    // SAFETY: GIL held; the thread-state dict is borrowed (NULL without a thread state).
    let dict = unsafe { ffi::PyThreadState_GetDict() };
    if dict.is_null() {
        return 0;
    }
    // SAFETY: a live dict.
    let dict = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, dict) };
    let Ok(dict) = dict.cast_into::<PyDict>() else {
        return 0;
    };
    match dict.get_item(held_key(py)) {
        Ok(Some(held)) => held
            .cast_into::<PyTuple>()
            .ok()
            .and_then(|t| t.get_item(0).ok())
            .map_or(0, |e| e.as_ptr() as usize),
        _ => 0,
    }
}

/// Keeps `exception` and `traceback` alive in the thread-state dict while [`LAST`] names them.
fn hold(py: Python<'_>, exception: &Bound<'_, PyAny>, traceback: Option<&Bound<'_, PyAny>>) {
    // SAFETY: GIL held; borrowed dict or NULL.
    let dict = unsafe { ffi::PyThreadState_GetDict() };
    if dict.is_null() {
        return;
    }
    // SAFETY: a live dict.
    let dict = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, dict) };
    if let Ok(dict) = dict.cast_into::<PyDict>() {
        let none = py.None().into_bound(py);
        let held = (exception.clone(), traceback.cloned().unwrap_or(none));
        if dict.set_item(held_key(py), held).is_err() {
            // Cannot hold them: forget the description rather than trust a stale address.
            let _ = PyErr::take(py);
            LAST.with(|last| last.borrow_mut().take());
        }
    }
}
