//! `TracedFunction`: the C-level callable `@callspan.trace` returns, and the per-call hot path.
//!
//! It is a small CPython type written against the C API instead of a `#[pyclass]`, because
//! the call must be a vectorcall: PyO3 classes are called through `tp_call`, which in
//! CPython ≤ 3.11 spends a recursion-limit slot per call (a traced recursion would hit
//! `RecursionError` at half the depth) and builds an argument tuple per call. With vectorcall the
//! arguments go straight through to the wrapped function, and no Python frame of ours exists —
//! so the frame current when [`traced_vectorcall`] runs *is* the caller's.
//!
//! The type is also a method descriptor (`Py_TPFLAGS_METHOD_DESCRIPTOR`): `obj.method(x)`
//! calls it with `obj` prepended, exactly like a function, without creating a bound method.
//! Instances carry a `__dict__` so that `functools.update_wrapper` can give them the wrapped
//! function's `__name__`, `__qualname__`, `__doc__`, `__module__` and `__wrapped__`.

use crate::span::{self, CountedCall, Decision, OpenSpan, PlainCall};
use crate::steps::{self, Kind};
use crate::thread_exit::{self, no_unwind};
use crate::{python_frame, stack_guard};
use callspan_core::hot::{self, FunctionRate, Mode};
use callspan_core::per_thread::{self, PerThread};
use callspan_core::record::FunctionId;
use callspan_core::registry;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_int, c_void};
use std::mem::offset_of;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The object layout. `#[repr(C)]` because CPython reads `vectorcall`, `dict` and `weaklist`
/// at the offsets published through the type's members.
#[repr(C)]
struct TracedObject {
    ob_base: ffi::PyObject,
    /// Always [`traced_vectorcall`]; CPython calls through this slot.
    vectorcall: Option<ffi::vectorcallfunc>,
    /// The wrapped callable (strong reference; NULL only after `tp_clear`).
    func: *mut ffi::PyObject,
    /// The instance `__dict__` (managed by CPython through `__dictoffset__`).
    dict: *mut ffi::PyObject,
    /// Weak references list (managed by CPython through `__weaklistoffset__`).
    weaklist: *mut ffi::PyObject,
    /// The callee's registry id.
    function_id: FunctionId,
    /// What calling `func` returns (a [`steps::Kind`] as u8).
    kind: u8,
    /// `@callspan.trace(sample_rate=...)` or `CALLSPAN_SAMPLE`, decided once per configuration.
    rate: FunctionRate,
}

extern "C" {
    // Not declared by pyo3-ffi; part of the stable C API since Python 3.0.
    fn PyMethod_New(func: *mut ffi::PyObject, self_: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

static TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// What [`begin`] decided for one call, before the call into Python; `'t` is the life of the
/// call's thread state ([`PerThread`], looked up once per call).
///
/// Everything that lives across the call into Python is in here without a destructor
/// (`ManuallyDrop`), so that [`traced_vectorcall`] is a plain old frame at that call and a
/// thread ended by `pthread_exit` passes through it (see `thread_exit.rs`).
enum Begun<'t> {
    /// An exception is set; return NULL.
    Failed,
    /// Call `func` untraced (callspan disabled, or the thread's state is gone: thread exit).
    Untraced(*mut ffi::PyObject),
    /// A plain call: its span (or unsampled marker) is current; end it after.
    Plain(*mut ffi::PyObject, &'t PerThread, PlainCall<'t>),
    /// A coroutine or generator function: create the object, then wrap it.
    Stepped(*mut ffi::PyObject, &'t PerThread, Decision),
}

/// The hot path: one call of a traced function.
///
/// `extern "C-unwind"`, with the call into Python made through [`thread_exit::vectorcall`] and
/// nothing pending to drop across it, so that a daemon thread ended by `pthread_exit` at
/// interpreter exit passes through. The Rust work before and after runs in
/// [`thread_exit::no_unwind`] (a panic there aborts instead of unwinding into CPython).
unsafe extern "C-unwind" fn traced_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this slot only on our instances, with the GIL held.
    let this = unsafe { &*callable.cast::<TracedObject>() };
    // SAFETY: GIL held; `this` is a live instance.
    match no_unwind(|| unsafe { begin(this) }) {
        Begun::Failed => ptr::null_mut(),
        // SAFETY: GIL held; forwarding our caller's arguments unchanged.
        Begun::Untraced(func) => unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) },
        Begun::Plain(func, local, call) => {
            // SAFETY: GIL held; forwarding our caller's arguments unchanged.
            let result = unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) };
            // SAFETY: the GIL is held for the whole call; `result` is the call's.
            no_unwind(|| unsafe { call.end(local, result) });
            result
        }
        Begun::Stepped(func, local, decision) => {
            // SAFETY: GIL held; forwarding our caller's arguments unchanged.
            let created = unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) };
            // SAFETY: GIL held; `created` is the creating call's result.
            no_unwind(|| unsafe { wrap_stepped(this, local, decision, created) })
        }
    }
}

