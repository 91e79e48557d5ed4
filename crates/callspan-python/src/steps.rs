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

use crate::exception;
use crate::span::{self, CountedCall, Decision, OpenSpan};
use callspan_core::context::ParentSpan;
use callspan_core::hot;
use callspan_core::per_thread;
use callspan_core::record::{ClassId, ExceptionInfo};
use parking_lot::Mutex;
use pyo3::exceptions::{PyGeneratorExit, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
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

/// The span of one call of a coroutine, generator or async generator.
#[derive(Debug)]
struct StepSpan {
    /// What each step makes current: the span, or the unsampled marker its children inherit.
    current: ParentSpan,
    /// The span while it is open; None when the call is not sampled or the span has ended.
    open: Option<OpenSpan>,
    /// An unsampled call while it is counted (calls are counted and it has not ended).
    counted: Option<CountedCall>,
    /// The object finished (or was abandoned): later steps are not part of the span.
    done: bool,
    /// Coroutines and async generators publish the span in the task's context too.
    publish_in_context: bool,
}

type Shared = Arc<Mutex<StepSpan>>;

/// Ends the span of `shared` (once), describing the error only if the span is kept;
/// `error_class` is the class of the exception that ended it (0: none). The lock is not held
/// while the span is finished: finishing may run Python code (diagnostics).
fn end(
    py: Python<'_>,
    shared: &Shared,
    error_class: ClassId,
    error: impl FnOnce() -> Option<ExceptionInfo>,
) {
    let (open, counted) = {
        let mut s = shared.lock();
        if s.done {
            return;
        }
        s.done = true;
        (s.open.take(), s.counted.take())
    };
    if let Some(open) = open {
        let now = callspan_core::clock::now_unix_ns();
        per_thread::with(|local| {
            span::finish(py, hot::state(), local, open, now, error_class, error)
        });
    } else if let Some(counted) = counted {
        counted.finish(error_class);
    }
}

/// The class of `err`, when calls are counted (else 0).
fn class_of(py: Python<'_>, err: &PyErr) -> ClassId {
    if !hot::state().counting() {
        return 0;
    }
    let ty = err.get_type(py);
    // SAFETY: a live type object, GIL held.
    unsafe { crate::caller::class_of_type(py, ty.as_type_ptr(), callspan_core::registry::global()) }
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
    shared: &Shared,
    classify: Classify,
    call: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (current, publish) = {
        let mut s = shared.lock();
        if s.done {
            // Resuming a finished object: let the inner object raise what it raises.
            drop(s);
            return call();
        }
        if let Some(open) = s.open.as_mut() {
            open.start_clock();
        }
        if let Some(counted) = s.counted.as_mut() {
            counted.start();
        }
        (s.current, s.publish_in_context)
    };
    // SAFETY: used on this thread, during this step only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        return call();
    };
    let active = span::enter(py, hot::state(), local, current, publish);
    let result = call();
    active.exit(py, local);
    if let Err(err) = &result {
        match classify(err, py) {
            Outcome::Continue => {}
            Outcome::EndOk => end(py, shared, 0, || None),
            Outcome::EndError => end(py, shared, class_of(py, err), || Some(describe(py, err))),
        }
    }
    result
}

/// An exception that ended a step's object; a cancelled coroutine says so.
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> ExceptionInfo {
    let mut info = exception::describe_error(py, err);
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

/// Ends the span of an object dropped or closed before it finished (a generator abandoned
/// mid-way). One that never ran has no span: nothing ran.
fn finish_abandoned(py: Python<'_>, shared: &Shared) {
    let never_ran = {
        let s = shared.lock();
        s.open.as_ref().is_some_and(|open| !open.started())
            || s.counted.is_some_and(|counted| !counted.started())
    };
    if never_ran {
        let mut s = shared.lock();
        s.done = true;
        s.open = None;
        s.counted = None;
    } else {
        end(py, shared, 0, || None);
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
        end(py, &self.span, 0, || None);
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
        // SAFETY: a pyclass is dropped by its tp_dealloc, which runs with the GIL held.
        let py = unsafe { Python::assume_attached() };
        finish_abandoned(py, &self.span);
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
        finish_abandoned(py, &self.span);
        result.map(drop)
    }

    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.clone_ref(py)
    }
}

impl Drop for TracedGenerator {
    fn drop(&mut self) {
        // SAFETY: a pyclass is dropped by its tp_dealloc, which runs with the GIL held.
        let py = unsafe { Python::assume_attached() };
        finish_abandoned(py, &self.span);
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
        // SAFETY: a pyclass is dropped by its tp_dealloc, which runs with the GIL held.
        let py = unsafe { Python::assume_attached() };
        finish_abandoned(py, &self.span);
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

/// Called by the hot path for a non-plain traced function, with the object calling `func`
/// created: wraps it with its span (`span`: the open span when the call is sampled).
pub(crate) fn wrap<'py>(
    py: Python<'py>,
    kind: Kind,
    created: Bound<'py, PyAny>,
    decision: Decision,
    mut span: Option<OpenSpan>,
    mut counted: Option<CountedCall>,
) -> PyResult<Bound<'py, PyAny>> {
    let current = match (&span, decision) {
        (Some(open), _) => open.as_parent(),
        (None, Decision::Unsampled { trace_id } | Decision::Sampled { trace_id, .. }) => {
            Decision::unsampled_marker(trace_id)
        }
    };
    // A coroutine's span covers its awaited lifetime from the call; a generator's starts with
    // the first iteration.
    if kind == Kind::Coroutine {
        if let Some(open) = span.as_mut() {
            open.start_clock();
        }
        if let Some(counted) = counted.as_mut() {
            counted.start();
        }
    }
    let shared = Arc::new(Mutex::new(StepSpan {
        current,
        open: span,
        counted,
        done: false,
        publish_in_context: kind != Kind::Generator,
    }));
    let inner = created.unbind();
    let span = shared;
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
