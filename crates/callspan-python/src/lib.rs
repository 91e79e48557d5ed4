//! The PyO3 binding: converts between Python objects and callspan's Rust core, nothing more.
//!
//! `span` is the span lifecycle every entry point shares (decide, caller, start, finish);
//! `traced` is the decorator's C-level callable and `steps` the spans of its coroutine and
//! generator wrappers (`step_types`); `hook` is profile mode (`hook_monitoring` on 3.12+, `hook_eval` before); `caller`, `python_frame`, `thread`, `exception`, `task_context` and `otel` read
//! interpreter state for them (`watched` forgets the addresses of code and classes that die); `diagnostics` forwards the exporter's warnings to
//! Python `logging`. The functions below are the private `callspan._callspan` module that
//! `python/callspan/__init__.py` wraps; `_callspan.pyi` documents them.

mod caller;
mod diagnostics;
mod exception;
// 3.11 built with CALLSPAN_FRAME_PUBLIC_API=1 has no profile hook (its `start_profile` raises
// RuntimeError saying why): the hook's shared machinery is compiled there but never runs.
#[cfg_attr(
    all(not(Py_3_12), not(callspan_frame_direct)),
    allow(dead_code, reason = "no profile hook in a 3.11 public-API build")
)]
mod hook;
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
mod hook_eval;
#[cfg(Py_3_12)]
mod hook_monitoring;
mod interruptible;
mod otel;
mod python_frame;
mod span;
mod stack_guard;
mod step_types;
mod steps;
mod task_context;
mod thread;
mod thread_exit;
mod traced;
mod watched;

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
    span_name: &Bound<'py, PyString>,
    function_name: &Bound<'py, PyString>,
    file: Option<&Bound<'py, PyString>>,
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
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("callspan.trace: attribute keys must be str"))?;
            attrs.push((intern(&lossy(key)), attribute_value(&v, &k)?));
        }
    }
    let (span_name, function_name) = (lossy(span_name), lossy(function_name));
    let file = file.map(lossy);
    let info = FunctionInfo {
        span_name: intern(&span_name),
        function_name: intern(&function_name),
        file: file.as_deref().map(intern),
        line,
        attributes: attrs,
    };
    let registry = callspan_core::registry::global();
    let id = registry.add_function(info);
    // `file` is only given for Python functions, whose `__code__` is a plain attribute.
    if let Some(file) = file {
        if let Ok(code) = func.getattr("__code__") {
            // The traced function's own frames call other traced functions (and itself, when
            // it recurses): name its code object now, exactly, instead of deriving a qualname
            // later (3.9/3.10 code objects carry no qualname).
            let info = CodeInfo {
                function_name: intern(&function_name),
                file: intern(&file),
            };
            hook::exclude_decorated(code.as_ptr());
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

/// The text of a name, path or attribute value for the registry: lone surrogates (a
/// `surrogateescape`d non-UTF-8 path byte, a stray `\udcxx` in a name) become U+FFFD, the way the
/// caller side reads code objects, so that decoration never raises `UnicodeEncodeError` and every
/// exported string is valid UTF-8.
fn lossy<'a>(s: &'a Bound<'_, PyString>) -> std::borrow::Cow<'a, str> {
    s.to_string_lossy()
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
        return Ok(AttributeValue::Str(intern(&lossy(s))));
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

/// (Re)configures callspan from keyword arguments given as strings; TypeError for a key that is
/// not a keyword of the table of settings (nothing is changed then).
#[pyfunction]
fn configure(py: Python<'_>, arguments: HashMap<String, String>) -> PyResult<()> {
    if let Some(key) = arguments
        .keys()
        .find(|k| callspan_core::config::table::by_keyword(k).is_none())
    {
        return Err(PyTypeError::new_err(format!(
            "configure: {key:?} is not a keyword of callspan's settings"
        )));
    }
    py.detach(|| {
        pipeline::configure(arguments);
    });
    diagnostics::forward(py);
    Ok(())
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
    // Ctrl-C interrupts the wait (the flush goes on in the background).
    let (pending, default_timeout) = py.detach(|| pipeline::global().request_flush());
    let answer = interruptible::wait(py, timeout.unwrap_or(default_timeout), |slice| {
        pending.wait(slice)
    });
    let spans_ok = answer?.unwrap_or(false);
    // The caller-edge counts go out too (bounded by OTEL_METRIC_EXPORT_TIMEOUT).
    let metrics_ok = py.detach(|| pipeline::global().flush_metrics(timeout));
    diagnostics::forward(py);
    Ok(spans_ok && metrics_ok)
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

/// Every caller edge counted so far (calls are counted while a metrics exporter or
/// `CALLSPAN_REPORT` is configured), with its names, counts and histogram.
#[pyfunction]
fn edges(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let totals = py.detach(callspan_core::edges::snapshot);
    let registry = callspan_core::registry::global().view();
    let mut rows = Vec::with_capacity(totals.len());
    for t in totals {
        let n = t.key.names(&registry);
        let d = PyDict::new(py);
        d.set_item("function", n.function)?;
        d.set_item("function_file", n.function_file)?;
        d.set_item("function_line", n.function_line)?;
        d.set_item("caller_function", n.caller_function)?;
        d.set_item("caller_file", n.caller_file)?;
        d.set_item("caller_line", n.caller_line)?;
        d.set_item("caller_class", n.caller_class)?;
        d.set_item("error_type", n.error_type)?;
        d.set_item("overflow", t.key.is_overflow())?;
        d.set_item("calls", t.calls)?;
        d.set_item("total_ns", t.total_ns)?;
        d.set_item("buckets", t.buckets.to_vec())?;
        let exemplars: Vec<(String, String)> = t
            .exemplars
            .iter()
            .map(|e| {
                (
                    format!("{:032x}", e.trace_id),
                    format!("{:016x}", e.span_id),
                )
            })
            .collect();
        d.set_item("exemplars", exemplars)?;
        rows.push(d);
    }
    Ok(rows)
}

/// `(counting, CALLSPAN_REPORT)`: whether every call is counted per caller edge, and where the
/// report at exit goes (None: no report).
#[pyfunction]
fn counting() -> (bool, Option<String>) {
    let config = pipeline::global().config();
    (callspan_core::hot::counts_calls(&config), config.report)
}

/// In a forked child: starts its own metrics exporter (its counts start from zero).
#[pyfunction]
fn restart_metrics_after_fork() {
    if let Some(p) = pipeline::get() {
        p.restart_metrics_after_fork();
    }
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

/// One configuration row as Python sees it: keyword, variables, kind, default, meaning.
type SettingRow = (
    Option<&'static str>,
    Vec<&'static str>,
    &'static str,
    String,
    &'static str,
);

/// The table of settings (`callspan_core::config::SETTINGS`), in the README's order.
#[pyfunction]
fn settings() -> Vec<SettingRow> {
    callspan_core::config::SETTINGS
        .iter()
        .map(|row| {
            (
                row.keyword,
                row.variables.to_vec(),
                row.kind.as_str(),
                row.default.text().into_owned(),
                row.doc,
            )
        })
        .collect()
}

/// The current span as `(trace_id, span_id, sampled)`, or None outside any traced call.
#[pyfunction]
fn current_span(py: Python<'_>) -> Option<(u128, u64, bool)> {
    callspan_core::per_thread::with(|local| span::current_parent(py, local, false))
        .flatten()
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
    task_context::publish(py, parent)
}

/// Undoes `set_remote_parent`.
#[pyfunction]
fn reset_remote_parent(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<()> {
    task_context::reset(py, token)
}

/// How many entries the registry holds (`functions`, `codes`, `classes`: one per distinct name)
/// and how many live code objects and classes it knows by address (`live_keys`, `watched`).
#[pyfunction]
fn registry_sizes(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let sizes = callspan_core::registry::global().sizes();
    let d = PyDict::new(py);
    d.set_item("functions", sizes.functions)?;
    d.set_item("codes", sizes.codes)?;
    d.set_item("classes", sizes.classes)?;
    d.set_item("live_keys", sizes.live_keys)?;
    d.set_item("watched", watched::count())?;
    Ok(d)
}

/// How root calls find the current OpenTelemetry span (`otel::route`).
#[pyfunction]
fn otel_context_route(py: Python<'_>) -> &'static str {
    crate::otel::route(py)
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
    step_types::register(m)?;
    m.add("__version__", callspan_otlp::VERSION)?;
    m.add_function(wrap_pyfunction!(make_traced, m)?)?;
    m.add_function(wrap_pyfunction!(wrapped, m)?)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(flush, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(edges, m)?)?;
    m.add(
        "EDGE_BUCKET_BOUNDS_NS",
        callspan_core::edges::BUCKET_BOUNDS_NS.to_vec(),
    )?;
    m.add_function(wrap_pyfunction!(counting, m)?)?;
    m.add_function(wrap_pyfunction!(restart_metrics_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(destination, m)?)?;
    m.add_function(wrap_pyfunction!(effective_config, m)?)?;
    m.add_function(wrap_pyfunction!(settings, m)?)?;
    m.add_function(wrap_pyfunction!(forward_diagnostics, m)?)?;
    m.add_function(wrap_pyfunction!(registry_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(otel_context_route, m)?)?;
    m.add_function(wrap_pyfunction!(current_span, m)?)?;
    m.add_function(wrap_pyfunction!(set_remote_parent, m)?)?;
    m.add_function(wrap_pyfunction!(reset_remote_parent, m)?)?;
    m.add_function(wrap_pyfunction!(hook::start_profile, m)?)?;
    m.add_function(wrap_pyfunction!(hook::stop_profile, m)?)?;
    Ok(())
}
