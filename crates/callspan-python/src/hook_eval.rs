//! The profile hook on CPython 3.9–3.11: a PEP 523 frame-evaluation function.
//!
//! * **Every thread.** `_PyInterpreterState_SetEvalFrameFunc` makes [`eval_frame`] the
//!   interpreter's frame evaluation: every Python frame any thread evaluates comes through it,
//!   threads started before the profile included. Nothing is set per thread, and the profile
//!   function (`sys.setprofile`) stays free: cProfile, yappi, coverage and debuggers run beside
//!   it, served by the default evaluation it calls.
//! * **Per frame.** It reads the frame's code object and the decision cached in the code's extra
//!   slot (`hook::decision`, made on the code object's first frame of a session). A frame of code
//!   that is not profiled goes straight to `_PyEval_EvalFrameDefault` after a C-stack check: that
//!   is the whole cost of a filter that matches nothing.
//! * **A profiled call** is one C call: its span starts before the default evaluation runs the
//!   frame and ends when it returns, so its state lives on the C stack and nothing is matched
//!   up between two events. A plain function's call is the decorator's own code
//!   (`span::PlainCall`): the caller is the thread's current frame at that point (the new frame
//!   is not linked yet), read by `python_frame::caller_frame` as for a traced call, and a NULL
//!   result leaves the exception set in the thread state, where it is described as the
//!   decorator describes it (type, message, stack) and left as it was.
//! * **Generators, coroutines, async generators.** Each step (`send`, `__next__`, `throw`,
//!   `close`, an `await` resuming) is one evaluation of the object's frame; `EvalFrame` tells a
//!   first step from a resume and, after it, a yield or await from the end (see
//!   `python_frame::evaluated` for each version). The span opens at the first step, waits by the
//!   frame's address between steps (`hook::suspend_step`) and ends at the step that finishes the
//!   object; `close()`'s GeneratorExit ends it normally, and an object closed before it ever ran
//!   has no span. On 3.11 the call that creates the object also evaluates a frame (it runs
//!   `RETURN_GENERATOR`): not a step.
//! * **C stack.** While a frame-evaluation function is installed, 3.11 stops running
//!   Python-to-Python calls inside one C call of the eval loop (`CALL` checks for one,
//!   `CALL_PY_EXACT_ARGS` deoptimises): every Python call recurses on the C stack, as on 3.9 and
//!   3.10. Every frame is checked first (`stack_guard`): RecursionError, never a stack overflow.
//! * **Another frame-evaluation function** (a debugger's, `torch.compile`'s, another tool's)
//!   makes `start_profile` fail, naming it (`dladdr`). One installed over callspan's later is
//!   left in place at stop, with a warning. `stop_profile` puts the default back.
//! * **Daemon threads at interpreter exit.** A thread that CPython ends with `pthread_exit`
//!   inside Python code unwinds through [`eval_frame`]: it is `extern "C-unwind"`, calls the
//!   default evaluation through a "C-unwind" declaration and holds nothing with a destructor
//!   across it (`thread_exit`).

use crate::hook::{self, End, Profiled, Step};
use crate::python_frame::{self, EvalFrame};
use crate::span::Active;
use crate::stack_guard::{self, Entry};
use crate::steps::Kind;
use crate::thread_exit::{self, no_unwind};
use callspan_core::per_thread::{self, PerThread};
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_char, c_int, CStr};
use std::mem::ManuallyDrop;
use std::ptr;

/// Makes [`eval_frame`] the interpreter's frame evaluation; refuses when another one is
/// installed, or when this interpreter's frames cannot be read.
pub(crate) fn install(_py: Python<'_>) -> PyResult<()> {
    if !crate::caller::frame_layout_verified() {
        return Err(PyRuntimeError::new_err(
            "callspan.start_profile: the profile hook on Python 3.9-3.11 reads the frames it is \
             handed through this interpreter's struct layouts, and the layout check at import \
             failed (its warning was logged then): profiling is off on this interpreter; trace \
             the functions with @callspan.trace instead",
        ));
    }
    // SAFETY: GIL held: this thread's interpreter, which outlives the call.
    let interp = unsafe { ffi::PyInterpreterState_Get() };
    let current = installed(interp);
    if current != func_address(thread_exit::DEFAULT_EVAL_FRAME) {
        return Err(PyRuntimeError::new_err(format!(
            "callspan.start_profile: another frame-evaluation function (PEP 523) is installed in \
             this interpreter: {}. callspan's profile hook on Python 3.9-3.11 is one too, and an \
             interpreter runs only one. Stop the tool that installed it (a debugger's frame \
             evaluation, torch.compile/TorchDynamo, another profiler or tracer) before \
             callspan.start_profile(), or trace the functions with @callspan.trace, which works \
             beside it",
            name_function(current)
        )));
    }
    // SAFETY: GIL held; our function has the signature the interpreter calls.
    unsafe {
        ffi::_PyInterpreterState_SetEvalFrameFunc(
            interp,
            Some(thread_exit::eval_frame_func(eval_frame)),
        )
    };
    Ok(())
}