/// The span lifecycle's steps before the call into Python: decide, read the caller, enter.
///
/// # Safety
/// The GIL is held; `this` is a live instance.
#[inline(always)]
unsafe fn begin<'t>(this: &TracedObject) -> Begun<'t> {
    let func = this.func;
    if func.is_null() {
        // SAFETY: GIL held; sets a TypeError and signals it by returning NULL.
        unsafe {
            ffi::PyErr_SetString(
                ffi::PyExc_TypeError,
                c"callspan: traced function was cleared".as_ptr(),
            );
        }
        return Begun::Failed;
    }
    // This thread's state, for the whole call (the call ends before the thread can).
    // SAFETY: used on this thread, during this call only.
    let Some(local) = (unsafe { per_thread::current::<'t>() }) else {
        return Begun::Untraced(func);
    };
    // RecursionError instead of a C stack overflow (stack_guard.rs).
    // SAFETY: GIL held.
    if !unsafe { stack_guard::enough_stack(local, stack_guard::Entry::Traced) } {
        return Begun::Failed;
    }
    let hot = hot::state();
    match hot.mode() {
        Mode::Enabled => {}
        Mode::Disabled => return Begun::Untraced(func),
        Mode::Unconfigured => {
            // The first traced call of the process reads the configuration.
            callspan_otlp::pipeline::global();
            if hot.mode() == Mode::Disabled {
                return Begun::Untraced(func);
            }
        }
    }
    local.counts.started();
    // SAFETY: the GIL is held for the whole call.
    let py = unsafe { Python::assume_attached() };
    let decision = span::decide(py, hot, local, this.function_id, &this.rate);
    if Kind::from_u8(this.kind) != Kind::Plain {
        return Begun::Stepped(func, local, decision);
    }
    // SAFETY: GIL held; no frame of ours exists: the frame current now is our caller's.
    let call = unsafe { PlainCall::start(py, hot, local, this.function_id, decision) };
    Begun::Plain(func, local, call)
}

/// A coroutine, generator or async generator function: the call created the object (running
/// none of its body); the span lives in the wrapper that [`steps::wrap`] returns. The caller is
/// read after the creating call (the caller's frame is current again by then), so that nothing
/// of it is pending across that call.
///
/// # Safety
/// The GIL is held; `created` is the creating call's result (NULL with an exception set).
#[cold]
unsafe fn wrap_stepped(
    this: &TracedObject,
    local: &PerThread,
    decision: Decision,
    created: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if created.is_null() {
        return created;
    }
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    let hot = hot::state();
    // SAFETY: GIL held; the frame current again is our caller's.
    let frame = unsafe { python_frame::caller_frame(py) };
    let (span, counted) = match decision {
        Decision::Unsampled { .. } if hot.counting() => {
            let counted = CountedCall::not_started(
                this.function_id,
                span::caller_site(py, hot, local, frame.as_ref()),
            );
            (None, Some(counted))
        }
        Decision::Unsampled { .. } => (None, None),
        Decision::Sampled { trace_id, parent } => {
            let caller = span::read_caller(py, hot, local, frame);
            (
                Some(OpenSpan::new(
                    local,
                    trace_id,
                    parent,
                    this.function_id,
                    caller,
                )),
                None,
            )
        }
    };
    // SAFETY: a new reference from the creating call.
    let created = unsafe { Bound::from_owned_ptr(py, created) };
    match steps::wrap(
        py,
        Kind::from_u8(this.kind),
        created,
        decision,
        span,
        counted,
    ) {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            ptr::null_mut()
        }
    }
}

