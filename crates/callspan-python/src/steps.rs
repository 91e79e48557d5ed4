//! Spans of calls whose body runs later, in steps: coroutines, generators, async generators.
//!
//! Calling an `async def` or a generator function only creates an object; the body runs each
//! time the object is resumed (`send`, `throw`, `__next__`), interleaved with other tasks on the
//! same thread. The wrappers here own one span per call and make it the current span only while
//! one of their steps runs, so that concurrent tasks never see each other's spans as parents.
//! A coroutine's span covers its whole awaited lifetime (from the call to its completion); a
//! generator's runs from the first iteration to exhaustion or `close()`. An exception ends the
//! span with status ERROR; cancellation (`asyncio.CancelledError`) and `GeneratorExit` are named
//! as such. Coroutine steps also publish the span in a `ContextVar`, so that work handed to
//! another thread with the context (`asyncio.to_thread`, `contextvars.copy_context().run`)
//! still finds its parent.

use crate::{exception, thread};
use callspan_core::clock::now_unix_ns;
use callspan_core::context::{self, ParentSpan};
use callspan_core::record::{CallerSite, ExceptionInfo, FunctionId, SpanRecord, ThreadKey};
use callspan_otlp::pipeline;
use parking_lot::Mutex;
use pyo3::exceptions::{PyGeneratorExit, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a traced function returns when called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A plain function: the call is the span.
    Plain = 0,
    /// `async def`: a coroutine.
    Coroutine = 1,
    /// A generator function.
    Generator = 2,
    /// An `async def` with `yield`: an async generator.
    AsyncGenerator = 3,
}

impl Kind {
    pub(crate) fn from_u8(kind: u8) -> Kind {
        match kind {
            1 => Kind::Coroutine,
            2 => Kind::Generator,
            3 => Kind::AsyncGenerator,
            _ => Kind::Plain,
        }
    }
}

/// Set once any coroutine span exists: until then root calls need not look at the ContextVar.
static CONTEXT_VAR_USED: AtomicBool = AtomicBool::new(false);

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

/// The span published in the current context by a coroutine step, for a root call on a thread
/// whose own stack is empty (e.g. inside `asyncio.to_thread`).
#[inline]
pub(crate) fn context_parent(py: Python<'_>) -> Option<ParentSpan> {
    if !CONTEXT_VAR_USED.load(Ordering::Relaxed) {
        return None;
    }
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

/// Makes `parent` the current span of this context (task) until the returned token is reset:
/// used for remote parents (W3C `traceparent`), which must follow the task, not the thread.
pub(crate) fn set_context_parent<'py>(
    py: Python<'py>,
    parent: ParentSpan,
) -> PyResult<Bound<'py, PyAny>> {
    CONTEXT_VAR_USED.store(true, Ordering::Relaxed);
    context_var(py)?.call_method1("set", (as_tuple(parent),))
}

/// Undoes [`set_context_parent`].
pub(crate) fn reset_context_parent(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<()> {
    context_var(py)?.call_method1("reset", (token,)).map(drop)
}

/// The innermost span on this thread, else the one published in this context.
pub(crate) fn current_parent(py: Python<'_>) -> Option<ParentSpan> {
    context::current()
        .or_else(|| context_parent(py))
        .or_else(|| crate::otel::current_parent(py))
}

fn as_tuple(p: ParentSpan) -> (u128, u64, bool, bool) {
    (p.trace_id, p.span_id, p.sampled, p.remote)
}

/// The span of one call of a coroutine, generator or async generator.
#[derive(Debug)]
struct StepSpan {
    trace_id: u128,
    span_id: u64,
    parent: Option<ParentSpan>,
    sampled: bool,
    function: FunctionId,
    caller: CallerSite,
    omitted: u8,
    stack: Option<Box<[CallerSite]>>,
    thread: ThreadKey,
    /// Start time; 0 until the first step for generators.
    start_unix_ns: u64,
    done: bool,
    publish_in_context: bool,
}

type Shared = Arc<Mutex<StepSpan>>;

impl StepSpan {
    fn as_parent(&self) -> ParentSpan {
        ParentSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: self.sampled,
            remote: false,
        }
    }

    fn finish(&mut self, error: Option<ExceptionInfo>) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.sampled {
            return;
        }
        let end = now_unix_ns();
        let start = if self.start_unix_ns == 0 {
            end
        } else {
            self.start_unix_ns
        };
        let p = pipeline::global();
        if end.saturating_sub(start) < p.min_duration_ns() {
            p.count_below_min_duration();
            return;
        }
        p.submit(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent.map_or(0, |p| p.span_id),
            parent_is_remote: self.parent.is_some_and(|p| p.remote),
            start_unix_ns: start,
            end_unix_ns: end,
            function: self.function,
            caller: self.caller,
            thread: self.thread,
            error: error.map(Box::new),
            omitted: self.omitted,
            stack: self.stack.take(),
        });
    }
}

