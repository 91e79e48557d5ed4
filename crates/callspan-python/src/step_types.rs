//! The wrapper objects of `steps`: `TracedCoroutine`, `TracedGenerator`, `TracedAsyncGenerator`
//! and `TracedAsyncStep`, written against the C API.
//!
//! Not `#[pyclass]`es because PyO3's trampolines are `extern "C"`: a daemon thread that CPython
//! ends with `pthread_exit` while it is inside a step (at interpreter exit) would abort the
//! process there (`thread_exit.rs`). Every slot and method that resumes the wrapped object is an
//! `extern "C-unwind"` function, and all of them go through one mechanism, [`step`]: its Rust work
//! runs inside [`no_unwind`], the call into Python goes through a "C-unwind" declaration
//! ([`resume`]), and nothing with a destructor is pending across that call.
//!
//! The four types share one object layout ([`StepObject`]) and differ only in their slot and
//! method tables; [`Role`] says which one an object is. An async generator's steps are the
//! awaitables its `__anext__`, `asend`, `athrow` and `aclose` hand out, which share its span.

use crate::steps::{self, Resumed, Role, Shared, StepSpan};
use crate::thread_exit::{self, no_unwind};
use crate::traced::slot;
use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use std::ffi::{c_int, c_void, CStr};
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

/// The object layout of all four types.
#[repr(C)]
struct StepObject {
    ob_base: ffi::PyObject,
    /// The wrapped object (strong reference; NULL only after `tp_clear`).
    inner: *mut ffi::PyObject,
    /// The call's span (`Arc::into_raw` of a [`Shared`]).
    span: *const Mutex<StepSpan>,
    /// Which wrapper this is.
    role: Role,
}

/// What a step asks of the wrapped object.
#[derive(Clone, Copy)]
enum Resume {
    /// `next(inner)`; `inner.send(None)` when its type has no `tp_iternext` (a coroutine).
    Next,
    /// `inner.send(value)`.
    Send(*mut ffi::PyObject),
    /// `inner.throw(*args)` (1 to 3 arguments).
    Throw(*const *mut ffi::PyObject, usize),
    /// `inner.close()`.
    Close,
    /// `PyIter_Send(inner, value, result)`: `am_send`.
    #[cfg(Py_3_10)]
    AmSend(*mut ffi::PyObject, *mut *mut ffi::PyObject),
}

