//! The PyO3 binding: converts between Python objects and callspan's Rust core, nothing more.
//!
//! `traced` is the C-level callable (the hot path); `caller`, `python_frame`, `thread` and
//! `exception` read interpreter state for it; `diagnostics` forwards the exporter's warnings to
//! Python `logging`. The functions below are the private `callspan._callspan` module that
//! `python/callspan/__init__.py` wraps; `_callspan.pyi` documents them.

mod caller;
mod diagnostics;
mod exception;
mod interruptible;
mod otel;
mod python_frame;
mod stack_guard;
mod steps;
mod thread;
mod thread_exit;
mod traced;

use callspan_core::registry::{intern, AttributeValue, CodeInfo, FunctionInfo};
use callspan_otlp::pipeline;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use std::collections::HashMap;
use std::time::Duration;

/// Wraps `func` in a `TracedFunction` whose spans carry the given callee description.
#[pyfunction(name = "traced")]
#[pyo3(signature = (func, span_name, function_name, file, line, attributes=None, kind=0, sample_rate=None))]
#[allow(clippy::too_many_arguments)] // mirrors the Python signature of `traced`
fn make_traced<'py>(
    py: Python<'py>,
    func: &Bound<'py, PyAny>,
    span_name: &str,
    function_name: &str,
    file: Option<&str>,
    line: u32,
    attributes: Option<&Bound<'py, PyDict>>,
    kind: u8,
    sample_rate: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    if !func.is_callable() {
        return Err(PyTypeError::new_err(
            "callspan.trace: the traced object must be callable",
        ));
    }
    let mut attrs = Vec::new();
    if let Some(dict) = attributes {
        for (k, v) in dict.iter() {
            let key: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("callspan.trace: attribute keys must be str"))?;
            attrs.push((intern(&key), attribute_value(&v, &k)?));
        }
    }
    let info = FunctionInfo {
        span_name: intern(span_name),
        function_name: intern(function_name),
        file: file.map(intern),
        line,
        attributes: attrs,
    };
    let registry = pipeline::registry();
    let id = registry.add_function(info);
    // `file` is only given for Python functions, whose `__code__` is a plain attribute.
    if let Some(file) = file {
        if let Ok(code) = func.getattr("__code__") {
            // The traced function's own frames call other traced functions (and itself, when
            // it recurses): name its code object now, exactly, instead of deriving a qualname
            // later (3.9/3.10 code objects carry no qualname).
            let info = CodeInfo {
                function_name: intern(function_name),
                file: intern(file),
            };
            caller::register_code_object(code, info, registry);
        }
    }
    if let Some(rate) = sample_rate {
        if !(0.0..=1.0).contains(&rate) {
            return Err(PyValueError::new_err(format!(
                "callspan.trace: sample_rate must be between 0 and 1, not {rate}"
            )));
        }
    }
    traced::new_traced(py, func, id, steps::Kind::from_u8(kind), sample_rate)
}

fn attribute_value(v: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<AttributeValue> {
    // bool before int: bool is an int subclass.
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(AttributeValue::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(AttributeValue::Int(v.extract()?));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(AttributeValue::Float(v.extract()?));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(AttributeValue::Str(intern(s.to_str()?)));
    }
    Err(PyTypeError::new_err(format!(
        "callspan.trace: attribute {key} must be str, bool, int or float, not {}",
        v.get_type().name()?
    )))
}

/// The callable wrapped by a `TracedFunction`, or None.
#[pyfunction]
fn wrapped<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    traced::wrapped(obj)
}

/// (Re)configures callspan from keyword arguments given as strings.
#[pyfunction]
fn configure(py: Python<'_>, arguments: HashMap<String, String>) {
    py.detach(|| {
        pipeline::configure(arguments);
    });
    diagnostics::forward(py);
}

fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, not {t}"
        ))),
    }
}

/// Exports everything queued; True when all of it was delivered within `timeout` seconds.
#[pyfunction]
#[pyo3(signature = (timeout=None))]
fn flush(py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
    let timeout = timeout_arg(timeout)?;
    // ISSUE-12 item 6: Ctrl-C interrupts the wait (the flush goes on in the background).
    let (pending, default_timeout) = py.detach(|| pipeline::global().request_flush());
    let answer = interruptible::wait(py, timeout.unwrap_or(default_timeout), |slice| {
        pending.wait(slice)
    });
    diagnostics::forward(py);
    Ok(answer?.unwrap_or(false))
}

/// Flushes and stops the exporter, waiting at most `timeout` seconds.
#[pyfunction]
#[pyo3(signature = (timeout=None))]
fn shutdown(py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
    let timeout = timeout_arg(timeout)?;
    let ok = py.detach(|| pipeline::global().shutdown(timeout));
    diagnostics::forward(py);
    Ok(ok)
}

/// Every counter as a dict.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    diagnostics::forward(py);
    let d = PyDict::new(py);
    for (k, v) in pipeline::global().stats().entries() {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// Where spans go, for humans.
#[pyfunction]
fn destination() -> String {
    pipeline::global().destination()
}

/// The effective configuration: (setting, value, source) triples.
#[pyfunction]
fn effective_config() -> Vec<(String, String, String)> {
    pipeline::global()
        .config()
        .effective
        .into_iter()
        .map(|(name, value, source)| (name.to_owned(), value, source.to_string()))
        .collect()
}

/// The current span as `(trace_id, span_id, sampled)`, or None outside any traced call.
#[pyfunction]
fn current_span(py: Python<'_>) -> Option<(u128, u64, bool)> {
    steps::current_parent(py)
        .filter(|p| p.span_id != 0)
        .map(|p| (p.trace_id, p.span_id, p.sampled))
}

/// Makes a remote span the parent of traced calls in this context; returns the reset token.
#[pyfunction]
fn set_remote_parent<'py>(
    py: Python<'py>,
    trace_id: u128,
    span_id: u64,
    sampled: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if trace_id == 0 || span_id == 0 {
        return Err(PyValueError::new_err(
            "trace_id and span_id must be non-zero",
        ));
    }
    let parent = callspan_core::context::ParentSpan {
        trace_id,
        span_id,
        sampled,
        remote: true,
    };
    steps::set_context_parent(py, parent)
}

/// Undoes `set_remote_parent`.
#[pyfunction]
fn reset_remote_parent(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<()> {
    steps::reset_context_parent(py, token)
}

/// Forwards pending exporter diagnostics to the `callspan` logger now.
#[pyfunction]
fn forward_diagnostics(py: Python<'_>) {
    diagnostics::forward(py);
}

/// The private native module behind `callspan`.
#[pymodule]
fn _callspan(m: &Bound<'_, PyModule>) -> PyResult<()> {
    callspan_otlp::diagnostic::install();
    caller::check_frame_layout(m.py());
    m.add("TracedFunction", traced::create_type(m.py())?)?;
    steps::register_abcs(m)?;
    m.add("__version__", callspan_otlp::VERSION)?;
    m.add_function(wrap_pyfunction!(make_traced, m)?)?;
    m.add_function(wrap_pyfunction!(wrapped, m)?)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(flush, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(destination, m)?)?;
    m.add_function(wrap_pyfunction!(effective_config, m)?)?;
    m.add_function(wrap_pyfunction!(forward_diagnostics, m)?)?;
    m.add_function(wrap_pyfunction!(current_span, m)?)?;
    m.add_function(wrap_pyfunction!(set_remote_parent, m)?)?;
    m.add_function(wrap_pyfunction!(reset_remote_parent, m)?)?;
    Ok(())
}