/// `tp_descr_get`: binds like a function (`obj.f` is a bound method; `Class.f` is `f`).
unsafe extern "C" fn traced_descr_get(
    slf: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
    _owner: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held; arguments are valid or NULL as the descriptor protocol promises.
    unsafe {
        if obj.is_null() || obj == ffi::Py_None() {
            ffi::Py_IncRef(slf);
            return slf;
        }
        PyMethod_New(slf, obj)
    }
}

unsafe extern "C" fn traced_traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC on our instances.
    unsafe {
        let this = &*slf.cast::<TracedObject>();
        for obj in [this.func, this.dict] {
            if !obj.is_null() {
                let r = visit(obj, arg);
                if r != 0 {
                    return r;
                }
            }
        }
        // Heap types must visit their type (3.9+).
        visit(ffi::Py_TYPE(slf).cast(), arg)
    }
}

unsafe extern "C" fn traced_clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: called by the GC or dealloc on our instances, GIL held.
    unsafe {
        let this = &mut *slf.cast::<TracedObject>();
        for field in [&mut this.func, &mut this.dict] {
            let obj = std::mem::replace(field, ptr::null_mut());
            if !obj.is_null() {
                ffi::Py_DecRef(obj);
            }
        }
    }
    0
}

unsafe extern "C" fn traced_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: last reference gone, GIL held.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ffi::PyObject_GC_UnTrack(slf.cast());
        if !(*slf.cast::<TracedObject>()).weaklist.is_null() {
            ffi::PyObject_ClearWeakRefs(slf);
        }
        traced_clear(slf);
        let free = (*tp).tp_free.expect("heap types have tp_free");
        free(slf.cast());
        ffi::Py_DecRef(tp.cast());
    }
}

unsafe extern "C" fn traced_repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: GIL held.
    unsafe {
        let this = &*slf.cast::<TracedObject>();
        let py = Python::assume_attached();
        let name = registry::global()
            .view()
            .function(this.function_id)
            .map(|f| f.function_name.to_string())
            .unwrap_or_default();
        let text = format!("<callspan.traced {name} at {slf:p}>");
        pyo3::types::PyString::new(py, &text).into_ptr()
    }
}

/// `__reduce__`: pickles by reference, like the function it wraps (multiprocessing sends traced
/// functions to pool workers this way). Returning a name makes pickle look the object up by its
/// `__module__` and `__qualname__`, which `update_wrapper` copied from the wrapped function.
unsafe extern "C" fn traced_reduce(
    slf: *mut ffi::PyObject,
    _args: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held; attribute lookup on our own instance (its __dict__ entry).
    unsafe { ffi::PyObject_GetAttrString(slf, c"__qualname__".as_ptr()) }
}

/// The function attributes a `TracedFunction` reads and writes *through* to the wrapped
/// function (getset descriptors, not copies): `f.__kwdefaults__ = ...` on the traced function
/// changes the function that runs. When the wrapped object is not a Python function (a class,
/// a builtin, a callable object) they are plain attributes of the traced object's own
/// `__dict__` instead: `functools.update_wrapper` copying a class's `__type_params__` must not
/// write to the class.
const FORWARDED: &[&std::ffi::CStr] = &[
    c"__defaults__",
    c"__kwdefaults__",
    c"__code__",
    c"__globals__",
    c"__closure__",
    c"__annotations__",
    #[cfg(Py_3_10)]
    c"__builtins__",
    #[cfg(Py_3_12)]
    c"__type_params__",
];

/// The wrapped object if it is a Python function (or another traced function), else NULL.
unsafe fn wrapped_function(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls getset functions on our instances, GIL held.
    unsafe {
        let func = (*slf.cast::<TracedObject>()).func;
        let is_function = !func.is_null()
            && (ffi::PyFunction_Check(func) != 0
                || ffi::Py_TYPE(func) == TYPE.load(Ordering::Relaxed));
        if is_function {
            func
        } else {
            ptr::null_mut()
        }
    }
}