/// The method names a step calls, created once.
struct Names {
    send: Py<PyString>,
    throw: Py<PyString>,
    close: Py<PyString>,
    anext: Py<PyString>,
    asend: Py<PyString>,
    athrow: Py<PyString>,
    aclose: Py<PyString>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

/// Aborts rather than panics: it runs in `extern "C-unwind"` frames, which must not unwind.
#[inline(always)]
fn names(py: Python<'_>) -> &Names {
    match NAMES.get(py) {
        Some(names) => names,
        None => std::process::abort(), // `register` runs at import, before any wrapper exists
    }
}

/// Resumes `inner` as `how` asks; the call into Python goes through "C-unwind" declarations.
///
/// # Safety
/// GIL held; `inner` and the arguments in `how` are live objects.
#[inline(always)]
unsafe fn resume(
    py: Python<'_>,
    inner: *mut ffi::PyObject,
    how: Resume,
) -> (Resumed, *mut ffi::PyObject) {
    let raised_or = |result: *mut ffi::PyObject| {
        let resumed = if result.is_null() {
            Resumed::Raised
        } else {
            Resumed::Value
        };
        (resumed, result)
    };
    // SAFETY: the caller's contract; every argument array starts with the receiver.
    unsafe {
        match how {
            Resume::Next => match thread_exit::iternext(inner) {
                Some(result) if result.is_null() && ffi::PyErr_Occurred().is_null() => {
                    (Resumed::Exhausted, result)
                }
                Some(result) => raised_or(result),
                None => raised_or(thread_exit::call_method(
                    names(py).send.as_ptr(),
                    &[inner, ffi::Py_None()],
                )),
            },
            Resume::Send(value) => raised_or(thread_exit::call_method(
                names(py).send.as_ptr(),
                &[inner, value],
            )),
            Resume::Throw(args, nargs) => {
                let args = std::slice::from_raw_parts(args, nargs);
                let all = no_unwind(|| receiver_and(inner, args));
                raised_or(thread_exit::call_method(
                    names(py).throw.as_ptr(),
                    &all[..=nargs],
                ))
            }
            Resume::Close => {
                raised_or(thread_exit::call_method(names(py).close.as_ptr(), &[inner]))
            }
            #[cfg(Py_3_10)]
            Resume::AmSend(value, result) => {
                let resumed = match thread_exit::send(inner, value, result) {
                    ffi::PySendResult::PYGEN_NEXT => Resumed::Value,
                    ffi::PySendResult::PYGEN_RETURN => Resumed::Exhausted,
                    ffi::PySendResult::PYGEN_ERROR => Resumed::Raised,
                };
                (resumed, *result)
            }
        }
    }
}

/// `[receiver, *args]` for a vectorcall (at most 3 arguments; the rest is unused).
fn receiver_and(
    receiver: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> [*mut ffi::PyObject; 4] {
    let mut all = [receiver; 4];
    all[1..=args.len()].copy_from_slice(args);
    all
}

/// One step of the call: the span is current while the wrapped object runs, and ends if the
/// step ended the object. The one path by which every slot and method resumes it.
///
/// A plain old frame at the call into Python: `py`, `this`, `shared` and `entered` (a
/// `ManuallyDrop`) have no destructor, so a forced unwind passes through (`thread_exit.rs`).
///
/// # Safety
/// GIL held; `this` is a live wrapper; the arguments in `how` are live objects.
#[inline(always)]
unsafe fn step(this: &StepObject, how: Resume) -> (Resumed, *mut ffi::PyObject) {
    // SAFETY: every entry point runs with the GIL held.
    let py = unsafe { Python::assume_attached() };
    if this.inner.is_null() {
        return no_unwind(|| cleared(this));
    }
    // SAFETY: `span` lives as long as the object (released in dealloc).
    let shared = unsafe { &*this.span };
    let entered = no_unwind(|| steps::enter_step(py, shared).map(ManuallyDrop::new));
    // SAFETY: the caller's contract.
    let out = unsafe { resume(py, this.inner, how) };
    if let Some(active) = entered {
        no_unwind(|| {
            let active = ManuallyDrop::into_inner(active);
            steps::leave_step(py, shared, this.role, active, out.0);
        });
    }
    out
}

/// The error of a wrapper whose object the garbage collector cleared (in a cycle being freed).
#[cold]
fn cleared(_this: &StepObject) -> (Resumed, *mut ffi::PyObject) {
    // SAFETY: GIL held; sets the error the NULL result signals.
    unsafe {
        ffi::PyErr_SetString(
            ffi::PyExc_RuntimeError,
            c"callspan: the wrapped object was cleared by the garbage collector".as_ptr(),
        );
    }
    (Resumed::Raised, ptr::null_mut())
}

/// # Safety
/// CPython calls slots and methods only on live instances of our types, with the GIL held.
#[inline(always)]
unsafe fn object<'a>(slf: *mut ffi::PyObject) -> &'a StepObject {
    // SAFETY: the caller's contract.
    unsafe { &*slf.cast::<StepObject>() }
}

/// `tp_iternext`: `next(wrapper)`, one step.
unsafe extern "C-unwind" fn step_next(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython's slot contract.
    unsafe { step(object(slf), Resume::Next).1 }
}

/// `send(value)`, one step.
unsafe extern "C-unwind" fn step_send(
    slf: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's METH_O contract.
    unsafe { step(object(slf), Resume::Send(value)).1 }
}

/// `throw(typ[, val[, tb]])`, one step.
unsafe extern "C-unwind" fn step_throw(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    let Some(nargs) = throw_arity(c"throw", nargs) else {
        return ptr::null_mut();
    };
    // SAFETY: CPython's METH_FASTCALL contract: `nargs` valid argument pointers.
    unsafe { step(object(slf), Resume::Throw(args, nargs)).1 }
}

/// 1 to 3 arguments, else a TypeError is set.
fn throw_arity(method: &CStr, nargs: ffi::Py_ssize_t) -> Option<usize> {
    match usize::try_from(nargs) {
        Ok(n @ 1..=3) => Some(n),
        _ => {
            // SAFETY: GIL held (a method call); the format takes one C string.
            unsafe {
                ffi::PyErr_Format(
                    ffi::PyExc_TypeError,
                    c"%s expected 1 to 3 arguments (typ, val, tb)".as_ptr(),
                    method.as_ptr(),
                );
            }
            None
        }
    }
}

/// `am_send`: the step `await` / `yield from` and asyncio's tasks take on 3.10+.
#[cfg(Py_3_10)]
unsafe extern "C-unwind" fn step_am_send(
    slf: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython's am_send contract: `result` is writable.
    match unsafe { step(object(slf), Resume::AmSend(value, result)).0 } {
        Resumed::Value => ffi::PySendResult::PYGEN_NEXT,
        Resumed::Exhausted => ffi::PySendResult::PYGEN_RETURN,
        Resumed::Raised => ffi::PySendResult::PYGEN_ERROR,
    }
}

/// `close()`. A generator's close is a step (its `finally` blocks run under the span) that ends
/// the span, or drops it if the generator never ran; a coroutine's ends the span after the
/// wrapped `close()`; an async generator step's just closes that awaitable.
unsafe extern "C-unwind" fn step_close(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's METH_NOARGS contract.
    let this = unsafe { object(slf) };
    if this.inner.is_null() {
        return no_unwind(|| cleared(this)).1;
    }
    // SAFETY: GIL held (a method call).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `span` lives as long as the object.
    let shared = unsafe { &*this.span };
    match this.role {
        Role::Generator => {
            // SAFETY: a live wrapper, GIL held.
            let (_, result) = unsafe { step(this, Resume::Close) };
            no_unwind(|| steps::finish_abandoned(py, shared));
            result
        }
        Role::Coroutine => {
            // SAFETY: a live wrapped object, GIL held.
            let (_, result) = unsafe { resume(py, this.inner, Resume::Close) };
            no_unwind(|| steps::end(py, shared, 0, false, || None));
            result
        }
        // SAFETY: a live wrapped object, GIL held.
        _ => unsafe { resume(py, this.inner, Resume::Close).1 },
    }
}

/// An async generator hands out one awaitable per step: `inner.<name>(*args)` wrapped as a
/// `TracedAsyncStep` of `role` sharing the generator's span. Creating it runs none of the
/// generator's body (only `sys.set_asyncgen_hooks`' first-iteration hook, which is Python).
///
/// # Safety
/// GIL held; `slf` is a live `TracedAsyncGenerator`; `args` are live objects (at most 3).
#[inline(always)]
unsafe fn async_step(
    slf: *mut ffi::PyObject,
    name: fn(&Names) -> &Py<PyString>,
    args: &[*mut ffi::PyObject],
    role: Role,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract.
    let this = unsafe { object(slf) };
    if this.inner.is_null() {
        return no_unwind(|| cleared(this)).1;
    }
    // SAFETY: GIL held.
    let py = unsafe { Python::assume_attached() };
    let (name, all) = no_unwind(|| (name(names(py)).as_ptr(), receiver_and(this.inner, args)));
    // SAFETY: GIL held; the receiver and the caller's arguments.
    let awaitable = unsafe { thread_exit::call_method(name, &all[..=args.len()]) };
    if awaitable.is_null() {
        return awaitable;
    }
    no_unwind(|| {
        // SAFETY: `span` lives as long as `this`; the step takes its own count.
        let shared = unsafe {
            Arc::increment_strong_count(this.span);
            Arc::from_raw(this.span)
        };
        // SAFETY: a new reference from the call above.
        let awaitable = unsafe { Bound::from_owned_ptr(py, awaitable) };
        match new_wrapper(py, role, awaitable, shared) {
            Ok(obj) => obj.into_ptr(),
            Err(e) => {
                e.restore(py);
                ptr::null_mut()
            }
        }
    })
}

/// `__anext__()` (`am_anext`).
unsafe extern "C-unwind" fn agen_anext(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython's slot contract.
    unsafe { async_step(slf, |n| &n.anext, &[], Role::AsyncStep) }
}

/// `asend(value)`.
unsafe extern "C-unwind" fn agen_asend(
    slf: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's METH_O contract.
    unsafe { async_step(slf, |n| &n.asend, &[value], Role::AsyncStep) }
}

/// `athrow(typ[, val[, tb]])`.
unsafe extern "C-unwind" fn agen_athrow(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    let Some(nargs) = throw_arity(c"athrow", nargs) else {
        return ptr::null_mut();
    };
    // SAFETY: CPython's METH_FASTCALL contract: `nargs` valid argument pointers.
    unsafe {
        let args = std::slice::from_raw_parts(args, nargs);
        async_step(slf, |n| &n.athrow, args, Role::AsyncStep)
    }
}

/// `aclose()`.
unsafe extern "C-unwind" fn agen_aclose(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's METH_NOARGS contract.
    unsafe { async_step(slf, |n| &n.aclose, &[], Role::AsyncClose) }
}

/// `tp_iter`, `am_await`, `am_aiter`: the wrapper itself.
unsafe extern "C" fn itself(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a live object, GIL held.
    unsafe { ffi::Py_IncRef(slf) };
    slf
}

/// `__wrapped__`: the wrapped object (for introspection).
unsafe extern "C" fn wrapped_get(
    slf: *mut ffi::PyObject,
    _closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: a live instance, GIL held.
    unsafe {
        let inner = object(slf).inner;
        if inner.is_null() {
            return cleared(object(slf)).1;
        }
        ffi::Py_IncRef(inner);
        inner
    }
}

/// `<callspan traced <the wrapped object's repr>>`.
unsafe extern "C" fn step_repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a live instance, GIL held; `%U` takes a str.
    unsafe {
        let inner = object(slf).inner;
        if inner.is_null() {
            return ffi::PyUnicode_FromString(c"<callspan traced (cleared)>".as_ptr());
        }
        let inner_repr = ffi::PyObject_Repr(inner);
        if inner_repr.is_null() {
            return inner_repr;
        }
        let repr = ffi::PyUnicode_FromFormat(c"<callspan traced %U>".as_ptr(), inner_repr);
        ffi::Py_DecRef(inner_repr);
        repr
    }
}

unsafe extern "C" fn step_traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC on our instances.
    unsafe {
        let inner = object(slf).inner;
        if !inner.is_null() {
            let r = visit(inner, arg);
            if r != 0 {
                return r;
            }
        }
        // Heap types must visit their type (3.9+).
        visit(ffi::Py_TYPE(slf).cast(), arg)
    }
}