/// How a step that raised affects the span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Not an end (an async generator step's StopIteration carries a produced value).
    Continue,
    /// The object finished normally (StopIteration, StopAsyncIteration, GeneratorExit).
    EndOk,
    /// An exception escaped: the span ends with status ERROR.
    EndError,
}

/// Classifies an exception raised by a step.
type Classify = fn(&PyErr, Python<'_>) -> Outcome;

fn coroutine_outcome(e: &PyErr, py: Python<'_>) -> Outcome {
    if e.is_instance_of::<PyStopIteration>(py) {
        Outcome::EndOk
    } else {
        Outcome::EndError
    }
}

fn generator_outcome(e: &PyErr, py: Python<'_>) -> Outcome {
    if e.is_instance_of::<PyStopIteration>(py) || e.is_instance_of::<PyGeneratorExit>(py) {
        Outcome::EndOk
    } else {
        Outcome::EndError
    }
}

fn async_step_outcome(e: &PyErr, py: Python<'_>) -> Outcome {
    if e.is_instance_of::<PyStopIteration>(py) {
        Outcome::Continue
    } else if e.is_instance_of::<PyStopAsyncIteration>(py)
        || e.is_instance_of::<PyGeneratorExit>(py)
    {
        Outcome::EndOk
    } else {
        Outcome::EndError
    }
}

fn async_close_outcome(e: &PyErr, py: Python<'_>) -> Outcome {
    match async_step_outcome(e, py) {
        Outcome::Continue => Outcome::EndOk,
        other => other,
    }
}

/// Runs one step of the wrapped object with the span current; ends the span if the step ended
/// the object.
fn step<'py>(
    py: Python<'py>,
    span: &Shared,
    classify: Classify,
    call: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (parent, publish) = {
        let mut s = span.lock();
        if s.done {
            // Resuming a finished object: let the inner object raise what it raises.
            drop(s);
            return call();
        }
        if s.start_unix_ns == 0 {
            s.start_unix_ns = now_unix_ns();
        }
        (s.as_parent(), s.publish_in_context)
    };
    context::push(parent);
    let token = if publish {
        context_var(py)
            .and_then(|var| var.call_method1("set", (as_tuple(parent),)))
            .ok()
    } else {
        None
    };
    let result = call();
    if let Some(token) = token {
        if let Ok(var) = context_var(py) {
            // Keep a pending exception out of the way of the reset.
            let pending = PyErr::take(py);
            let _ = var.call_method1("reset", (token,));
            if let Some(e) = pending {
                e.restore(py);
            }
        }
    }
    context::pop();
    if let Err(err) = &result {
        match classify(err, py) {
            Outcome::Continue => {}
            Outcome::EndOk => span.lock().finish(None),
            Outcome::EndError => {
                let info = describe(py, err);
                span.lock().finish(Some(info));
            }
        }
    }
    result
}

fn describe(py: Python<'_>, err: &PyErr) -> ExceptionInfo {
    let err = err.clone_ref(py);
    err.restore(py);
    let mut info = exception::capture_current(py);
    let _ = PyErr::take(py);
    if info.type_name.ends_with("CancelledError") {
        info.message = if info.message.is_empty() {
            "cancelled".into()
        } else {
            format!("cancelled: {}", info.message).into()
        };
    }
    info
}

fn throw_args<'py>(
    py: Python<'py>,
    typ: Bound<'py, PyAny>,
    val: Option<Bound<'py, PyAny>>,
    tb: Option<Bound<'py, PyAny>>,
) -> Bound<'py, PyTuple> {
    let mut args = vec![typ];
    if let Some(v) = val {
        args.push(v);
        if let Some(t) = tb {
            args.push(t);
        }
    }
    PyTuple::new(py, args).expect("a tuple of objects")
}

