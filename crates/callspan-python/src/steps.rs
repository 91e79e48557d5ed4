//! Spans of calls whose body runs later, in steps: coroutines, generators, async generators.
//!
//! Calling an `async def` or a generator function only creates an object; the body runs each
//! time the object is resumed (`send`, `throw`, `__next__`), interleaved with other tasks on the
//! same thread. The wrappers (`step_types`) own one span per call and make it the current span
//! only while one of their steps runs, so that concurrent tasks never see each other's spans as
//! parents. A coroutine's span covers its whole awaited lifetime (from the call to its
//! completion); a generator's runs from the first iteration to exhaustion or `close()`. An
//! exception ends the span with status ERROR; cancellation (`asyncio.CancelledError`) and
//! `GeneratorExit` are named as such. Coroutine steps also publish the span in a `ContextVar`, so
//! that work handed to another thread with the context (`asyncio.to_thread`,
//! `contextvars.copy_context().run`) still finds its parent.
//!
//! This module is what a step does to the span ([`enter_step`], [`leave_step`], [`end`]); the
//! wrapper objects and their resumption of the wrapped object are `step_types`.

use crate::exception;
use crate::span::{self, Active, CountedCall, Decision, OpenSpan};
use crate::step_types;
use callspan_core::context::ParentSpan;
use callspan_core::hot;
use callspan_core::per_thread;
use callspan_core::record::{ClassId, ExceptionInfo};
use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;
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

/// Which wrapper an object is: picks its type and how the end of a step is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Role {
    /// `TracedCoroutine`.
    Coroutine,
    /// `TracedGenerator`.
    Generator,
    /// `TracedAsyncGenerator`: its steps are the awaitables it hands out.
    AsyncGenerator,
    /// `TracedAsyncStep` of `__anext__`, `asend` or `athrow`.
    AsyncStep,
    /// `TracedAsyncStep` of `aclose()`: its normal end closes the generator.
    AsyncClose,
}

/// How the wrapped object came back from one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// It produced a value (a `yield`, an `await` suspending, a method's result).
    Value,
    /// It returned without an exception set (`tp_iternext` NULL, `PYGEN_RETURN`).
    Exhausted,
    /// An exception is set.
    Raised,
}

/// The span of one call of a coroutine, generator or async generator.
#[derive(Debug)]
pub(crate) struct StepSpan {
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

/// A call's span, shared by its wrapper and (async generators) the awaitables of its steps.
pub(crate) type Shared = Arc<Mutex<StepSpan>>;

/// Ends the span of `shared` (once), describing the error only if the span is kept (and, for a
/// call that `raised`, the queue has room for it); `error_class` is the class of the exception
/// that ended it (0: none). The lock is not held
/// while the span is finished: finishing may run Python code (diagnostics).
pub(crate) fn end(
    py: Python<'_>,
    shared: &Mutex<StepSpan>,
    error_class: ClassId,
    raised: bool,
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
        let end_ticks = callspan_core::clock::ticks();
        per_thread::with(|local| {
            span::finish(
                py,
                hot::state(),
                local,
                open,
                end_ticks,
                error_class,
                raised,
                error,
            )
        });
    } else if let Some(counted) = counted {
        counted.finish(error_class);
    }
}

/// How a step's end affects the span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Not an end (an async generator step's StopIteration carries a produced value).
    Continue,
    /// The object finished normally (StopIteration, StopAsyncIteration, GeneratorExit).
    EndOk,
    /// An exception escaped: the span ends with status ERROR.
    EndError,
}

/// Reads the end of a step of `role` (for `Raised`, from the exception set now).
fn outcome(role: Role, resumed: Resumed) -> Outcome {
    // A step's StopIteration carries the value an async generator produced (it goes on);
    // aclose()'s means it is closed. StopAsyncIteration: exhausted.
    let returned = match role {
        Role::AsyncStep => Outcome::Continue,
        _ => Outcome::EndOk,
    };
    match resumed {
        Resumed::Value => Outcome::Continue,
        Resumed::Exhausted => returned,
        Resumed::Raised => {
            // SAFETY: GIL held (every step runs with it); an exception is set.
            let matches =
                |exc: *mut ffi::PyObject| unsafe { ffi::PyErr_ExceptionMatches(exc) != 0 };
            // SAFETY: reading CPython's exception type objects.
            let (stop, stop_async, generator_exit) = unsafe {
                (
                    ffi::PyExc_StopIteration,
                    ffi::PyExc_StopAsyncIteration,
                    ffi::PyExc_GeneratorExit,
                )
            };
            let is_async = matches!(role, Role::AsyncStep | Role::AsyncClose);
            // StopAsyncIteration ends an async generator; GeneratorExit a generator (a
            // coroutine's is an error: close() catches its own).
            let finished = (is_async && matches(stop_async))
                || (role != Role::Coroutine && matches(generator_exit));
            if matches(stop) {
                returned
            } else if finished {
                Outcome::EndOk
            } else {
                Outcome::EndError
            }
        }
    }
}

/// Before a step: makes the span current, starting its clock at the first step. None when
/// the object finished before: resuming it is not part of the span.
pub(crate) fn enter_step(py: Python<'_>, shared: &Mutex<StepSpan>) -> Option<Active> {
    let (current, publish) = {
        let mut s = shared.lock();
        if s.done {
            return None;
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
    let local = unsafe { per_thread::current() }?;
    Some(span::enter(py, hot::state(), local, current, publish))
}

/// After a step of `role` that came back as `resumed`: the span is not current any more, and
/// ends if the step ended the object. An exception set stays set.
pub(crate) fn leave_step(
    py: Python<'_>,
    shared: &Mutex<StepSpan>,
    role: Role,
    active: Active,
    resumed: Resumed,
) {
    // SAFETY: as in `enter_step`.
    match unsafe { per_thread::current() } {
        Some(local) => active.exit(py, local),
        None => drop(active),
    }
    match outcome(role, resumed) {
        Outcome::Continue => {}
        Outcome::EndOk => end(py, shared, 0, false, || None),
        Outcome::EndError => {
            let class = span::raised_class(py, hot::state());
            end(py, shared, class, true, || Some(describe_current(py)));
        }
    }
}

/// An exception that ended a step's object; a cancelled coroutine says so.
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> ExceptionInfo {
    named_cancelled(exception::describe_error(py, err))
}

/// [`describe`] of the exception set now (left set).
pub(crate) fn describe_current(py: Python<'_>) -> ExceptionInfo {
    named_cancelled(exception::capture_current(py))
}

fn named_cancelled(mut info: ExceptionInfo) -> ExceptionInfo {
    if info.type_name.ends_with("CancelledError") {
        info.message = if info.message.is_empty() {
            "cancelled".into()
        } else {
            format!("cancelled: {}", info.message).into()
        };
    }
    info
}

/// Ends the span of an object dropped or closed before it finished (a generator abandoned
/// mid-way). One that never ran has no span: nothing ran.
pub(crate) fn finish_abandoned(py: Python<'_>, shared: &Mutex<StepSpan>) {
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
        end(py, shared, 0, false, || None);
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
    let role = match kind {
        Kind::Coroutine => Role::Coroutine,
        Kind::Generator => Role::Generator,
        Kind::AsyncGenerator => Role::AsyncGenerator,
        Kind::Plain => return Ok(created),
    };
    step_types::new_wrapper(py, role, created, shared)
}