unsafe extern "C" fn step_clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: called by the GC or dealloc on our instances, GIL held.
    unsafe {
        let this = &mut *slf.cast::<StepObject>();
        let inner = std::mem::replace(&mut this.inner, ptr::null_mut());
        if !inner.is_null() {
            ffi::Py_DecRef(inner);
        }
    }
    0
}

/// Ends the span of a coroutine or generator dropped before it finished (its steps' awaitables
/// only share it), then releases the span and the wrapped object.
unsafe extern "C" fn step_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: last reference gone, GIL held.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ffi::PyObject_GC_UnTrack(slf.cast());
        let this = &mut *slf.cast::<StepObject>();
        let span = std::mem::replace(&mut this.span, ptr::null());
        if !span.is_null() {
            let shared = Arc::from_raw(span);
            if !matches!(this.role, Role::AsyncStep | Role::AsyncClose) {
                steps::finish_abandoned(Python::assume_attached(), &shared);
            }
            drop(shared);
        }
        step_clear(slf);
        let free = (*tp).tp_free.expect("heap types have tp_free");
        free(slf.cast());
        ffi::Py_DecRef(tp.cast());
    }
}

/// `tp_new`: only callspan creates wrappers.
unsafe extern "C" fn step_new(
    tp: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held; tp_name is a C string.
    unsafe {
        ffi::PyErr_Format(
            ffi::PyExc_TypeError,
            c"cannot create '%s' instances: callspan creates them when a traced function is called"
                .as_ptr(),
            (*tp).tp_name,
        );
    }
    ptr::null_mut()
}

