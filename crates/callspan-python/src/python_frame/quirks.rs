//! Version quirks: where the same field means different things on different CPython versions,
//! and how the direct route turns each into the one meaning [`CallerFrame`](super::CallerFrame)
//! promises.
//!
//! * **Which frames count** (3.11+). The interpreter links C-owned and half-initialised frames
//!   into the same chain as Python frames; [`first_complete`] skips them exactly as
//!   `PyEval_GetFrame`/`PyFrame_GetBack` do (`_PyFrame_GetFirstComplete`):
//!   `owner == FRAME_OWNED_BY_CSTACK` (3.12+: the shim "entry frame" each C→Python call pushes), a
//!   non-code `f_executable` (3.13), and `_PyFrame_IsIncomplete` (not a generator and the
//!   instruction pointer is before `_co_firsttraceable`, i.e. the `COPY_FREE_VARS`/`MAKE_CELL`
//!   prologue has not finished). 3.9/3.10 frame objects are always complete.
//! * **`lasti` units.** 3.9 stores a byte offset, 3.10 an index in 2-byte code units, 3.11+ an
//!   instruction pointer (3.11/3.12 `prev_instr`, 3.13 `instr_ptr`); [`lasti_bytes`] returns the
//!   byte offset `frame.f_lasti` shows on every version.
//! * **Arguments moved into cells.** An argument captured by a closure is stored in a cell:
//!   3.9/3.10 move it at frame creation into cell slot `co_nlocals + i` (`co_cell2arg[i]` names the
//!   argument) and clear the argument's own slot; 3.11+ keep the slot and let `MAKE_CELL` replace
//!   its value by a cell (`co_localspluskinds` marks it `CO_FAST_CELL`). [`first_local_value`]
//!   follows either to the value.
//! * **No `co_qualname` on 3.9/3.10**: derived instead, see
//!   [`qualname_search`](super::qualname_search).

use std::ptr;

use pyo3::ffi::{self, PyObject};

use super::direct::{frame_code, RawFrame};
#[cfg(Py_3_11)]
use super::layout::*;

/// The code object of a 3.11+ interpreter frame, or null when it is not a Python frame.
///
/// # Safety
/// `f` is a non-null frame of the live chain (possibly a shim or incomplete frame).
#[cfg(Py_3_11)]
#[inline]
pub(super) unsafe fn iframe_code(f: *mut IFrame) -> *mut Code {
    #[cfg(not(Py_3_12))]
    // SAFETY: `f` is live; 3.11 frames of the chain always carry their code object.
    unsafe {
        (*f).f_code
    }
    #[cfg(Py_3_12)]
    // SAFETY: `f` is live; `owner` is set for every frame, and `executable` is valid for every
    // frame not owned by the C stack (3.13: a code object, or another object for non-Python
    // frames, which the type check rejects).
    unsafe {
        if (*f).owner == FRAME_OWNED_BY_CSTACK {
            // Shim frame pushed by C code entering the interpreter; its other fields are not
            // valid.
            return ptr::null_mut();
        }
        let exe = (*f).executable;
        #[cfg(Py_3_13)]
        if exe.is_null() || ffi::PyCode_Check(exe) == 0 {
            return ptr::null_mut();
        }
        exe.cast::<Code>()
    }
}

/// Whether frame `f` runs `code`: [`iframe_code`]`(f) == code` without checking what `code` is
/// (compared by address, nothing of it is read).
///
/// # Safety
/// `f` is a non-null frame of the live chain (possibly a shim or incomplete frame).
#[cfg(Py_3_12)]
#[inline]
pub(super) unsafe fn runs_code(f: *mut IFrame, code: *mut PyObject) -> bool {
    // SAFETY: as in `iframe_code`: `executable` is valid unless the frame is the C stack's.
    unsafe { (*f).owner != FRAME_OWNED_BY_CSTACK && (*f).executable.cast::<PyObject>() == code }
}

/// `_PyCode_CODE(co)`: the start of the code's (quickened) bytecode, the code object's trailing
/// array. Address arithmetic only: nothing is read, so any pointer is fine.
#[cfg(Py_3_11)]
#[inline]
fn code_start(code: *mut Code) -> *mut u16 {
    code.cast::<u8>()
        .wrapping_add(std::mem::offset_of!(Code, co_code_adaptive))
        .cast::<u16>()
}