/// Puts the default frame evaluation back, unless another tool replaced callspan's since (its
/// function is left installed, with a warning).
pub(crate) fn uninstall(_py: Python<'_>) -> PyResult<()> {
    // SAFETY: GIL held: this thread's interpreter, which outlives the call.
    let interp = unsafe { ffi::PyInterpreterState_Get() };
    let current = installed(interp);
    if current == func_address(eval_frame) {
        // SAFETY: GIL held; the interpreter's own default (3.11 stores it as NULL).
        unsafe {
            ffi::_PyInterpreterState_SetEvalFrameFunc(
                interp,
                Some(thread_exit::eval_frame_func(
                    thread_exit::DEFAULT_EVAL_FRAME,
                )),
            )
        };
    } else if current != func_address(thread_exit::DEFAULT_EVAL_FRAME) {
        tracing::warn!(
            "callspan.stop_profile: the interpreter's frame-evaluation function was replaced \
             after callspan.start_profile() by {}; it is left installed (callspan's profile \
             hook saw no more calls once it was replaced)",
            name_function(current)
        );
    }
    Ok(())
}

/// The address of the interpreter's frame-evaluation function now (the default's when none is
/// installed).
fn installed(interp: *mut ffi::PyInterpreterState) -> usize {
    // SAFETY: GIL held (callers); reads the interpreter's field.
    let func = unsafe { ffi::_PyInterpreterState_GetEvalFrameFunc(interp) };
    #[cfg(not(Py_3_11))]
    return func.map_or(0, |f| f as usize);
    #[cfg(Py_3_11)]
    return func as usize;
}

fn func_address(func: thread_exit::UnwindingEvalFrame) -> usize {
    thread_exit::eval_frame_func(func) as usize
}

/// The function at `address` as the dynamic linker names it: its symbol and shared object.
fn name_function(address: usize) -> String {
    // SAFETY: `dladdr` only reads the dynamic linker's tables and fills `info`; a zeroed
    // `Dl_info` (null pointers) is a valid initial value.
    let (found, info) = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let found = libc::dladdr(address as *const libc::c_void, &mut info) != 0;
        (found, info)
    };
    if !found {
        return format!("the function at {address:#x} (in no object the dynamic linker knows)");
    }
    let text = |p: *const c_char| {
        // SAFETY: `dladdr` returns null or NUL-terminated strings owned by the loaded object.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let object = text(info.dli_fname).unwrap_or_else(|| "an unnamed object".to_owned());
    match text(info.dli_sname) {
        Some(symbol) if info.dli_saddr as usize == address => format!("{symbol}() in {object}"),
        _ => format!("the function at {address:#x} in {object}"),
    }
}

/// The frame-evaluation function: every frame of every thread comes here while the profile runs.
/// The common case, a code object decided before, costs a read of its extra slot.
unsafe extern "C-unwind" fn eval_frame(
    tstate: *mut ffi::PyThreadState,
    frame: EvalFrame,
    throwflag: c_int,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL held and a live frame about to run, whose
    // code object it holds.
    let profiled = match unsafe { hook::cached(frame.code()) } {
        Some(decision) => hook::profiled_of(decision),
        // SAFETY: as above.
        None => no_unwind(|| unsafe { decide(frame, throwflag) }),
    };
    match profiled {
        // SAFETY: the arguments this function was called with.
        None => unsafe { unprofiled(tstate, frame, throwflag) },
        // SAFETY: as above.
        Some(profiled) => unsafe { profiled_frame(tstate, frame, throwflag, profiled) },
    }
}

/// Decides the frame's code object (its first frame in this session): whether it is a
/// profiled function's.
///
/// # Safety
/// GIL held; `frame` is the live frame handed to [`eval_frame`] with `throwflag`.
#[cold]
#[inline(never)]
unsafe fn decide(frame: EvalFrame, throwflag: c_int) -> Option<&'static Profiled> {
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `code` is the frame's live code object, and the frame runs it.
    let decide = || unsafe { hook::decision(py, frame.code(), || Some(frame.starting(py))) };
    let decision = if throwflag == 0 {
        decide()
    } else {
        // SAFETY: GIL held; an exception is set for a thrown-in step.
        unsafe { exception_set_aside(decide) }
    };
    decision.and_then(|d| hook::profiled_of(d))
}

