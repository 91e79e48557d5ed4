//! Calling into Python from a C entry point so that a thread CPython ends with `pthread_exit`
//! passes through our frames instead of aborting the process.
//!
//! CPython 3.9–3.13 end a daemon thread that tries to take the GIL back during interpreter
//! finalization with `pthread_exit` (3.14 hangs it instead). glibc implements `pthread_exit` as
//! a *forced unwind* of the thread's stack, up through every frame between the GIL wait and the
//! thread's start, which includes ours whenever a traced call is in progress. What each kind of
//! frame does with it:
//!
//! * An `extern "C"` Rust function is `nounwind`: rustc gives it a landing pad that aborts
//!   (exit status 134, no message) — the crash this module exists to avoid.
//! * A frame with pending destructors (a drop guard, a live `Box`, a PyO3 `Bound`) would have
//!   them run by the unwind. RFC 2945 makes that undefined behaviour, and here it would really
//!   be wrong: the dying thread does not hold the GIL, so a `Bound`'s `Py_DECREF` would race
//!   with the finalizing main thread.
//! * A frame with no pending destructor (a "plain old frame"), whose ABI permits unwinding
//!   (`extern "C-unwind"`) and whose call into CPython is declared `"C-unwind"` too (so that the
//!   call site is in the frame's unwind table as "nothing to clean up"), is passed through like
//!   a C frame: nothing of ours runs, and the thread's Rust thread-locals are still destroyed
//!   by `pthread_exit` itself.
//!
//! So a C entry point that calls user code (the vectorcall of a traced function) is declared
//! `extern "C-unwind"`, makes the call through [`vectorcall`], and holds nothing with a
//! destructor across it (`ManuallyDrop` for what must live across, explicit undo instead of
//! drop guards). Its Rust work before and after the call runs inside [`no_unwind`], so a Rust
//! panic there still aborts instead of unwinding into CPython.
//! The same holds for the steps of the generator, coroutine and async generator wrappers
//! (`step_types.rs`): their slots and methods are C functions of the same kind, which resume
//! the wrapped object through [`call_method`], [`iternext`] and [`send`]; and for the 3.9–3.11
//! profile hook's frame-evaluation function (`hook_eval.rs`), which evaluates every frame
//! through `eval_frame_default`. PyO3's own
//! `#[pymethods]` trampolines are `extern "C"`, so no entry point that calls user code may be
//! one.

use pyo3::ffi;

/// The vectorcall signature with an ABI that lets a forced unwind pass.
pub(crate) type UnwindingVectorcall = unsafe extern "C-unwind" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    usize,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

