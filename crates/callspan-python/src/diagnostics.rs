//! Forwards the exporter's buffered warnings to Python's `logging` logger `callspan`.
//!
//! Called only on threads that already hold the GIL (a traced call, `flush()`, `stats()`), never
//! on the exporter thread.

use callspan_otlp::diagnostic::{self, Diagnostic};
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

/// Forwards pending diagnostics; logging errors are swallowed (logging reports its own).
pub(crate) fn forward(py: Python<'_>) {
    if let Err(e) = log(py, diagnostic::drain()) {
        drop(e);
    }
}

/// Like [`forward`], but keeps an exception that is currently set (a traced call that raised).
pub(crate) fn forward_keeping_error(py: Python<'_>) {
    let pending = PyErr::take(py);
    forward(py);
    if let Some(err) = pending {
        err.restore(py);
    }
}