/// Getter of a [`FORWARDED`] attribute (`closure`: its NUL-terminated name).
unsafe extern "C" fn forwarded_get(
    slf: *mut ffi::PyObject,
    closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held; `closure` is one of the static names in FORWARDED.
    unsafe {
        let func = wrapped_function(slf);
        if !func.is_null() {
            return ffi::PyObject_GetAttrString(func, closure.cast());
        }
        let dict = (*slf.cast::<TracedObject>()).dict;
        let found = if dict.is_null() {
            ptr::null_mut()
        } else {
            ffi::PyDict_GetItemString(dict, closure.cast())
        };
        if found.is_null() {
            ffi::PyErr_Format(
                ffi::PyExc_AttributeError,
                c"'TracedFunction' object has no attribute '%s'".as_ptr(),
                closure.cast::<std::ffi::c_char>(),
            );
            return ptr::null_mut();
        }
        ffi::Py_IncRef(found);
        found
    }
}

/// Setter (and deleter, `value` NULL) of a [`FORWARDED`] attribute: the wrapped function
/// decides what it accepts, with its own error messages.
unsafe extern "C" fn forwarded_set(
    slf: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    closure: *mut c_void,
) -> c_int {
    // SAFETY: GIL held; `closure` is one of the static names in FORWARDED.
    unsafe {
        let func = wrapped_function(slf);
        if !func.is_null() {
            return if value.is_null() {
                ffi::PyObject_DelAttrString(func, closure.cast())
            } else {
                ffi::PyObject_SetAttrString(func, closure.cast(), value)
            };
        }
        // The instance's own dict (created on first use).
        let dict = ffi::PyObject_GenericGetDict(slf, ptr::null_mut());
        if dict.is_null() {
            return -1;
        }
        let status = if !value.is_null() {
            ffi::PyDict_SetItemString(dict, closure.cast(), value)
        } else if ffi::PyDict_GetItemString(dict, closure.cast()).is_null() {
            ffi::PyErr_Format(
                ffi::PyExc_AttributeError,
                c"'TracedFunction' object has no attribute '%s'".as_ptr(),
                closure.cast::<std::ffi::c_char>(),
            );
            -1
        } else {
            ffi::PyDict_DelItemString(dict, closure.cast())
        };
        ffi::Py_DecRef(dict);
        status
    }
}

/// `__class__`: `types.FunctionType` when the wrapped object is a plain Python function, else
/// `TracedFunction` itself.
///
/// Why: `inspect.getfile`/`getsourcefile` (and through them `getsource`, and tools that show
/// source) accept only objects for which `isinstance(obj, types.FunctionType)` holds, and
/// `isinstance` consults `__class__` when the real type does not match — the way wrapt's
/// `FunctionWrapper` passes such checks. What it does not change: `type(f)` is still
/// `TracedFunction` (so `type(f) is` checks, pickling, `copy` and the `TracedFunction` instance
/// check see the real type); what it does change: `functools.singledispatch` dispatches a traced
/// function passed as an argument by `__class__`, that is as a function. Any other wrapped
/// callable (a class, a builtin, a callable object) keeps the real class: claiming to be a
/// `type` would make `inspect.isclass` and `issubclass` treat the wrapper as a class.
unsafe extern "C" fn traced_class_get(
    slf: *mut ffi::PyObject,
    _closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held; both candidate results are live type objects.
    unsafe {
        let func = (*slf.cast::<TracedObject>()).func;
        let class: *mut ffi::PyObject = if !func.is_null() && ffi::PyFunction_Check(func) != 0 {
            ptr::addr_of_mut!(ffi::PyFunction_Type).cast()
        } else {
            ffi::Py_TYPE(slf).cast()
        };
        ffi::Py_IncRef(class);
        class
    }
}

