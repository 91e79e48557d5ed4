//! Interpreter layouts: `#[repr(C)]` mirrors of the CPython structs the direct route reads, one
//! set per minor version.
//!
//! Each struct is complete up to the last field read (later fields are not declared); field order
//! and types follow the headers of the named version exactly, including fields that are never
//! read, since they place the ones that are. The object header is PyO3's `ffi::PyObject` /
//! `ffi::PyVarObject`, which already follows `Py_TRACE_REFS` builds.
//!
//! The layouts were taken from the 3.9.18, 3.10.13, 3.11.7, 3.12.1 and 3.13.0 headers; CPython
//! keeps these structs fixed within a minor release (they are not part of the stable ABI, which is
//! why the direct route needs a version-specific build). On 64-bit targets the offsets of the
//! frame, code-object and thread-state fields read are asserted at compile time (`asserts` below)
//! against the values C's `offsetof` gave on those headers, so a typo here fails the build;
//! `super::verify` checks the same fields against the running interpreter at import.

use std::ffi::{c_char, c_int, c_void};

#[cfg(not(Py_3_11))]
use pyo3::ffi::Py_ssize_t;
use pyo3::ffi::{self, PyObject};

/// `struct _frame` (`Include/cpython/frameobject.h`), 3.9 and 3.10.
#[cfg(not(Py_3_11))]
#[repr(C)]
pub(super) struct Frame {
    pub(super) ob_base: ffi::PyVarObject,
    pub(super) f_back: *mut Frame,
    pub(super) f_code: *mut Code,
    pub(super) f_builtins: *mut PyObject,
    pub(super) f_globals: *mut PyObject,
    pub(super) f_locals: *mut PyObject,
    pub(super) f_valuestack: *mut *mut PyObject,
    #[cfg(not(Py_3_10))]
    pub(super) f_stacktop: *mut *mut PyObject,
    pub(super) f_trace: *mut PyObject,
    #[cfg(Py_3_10)]
    pub(super) f_stackdepth: c_int,
    pub(super) f_trace_lines: c_char,
    pub(super) f_trace_opcodes: c_char,
    pub(super) f_gen: *mut PyObject,
    /// 3.9: byte offset; 3.10: index in code units.
    pub(super) f_lasti: c_int,
    pub(super) f_lineno: c_int,
    pub(super) f_iblock: c_int,
    /// 3.9 `char f_executing` (not read), 3.10 `PyFrameState f_state` (a `signed char`).
    pub(super) f_executing_or_state: i8,
    pub(super) f_blockstack: [PyTryBlock; 20],
    pub(super) f_localsplus: [*mut PyObject; 1],
}

#[cfg(not(Py_3_11))]
#[repr(C)]
pub(super) struct PyTryBlock {
    b_type: c_int,
    b_handler: c_int,
    b_level: c_int,
}

/// `struct PyCodeObject` (`Include/cpython/code.h`), 3.9 and 3.10 (identical layouts).
#[cfg(not(Py_3_11))]
#[repr(C)]
pub(super) struct Code {
    pub(super) ob_base: PyObject,
    pub(super) co_argcount: c_int,
    pub(super) co_posonlyargcount: c_int,
    pub(super) co_kwonlyargcount: c_int,
    pub(super) co_nlocals: c_int,
    pub(super) co_stacksize: c_int,
    pub(super) co_flags: c_int,
    pub(super) co_firstlineno: c_int,
    pub(super) co_code: *mut PyObject,
    pub(super) co_consts: *mut PyObject,
    pub(super) co_names: *mut PyObject,
    pub(super) co_varnames: *mut PyObject,
    pub(super) co_freevars: *mut PyObject,
    pub(super) co_cellvars: *mut PyObject,
    pub(super) co_cell2arg: *mut Py_ssize_t,
    pub(super) co_filename: *mut PyObject,
    pub(super) co_name: *mut PyObject,
    /// 3.9 `co_lnotab`, 3.10 `co_linetable`.
    pub(super) co_lnotab: *mut PyObject,
    pub(super) co_zombieframe: *mut c_void,
    pub(super) co_weakreflist: *mut PyObject,
    pub(super) co_extra: *mut c_void,
    pub(super) co_opcache_map: *mut u8,
    pub(super) co_opcache: *mut c_void,
    pub(super) co_opcache_flag: c_int,
    pub(super) co_opcache_size: u8,
}