#[cfg(not(Py_3_11))]
extern "C" {
    // 3.9 and 3.10 have `PyObject_Vectorcall` only as a header inline; this is its slot-less
    // branch. pyo3-ffi declares it too (privately, "C"): called only through `opaque`.
    fn _PyObject_MakeTpCall(
        tstate: *mut ffi::PyThreadState,
        callable: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// `_PyObject_MakeTpCall` with the unwinding ABI.
#[cfg(not(Py_3_11))]
type UnwindingMakeTpCall = unsafe extern "C-unwind" fn(
    *mut ffi::PyThreadState,
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

// CPython 3.9–3.11's own frame evaluation (exported; pyo3-ffi does not declare it), which the
// profile hook's frame-evaluation function calls for every frame: a forced unwind comes out of
// it whenever a daemon thread is ended inside Python code.
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
extern "C-unwind" {
    #[link_name = "_PyEval_EvalFrameDefault"]
    fn py_eval_eval_frame_default(
        tstate: *mut ffi::PyThreadState,
        frame: crate::python_frame::EvalFrame,
        throwflag: std::ffi::c_int,
    ) -> *mut ffi::PyObject;
}

/// A frame-evaluation function (PEP 523) with the unwinding ABI: the signature of
/// `_PyFrameEvalFunction`, whose frame argument [`EvalFrame`](crate::python_frame::EvalFrame)
/// is.
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
pub(crate) type UnwindingEvalFrame = unsafe extern "C-unwind" fn(
    *mut ffi::PyThreadState,
    crate::python_frame::EvalFrame,
    std::ffi::c_int,
) -> *mut ffi::PyObject;

/// `_PyEval_EvalFrameDefault(tstate, frame, throwflag)`: the interpreter evaluates `frame`.
///
/// # Safety
/// The GIL is held; the arguments are those a frame-evaluation function was called with.
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
#[inline(always)]
pub(crate) unsafe fn eval_frame_default(
    tstate: *mut ffi::PyThreadState,
    frame: crate::python_frame::EvalFrame,
    throwflag: std::ffi::c_int,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract.
    unsafe { py_eval_eval_frame_default(tstate, frame, throwflag) }
}

/// `_PyEval_EvalFrameDefault` itself, to install and compare with [`eval_frame_func`].
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
pub(crate) const DEFAULT_EVAL_FRAME: UnwindingEvalFrame = py_eval_eval_frame_default;

/// `func` as the `_PyFrameEvalFunction` type CPython's headers (and pyo3-ffi) declare.
#[cfg(all(not(Py_3_12), callspan_frame_direct))]
pub(crate) fn eval_frame_func(func: UnwindingEvalFrame) -> ffi::_PyFrameEvalFunction {
    // SAFETY: "C" and "C-unwind" share the calling convention (see `as_slot`), and the frame
    // argument is a pointer either way (`EvalFrame` is `repr(transparent)`).
    unsafe { std::mem::transmute::<UnwindingEvalFrame, ffi::_PyFrameEvalFunction>(func) }
}

/// A C-API function of the vectorcall signature (`PyObject_Vectorcall`,
/// `PyObject_VectorcallMethod`) with the unwinding ABI, through an opaque pointer (see `opaque`:
/// pyo3-ffi declares the same symbols).
///
/// # Safety
/// "C" and "C-unwind" share the calling convention (see `as_slot`).
#[inline(always)]
unsafe fn unwinding_vectorcall(
    func: unsafe extern "C" fn(
        *mut ffi::PyObject,
        *const *mut ffi::PyObject,
        usize,
        *mut ffi::PyObject,
    ) -> *mut ffi::PyObject,
) -> UnwindingVectorcall {
    // SAFETY: the function's contract.
    unsafe {
        std::mem::transmute::<
            unsafe extern "C" fn(
                *mut ffi::PyObject,
                *const *mut ffi::PyObject,
                usize,
                *mut ffi::PyObject,
            ) -> *mut ffi::PyObject,
            UnwindingVectorcall,
        >(opaque(func))
    }
}

/// `PyIter_Send` with the unwinding ABI.
#[cfg(Py_3_10)]
type UnwindingSend = unsafe extern "C-unwind" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut *mut ffi::PyObject,
) -> ffi::PySendResult;

/// `f`, called through a pointer the optimizer cannot see through.
///
/// Why not a second `extern "C-unwind"` declaration: PyO3 itself declares (and calls)
/// `PyObject_VectorcallMethod`, `PyIter_Send`, `PyObject_Vectorcall` and `_PyObject_MakeTpCall`
/// as "C", and under LTO the two declarations of one symbol become one, `nounwind`. The call
/// site is then left out of the frame's unwind table and the forced unwind aborts there (seen
/// on 3.9, where asyncio steps a coroutine with `send`). Every CPython function an entry point
/// calls user code through is therefore called through this.
#[inline(always)]
fn opaque<F: Copy>(f: F) -> F {
    std::hint::black_box(f)
}

/// `args[0].name(*args[1..])` (`PyObject_VectorcallMethod`) through a "C-unwind" declaration.
///
/// # Safety
/// The GIL is held; `name` is a str and `args` holds at least the receiver, all valid.
#[inline(always)]
pub(crate) unsafe fn call_method(
    name: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> *mut ffi::PyObject {
    // SAFETY: "C" and "C-unwind" share the calling convention (see `as_slot`).
    let call = unsafe { unwinding_vectorcall(ffi::PyObject_VectorcallMethod) };
    // SAFETY: the caller's contract.
    unsafe { call(name, args.as_ptr(), args.len(), std::ptr::null_mut()) }
}

/// The `tp_iternext` of `iter`'s type, called as "C-unwind" (None: the type has none).
///
/// # Safety
/// The GIL is held; `iter` is a live object.
#[inline(always)]
pub(crate) unsafe fn iternext(iter: *mut ffi::PyObject) -> Option<*mut ffi::PyObject> {
    // SAFETY: the caller's contract; "C" and "C-unwind" share the calling convention (see
    // `as_slot`), and the slot is a C function that may let a forced unwind through.
    unsafe {
        let next = (*ffi::Py_TYPE(iter)).tp_iternext?;
        let next: unsafe extern "C-unwind" fn(*mut ffi::PyObject) -> *mut ffi::PyObject =
            std::mem::transmute::<ffi::iternextfunc, _>(next);
        Some(next(iter))
    }
}

/// `PyIter_Send(iter, arg, presult)` through a "C-unwind" declaration (3.10+).
///
/// # Safety
/// The GIL is held; `iter` and `arg` are live objects.
#[cfg(Py_3_10)]
#[inline(always)]
pub(crate) unsafe fn send(
    iter: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    presult: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: "C" and "C-unwind" share the calling convention (see `as_slot`).
    let send = unsafe {
        std::mem::transmute::<
            unsafe extern "C" fn(
                *mut ffi::PyObject,
                *mut ffi::PyObject,
                *mut *mut ffi::PyObject,
            ) -> ffi::PySendResult,
            UnwindingSend,
        >(opaque(ffi::PyIter_Send))
    };
    // SAFETY: the caller's contract.
    unsafe { send(iter, arg, presult) }
}

/// `PyObject_Vectorcall(callable, args, nargsf, kwnames)` through "C-unwind" declarations.
///
/// A callable with a vectorcall slot (every Python function) is called through that slot
/// directly, as CPython's header inline `PyObject_Vectorcall` does, but without its
/// `_Py_CheckFunctionResult` (a consistency check of result and error indicator: our caller
/// returns the result to the interpreter, whose own `PyObject_Vectorcall` checks it again).
/// From 3.11 `PyObject_Vectorcall` is an exported function instead, which costs a thread-state
/// fetch, that check and two more calls per traced call (~35 instructions on 3.11).
///
/// # Safety
/// The GIL is held; the arguments are a valid vectorcall of `callable`.
#[inline(always)]
pub(crate) unsafe fn vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract; a type with `Py_TPFLAGS_HAVE_VECTORCALL` keeps a
    // (possibly NULL) `vectorcallfunc` at `tp_vectorcall_offset` of its instances
    // (`PyVectorcall_Function`), and calling it with a valid vectorcall is what CPython does.
    unsafe {
        let tp = ffi::Py_TYPE(callable);
        if ffi::PyType_HasFeature(tp, ffi::Py_TPFLAGS_HAVE_VECTORCALL) != 0 {
            let slot = callable
                .cast::<u8>()
                .offset((*tp).tp_vectorcall_offset)
                .cast::<Option<ffi::vectorcallfunc>>();
            if let Some(func) = *slot {
                let func: UnwindingVectorcall = std::mem::transmute::<ffi::vectorcallfunc, _>(func);
                return func(callable, args, nargsf, kwnames);
            }
        }
        tp_call(callable, args, nargsf, kwnames)
    }
}

/// [`vectorcall`] of a callable without a vectorcall slot (called through its `tp_call`).
///
/// # Safety
/// As for [`vectorcall`].
#[inline(never)]
unsafe fn tp_call(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    #[cfg(Py_3_11)]
    // SAFETY: the caller's contract; "C" and "C-unwind" share the calling convention (see
    // `as_slot`), and the pointer is opaque (see `opaque`: pyo3-ffi declares the same symbol).
    unsafe {
        unwinding_vectorcall(ffi::PyObject_Vectorcall)(callable, args, nargsf, kwnames)
    }
    #[cfg(not(Py_3_11))]
    // SAFETY: the caller's contract; this is the slot-less branch of CPython 3.9/3.10's inline
    // `PyObject_Vectorcall`, called as above.
    unsafe {
        let call = std::mem::transmute::<
            unsafe extern "C" fn(
                *mut ffi::PyThreadState,
                *mut ffi::PyObject,
                *const *mut ffi::PyObject,
                ffi::Py_ssize_t,
                *mut ffi::PyObject,
            ) -> *mut ffi::PyObject,
            UnwindingMakeTpCall,
        >(opaque(_PyObject_MakeTpCall));
        call(
            ffi::PyThreadState_Get(),
            callable,
            args,
            ffi::PyVectorcall_NARGS(nargsf),
            kwnames,
        )
    }
}

/// Our unwinding vectorcall as the slot type CPython's headers (and pyo3-ffi) declare.
pub(crate) fn as_slot(func: UnwindingVectorcall) -> ffi::vectorcallfunc {
    // SAFETY: "C" and "C-unwind" differ only in whether unwinding out of the function is
    // allowed; the calling convention is the same, and CPython's callers are C frames.
    unsafe { std::mem::transmute::<UnwindingVectorcall, ffi::vectorcallfunc>(func) }
}

/// Runs `f`, aborting the process if it panics: Rust work inside an `extern "C-unwind"` entry
/// point must not unwind into CPython. The guard lives only while `f` runs, so it is not a
/// pending destructor at the entry point's call into Python.
#[inline(always)]
pub(crate) fn no_unwind<R>(f: impl FnOnce() -> R) -> R {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    let result = f();
    std::mem::forget(guard);
    result
}
