//! The span current in a `contextvars` context (an asyncio task), beside the per-thread stack.
//!
//! A thread's stack of open calls ([`callspan_core::context`]) is the parent of a traced call on
//! that thread. Work that leaves the thread with its context (`asyncio.to_thread`,
//! `contextvars.copy_context().run`) and remote parents given by hand (W3C `traceparent`,
//! `callspan.remote_parent`) follow the task instead, so they go through one `ContextVar`. Until
//! something is published there, root calls need not look at it.

use callspan_core::context::ParentSpan;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once any span was published: until then root calls skip the `ContextVar`.
static USED: AtomicBool = AtomicBool::new(false);

fn context_var(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    VAR.get_or_try_init(py, || {
        Ok(py
            .import("contextvars")?
            .getattr("ContextVar")?
            .call1(("callspan_current_span",))?
            .unbind())
    })
    .map(|v| v.bind(py))
}

fn as_tuple(p: ParentSpan) -> (u128, u64, bool, bool) {
    (p.trace_id, p.span_id, p.sampled, p.remote)
}

/// The span published in the current context, for a root call on a thread whose own stack is
/// empty (e.g. inside `asyncio.to_thread`).
#[inline]
pub(crate) fn parent(py: Python<'_>) -> Option<ParentSpan> {
    if !USED.load(Ordering::Relaxed) {
        return None;
    }
    published(py)
}

/// The span published in the current context (Python calls: kept out of the callers).
#[inline(never)]
fn published(py: Python<'_>) -> Option<ParentSpan> {
    let var = context_var(py).ok()?;
    let value = var.call_method1("get", (py.None(),)).ok()?;
    let (trace_id, span_id, sampled, remote): (u128, u64, bool, bool) = value.extract().ok()?;
    Some(ParentSpan {
        trace_id,
        span_id,
        sampled,
        remote,
    })
}

/// Makes `span` the current span of this context until the returned token is [`reset`].
pub(crate) fn publish<'py>(py: Python<'py>, span: ParentSpan) -> PyResult<Bound<'py, PyAny>> {
    USED.store(true, Ordering::Relaxed);
    context_var(py)?.call_method1("set", (as_tuple(span),))
}

/// Undoes [`publish`].
pub(crate) fn reset(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<()> {
    context_var(py)?.call_method1("reset", (token,)).map(drop)
}