/// `struct PyCodeObject` (`_PyCode_DEF` in `Include/cpython/code.h`), 3.11–3.13.
#[cfg(Py_3_11)]
#[repr(C)]
pub(super) struct Code {
    pub(super) ob_base: ffi::PyVarObject,
    pub(super) co_consts: *mut PyObject,
    pub(super) co_names: *mut PyObject,
    pub(super) co_exceptiontable: *mut PyObject,
    pub(super) co_flags: c_int,
    #[cfg(not(Py_3_12))]
    pub(super) co_warmup: i16,
    #[cfg(not(Py_3_12))]
    pub(super) _co_linearray_entry_size: i16,
    pub(super) co_argcount: c_int,
    pub(super) co_posonlyargcount: c_int,
    pub(super) co_kwonlyargcount: c_int,
    pub(super) co_stacksize: c_int,
    pub(super) co_firstlineno: c_int,
    pub(super) co_nlocalsplus: c_int,
    #[cfg(Py_3_12)]
    pub(super) co_framesize: c_int,
    pub(super) co_nlocals: c_int,
    #[cfg(not(Py_3_12))]
    pub(super) co_nplaincellvars: c_int,
    pub(super) co_ncellvars: c_int,
    pub(super) co_nfreevars: c_int,
    #[cfg(Py_3_12)]
    pub(super) co_version: u32,
    pub(super) co_localsplusnames: *mut PyObject,
    pub(super) co_localspluskinds: *mut PyObject,
    pub(super) co_filename: *mut PyObject,
    pub(super) co_name: *mut PyObject,
    pub(super) co_qualname: *mut PyObject,
    pub(super) co_linetable: *mut PyObject,
    pub(super) co_weakreflist: *mut PyObject,
    #[cfg(not(Py_3_12))]
    pub(super) _co_code: *mut PyObject,
    #[cfg(not(Py_3_12))]
    pub(super) _co_linearray: *mut c_char,
    #[cfg(Py_3_13)]
    pub(super) co_executors: *mut c_void,
    #[cfg(Py_3_12)]
    pub(super) _co_cached: *mut c_void,
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    pub(super) _co_instrumentation_version: u64,
    #[cfg(Py_3_13)]
    pub(super) _co_instrumentation_version: usize,
    #[cfg(Py_3_12)]
    pub(super) _co_monitoring: *mut c_void,
    pub(super) _co_firsttraceable: c_int,
    pub(super) co_extra: *mut c_void,
    /// `char co_code_adaptive[]`: the (quickened) bytecode, `_PyCode_CODE(co)`.
    pub(super) co_code_adaptive: [u16; 1],
}

/// `_PyCodeObjectExtra` (`Objects/codeobject.c`, the same on 3.9–3.13): what `co_extra` points
/// to once an extra slot was set, one slot per index requested by then (`ce_size`).
#[repr(C)]
pub(super) struct CodeExtra {
    pub(super) ce_size: ffi::Py_ssize_t,
    /// `void *ce_extras[1]`, `ce_size` long.
    pub(super) ce_extras: [*mut c_void; 1],
}

/// `_PyInterpreterFrame` (`Include/internal/pycore_frame.h`), 3.11.
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
pub(super) struct IFrame {
    pub(super) f_func: *mut PyObject,
    pub(super) f_globals: *mut PyObject,
    pub(super) f_builtins: *mut PyObject,
    pub(super) f_locals: *mut PyObject,
    pub(super) f_code: *mut Code,
    pub(super) frame_obj: *mut PyObject,
    pub(super) previous: *mut IFrame,
    /// `prev_instr`: the code unit before the next instruction (the one executing).
    pub(super) instr: *mut u16,
    pub(super) stacktop: c_int,
    pub(super) is_entry: bool,
    pub(super) owner: c_char,
    pub(super) localsplus: [*mut PyObject; 1],
}

