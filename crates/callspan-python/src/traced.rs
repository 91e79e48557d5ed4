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

use crate::steps::{self, Kind};
use crate::thread_exit::{self, no_unwind};
use crate::{caller, exception, otel, stack_guard, thread};
use callspan_core::clock::now_unix_ns;
use callspan_core::context::{self, ParentSpan};
use callspan_core::ids;
use callspan_core::record::{CallerSite, FunctionId, SpanRecord};
use callspan_otlp::pipeline::{self, Pipeline};
use pyo3::ffi;
use pyo3::prelude::*;
use std::cell::Cell;
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
    /// `@callspan.trace(sample_rate=...)`; NaN: none given (CALLSPAN_SAMPLE decides).
    decorator_rate: Cell<f64>,
    /// The configuration epoch `rate_threshold` was computed for.
    rate_epoch: Cell<u32>,
    /// This function's sampling rate as a threshold for a random u64; u64::MAX: always.
    rate_threshold: Cell<u64>,
}

impl TracedObject {
    /// The per-function sampling draw (`sample_rate=` or `CALLSPAN_SAMPLE`), decided once per
    /// function and configuration: no string matching per call.
    #[inline]
    fn rate_admits(&self, p: &Pipeline) -> bool {
        let epoch = p.config_epoch();
        if self.rate_epoch.get() != epoch {
            self.refresh_rate(p, epoch);
        }
        let threshold = self.rate_threshold.get();
        threshold == u64::MAX || ids::random_u64() < threshold
    }

    #[cold]
    fn refresh_rate(&self, p: &Pipeline, epoch: u32) {
        let decorator = self.decorator_rate.get();
        let rate = if decorator.is_nan() {
            let name = p
                .registry()
                .view()
                .function(self.function_id)
                .map(|f| f.function_name);
            name.map_or(1.0, |n| p.sample_rate_for(n))
        } else {
            decorator
        };
        let threshold = if rate >= 1.0 {
            u64::MAX
        } else {
            (rate.max(0.0) * u64::MAX as f64) as u64
        };
        self.rate_threshold.set(threshold);
        self.rate_epoch.set(epoch);
    }
}

/// Whether a call with this parent decision is recorded: the sampler, then the function's own
/// rate, then the process-wide rate limit.
#[inline]
fn decide(p: &Pipeline, this: &TracedObject, parent: Option<ParentSpan>, trace_id: u128) -> bool {
    p.sampling_rule()
        .should_sample(parent.map(|p| p.sampled), trace_id)
        && this.rate_admits(p)
        && p.admit(now_unix_ns)
}

/// The caller attributes and stack the configuration asks for.
#[inline]
fn read_caller(
    py: Python<'_>,
    p: &Pipeline,
    omitted: u8,
) -> (
    CallerSite,
    callspan_core::record::ThreadKey,
    Option<Box<[CallerSite]>>,
) {
    use callspan_core::config::Capture;
    let frame_bits = Capture::FUNCTION | Capture::FILE | Capture::LINE | Capture::CLASS;
    let site = if omitted & frame_bits == frame_bits {
        CallerSite::default()
    } else {
        caller::current_site(py, p.registry(), omitted & Capture::CLASS == 0)
    };
    let thread = if omitted & Capture::THREAD != 0 {
        0
    } else {
        thread::current_key(py, p.registry())
    };
    let depth = p.stack_depth();
    let stack = if depth > 0 {
        caller::outer_stack(py, p.registry(), depth)
    } else {
        None
    };
    (site, thread, stack)
}