/// A frame of code that is not profiled: the default evaluation, after the C-stack check.
///
/// # Safety
/// The arguments [`eval_frame`] was called with.
#[inline(always)]
unsafe fn unprofiled(
    tstate: *mut ffi::PyThreadState,
    frame: EvalFrame,
    throwflag: c_int,
) -> *mut ffi::PyObject {
    // SAFETY: used on this thread, during this call only.
    if let Some(local) = unsafe { per_thread::current() } {
        // SAFETY: GIL held.
        if !unsafe { stack_guard::enough_stack(local, Entry::Profiled) } {
            // RecursionError is set; the frame is not run, as when CPython's own recursion
            // check fails on entry.
            return ptr::null_mut();
        }
    }
    // SAFETY: the caller's contract.
    unsafe { thread_exit::eval_frame_default(tstate, frame, throwflag) }
}

/// A frame of a profiled function: the span lifecycle around its evaluation. Out of line: its
/// state would otherwise enlarge the C frame of every evaluation. Across the evaluation nothing
/// here has a destructor (`ManuallyDrop`, see `thread_exit`).
///
/// # Safety
/// The arguments [`eval_frame`] was called with; `profiled` is the frame's function.
#[inline(never)]
unsafe fn profiled_frame(
    tstate: *mut ffi::PyThreadState,
    frame: EvalFrame,
    throwflag: c_int,
    profiled: &'static Profiled,
) -> *mut ffi::PyObject {
    // This thread's state, for the whole evaluation (the thread cannot end before it does).
    // SAFETY: used on this thread, during this call only.
    let Some(local) = (unsafe { per_thread::current() }) else {
        // SAFETY: the caller's contract.
        return unsafe { thread_exit::eval_frame_default(tstate, frame, throwflag) };
    };
    // SAFETY: GIL held.
    if !unsafe { stack_guard::enough_stack(local, Entry::Profiled) } {
        // RecursionError is set: the frame is not run.
        return ptr::null_mut();
    }
    if profiled.kind == Kind::Plain && throwflag == 0 {
        // A function call: its span is the decorator's (only C code evaluating a frame itself
        // could pass `throwflag` here; that goes the generators' way, which handles it).
        // SAFETY: GIL held; the frame current now is the caller's.
        let call = no_unwind(|| unsafe {
            hook::start_plain_call(Python::assume_attached(), local, profiled)
        });
        let Some(call) = call else {
            // SAFETY: the caller's contract.
            return unsafe { thread_exit::eval_frame_default(tstate, frame, throwflag) };
        };
        // SAFETY: the caller's contract.
        let result = unsafe { thread_exit::eval_frame_default(tstate, frame, throwflag) };
        // SAFETY: GIL held; `result` is what the frame returned.
        no_unwind(|| unsafe { call.end(local, result) });
        return result;
    }
    // SAFETY: the caller's contract.
    unsafe { object_step_frame(tstate, frame, throwflag, profiled, local) }
}

/// A frame of a profiled generator, coroutine or async generator (or a plain function's frame
/// evaluated with `throwflag` by C code): one step of its call around the evaluation. Out of
/// line: its step's state would otherwise enlarge the C frame of every profiled plain call,
/// which recursion multiplies.
///
/// The step is built in place and stays there until the step ends (a step is large: moving it
/// between functions cost a profiled call more than a tenth of its instructions).
///
/// # Safety
/// As [`profiled_frame`]; `local` is this thread's state, the C stack was checked.
#[inline(never)]
unsafe fn object_step_frame(
    tstate: *mut ffi::PyThreadState,
    frame: EvalFrame,
    throwflag: c_int,
    profiled: &'static Profiled,
    local: &PerThread,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract.
    let mut step = ManuallyDrop::new(no_unwind(|| unsafe {
        step_of(local, frame, throwflag, profiled)
    }));
    let Some(running) = step.as_mut() else {
        // No span: callspan is disabled, the call creating a generator (3.11), an object closed
        // before it ran, or a step of a call that began before the profile.
        // SAFETY: the caller's contract.
        return unsafe { thread_exit::eval_frame_default(tstate, frame, throwflag) };
    };
    // SAFETY: GIL held; with `throwflag`, the thrown exception is set.
    let active = ManuallyDrop::new(no_unwind(|| unsafe { enter(local, running, throwflag) }));
    // SAFETY: the caller's contract.
    let result = unsafe { thread_exit::eval_frame_default(tstate, frame, throwflag) };
    no_unwind(|| {
        // SAFETY: GIL held; the frame was just evaluated, `result` is what it returned.
        unsafe {
            after(
                local,
                frame,
                profiled.kind,
                &mut step,
                ManuallyDrop::into_inner(active),
                result,
            )
        }
    });
    result
}