/// `_PyInterpreterFrame` (`Include/internal/pycore_frame.h`), 3.12 and 3.13.
#[cfg(Py_3_12)]
#[repr(C)]
pub(super) struct IFrame {
    /// 3.12 `PyCodeObject *f_code`; 3.13 `PyObject *f_executable` (a code object, or `None` for
    /// the C-stack entry frame).
    pub(super) executable: *mut PyObject,
    pub(super) previous: *mut IFrame,
    pub(super) f_funcobj: *mut PyObject,
    pub(super) f_globals: *mut PyObject,
    pub(super) f_builtins: *mut PyObject,
    pub(super) f_locals: *mut PyObject,
    pub(super) frame_obj: *mut PyObject,
    /// 3.12 `prev_instr`; 3.13 `instr_ptr` (the instruction executing, or about to begin).
    pub(super) instr: *mut u16,
    pub(super) stacktop: c_int,
    pub(super) return_offset: u16,
    pub(super) owner: c_char,
    pub(super) localsplus: [*mut PyObject; 1],
}

/// `enum _frameowner` values.
#[cfg(Py_3_11)]
pub(super) const FRAME_OWNED_BY_GENERATOR: c_char = 1;
#[cfg(Py_3_12)]
pub(super) const FRAME_OWNED_BY_CSTACK: c_char = 3;

/// `_PyLocals_Kind` bit (`Include/internal/pycore_code.h`), 3.11+.
#[cfg(Py_3_11)]
pub(super) const CO_FAST_CELL: u8 = 0x40;

/// `struct _frame` (`Include/internal/pycore_frame.h`), 3.11+: the lazily created frame object.
#[cfg(Py_3_11)]
#[repr(C)]
pub(super) struct FrameObject {
    pub(super) ob_base: PyObject,
    pub(super) f_back: *mut PyObject,
    pub(super) f_frame: *mut IFrame,
    pub(super) f_trace: *mut PyObject,
    pub(super) f_lineno: c_int,
    pub(super) f_trace_lines: c_char,
    pub(super) f_trace_opcodes: c_char,
    #[cfg(not(Py_3_13))]
    pub(super) f_fast_as_locals: c_char,
    #[cfg(Py_3_13)]
    pub(super) f_extra_locals: *mut PyObject,
    #[cfg(Py_3_13)]
    pub(super) f_locals_cache: *mut PyObject,
    /// Storage for the interpreter frame once the frame object owns it; `PyFrame_Type`'s
    /// `tp_basicsize` is this offset plus `offsetof(_PyInterpreterFrame, localsplus)`.
    pub(super) _f_frame_data: [*mut PyObject; 1],
}

/// `PyGenObject` (`_PyGenObject_HEAD` in `Include/cpython/genobject.h`), 3.11: generators,
/// coroutines and async generators share this head, and the interpreter frame of the object is
/// its trailing `gi_iframe` (`_PyFrame_GetGenerator` subtracts that offset). Read by the
/// profile hook only.
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
pub(super) struct GenObject {
    pub(super) ob_base: PyObject,
    pub(super) gi_code: *mut PyObject,
    pub(super) gi_weakreflist: *mut PyObject,
    pub(super) gi_name: *mut PyObject,
    pub(super) gi_qualname: *mut PyObject,
    /// `_PyErr_StackItem gi_exc_state`: `exc_value`, `previous_item`.
    pub(super) gi_exc_state: [*mut c_void; 2],
    pub(super) gi_origin_or_finalizer: *mut PyObject,
    pub(super) gi_hooks_inited: c_char,
    pub(super) gi_closed: c_char,
    pub(super) gi_running_async: c_char,
    /// `int8_t gi_frame_state`: a `PyFrameState`.
    pub(super) gi_frame_state: i8,
    pub(super) gi_iframe: [*mut PyObject; 1],
}

