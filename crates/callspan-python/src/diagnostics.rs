//! Forwards the exporter's buffered warnings to Python's `logging` logger `callspan`.
//!
//! Called only on threads that already hold the GIL (a traced call, `flush()`, `stats()`), never
//! on the exporter thread.

use callspan_otlp::diagnostic::{self, Diagnostic};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use tracing::Level;

fn levelno(level: Level) -> i32 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        _ => 10,
    }
}

fn log(py: Python<'_>, messages: Vec<Diagnostic>) -> PyResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("callspan",))?;
    for d in messages {
        logger.call_method1("log", (levelno(d.level), "%s", d.message))?;
    }
    Ok(())
}

/// Forwards pending diagnostics, keeping an exception that is currently set (a traced call
/// that raised) exactly as it was. An exception raised by logging itself is
/// never swallowed and never replaces that one: a `KeyboardInterrupt` (Ctrl-C while a handler
/// ran) trips the interrupt again, so Python raises it at its next check; anything else is
/// reported through `sys.unraisablehook`.
pub(crate) fn forward(py: Python<'_>) {
    let pending = PyErr::take(py);
    if let Err(e) = log(py, diagnostic::drain()) {
        if e.is_instance_of::<PyKeyboardInterrupt>(py) {
            // SAFETY: GIL held; the same call a SIGINT's C handler makes.
            unsafe { pyo3::ffi::PyErr_SetInterrupt() };
        } else {
            e.write_unraisable(py, None);
        }
    }
    if let Some(err) = pending {
        err.restore(py);
    }
}