/// The four types, indexed by [`type_index`].
static TYPES: [AtomicPtr<ffi::PyTypeObject>; 4] = [
    AtomicPtr::new(ptr::null_mut()),
    AtomicPtr::new(ptr::null_mut()),
    AtomicPtr::new(ptr::null_mut()),
    AtomicPtr::new(ptr::null_mut()),
];

fn type_index(role: Role) -> usize {
    match role {
        Role::Coroutine => 0,
        Role::Generator => 1,
        Role::AsyncGenerator => 2,
        Role::AsyncStep | Role::AsyncClose => 3,
    }
}

/// Wraps `inner` (the object a traced call created, or an async generator's awaitable) as
/// `role`, owning `span`.
pub(crate) fn new_wrapper<'py>(
    py: Python<'py>,
    role: Role,
    inner: Bound<'py, PyAny>,
    span: Shared,
) -> PyResult<Bound<'py, PyAny>> {
    let tp = TYPES[type_index(role)].load(Ordering::Acquire);
    assert!(!tp.is_null(), "step_types::register ran at import");
    // SAFETY: GIL held; `tp` is our type; the fields are written before anything can read
    // them (the allocation is zeroed, and nothing runs between allocation and the writes).
    unsafe {
        let obj = ffi::PyType_GenericAlloc(tp, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let this = &mut *obj.cast::<StepObject>();
        this.inner = inner.into_ptr();
        this.span = Arc::into_raw(span);
        ptr::addr_of_mut!(this.role).write(role);
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

/// A method table entry; `doc` starts with the `__text_signature__` CPython reads from it.
fn method(
    name: &'static CStr,
    meth: ffi::PyMethodDefPointer,
    flags: c_int,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }
}

/// Our "C-unwind" functions in the "C" pointer types the method and slot tables declare.
/// "C" and "C-unwind" share the calling convention (see `thread_exit::as_slot`).
mod as_c {
    use super::ffi;

    pub(super) type Unary = unsafe extern "C-unwind" fn(*mut ffi::PyObject) -> *mut ffi::PyObject;
    pub(super) type Binary =
        unsafe extern "C-unwind" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;
    pub(super) type Fast = unsafe extern "C-unwind" fn(
        *mut ffi::PyObject,
        *const *mut ffi::PyObject,
        ffi::Py_ssize_t,
    ) -> *mut ffi::PyObject;

    pub(super) fn binary(f: Binary) -> ffi::PyMethodDefPointer {
        ffi::PyMethodDefPointer {
            // SAFETY: same signature, only the unwind permission differs.
            PyCFunction: unsafe { std::mem::transmute::<Binary, ffi::PyCFunction>(f) },
        }
    }

    pub(super) fn fast(f: Fast) -> ffi::PyMethodDefPointer {
        ffi::PyMethodDefPointer {
            // SAFETY: same signature, only the unwind permission differs.
            PyCFunctionFast: unsafe { std::mem::transmute::<Fast, ffi::PyCFunctionFast>(f) },
        }
    }

    pub(super) fn unary_slot(f: Unary) -> *mut std::ffi::c_void {
        f as *mut std::ffi::c_void
    }
}

/// The stepping methods a coroutine, generator and async generator step share.
fn stepping_methods() -> Vec<ffi::PyMethodDef> {
    vec![
        method(
            c"send",
            as_c::binary(step_send),
            ffi::METH_O,
            c"send($self, value, /)\n--\n\nResumes the wrapped object with value, as one step of the call's span.",
        ),
        method(
            c"throw",
            as_c::fast(step_throw),
            ffi::METH_FASTCALL,
            c"throw($self, typ, val=None, tb=None, /)\n--\n\nRaises typ in the wrapped object, as one step of the call's span.",
        ),
        method(
            c"close",
            as_c::binary(step_close),
            ffi::METH_NOARGS,
            c"close($self, /)\n--\n\nCloses the wrapped object.",
        ),
    ]
}

fn async_generator_methods() -> Vec<ffi::PyMethodDef> {
    vec![
        method(
            c"asend",
            as_c::binary(agen_asend),
            ffi::METH_O,
            c"asend($self, value, /)\n--\n\nThe awaitable step that sends value into the generator.",
        ),
        method(
            c"athrow",
            as_c::fast(agen_athrow),
            ffi::METH_FASTCALL,
            c"athrow($self, typ, val=None, tb=None, /)\n--\n\nThe awaitable step that raises typ in the generator.",
        ),
        method(
            c"aclose",
            as_c::binary(agen_aclose),
            ffi::METH_NOARGS,
            c"aclose($self, /)\n--\n\nThe awaitable step that closes the generator.",
        ),
    ]
}

/// What makes one of the four types.
struct TypeSpec {
    role: Role,
    /// `module.Name`.
    name: &'static CStr,
    doc: &'static CStr,
    methods: Vec<ffi::PyMethodDef>,
    /// Whether it has `__wrapped__` (the wrappers; not the async generator's steps).
    with_wrapped: bool,
    /// The slots of this type beside the shared ones.
    slots: Vec<ffi::PyType_Slot>,
    /// The `collections.abc` class it is registered with.
    abc: Option<&'static str>,
}

/// Creates one of the four types.
fn create_type(py: Python<'_>, spec: &TypeSpec) -> PyResult<*mut ffi::PyTypeObject> {
    let mut methods = spec.methods.clone();
    // CPython keeps pointers into these tables for the life of the type: leak them.
    methods.push(ffi::PyMethodDef::zeroed());
    let methods: &'static mut [ffi::PyMethodDef] = methods.leak();
    let mut getset = Vec::new();
    if spec.with_wrapped {
        getset.push(ffi::PyGetSetDef {
            name: c"__wrapped__".as_ptr(),
            get: Some(wrapped_get),
            set: None,
            doc: c"The wrapped object (for introspection).".as_ptr(),
            closure: ptr::null_mut(),
        });
    }
    getset.push(ffi::PyGetSetDef::default());
    let getset: &'static mut [ffi::PyGetSetDef] = getset.leak();
    let mut slots = vec![
        slot(ffi::Py_tp_new, step_new as *mut c_void),
        slot(ffi::Py_tp_traverse, step_traverse as *mut c_void),
        slot(ffi::Py_tp_clear, step_clear as *mut c_void),
        slot(ffi::Py_tp_dealloc, step_dealloc as *mut c_void),
        slot(ffi::Py_tp_repr, step_repr as *mut c_void),
        slot(ffi::Py_tp_methods, methods.as_mut_ptr().cast()),
        slot(ffi::Py_tp_getset, getset.as_mut_ptr().cast()),
        slot(ffi::Py_tp_doc, spec.doc.as_ptr() as *mut c_void),
    ];
    slots.extend_from_slice(&spec.slots);
    slots.push(slot(0, ptr::null_mut()));
    let slots: &'static mut [ffi::PyType_Slot] = slots.leak();
    #[cfg(Py_3_10)]
    let version_flags = ffi::Py_TPFLAGS_IMMUTABLETYPE;
    #[cfg(not(Py_3_10))]
    let version_flags = 0;
    let flags = ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC | version_flags;
    let type_spec: &'static mut ffi::PyType_Spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: spec.name.as_ptr(),
        basicsize: std::mem::size_of::<StepObject>() as c_int,
        itemsize: 0,
        flags: flags as _,
        slots: slots.as_mut_ptr(),
    }));
    // SAFETY: the spec and everything it points to live forever.
    let tp = unsafe { ffi::PyType_FromSpec(type_spec) };
    if tp.is_null() {
        return Err(PyErr::fetch(py));
    }
    Ok(tp.cast())
}