/// `PyFrameState` values (`Include/internal/pycore_frame.h` on 3.11, `f_state` in
/// `Include/cpython/frameobject.h` on 3.10).
#[cfg(all(Py_3_10, not(Py_3_11)))]
pub(super) const FRAME_CREATED: i8 = -2;
#[cfg(all(Py_3_10, not(Py_3_12)))]
pub(super) const FRAME_SUSPENDED: i8 = -1;

/// `_PyCFrame` (`Include/cpython/pystate.h`), 3.11.
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
pub(super) struct CFrame {
    pub(super) use_tracing: u8,
    pub(super) current_frame: *mut IFrame,
    pub(super) previous: *mut CFrame,
}

/// `_PyCFrame` (`Include/cpython/pystate.h`), 3.12.
#[cfg(all(Py_3_12, not(Py_3_13)))]
#[repr(C)]
pub(super) struct CFrame {
    pub(super) current_frame: *mut IFrame,
    pub(super) previous: *mut CFrame,
}

/// Prefix of `struct _ts` (`PyThreadState`, `Include/cpython/pystate.h`), 3.11.
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
pub(super) struct ThreadState {
    pub(super) prev: *mut c_void,
    pub(super) next: *mut c_void,
    pub(super) interp: *mut ffi::PyInterpreterState,
    pub(super) _initialized: c_int,
    pub(super) _static: c_int,
    pub(super) recursion_remaining: c_int,
    pub(super) recursion_limit: c_int,
    pub(super) recursion_headroom: c_int,
    pub(super) tracing: c_int,
    pub(super) tracing_what: c_int,
    pub(super) cframe: *mut CFrame,
}

/// Prefix of `struct _ts` (`PyThreadState`, `Include/cpython/pystate.h`), 3.12.
#[cfg(all(Py_3_12, not(Py_3_13)))]
#[repr(C)]
pub(super) struct ThreadState {
    pub(super) prev: *mut c_void,
    pub(super) next: *mut c_void,
    pub(super) interp: *mut ffi::PyInterpreterState,
    /// `struct { unsigned int initialized:1; … :24; } _status`
    pub(super) _status: u32,
    pub(super) py_recursion_remaining: c_int,
    pub(super) py_recursion_limit: c_int,
    pub(super) c_recursion_remaining: c_int,
    pub(super) recursion_headroom: c_int,
    pub(super) tracing: c_int,
    pub(super) what_event: c_int,
    pub(super) cframe: *mut CFrame,
}

/// Prefix of `struct _ts` (`PyThreadState`, `Include/cpython/pystate.h`), 3.13.
#[cfg(Py_3_13)]
#[repr(C)]
pub(super) struct ThreadState {
    pub(super) prev: *mut c_void,
    pub(super) next: *mut c_void,
    pub(super) interp: *mut ffi::PyInterpreterState,
    pub(super) eval_breaker: usize,
    /// `struct { unsigned int initialized:1; … :23; } _status`
    pub(super) _status: u32,
    pub(super) _whence: c_int,
    pub(super) state: c_int,
    pub(super) py_recursion_remaining: c_int,
    pub(super) py_recursion_limit: c_int,
    pub(super) c_recursion_remaining: c_int,
    pub(super) recursion_headroom: c_int,
    pub(super) tracing: c_int,
    pub(super) what_event: c_int,
    pub(super) current_frame: *mut IFrame,
}

/// `offsetof(PyThreadState, context)` (`Include/cpython/pystate.h`): the thread's current
/// `contextvars.Context` (null until the thread first needs one). A bare offset rather than a
/// longer [`ThreadState`] prefix: on every version some thirty fields lie between the frame
/// pointer and it, none of them read. Checked at run time by `verify::verify_context_vars` (an
/// entered context must be found there), not at compile time.
#[cfg(not(Py_3_11))]
pub(super) const THREAD_STATE_CONTEXT: usize = 240;
/// `offsetof(PyThreadState, context)` (see the 3.9/3.10 one).
#[cfg(all(Py_3_11, not(Py_3_12)))]
pub(super) const THREAD_STATE_CONTEXT: usize = 224;
/// `offsetof(PyThreadState, context)` (see the 3.9/3.10 one).
#[cfg(Py_3_12)]
pub(super) const THREAD_STATE_CONTEXT: usize = 208;

