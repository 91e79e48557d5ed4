//! The caller of a traced call: which code, which line, which class — as registry ids.
//!
//! Code objects and classes are interned on first sight (strings copied while the GIL is held)
//! and kept alive for the life of the process, so that their addresses, used as keys, can never
//! be reused by another object. Nothing here runs user code: names come from code objects,
//! frame globals and type slots, never from `getattr` on user objects.

use crate::python_frame::{self, CallerFrame};
use callspan_core::record::{CallerSite, ClassId, CodeId};
use callspan_core::registry::{CodeInfo, Registry};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};
use std::sync::Arc;

/// Where the current traced call came from; all zeros when no Python frame called it.
#[inline]
pub(crate) fn current_site(py: Python<'_>, registry: &Registry) -> CallerSite {
    // SAFETY: GIL held; the frame stays alive for the duration of this call.
    let Some(frame) = (unsafe { python_frame::caller_frame(py) }) else {
        return CallerSite::default();
    };
    let code_key = frame.code() as usize;
    let code = match registry.code_id(code_key) {
        Some(id) => id,
        None => register_code(py, &frame, registry),
    };
    let line = u32::try_from(frame.line_number()).unwrap_or(0);
    let class = match frame.first_arg() {
        // SAFETY: borrowed from the live frame.
        Some(arg) => unsafe { class_of_first_arg(py, arg, registry) },
        None => 0,
    };
    CallerSite { code, line, class }
}

#[cold]
fn register_code(py: Python<'_>, frame: &CallerFrame, registry: &Registry) -> CodeId {
    let code_ptr = frame.code();
    // SAFETY: the frame's code object is alive; we take our own strong reference below.
    let code = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, code_ptr.cast()) };
    let qualname = frame.code_qualname();
    let module = frame
        .module_name()
        .unwrap_or_else(|| "<unknown>".to_owned());
    // SAFETY: the frame's code object is alive.
    let file = unsafe { python_frame::code_filename(py, code_ptr) };
    let info = CodeInfo {
        function_name: format!("{module}.{qualname}").into(),
        file: file.into(),
    };
    register_code_object(code, info, registry)
}

/// Interns `code` under its address with `info` and keeps it alive for the process lifetime
/// (its address is the key). Returns the existing id if it was interned before.
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
    std::mem::forget(code.unbind());
    id
}

/// The class recorded as `caller.class.name`: a `cls` argument is the class itself; `self`
/// contributes its type.
///
/// # Safety
/// `arg` must be a valid borrowed object pointer; GIL held.
unsafe fn class_of_first_arg(
    py: Python<'_>,
    arg: *mut ffi::PyObject,
    registry: &Registry,
) -> ClassId {
    // A class as first argument is a classmethod's `cls` (or, rarely, a metaclass method's
    // `self`, reported as the class rather than its metaclass).
    // SAFETY: guaranteed by the caller.
    let tp: *mut ffi::PyTypeObject = unsafe {
        if ffi::PyType_Check(arg) != 0 {
            arg.cast()
        } else {
            ffi::Py_TYPE(arg)
        }
    };
    let key = tp as usize;
    if let Some(id) = registry.class_id(key) {
        return id;
    }
    // SAFETY: `tp` is alive (the argument or the argument's type holds it).
    let ty = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, tp.cast()) };
    let ty = ty.cast_into::<PyType>().expect("a type object");
    let name = class_name(&ty);
    let id = registry.add_class(key, name);
    // Keep the class alive forever: its address is the registry key.
    std::mem::forget(ty.unbind());
    id
}

/// `module.Qualname` of a class, read from type slots and the type's own `__dict__` so that a
/// metaclass property can never run. Builtins keep their bare name (`int`, `ValueError`).
pub(crate) fn class_name(ty: &Bound<'_, PyType>) -> Arc<str> {
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
        return tp_name.into();
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
        Some(m) if m != "builtins" => format!("{m}.{qualname}").into(),
        _ => qualname.into(),
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