/// Creates the four types (once), adds them to the module, and registers the wrappers with
/// `collections.abc.Coroutine` (so asyncio accepts them in `create_task`, `gather` and `run`),
/// `Generator` and `AsyncGenerator`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    NAMES.get_or_init(py, || {
        let name = |s: &str| PyString::intern(py, s).unbind();
        Names {
            send: name("send"),
            throw: name("throw"),
            close: name("close"),
            anext: name("__anext__"),
            asend: name("asend"),
            athrow: name("athrow"),
            aclose: name("aclose"),
        }
    });
    let next = as_c::unary_slot(step_next);
    let itself = itself as *mut c_void;
    #[cfg(Py_3_10)]
    let am_send = [slot(ffi::Py_am_send, step_am_send as *mut c_void)];
    #[cfg(not(Py_3_10))]
    let am_send: [ffi::PyType_Slot; 0] = [];
    let iterator = [
        slot(ffi::Py_tp_iter, itself),
        slot(ffi::Py_tp_iternext, next),
    ];
    let awaitable = [slot(ffi::Py_am_await, itself)];
    let specs = [
        TypeSpec {
            role: Role::Coroutine,
            name: c"callspan._callspan.TracedCoroutine",
            doc: c"The coroutine a traced async def returns: one span over its awaited lifetime.",
            methods: stepping_methods(),
            with_wrapped: true,
            slots: [&iterator[..], &awaitable, &am_send].concat(),
            abc: Some("Coroutine"),
        },
        TypeSpec {
            role: Role::Generator,
            name: c"callspan._callspan.TracedGenerator",
            doc: c"The generator a traced generator function returns: one span from the first \
                   iteration to exhaustion or close().",
            methods: stepping_methods(),
            with_wrapped: true,
            slots: [&iterator[..], &am_send].concat(),
            abc: Some("Generator"),
        },
        TypeSpec {
            role: Role::AsyncGenerator,
            name: c"callspan._callspan.TracedAsyncGenerator",
            doc: c"The async generator a traced async generator function returns.",
            methods: async_generator_methods(),
            with_wrapped: true,
            slots: vec![
                slot(ffi::Py_am_aiter, itself),
                slot(ffi::Py_am_anext, as_c::unary_slot(agen_anext)),
            ],
            abc: Some("AsyncGenerator"),
        },
        TypeSpec {
            role: Role::AsyncStep,
            name: c"callspan._callspan.TracedAsyncStep",
            doc: c"One awaitable step of a traced async generator.",
            methods: stepping_methods(),
            with_wrapped: false,
            slots: [&iterator[..], &awaitable, &am_send].concat(),
            abc: None,
        },
    ];
    let abc = py.import("collections.abc")?;
    for spec in specs {
        let index = type_index(spec.role);
        let mut tp = TYPES[index].load(Ordering::Acquire);
        if tp.is_null() {
            tp = create_type(py, &spec)?;
            // TYPES keeps the reference for the life of the process.
            TYPES[index].store(tp, Ordering::Release);
        }
        // SAFETY: TYPES holds a strong reference.
        let ty = unsafe { Bound::<PyAny>::from_borrowed_ptr(py, tp.cast()) };
        if let Some(abc_name) = spec.abc {
            abc.getattr(abc_name)?.call_method1("register", (&ty,))?;
        }
        let name = spec.name.to_str().expect("ASCII");
        m.add(name.rsplit('.').next().expect("a name"), ty)?;
    }
    Ok(())
}