/// `__set_name__(owner, name)`, which `type.__new__` calls for each attribute of a new class:
/// `type.__new__` makes `__init_subclass__` and `__class_getitem__` implicit classmethods and
/// `__new__` an implicit staticmethod only when they are plain functions, so a traced one is
/// wrapped here the same way (and replaces itself in the class). Under an explicit
/// `@classmethod`/`@staticmethod` the class holds that wrapper instead and this is not called.
unsafe extern "C" fn traced_set_name(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held; METH_FASTCALL passes `nargs` valid argument pointers.
    unsafe {
        if nargs != 2 {
            ffi::PyErr_SetString(
                ffi::PyExc_TypeError,
                c"__set_name__ takes exactly 2 arguments (owner, name)".as_ptr(),
            );
            return ptr::null_mut();
        }
        let (owner, name) = (*args, *args.add(1));
        let is = |s: &std::ffi::CStr| {
            ffi::PyUnicode_Check(name) != 0
                && ffi::PyUnicode_CompareWithASCIIString(name, s.as_ptr()) == 0
        };
        let wrapper = if is(c"__new__") {
            ffi::PyStaticMethod_New(slf)
        } else if is(c"__init_subclass__") || is(c"__class_getitem__") {
            ffi::PyClassMethod_New(slf)
        } else {
            ffi::Py_IncRef(ffi::Py_None());
            return ffi::Py_None();
        };
        if wrapper.is_null() {
            return ptr::null_mut();
        }
        let status = ffi::PyObject_SetAttr(owner, name, wrapper);
        ffi::Py_DecRef(wrapper);
        if status < 0 {
            return ptr::null_mut();
        }
        ffi::Py_IncRef(ffi::Py_None());
        ffi::Py_None()
    }
}

/// Creates the `TracedFunction` type (once, at module import).
pub(crate) fn create_type(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let existing = TYPE.load(Ordering::Acquire);
    if !existing.is_null() {
        // SAFETY: TYPE holds a strong reference for the life of the process.
        return Ok(unsafe { Bound::from_borrowed_ptr(py, existing.cast()) });
    }
    // CPython keeps pointers into these tables for the life of the type: leak them.
    let members: &'static mut [ffi::PyMemberDef] = Box::leak(Box::new([
        member(
            c"__vectorcalloffset__",
            offset_of!(TracedObject, vectorcall),
        ),
        member(c"__dictoffset__", offset_of!(TracedObject, dict)),
        member(c"__weaklistoffset__", offset_of!(TracedObject, weaklist)),
        ffi::PyMemberDef::default(),
    ]));
    // Types made from a spec get no `__dict__` descriptor of their own; CPython's generic one
    // reads and writes the slot at `__dictoffset__`.
    let mut getset = vec![
        ffi::PyGetSetDef {
            name: c"__dict__".as_ptr(),
            get: Some(ffi::PyObject_GenericGetDict),
            set: Some(ffi::PyObject_GenericSetDict),
            doc: ptr::null(),
            closure: ptr::null_mut(),
        },
        ffi::PyGetSetDef {
            name: c"__class__".as_ptr(),
            get: Some(traced_class_get),
            set: None,
            doc: c"types.FunctionType when wrapping a Python function (isinstance checks)."
                .as_ptr(),
            closure: ptr::null_mut(),
        },
    ];
    for name in FORWARDED {
        getset.push(ffi::PyGetSetDef {
            name: name.as_ptr(),
            get: Some(forwarded_get),
            set: Some(forwarded_set),
            doc: c"The wrapped function's attribute (read and written through).".as_ptr(),
            closure: name.as_ptr() as *mut c_void,
        });
    }
    getset.push(ffi::PyGetSetDef::default());
    let getset: &'static mut [ffi::PyGetSetDef] = getset.leak();
    let methods: &'static mut [ffi::PyMethodDef] = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: c"__reduce__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: traced_reduce,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"Pickle by reference (module and qualified name), like a function.".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"__set_name__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFast: traced_set_name,
            },
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: c"Makes a traced __new__, __init_subclass__ or __class_getitem__ the implicit \
                      static or class method type.__new__ makes of a plain function."
                .as_ptr(),
        },
        ffi::PyMethodDef::zeroed(),
    ]));
    let slots: &'static mut [ffi::PyType_Slot] = Box::leak(Box::new([
        slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
        slot(ffi::Py_tp_descr_get, traced_descr_get as *mut c_void),
        slot(ffi::Py_tp_traverse, traced_traverse as *mut c_void),
        slot(ffi::Py_tp_clear, traced_clear as *mut c_void),
        slot(ffi::Py_tp_dealloc, traced_dealloc as *mut c_void),
        slot(ffi::Py_tp_repr, traced_repr as *mut c_void),
        slot(ffi::Py_tp_members, members.as_mut_ptr().cast()),
        slot(ffi::Py_tp_getset, getset.as_mut_ptr().cast()),
        slot(ffi::Py_tp_methods, methods.as_mut_ptr().cast()),
        slot(
            ffi::Py_tp_doc,
            c"A function traced by callspan: each call becomes a span tagged with its caller."
                .as_ptr() as *mut c_void,
        ),
        slot(0, ptr::null_mut()),
    ]));
    // 3.10+ refuses `TracedFunction()` outright; on 3.9 such an instance has no function and
    // its calls raise TypeError.
    // Immutable (3.10+), like the built-in function types: CPython 3.11+ specializes
    // `obj.method(...)` only for method descriptors of immutable types. Without it, every call
    // of a traced method looked the attribute up in the type and the instance dict again.
    #[cfg(Py_3_10)]
    let version_flags = ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION | ffi::Py_TPFLAGS_IMMUTABLETYPE;
    #[cfg(not(Py_3_10))]
    let version_flags = 0;
    let flags = ffi::Py_TPFLAGS_DEFAULT
        | ffi::Py_TPFLAGS_HAVE_GC
        | ffi::Py_TPFLAGS_HAVE_VECTORCALL
        | ffi::Py_TPFLAGS_METHOD_DESCRIPTOR
        | version_flags;
    let spec: &'static mut ffi::PyType_Spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"callspan._callspan.TracedFunction".as_ptr(),
        basicsize: std::mem::size_of::<TracedObject>() as c_int,
        itemsize: 0,
        flags: flags as _,
        slots: slots.as_mut_ptr(),
    }));
    // SAFETY: the spec and everything it points to live forever.
    let tp = unsafe { ffi::PyType_FromSpec(spec) };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    TYPE.store(tp.cast(), Ordering::Release);
    // SAFETY: `tp` is a new reference; TYPE keeps one more for the process lifetime.
    unsafe {
        ffi::Py_IncRef(tp);
        Ok(Bound::from_owned_ptr(py, tp))
    }
}