/// `PyContext` (`Include/internal/pycore_context.h`), 3.9–3.13: a `contextvars.Context`. Its
/// `ctx_vars` is an immutable HAMT (setting a variable makes a new one), the same object in a
/// context and its copies until one of them sets a variable.
#[repr(C)]
pub(super) struct ContextObject {
    pub(super) ob_base: PyObject,
    pub(super) ctx_prev: *mut ContextObject,
    pub(super) ctx_vars: *mut PyObject,
    pub(super) ctx_weakreflist: *mut PyObject,
    pub(super) ctx_entered: c_char,
}

/// `staticmethod` / `classmethod` objects (`Objects/funcobject.c`): the callable comes first.
/// Read by the 3.9/3.10 qualname search only.
#[cfg(not(Py_3_11))]
#[repr(C)]
pub(super) struct MethodWrapper {
    pub(super) ob_base: PyObject,
    pub(super) callable: *mut PyObject,
}

/// `property` objects (`Objects/descrobject.c`): getter, setter, deleter come first. Read by the
/// 3.9/3.10 qualname search only.
#[cfg(not(Py_3_11))]
#[repr(C)]
pub(super) struct Property {
    pub(super) ob_base: PyObject,
    pub(super) prop_get: *mut PyObject,
    pub(super) prop_set: *mut PyObject,
    pub(super) prop_del: *mut PyObject,
}

// Compile-time checks against `offsetof()` on the headers of each version (x86-64/aarch64
// Linux), written relative to the object header so that `Py_TRACE_REFS` builds also pass.
#[cfg(target_pointer_width = "64")]
mod asserts {
    use super::*;
    use std::mem::{offset_of, size_of};

    const OBJ: usize = size_of::<PyObject>();
    const VAR: usize = size_of::<ffi::PyVarObject>();

    macro_rules! at {
        ($ty:ty, $field:ident, $head:expr, $c_offset:expr, $c_head:expr) => {
            const _: () = assert!(
                offset_of!($ty, $field) - $head == $c_offset - $c_head,
                concat!(
                    "layout mismatch: ",
                    stringify!($ty),
                    ".",
                    stringify!($field)
                )
            );
        };
    }