extern "C" {
    // Not declared by pyo3-ffi; part of the stable C API since Python 3.0.
    fn PyMethod_New(func: *mut ffi::PyObject, self_: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

static TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// What [`begin`] decided for one call, before the call into Python.
///
/// ISSUE-12 item 1 (thread_exit.rs): everything that lives across the call into Python is in
/// here, without a destructor (`ManuallyDrop`), so that [`traced_vectorcall`] is a plain old
/// frame at that call.
enum Begun {
    /// An exception is set; return NULL.
    Failed,
    /// Call `func` untraced (callspan disabled).
    Untraced(*mut ffi::PyObject),
    /// Call `func` as an unsampled call: a context entry is pushed, pop it after.
    Unsampled(*mut ffi::PyObject),
    /// A coroutine or generator function: create the object, then wrap it.
    Stepped(*mut ffi::PyObject, StepDecision),
    /// A sampled plain call: a context entry is pushed; end the span after.
    Sampled(*mut ffi::PyObject, std::mem::ManuallyDrop<SampledCall>),
}

/// What a coroutine or generator function's span needs from before its creating call.
struct StepDecision {
    parent: Option<ParentSpan>,
    trace_id: u128,
    sampled: bool,
}

/// A sampled plain call in progress.
struct SampledCall {
    trace_id: u128,
    span_id: u64,
    parent: Option<ParentSpan>,
    site: CallerSite,
    thread: callspan_core::record::ThreadKey,
    stack: Option<Box<[CallerSite]>>,
    omitted: u8,
    otel_token: Option<Py<PyAny>>,
    start_unix_ns: u64,
}

/// Pushes the "inside an unsampled call" context entry of trace `trace_id` (`current_span()`
/// is None there) so that the call's children inherit the decision.
#[inline(always)]
fn push_unsampled(trace_id: u128) {
    context::push(ParentSpan {
        trace_id,
        span_id: 0,
        sampled: false,
        remote: false,
    });
}

/// The C entry point of every traced call. ISSUE-12 item 1: `extern "C-unwind"`, and the call
/// into Python goes through [`thread_exit::vectorcall`] with nothing pending to drop, so that a
/// daemon thread ended by `pthread_exit` at interpreter exit passes through (see thread_exit.rs).
/// The Rust work before and after runs in [`thread_exit::no_unwind`] (a panic aborts).
unsafe extern "C-unwind" fn traced_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this slot only on our instances, with the GIL held.
    let this = unsafe { &*callable.cast::<TracedObject>() };
    // SAFETY: as above.
    match no_unwind(|| unsafe { begin(this) }) {
        Begun::Failed => ptr::null_mut(),
        // SAFETY (all three calls): forwarding our caller's arguments unchanged, GIL held.
        Begun::Untraced(func) => unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) },
        Begun::Unsampled(func) => {
            let result = unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) };
            no_unwind(context::pop);
            result
        }
        Begun::Stepped(func, decision) => {
            let created = unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) };
            // SAFETY: GIL held; `created` is the creating call's result.
            no_unwind(|| unsafe { wrap_stepped(this, decision, created) })
        }
        Begun::Sampled(func, call) => {
            let result = unsafe { thread_exit::vectorcall(func, args, nargsf, kwnames) };
            let call = std::mem::ManuallyDrop::into_inner(call);
            // SAFETY: GIL held; `result` is the call's result.
            no_unwind(|| unsafe { end_sampled(this, call, result) })
        }
    }
}

/// The traced call's decisions, before the call into Python.
///
/// # Safety
/// The GIL is held; `this` is a live instance.
#[inline(always)]
unsafe fn begin(this: &TracedObject) -> Begun {
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
    // ISSUE-12 item 3 (stack_guard.rs): RecursionError instead of a C stack overflow.
    // SAFETY: GIL held.
    if !unsafe { stack_guard::enough_stack() } {
        return Begun::Failed;
    }
    let p = pipeline::global();
    if p.disabled() {
        return Begun::Untraced(func);
    }
    p.count_started();

    let kind = Kind::from_u8(this.kind);
    if kind == Kind::Plain && p.sampling_rule().never_samples() {
        // always_off (or a ratio of 0): no parent can change this decision, so none is looked
        // up and no trace id is drawn. Trace id 0 makes a child start its own trace should
        // the sampler be reconfigured meanwhile.
        push_unsampled(0);
        return Begun::Unsampled(func);
    }

    // SAFETY: the GIL is held for the whole call.
    let py = unsafe { Python::assume_attached() };
    let parent = steps::current_parent(py);
    let trace_id = match parent {
        // Trace id 0: the parent is an always_off call, which belongs to no trace.
        Some(parent) if parent.trace_id != 0 => parent.trace_id,
        _ => ids::trace_id(),
    };
    if kind != Kind::Plain {
        let sampled = decide(p, this, parent, trace_id);
        return Begun::Stepped(
            func,
            StepDecision {
                parent,
                trace_id,
                sampled,
            },
        );
    }
    if !decide(p, this, parent, trace_id) {
        push_unsampled(trace_id);
        return Begun::Unsampled(func);
    }

    let span_id = ids::span_id();
    let omitted = p.omitted();
    let (site, thread, stack) = read_caller(py, p, omitted);
    context::push(ParentSpan {
        trace_id,
        span_id,
        sampled: true,
        remote: false,
    });
    let otel_token = if p.otel_context() {
        otel::attach(py, trace_id, span_id)
    } else {
        None
    };
    Begun::Sampled(
        func,
        std::mem::ManuallyDrop::new(SampledCall {
            trace_id,
            span_id,
            parent,
            site,
            thread,
            stack,
            omitted,
            otel_token,
            start_unix_ns: now_unix_ns(),
        }),
    )
}