/// The step this evaluation of a profiled function's frame runs: a call starting (a
/// generator's or coroutine's first step) or a suspended one resuming; None to run it without
/// a span.
///
/// # Safety
/// GIL held; `frame` is the live frame handed to [`eval_frame`] with `throwflag`.
#[inline(always)]
unsafe fn step_of(
    local: &PerThread,
    frame: EvalFrame,
    throwflag: c_int,
    profiled: &'static Profiled,
) -> Option<Step> {
    if profiled.kind == Kind::Plain {
        // SAFETY: the caller's contract.
        return unsafe { start(local, throwflag, profiled, 0) };
    }
    // SAFETY: the frame is live and not evaluated yet.
    unsafe {
        if !frame.is_object_step() {
            return None;
        }
        if !frame.step_not_started() {
            return hook::take_suspended(frame.address());
        }
        if throwflag != 0 && ffi::PyErr_ExceptionMatches(ffi::PyExc_GeneratorExit) != 0 {
            // close() before the first step: the body never runs.
            return None;
        }
        start(local, throwflag, profiled, frame.address())
    }
}

/// A call of `profiled` starts: decided, its caller read (the frame current now: the new one is
/// not linked yet, as for a traced call).
///
/// # Safety
/// GIL held; with `throwflag`, the thrown exception is set.
#[inline(always)]
unsafe fn start(
    local: &PerThread,
    throwflag: c_int,
    profiled: &'static Profiled,
    frame_key: usize,
) -> Option<Step> {
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: GIL held; borrowed frames, read before Python code runs.
    let caller = || unsafe { python_frame::caller_frame(py) };
    let start = || hook::start_call(py, local, profiled, caller, frame_key);
    if throwflag == 0 {
        start()
    } else {
        // SAFETY: GIL held; the thrown exception is set.
        unsafe { exception_set_aside(start) }
    }
}

/// Makes the step current while the frame runs.
///
/// # Safety
/// GIL held; with `throwflag`, the thrown exception is set.
#[inline(always)]
unsafe fn enter(local: &PerThread, step: &mut Step, throwflag: c_int) -> Active {
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    if throwflag == 0 {
        hook::enter_step(py, local, step)
    } else {
        // SAFETY: the caller's contract.
        unsafe { exception_set_aside(|| hook::enter_step(py, local, step)) }
    }
}

/// After the frame ran and returned `result`: a generator or coroutine that suspended keeps its
/// span for the next step; anything else ends it (NULL: with the exception set, left set).
///
/// # Safety
/// GIL held; `frame` was just evaluated and returned `result`; `step` holds the running step.
#[inline(always)]
unsafe fn after(
    local: &PerThread,
    frame: EvalFrame,
    kind: Kind,
    step: &mut Option<Step>,
    active: Active,
    result: *mut ffi::PyObject,
) {
    let end_ticks = step.as_ref().map_or(0, Step::end_ticks);
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: a generator's or coroutine's frame that returned a value; its object is held by
    // whoever resumed it.
    let suspended = !result.is_null() && kind != Kind::Plain && unsafe { frame.suspended() };
    if suspended && hook::running() {
        if let Some(step) = step.take() {
            hook::suspend_step(py, local, frame.address(), step, active);
        }
        return;
    }
    // Suspended after the profile stopped: no later step of it is seen, it ends here.
    let end = if result.is_null() {
        End::RaiseSet
    } else {
        End::Return
    };
    if let Some(step) = step.take() {
        hook::end_call(py, local, kind != Kind::Plain, step, active, end, end_ticks);
    }
}

/// Runs `f` with the exception pending at a `throw()` or `close()` step set aside, and puts it
/// back after: deciding and entering a span may run Python code, which must not run with an
/// exception set.
///
/// # Safety
/// GIL held.
unsafe fn exception_set_aside<R>(f: impl FnOnce() -> R) -> R {
    let (mut kind, mut value, mut traceback) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    // SAFETY: GIL held; the three references move out and back unchanged.
    unsafe { ffi::PyErr_Fetch(&mut kind, &mut value, &mut traceback) };
    let result = f();
    // SAFETY: as above (an exception `f` left set is replaced, as it would have been).
    unsafe { ffi::PyErr_Restore(kind, value, traceback) };
    result
}