    const _: () = {
        at!(ContextObject, ctx_vars, OBJ, 24, 16);
        assert!(size_of::<ContextObject>() - OBJ == 48 - 16);
    };
    #[cfg(not(Py_3_11))]
    const _: () = {
        at!(Code, co_argcount, OBJ, 16, 16);
        at!(Code, co_nlocals, OBJ, 28, 16);
        at!(Code, co_flags, OBJ, 36, 16);
        at!(Code, co_firstlineno, OBJ, 40, 16);
        at!(Code, co_consts, OBJ, 56, 16);
        at!(Code, co_varnames, OBJ, 72, 16);
        at!(Code, co_cellvars, OBJ, 88, 16);
        at!(Code, co_cell2arg, OBJ, 96, 16);
        at!(Code, co_filename, OBJ, 104, 16);
        at!(Code, co_name, OBJ, 112, 16);
        at!(Code, co_extra, OBJ, 144, 16);
        assert!(size_of::<Code>() - OBJ == 176 - 16);
        at!(Frame, f_back, VAR, 24, 24);
        at!(Frame, f_code, VAR, 32, 24);
        at!(Frame, f_globals, VAR, 48, 24);
    };
    #[cfg(all(Py_3_9, not(Py_3_10)))]
    const _: () = {
        at!(Frame, f_stacktop, VAR, 72, 24);
        at!(Frame, f_gen, VAR, 96, 24);
        at!(Frame, f_executing_or_state, VAR, 116, 24);
        at!(Frame, f_lasti, VAR, 104, 24);
        at!(Frame, f_localsplus, VAR, 360, 24);
        assert!(size_of::<Frame>() - VAR == 368 - 24);
    };
    #[cfg(all(Py_3_10, not(Py_3_11)))]
    const _: () = {
        at!(Frame, f_gen, VAR, 88, 24);
        at!(Frame, f_executing_or_state, VAR, 108, 24);
        at!(Frame, f_lasti, VAR, 96, 24);
        at!(Frame, f_localsplus, VAR, 352, 24);
        assert!(size_of::<Frame>() - VAR == 360 - 24);
    };
    #[cfg(Py_3_11)]
    const _: () = {
        at!(Code, co_consts, VAR, 24, 24);
        at!(Code, co_flags, VAR, 48, 24);
        at!(Code, co_localsplusnames, VAR, 96, 24);
        at!(Code, co_localspluskinds, VAR, 104, 24);
        at!(Code, co_filename, VAR, 112, 24);
        at!(Code, co_name, VAR, 120, 24);
        at!(Code, co_qualname, VAR, 128, 24);
        at!(FrameObject, f_frame, OBJ, 24, 16);
        at!(FrameObject, f_trace, OBJ, 32, 16);
        assert!(offset_of!(IFrame, localsplus) == 72);
        assert!(offset_of!(IFrame, instr) == 56);
    };
    #[cfg(all(Py_3_11, not(Py_3_12)))]
    const _: () = {
        at!(Code, co_argcount, VAR, 56, 24);
        at!(Code, co_firstlineno, VAR, 72, 24);
        at!(Code, co_nlocalsplus, VAR, 76, 24);
        at!(Code, co_nlocals, VAR, 80, 24);
        at!(Code, _co_firsttraceable, VAR, 168, 24);
        at!(Code, co_extra, VAR, 176, 24);
        at!(Code, co_code_adaptive, VAR, 184, 24);
        at!(FrameObject, _f_frame_data, OBJ, 48, 16);
        assert!(offset_of!(IFrame, f_globals) == 8);
        assert!(offset_of!(IFrame, f_code) == 32);
        assert!(offset_of!(IFrame, previous) == 48);
        assert!(offset_of!(IFrame, owner) == 69);
        assert!(offset_of!(ThreadState, cframe) == 56);
        assert!(offset_of!(CFrame, current_frame) == 8);
        at!(GenObject, gi_frame_state, OBJ, 75, 16);
        at!(GenObject, gi_iframe, OBJ, 80, 16);
    };
    #[cfg(Py_3_12)]
    const _: () = {
        at!(Code, co_argcount, VAR, 52, 24);
        at!(Code, co_firstlineno, VAR, 68, 24);
        at!(Code, co_nlocalsplus, VAR, 72, 24);
        at!(Code, co_nlocals, VAR, 80, 24);
        assert!(offset_of!(IFrame, executable) == 0);
        assert!(offset_of!(IFrame, previous) == 8);
        assert!(offset_of!(IFrame, f_globals) == 24);
        assert!(offset_of!(IFrame, owner) == 70);
    };
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    const _: () = {
        at!(Code, _co_firsttraceable, VAR, 176, 24);
        at!(Code, co_extra, VAR, 184, 24);
        at!(Code, co_code_adaptive, VAR, 192, 24);
        at!(FrameObject, _f_frame_data, OBJ, 48, 16);
        assert!(offset_of!(ThreadState, cframe) == 56);
        assert!(offset_of!(CFrame, current_frame) == 0);
    };
    #[cfg(Py_3_13)]
    const _: () = {
        at!(Code, _co_firsttraceable, VAR, 184, 24);
        at!(Code, co_extra, VAR, 192, 24);
        at!(Code, co_code_adaptive, VAR, 200, 24);
        at!(FrameObject, _f_frame_data, OBJ, 64, 16);
        assert!(offset_of!(ThreadState, current_frame) == 72);
    };
}