/// Ends a sampled plain call's span; returns the call's result.
///
/// # Safety
/// The GIL is held; `result` is what the call returned (NULL with an exception set).
#[inline(always)]
unsafe fn end_sampled(
    this: &TracedObject,
    call: SampledCall,
    result: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let end_unix_ns = now_unix_ns();
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    let p = pipeline::global();
    if let Some(token) = call.otel_token {
        otel::detach(py, token);
    }
    context::pop();

    if end_unix_ns.saturating_sub(call.start_unix_ns) < p.min_duration_ns() {
        p.count_below_min_duration();
    } else {
        let error = if result.is_null() {
            Some(Box::new(exception::capture_current(py)))
        } else {
            None
        };
        submit(
            p,
            SpanRecord {
                trace_id: call.trace_id,
                span_id: call.span_id,
                parent_span_id: call.parent.map_or(0, |p| p.span_id),
                parent_is_remote: call.parent.is_some_and(|p| p.remote),
                start_unix_ns: call.start_unix_ns,
                end_unix_ns,
                function: this.function_id,
                caller: call.site,
                thread: call.thread,
                error,
                omitted: call.omitted,
                stack: call.stack,
            },
        );
    }
    if callspan_otlp::diagnostic::pending() {
        crate::diagnostics::forward(py);
    }
    result
}

/// A coroutine, generator or async generator function: the call created the object (running
/// none of its body); the span lives in the wrapper that [`steps::wrap`] returns. The caller
/// is read after the creating call (the caller's frame is current again by then), so that
/// nothing of it is pending across that call.
///
/// # Safety
/// The GIL is held; `created` is the creating call's result (NULL with an exception set).
#[cold]
unsafe fn wrap_stepped(
    this: &TracedObject,
    decision: StepDecision,
    created: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if created.is_null() {
        return created;
    }
    // SAFETY: the caller's contract.
    let py = unsafe { Python::assume_attached() };
    let p = pipeline::global();
    let omitted = p.omitted();
    let (site, _, stack) = if decision.sampled {
        read_caller(py, p, omitted)
    } else {
        Default::default()
    };
    // SAFETY: a new reference from the creating call.
    let created = unsafe { Bound::from_owned_ptr(py, created) };
    let span = steps::StepCall {
        trace_id: decision.trace_id,
        span_id: ids::span_id(),
        parent: decision.parent,
        sampled: decision.sampled,
        function: this.function_id,
        caller: site,
        omitted,
        stack,
    };
    match steps::wrap(py, Kind::from_u8(this.kind), created, span) {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            ptr::null_mut()
        }
    }
}

#[inline]
fn submit(p: &'static Pipeline, record: SpanRecord) {
    p.submit(record);
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
        let name = callspan_otlp::pipeline::registry()
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
    let getset: &'static mut [ffi::PyGetSetDef] = Box::leak(Box::new([
        ffi::PyGetSetDef {
            name: c"__dict__".as_ptr(),
            get: Some(ffi::PyObject_GenericGetDict),
            set: Some(ffi::PyObject_GenericSetDict),
            doc: ptr::null(),
            closure: ptr::null_mut(),
        },
        ffi::PyGetSetDef::default(),
    ]));
    let methods: &'static mut [ffi::PyMethodDef] = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: c"__reduce__".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: traced_reduce,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"Pickle by reference (module and qualified name), like a function.".as_ptr(),
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

fn member(name: &'static std::ffi::CStr, offset: usize) -> ffi::PyMemberDef {
    ffi::PyMemberDef {
        name: name.as_ptr(),
        type_code: ffi::Py_T_PYSSIZET,
        offset: offset as ffi::Py_ssize_t,
        flags: ffi::Py_READONLY,
        doc: ptr::null(),
    }
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
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
        // The allocation is zeroed; Cells of plain numbers are valid as written.
        this.decorator_rate = Cell::new(sample_rate.unwrap_or(f64::NAN));
        this.rate_epoch = Cell::new(u32::MAX);
        this.rate_threshold = Cell::new(u64::MAX);
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