/// Resumes the wrapped object with `method(*args)` as one step of the span.
fn resume<'py>(
    py: Python<'py>,
    inner: &Py<PyAny>,
    span: &Shared,
    classify: Classify,
    method: &str,
    args: Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let inner = inner.bind(py);
    step(py, span, classify, || inner.call_method1(method, args))
}

/// `(value,)` for `send`.
fn one<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> Bound<'py, PyTuple> {
    PyTuple::new(py, [value]).expect("a tuple of one object")
}

/// Ends the span of an object dropped before it finished (a generator abandoned mid-way).
fn finish_abandoned(span: &Shared) {
    let mut s = span.lock();
    if s.start_unix_ns != 0 {
        s.finish(None);
    } else {
        // Never started: no span (nothing ran). Mark done so nothing is counted twice.
        s.done = true;
    }
}

/// The coroutine a traced `async def` returns.
#[pyclass(module = "callspan._callspan", name = "TracedCoroutine")]
pub(crate) struct TracedCoroutine {
    inner: Py<PyAny>,
    span: Shared,
}

#[pymethods]
impl TracedCoroutine {
    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        resume(
            py,
            &self.inner,
            &self.span,
            coroutine_outcome,
            "send",
            one(py, value),
        )
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        resume(
            py,
            &self.inner,
            &self.span,
            coroutine_outcome,
            "throw",
            throw_args(py, typ, val, tb),
        )
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let result = self.inner.bind(py).call_method0("close");
        self.span.lock().finish(None);
        result.map(drop)
    }

    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, py.None().into_bound(py))
    }

    /// The wrapped coroutine (for introspection).
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<callspan traced {}>",
            self.inner
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default()
        )
    }
}

impl Drop for TracedCoroutine {
    fn drop(&mut self) {
        finish_abandoned(&self.span);
    }
}

/// The generator a traced generator function returns.
#[pyclass(module = "callspan._callspan", name = "TracedGenerator")]
pub(crate) struct TracedGenerator {
    inner: Py<PyAny>,
    span: Shared,
}

#[pymethods]
impl TracedGenerator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.bind(py);
        step(py, &self.span, generator_outcome, || {
            // `next()` via the C slot: a generator returning ends with StopIteration set.
            inner.call_method0("__next__")
        })
    }

    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        resume(
            py,
            &self.inner,
            &self.span,
            generator_outcome,
            "send",
            one(py, value),
        )
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        resume(
            py,
            &self.inner,
            &self.span,
            generator_outcome,
            "throw",
            throw_args(py, typ, val, tb),
        )
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.bind(py);
        let result = step(py, &self.span, generator_outcome, || {
            inner.call_method0("close")
        });
        // A generator closed before its first step never ran: no span.
        finish_abandoned(&self.span);
        result.map(drop)
    }

    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.clone_ref(py)
    }
}

impl Drop for TracedGenerator {
    fn drop(&mut self) {
        finish_abandoned(&self.span);
    }
}

/// The async generator a traced `async def ... yield` function returns.
#[pyclass(module = "callspan._callspan", name = "TracedAsyncGenerator")]
pub(crate) struct TracedAsyncGenerator {
    inner: Py<PyAny>,
    span: Shared,
}

impl TracedAsyncGenerator {
    fn wrap_step(&self, awaitable: Bound<'_, PyAny>, closing: bool) -> TracedAsyncStep {
        TracedAsyncStep {
            inner: awaitable.unbind(),
            span: Arc::clone(&self.span),
            closing,
        }
    }
}

#[pymethods]
impl TracedAsyncGenerator {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__(&self, py: Python<'_>) -> PyResult<TracedAsyncStep> {
        let a = self.inner.bind(py).call_method0("__anext__")?;
        Ok(self.wrap_step(a, false))
    }

