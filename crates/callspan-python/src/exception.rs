//! An exception escaping a traced call, captured as strings for the span's `exception` event.
//!
//! The exception itself propagates unchanged: it is fetched, described, and restored as the
//! very same object. Describing it may run user code (`str(exc)` calls `__str__`), which the
//! OpenTelemetry SDKs do too; a failure there is contained and noted in the message.

use callspan_core::record::ExceptionInfo;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Describes the exception currently set (the call returned NULL) and leaves it set.
pub(crate) fn capture_current(py: Python<'_>) -> ExceptionInfo {
    let err = PyErr::fetch(py);
    let info = describe(py, &err);
    err.restore(py);
    info
}

/// Describes `err` (not necessarily the exception currently set).
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> ExceptionInfo {
    let ty: Bound<'_, PyType> = err.get_type(py);
    let type_name = crate::caller::class_name(&ty).to_string();
    let value = err.value(py);
    let message = match value.str() {
        Ok(s) => s.to_string(),
        Err(e) => {
            e.restore(py);
            let _ = PyErr::take(py);
            format!("<unprintable {type_name} object>")
        }
    };
    let stacktrace = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (ty.clone(), value.clone(), err.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|e| {
            let _ = e;
            String::new()
        });
    ExceptionInfo {
        type_name,
        message,
        stacktrace,
    }
}