/// A read-only `Py_ssize_t` member at `offset` (`__vectorcalloffset__` and the like).
pub(crate) fn member(name: &'static std::ffi::CStr, offset: usize) -> ffi::PyMemberDef {
    ffi::PyMemberDef {
        name: name.as_ptr(),
        type_code: ffi::Py_T_PYSSIZET,
        offset: offset as ffi::Py_ssize_t,
        flags: ffi::Py_READONLY,
        doc: ptr::null(),
    }
}

/// One entry of a `PyType_Spec`'s slot table.
pub(crate) fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// Wraps `func` in a new `TracedFunction` registered as `function_id`.
pub(crate) fn new_traced<'py>(
    py: Python<'py>,
    func: &Bound<'py, PyAny>,
    function_id: FunctionId,
    kind: Kind,
    sample_rate: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let tp = TYPE.load(Ordering::Acquire);
    if tp.is_null() {
        create_type(py)?;
    }
    let tp = TYPE.load(Ordering::Acquire);
    // SAFETY: GIL held; tp is our type; the new object's fields are initialised before use.
    unsafe {
        let obj = ffi::PyType_GenericAlloc(tp, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let this = &mut *obj.cast::<TracedObject>();
        this.vectorcall = Some(thread_exit::as_slot(traced_vectorcall));
        this.func = func.clone().into_ptr();
        this.function_id = function_id;
        this.kind = kind as u8;
        // The allocation is zeroed memory, not a FunctionRate: write it without reading.
        ptr::addr_of_mut!(this.rate).write(FunctionRate::new(sample_rate));
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

/// The wrapped callable of a `TracedFunction`, if `obj` is one.
pub(crate) fn wrapped<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let tp = TYPE.load(Ordering::Acquire);
    // SAFETY: GIL held; we only read our own layout after checking the type.
    unsafe {
        if tp.is_null() || ffi::Py_TYPE(obj.as_ptr()) != tp {
            return None;
        }
        let func = (*obj.as_ptr().cast::<TracedObject>()).func;
        (!func.is_null()).then(|| Bound::from_borrowed_ptr(obj.py(), func))
    }
}