/// Whether frame `f` of `code` has not reached its code's first traceable instruction (the
/// first `RESUME`): `instr < _PyCode_CODE(co) + co->_co_firsttraceable`, the test of
/// `_PyFrame_IsIncomplete`. Compared as addresses: a new frame's `prev_instr` is one code unit
/// before the start.
///
/// # Safety
/// `f` is a live frame whose code is `code`.
#[cfg(Py_3_11)]
#[inline]
pub(super) unsafe fn before_first_traceable(f: *mut IFrame, code: *mut Code) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let first_traceable = code_start(code).wrapping_add((*code)._co_firsttraceable as usize);
        ((*f).instr as usize) < first_traceable as usize
    }
}

/// `f` or the first frame outwards from it that is a complete Python frame
/// (`_PyFrame_GetFirstComplete`).
///
/// # Safety
/// `f` is null or a frame of the live chain.
#[cfg(Py_3_11)]
#[inline]
pub(super) unsafe fn first_complete(mut f: *mut IFrame) -> Option<*mut IFrame> {
    // SAFETY: walking the live `previous` chain under the GIL; `iframe_code` returns null or the
    // frame's live code object.
    unsafe {
        while !f.is_null() {
            let code = iframe_code(f);
            if !code.is_null()
                && ((*f).owner == FRAME_OWNED_BY_GENERATOR || !before_first_traceable(f, code))
            {
                return Some(f);
            }
            f = (*f).previous;
        }
        None
    }
}

/// `f_lasti` in bytes, from 3.9's byte offset or 3.10's code-unit index (`-1`: not started).
#[cfg(not(Py_3_11))]
#[inline]
pub(super) fn lasti_bytes(f_lasti: std::ffi::c_int) -> i32 {
    if f_lasti < 0 {
        -1
    } else if cfg!(Py_3_10) {
        f_lasti * 2
    } else {
        f_lasti
    }
}

/// `f_lasti` in bytes, from a 3.11+ instruction pointer into `code`'s bytecode (`-1`: the frame's
/// pointer is still before the first instruction).
#[cfg(Py_3_11)]
#[inline]
pub(super) fn lasti_bytes(code: *mut Code, instr: *mut u16) -> i32 {
    let bytes = instr as isize - code_start(code) as isize;
    if bytes < 0 {
        -1
    } else {
        bytes as i32
    }
}

/// The value of the frame's first fast local (argument 0), following it into its cell when a
/// closure captured it; null when unbound.
///
/// # Safety
/// `f` is a frame of the live chain whose code has `co_argcount >= 1`.
#[inline]
pub(super) unsafe fn first_local_value(f: RawFrame) -> *mut PyObject {
    // SAFETY: `f` is live, so is its code.
    let code = unsafe { frame_code(f) };
    #[cfg(not(Py_3_11))]
    // SAFETY: `f_localsplus` holds `co_nlocals` locals then one slot per cell variable;
    // `co_cell2arg` is null or has one entry per cell variable (`co_cellvars` is a tuple).
    unsafe {
        let base = ptr::addr_of_mut!((*f).f_localsplus).cast::<*mut PyObject>();
        let cell2arg = (*code).co_cell2arg;
        if !cell2arg.is_null() {
            let ncells = ffi::PyTuple_GET_SIZE((*code).co_cellvars);
            for i in 0..ncells {
                if *cell2arg.offset(i) == 0 {
                    // Argument 0 lives in this cell; its own slot was cleared.
                    let cell = *base.offset((*code).co_nlocals as isize + i);
                    return cell_contents(cell);
                }
            }
        }
        *base
    }
    #[cfg(Py_3_11)]
    // SAFETY: `localsplus` has `co_nlocalsplus >= co_argcount >= 1` slots, and
    // `co_localspluskinds` is a bytes object with one kind byte per slot.
    unsafe {
        let value = (*f).localsplus[0];
        let kinds = ffi::PyBytes_AS_STRING((*code).co_localspluskinds);
        if (*kinds as u8) & CO_FAST_CELL != 0 {
            // MAKE_CELL (in the prologue, done for every complete frame) replaced the argument by
            // a cell holding it.
            return cell_contents(value);
        }
        value
    }
}

/// The object a cell holds (null when empty, or when `cell` is null or not a cell).
///
/// # Safety
/// `cell` is null or a live object.
#[inline]
pub(super) unsafe fn cell_contents(cell: *mut PyObject) -> *mut PyObject {
    // SAFETY: `cell` is null or live, and is only read as a cell after the type check.
    unsafe {
        if cell.is_null() || ffi::PyCell_Check(cell) == 0 {
            return ptr::null_mut();
        }
        (*cell.cast::<ffi::PyCellObject>()).ob_ref
    }
}