    fn asend(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<TracedAsyncStep> {
        let a = self.inner.bind(py).call_method1("asend", (value,))?;
        Ok(self.wrap_step(a, false))
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn athrow(
        &self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<TracedAsyncStep> {
        let args = throw_args(py, typ, val, tb);
        let a = self.inner.bind(py).call_method1("athrow", args)?;
        Ok(self.wrap_step(a, false))
    }

    fn aclose(&self, py: Python<'_>) -> PyResult<TracedAsyncStep> {
        let a = self.inner.bind(py).call_method0("aclose")?;
        Ok(self.wrap_step(a, true))
    }

    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.clone_ref(py)
    }
}

impl Drop for TracedAsyncGenerator {
    fn drop(&mut self) {
        finish_abandoned(&self.span);
    }
}

/// One awaitable step of a traced async generator (`__anext__`, `asend`, `athrow`, `aclose`).
#[pyclass(module = "callspan._callspan", name = "TracedAsyncStep")]
pub(crate) struct TracedAsyncStep {
    inner: Py<PyAny>,
    span: Shared,
    /// `aclose()`: its normal end (StopIteration) ends the generator's span too.
    closing: bool,
}

impl TracedAsyncStep {
    /// A step's StopIteration carries the value the generator produced (it goes on);
    /// aclose()'s StopIteration means it is closed. StopAsyncIteration: exhausted.
    fn classify(&self) -> Classify {
        if self.closing {
            async_close_outcome
        } else {
            async_step_outcome
        }
    }
}

#[pymethods]
impl TracedAsyncStep {
    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        resume(
            py,
            &self.inner,
            &self.span,
            self.classify(),
            "send",
            one(py, value),
        )
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        resume(
            py,
            &self.inner,
            &self.span,
            self.classify(),
            "throw",
            throw_args(py, typ, val, tb),
        )
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.bind(py).call_method0("close").map(drop)
    }

    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, py.None().into_bound(py))
    }
}

/// What the hot path decided for one call of a coroutine or generator function.
#[derive(Debug)]
pub(crate) struct StepCall {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) parent: Option<ParentSpan>,
    pub(crate) sampled: bool,
    pub(crate) function: FunctionId,
    pub(crate) caller: CallerSite,
    pub(crate) omitted: u8,
    pub(crate) stack: Option<Box<[CallerSite]>>,
}

/// Called by the hot path for a non-plain traced function, with the object calling `func`
/// created: wraps it with its span.
pub(crate) fn wrap<'py>(
    py: Python<'py>,
    kind: Kind,
    created: Bound<'py, PyAny>,
    call: StepCall,
) -> PyResult<Bound<'py, PyAny>> {
    let registry = pipeline::registry();
    let thread = if call.omitted & callspan_core::config::Capture::THREAD != 0 {
        0
    } else {
        thread::current_key(py, registry)
    };
    let StepCall {
        trace_id,
        span_id,
        parent,
        sampled,
        function,
        caller,
        omitted,
        stack,
    } = call;
    let span = Arc::new(Mutex::new(StepSpan {
        trace_id,
        span_id,
        parent,
        sampled,
        function,
        caller,
        omitted,
        stack,
        thread,
        // A coroutine's span covers its awaited lifetime from the call; a generator's starts
        // with the first iteration.
        start_unix_ns: if kind == Kind::Coroutine {
            now_unix_ns()
        } else {
            0
        },
        done: false,
        publish_in_context: kind != Kind::Generator,
    }));
    if kind != Kind::Generator {
        CONTEXT_VAR_USED.store(true, Ordering::Relaxed);
    }
    let inner = created.unbind();
    let obj: Bound<'py, PyAny> = match kind {
        Kind::Coroutine => Bound::new(py, TracedCoroutine { inner, span })?.into_any(),
        Kind::Generator => Bound::new(py, TracedGenerator { inner, span })?.into_any(),
        Kind::AsyncGenerator => Bound::new(py, TracedAsyncGenerator { inner, span })?.into_any(),
        Kind::Plain => inner.into_bound(py),
    };
    Ok(obj)
}

/// Registers the coroutine wrapper with `collections.abc.Coroutine` (so asyncio accepts it in
/// `create_task`, `gather` and `run`) and the others with their ABCs.
pub(crate) fn register_abcs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let abc = py.import("collections.abc")?;
    let pairs: [(&str, Bound<'_, PyType>); 3] = [
        ("Coroutine", py.get_type::<TracedCoroutine>()),
        ("Generator", py.get_type::<TracedGenerator>()),
        ("AsyncGenerator", py.get_type::<TracedAsyncGenerator>()),
    ];
    for (name, ty) in pairs {
        abc.getattr(name)?.call_method1("register", (ty.clone(),))?;
        m.add(ty.name()?.to_string().as_str(), ty)?;
    }
    m.add_class::<TracedAsyncStep>()?;
    Ok(())
}
