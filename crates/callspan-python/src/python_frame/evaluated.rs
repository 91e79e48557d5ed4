//! Frames handed to a PEP 523 frame-evaluation function (CPython 3.9–3.11, direct route): what
//! the profile hook reads of a frame just before the interpreter evaluates it and just after.
//!
//! The function receives the frame before it runs: on 3.11 it is not linked into the thread's
//! frame chain yet (`_PyEval_EvalFrameDefault` sets `previous` and makes it current on entry)
//! and its instruction pointer is still before its first instruction, so it is *incomplete* in
//! `python_frame`'s sense; on 3.9/3.10 `tstate->frame` is still its caller. Only its code,
//! globals and the fields below are read here, and the caller is the thread's current frame
//! (`python_frame::caller_frame`), exactly as for a traced call.
//!
//! A generator, coroutine or async generator is evaluated once per step (`gen_send_ex` calls
//! the frame-evaluation function with `throwflag` set for `throw()` and `close()`); the frame is
//! the object's own for its whole life. What tells the steps apart, per version (checked
//! against each version's `ceval.c` and `genobject.c`):
//!
//! | | 3.9 | 3.10 | 3.11 |
//! |---|---|---|---|
//! | frame | `PyFrameObject` | `PyFrameObject` | `_PyInterpreterFrame` |
//! | a step of the object (not the call that creates it) | always (`f_gen` set; creating the object runs no frame) | as 3.9 | `owner == FRAME_OWNED_BY_GENERATOR`; a thread-owned frame of generator code is the creating call, which runs `RETURN_GENERATOR` |
//! | its first step | `f_lasti == -1` | `f_state == FRAME_CREATED` | `prev_instr` before `_co_firsttraceable` (at `RETURN_GENERATOR`; `gi_frame_state` is already `FRAME_EXECUTING` when the function is called) |
//! | after a step that returned a value: suspended (a yield or an await), not finished | `f_stacktop != NULL` | `f_state == FRAME_SUSPENDED` | the generator's `gi_frame_state == FRAME_SUSPENDED` |
//!
//! A step that returns NULL (an exception) always finishes the object.

use pyo3::ffi;
use pyo3::prelude::*;

use super::direct::RawFrame;
#[cfg(Py_3_10)]
use super::layout::*;
use super::CallerFrame;

/// A frame handed to the frame-evaluation function: the `PyFrameObject *` (3.9/3.10) or
/// `_PyInterpreterFrame *` (3.11) argument itself (`repr(transparent)`: the function's
/// signature can take it as that pointer).
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct EvalFrame(RawFrame);

impl EvalFrame {
    /// The frame's address: a generator's frame keeps it across steps for the object's life.
    #[inline]
    pub(crate) fn address(self) -> usize {
        self.0 as usize
    }

    /// The frame's code object, borrowed (the frame holds it).
    ///
    /// # Safety
    /// The frame is the live frame handed to the frame-evaluation function, not yet evaluated.
    #[inline]
    pub(crate) unsafe fn code(self) -> *mut ffi::PyObject {
        // SAFETY: the caller's contract: `f_code` is set when the frame is made, on every version.
        unsafe { (*self.0).f_code.cast() }
    }

    /// The frame as [`CallerFrame`], for reading its code, module and qualified name (the
    /// profile hook's decision); its `lasti` and locals are not meaningful before it runs.
    ///
    /// # Safety
    /// As [`EvalFrame::code`].
    #[inline]
    pub(crate) unsafe fn starting(self, py: Python<'_>) -> CallerFrame<'_> {
        CallerFrame { raw: self.0, py }
    }

    /// Whether this evaluation is a step of a generator, coroutine or async generator (on 3.11
    /// not the call that creates the object); only asked for such code.
    ///
    /// # Safety
    /// As [`EvalFrame::code`].
    #[inline]
    pub(crate) unsafe fn is_object_step(self) -> bool {
        #[cfg(not(Py_3_11))]
        // SAFETY: the caller's contract; `f_gen` is set for the frame of a generator object.
        unsafe {
            !(*self.0).f_gen.is_null()
        }
        #[cfg(Py_3_11)]
        // SAFETY: the caller's contract; `owner` is set when the frame is made.
        unsafe {
            (*self.0).owner == FRAME_OWNED_BY_GENERATOR
        }
    }

    /// Whether the object's body has not run yet: this is its first step.
    ///
    /// # Safety
    /// As [`EvalFrame::code`], and [`EvalFrame::is_object_step`] holds.
    #[inline]
    pub(crate) unsafe fn step_not_started(self) -> bool {
        #[cfg(all(Py_3_9, not(Py_3_10)))]
        // SAFETY: the caller's contract; 3.9 `f_lasti` is -1 until the first instruction.
        unsafe {
            (*self.0).f_lasti == -1
        }
        #[cfg(all(Py_3_10, not(Py_3_11)))]
        // SAFETY: the caller's contract; 3.10 `f_state` (a signed char).
        unsafe {
            (*self.0).f_executing_or_state == FRAME_CREATED
        }
        #[cfg(Py_3_11)]
        // SAFETY: the caller's contract; the frame carries its code object, whose first
        // traceable instruction (`RESUME`) follows the generator preamble (`RETURN_GENERATOR`,
        // where the frame was copied into the object).
        unsafe {
            super::quirks::before_first_traceable(self.0, (*self.0).f_code)
        }
    }

    /// After a step that returned a value: whether the object suspended (a yield or an await)
    /// rather than finished.
    ///
    /// # Safety
    /// The frame is an object's frame just evaluated by the default function, which returned a
    /// value; the object is alive (the caller of the step holds it).
    #[inline]
    pub(crate) unsafe fn suspended(self) -> bool {
        #[cfg(all(Py_3_9, not(Py_3_10)))]
        // SAFETY: the caller's contract; 3.9 leaves `f_stacktop` NULL unless a yield suspends.
        unsafe {
            !(*self.0).f_stacktop.is_null()
        }
        #[cfg(all(Py_3_10, not(Py_3_11)))]
        // SAFETY: the caller's contract.
        unsafe {
            (*self.0).f_executing_or_state == FRAME_SUSPENDED
        }
        #[cfg(Py_3_11)]
        // SAFETY: the caller's contract; an object-owned frame is the object's trailing
        // `gi_iframe` (`_PyFrame_GetGenerator`), and generators, coroutines and async
        // generators share the head that holds `gi_frame_state`.
        unsafe {
            let gen = self
                .0
                .cast::<u8>()
                .sub(std::mem::offset_of!(GenObject, gi_iframe))
                .cast::<GenObject>();
            (*gen).gi_frame_state == FRAME_SUSPENDED
        }
    }
}
