//! OpenTelemetry API interop: a callspan root call made while an OpenTelemetry span is current
//! (for example one opened by an instrumented web framework) joins that span's trace as its
//! child.
//!
//! This runs on root calls only (no callspan span open on the thread or in the context), so it
//! must be cheap: instead of calling `opentelemetry.trace.get_current_span()` (a few Python
//! calls), it reads the OpenTelemetry context's `ContextVar` directly and caches, per thread, the
//! `Context` object it found with what it resolved to. OpenTelemetry never changes a `Context`
//! in place (`set_value` returns a new one), so while the `ContextVar` holds the same object the
//! answer is the same. When the context changes, its span entry is read; the span is cached too,
//! since a new context often carries the same span (baggage, suppression keys).
//!
//! In front of that, the thread's `contextvars` mapping itself is the key
//! ([`python_frame::context_vars`]: two loads through the thread state, where the interpreter's
//! layout was checked at run time): an immutable mapping, so the same mapping means the same
//! `ContextVar` value and the same answer, and a root call costs those loads and a comparison.
//! `PyContextVar_Get` costs more, and most when it matters least: when OpenTelemetry's variable
//! is not set in the thread's context (no OpenTelemetry span was ever made current there) CPython
//! does not cache the miss and walks the mapping on every call. Where the layout check fails (or
//! on a build that reads no interpreter struct) a root call starts at `PyContextVar_Get`.
//!
//! Every object whose address is a key is kept alive by the cache, so its address cannot come
//! to mean another object. Only the default `ContextVarsRuntimeContext` is read this way; any
//! other runtime context falls back on the public `get_current_span()`.

use crate::python_frame;
use callspan_core::context::ParentSpan;
use callspan_core::per_thread::PerThread;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::cell::RefCell;
use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU8, Ordering};

/// Not imported yet (look into `sys.modules` whenever it changed) / resolved / unusable /
/// resolved, with the `ContextVar` read through the thread's mapping first
/// ([`python_frame::context_vars`]).
const UNSEEN: u8 = 0;
const READY: u8 = 1;
const UNUSABLE: u8 = 2;
const READY_MAPPING: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(UNSEEN);

/// The interpreter's module dict (`sys.modules`), a strong reference kept for the process.
static MODULES: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());
/// `len(sys.modules)` at the last look into it; -1: look at the next root call.
///
/// OpenTelemetry cannot be imported without adding modules to `sys.modules` (importing
/// `opentelemetry.trace` adds a dozen), so while its length stays the same a root call knows
/// without a lookup that OpenTelemetry is still not imported: one load of a static and
/// `PyDict_Size`, fewer instructions than the thread-local call count this replaces, and
/// exact where that count looked only every 256th root call.
static MODULES_SEEN: AtomicIsize = AtomicIsize::new(-1);

struct Hooks {
    /// `_RUNTIME_CONTEXT._current_context` when the default runtime context is in use.
    context_var: Option<Py<PyAny>>,
    /// The key of the current span in an OpenTelemetry `Context`.
    span_key: Py<PyAny>,
    /// `opentelemetry.trace.get_current_span`, the public fallback.
    get_current_span: Py<PyAny>,
}

static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

// Per thread, in `PerThread::otel`: the addresses of the last `contextvars` mapping and
// `Context` seen with what they resolved to, which answer a root call while they stay the same.
// The objects themselves are held here, touched only when they change: holding them keeps their
// addresses from being reused.
thread_local! {
    static LAST: RefCell<Last> = const {
        RefCell::new(Last {
            vars: None,
            context: None,
            span: None,
        })
    };
}

/// The objects of one thread's last answer.
struct Last {
    /// The thread's `contextvars` mapping (None: not read through it, or the thread had no
    /// context). Held, not read: it keeps `PerThread::otel.vars` valid.
    vars: Option<Py<PyAny>>,
    /// The `Context` object the `ContextVar` held (None: not read through the `ContextVar`).
    /// Held, not read: it keeps `PerThread::otel.context` valid.
    context: Option<Py<PyAny>>,
    /// The span that context held (None: no span entry).
    span: Option<Py<PyAny>>,
}

fn resolve(py: Python<'_>) -> PyResult<Hooks> {
    let context = py.import("opentelemetry.context")?;
    let runtime = context.getattr("_RUNTIME_CONTEXT")?;
    let context_var = if runtime.get_type().name()? == "ContextVarsRuntimeContext" {
        runtime.getattr("_current_context").ok().map(Bound::unbind)
    } else {
        None
    };
    let span_key = py
        .import("opentelemetry.trace.propagation")?
        .getattr("_SPAN_KEY")?
        .unbind();
    let get_current_span = py
        .import("opentelemetry.trace")?
        .getattr("get_current_span")?
        .unbind();
    Ok(Hooks {
        context_var,
        span_key,
        get_current_span,
    })
}

/// `len(sys.modules)`, -1 if it cannot be read. GIL held.
fn modules_len() -> isize {
    let mut modules = MODULES.load(Ordering::Relaxed);
    if modules.is_null() {
        // SAFETY: GIL held; a borrowed reference (NULL during finalization), made strong and
        // kept for good below, so the pointer stays valid.
        modules = unsafe { ffi::PyImport_GetModuleDict() };
        if modules.is_null() {
            return -1;
        }
        // SAFETY: as above.
        unsafe { ffi::Py_IncRef(modules) };
        MODULES.store(modules, Ordering::Relaxed);
    }
    // SAFETY: GIL held; `modules` is kept alive above. CPython's is always a dict, whose size
    // is read as `PyDict_GET_SIZE` does (no call); anything else is asked.
    unsafe {
        if ffi::PyDict_CheckExact(modules) != 0 {
            (*modules.cast::<ffi::PyDictObject>()).ma_used
        } else {
            let len = ffi::PyObject_Size(modules);
            if len < 0 {
                ffi::PyErr_Clear();
            }
            len
        }
    }
}

/// `sys.modules[name]` if present (a new reference). GIL held.
fn imported<'py>(
    py: Python<'py>,
    name: &Bound<'py, pyo3::types::PyString>,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: GIL held; a new reference or NULL (with no error set when simply absent).
    let module = unsafe { ffi::PyImport_GetModule(name.as_ptr()) };
    if module.is_null() {
        let _ = PyErr::take(py);
        return None;
    }
    // SAFETY: the new reference from above.
    Some(unsafe { Bound::from_owned_ptr(py, module) })
}

/// True while `module` is still being executed by an import (`__spec__._initializing`):
/// it is in `sys.modules` from the start of its import, before its names exist.
fn still_importing(module: &Bound<'_, PyAny>) -> bool {
    module
        .getattr("__spec__")
        .and_then(|spec| spec.getattr("_initializing"))
        .and_then(|flag| flag.is_truthy())
        .unwrap_or(false)
}

/// The current OpenTelemetry span as a parent, if OpenTelemetry is in use and a valid span is
/// current (`local`: this thread's state).
#[inline]
pub(crate) fn current_parent(py: Python<'_>, local: &PerThread) -> Option<ParentSpan> {
    match STATE.load(Ordering::Relaxed) {
        READY_MAPPING => {
            // SAFETY: GIL held; READY_MAPPING is set only once `verify_context_vars` passed.
            let vars = unsafe { python_frame::context_vars() };
            if mapping_key(vars) == local.otel.vars.get() {
                return local.otel.vars_parent.get();
            }
            return mapping_changed(py, local, vars);
        }
        READY => {}
        UNUSABLE => return None,
        _ => {
            let len = modules_len();
            if len == MODULES_SEEN.load(Ordering::Relaxed) || !became_ready(py, len) {
                return None;
            }
        }
    }
    by_context(py, HOOKS.get(py)?, local)
}

/// How root calls find the current OpenTelemetry span now: `"unresolved"` (OpenTelemetry not
/// imported, or no root call since), `"mapping"` (keyed by the thread's `contextvars` mapping),
/// `"contextvar"` (`PyContextVar_Get` at every root call), `"get_current_span"` (another runtime
/// context: the public function) or `"unusable"`.
pub(crate) fn route(py: Python<'_>) -> &'static str {
    match STATE.load(Ordering::Relaxed) {
        READY_MAPPING => "mapping",
        READY => match HOOKS.get(py) {
            Some(hooks) if hooks.context_var.is_none() => "get_current_span",
            _ => "contextvar",
        },
        UNUSABLE => "unusable",
        _ => "unresolved",
    }
}

/// How root calls find the current span once OpenTelemetry is resolved: through the thread's
/// `contextvars` mapping first where its read is checked to work, else from the `ContextVar`.
#[cold]
fn ready_state(py: Python<'_>, hooks: &Hooks) -> u8 {
    if hooks.context_var.is_none() {
        return READY;
    }
    match python_frame::verify_context_vars(py) {
        Ok(()) => READY_MAPPING,
        Err(why) => {
            tracing::debug!("OpenTelemetry context read through PyContextVar_Get: {why}");
            READY
        }
    }
}

/// The key [`current_parent`] keeps for the thread's `contextvars` mapping `vars`: its address,
/// 1 when the thread has no context (0, `PerThread::otel.vars`' first value, is no key).
#[inline(always)]
fn mapping_key(vars: *mut ffi::PyObject) -> usize {
    if vars.is_null() {
        1
    } else {
        vars as usize
    }
}

/// [`current_parent`] when the thread's `contextvars` mapping is not the one last seen: the
/// answer from the `ContextVar`, then the new mapping kept as the key with it (a pair of its own:
/// resolving may run Python code that makes root calls of its own, which leave the `Context`
/// key and its answer consistent with each other, not with this mapping).
#[cold]
#[inline(never)]
fn mapping_changed(
    py: Python<'_>,
    local: &PerThread,
    vars: *mut ffi::PyObject,
) -> Option<ParentSpan> {
    // Held before anything runs Python code (resolving a new span does), which could free it.
    // SAFETY: GIL held; `vars` is null or the live mapping of the thread's current context.
    let held = unsafe { Bound::from_borrowed_ptr_or_opt(py, vars) }.map(Bound::unbind);
    let parent = by_context(py, HOOKS.get(py)?, local);
    // The replaced mapping is dropped after the borrow ends (see `remember`).
    let old = LAST.with(|last| std::mem::replace(&mut last.borrow_mut().vars, held));
    local.otel.vars.set(mapping_key(vars));
    local.otel.vars_parent.set(parent);
    drop(old);
    parent
}

/// The current span from OpenTelemetry's `ContextVar`: the last answer while it holds the same
/// `Context`, else [`lookup`].
#[inline]
fn by_context(py: Python<'_>, hooks: &Hooks, local: &PerThread) -> Option<ParentSpan> {
    if let Some(var) = &hooks.context_var {
        // The common case: the same context as at this thread's last root call.
        let mut context: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: GIL held; `var` is a ContextVar, for which PyContextVar_Get cannot fail (its
        // hash is precomputed): it gives a new reference or NULL. A hit only compares the
        // address and gives the reference back.
        unsafe {
            if ffi::PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &mut context) == 0
                && !context.is_null()
            {
                let hit = context as usize == local.otel.context.get();
                ffi::Py_DECREF(context);
                if hit {
                    return local.otel.parent.get();
                }
            }
        }
    }
    // SAFETY: GIL held. Traced calls start with no exception set; other callers may have one,
    // which must stay out of the way of the lookups below.
    if unsafe { ffi::PyErr_Occurred() }.is_null() {
        return lookup(py, hooks, local);
    }
    let pending = PyErr::take(py);
    let parent = lookup(py, hooks, local);
    if let Some(e) = pending {
        e.restore(py);
    }
    parent
}

/// `sys.modules` changed size (to `len`) since the last look: whether OpenTelemetry is now
/// imported and its context readable (then `STATE` is `READY` or `READY_MAPPING`). Out of line: every root call
/// inlines the check above it, and this part is long.
#[cold]
fn became_ready(py: Python<'_>, len: isize) -> bool {
    MODULES_SEEN.store(len, Ordering::Relaxed);
    let Some(module) = imported(py, pyo3::intern!(py, "opentelemetry.trace")) else {
        return false;
    };
    match HOOKS.get_or_try_init(py, || resolve(py)) {
        Ok(hooks) => {
            STATE.store(ready_state(py, hooks), Ordering::Relaxed);
            true
        }
        // Reached from code that its import runs (on this thread: another thread's import
        // would have been waited for): look again at the next root call.
        Err(_) if still_importing(&module) => {
            MODULES_SEEN.store(-1, Ordering::Relaxed);
            false
        }
        Err(e) => {
            STATE.store(UNUSABLE, Ordering::Relaxed);
            tracing::warn!("OpenTelemetry is imported but its context cannot be read ({e}); callspan spans will not join OpenTelemetry traces");
            false
        }
    }
}

#[cold]
fn lookup(py: Python<'_>, hooks: &Hooks, local: &PerThread) -> Option<ParentSpan> {
    let Some(var) = &hooks.context_var else {
        let span = hooks.get_current_span.bind(py).call0().ok()?;
        return remember(None, Some(span), local);
    };
    let context = current_context(py, var)?;
    if context.as_ptr() as usize == local.otel.context.get() {
        return local.otel.parent.get();
    }
    let span = context_span(py, &context, &hooks.span_key);
    remember(Some(context), span, local)
}

/// Resolves `span` (reusing the last answer when it is the same span) and caches it with the
/// context it came from.
fn remember(
    context: Option<Bound<'_, PyAny>>,
    span: Option<Bound<'_, PyAny>>,
    local: &PerThread,
) -> Option<ParentSpan> {
    let same_span = LAST.with(|last| {
        let last = last.borrow();
        match (&last.span, &span) {
            (Some(a), Some(b)) => a.is(b),
            (None, None) => true,
            _ => false,
        }
    });
    // Resolving runs Python code (no borrow of LAST is held meanwhile).
    let parent = if same_span {
        local.otel.parent.get()
    } else {
        span.as_ref().and_then(span_context)
    };
    let address = context.as_ref().map_or(0, |c| c.as_ptr() as usize);
    let context = context.map(Bound::unbind);
    let span = span.map(Bound::unbind);
    // The replaced objects are dropped after the borrow ends: their finalizers may run Python
    // code, which may make a traced call and come back here.
    let old = LAST.with(|last| {
        let mut last = last.borrow_mut();
        (
            std::mem::replace(&mut last.context, context),
            std::mem::replace(&mut last.span, span),
        )
    });
    local.otel.context.set(address);
    local.otel.parent.set(parent);
    drop(old);
    parent
}

/// The current OpenTelemetry `Context` (a new reference), if it is a dict.
fn current_context<'py>(py: Python<'py>, var: &Py<PyAny>) -> Option<Bound<'py, PyAny>> {
    let mut context: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: GIL held; `var` is a ContextVar; on success `context` is a new reference or NULL.
    if unsafe { ffi::PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &mut context) } < 0 {
        let _ = PyErr::take(py);
        return None;
    }
    if context.is_null() {
        return None;
    }
    // SAFETY: the new reference from PyContextVar_Get.
    let context = unsafe { Bound::from_owned_ptr(py, context) };
    // SAFETY: GIL held.
    (unsafe { ffi::PyDict_Check(context.as_ptr()) } != 0).then_some(context)
}

/// The span stored in an OpenTelemetry `Context` (a dict), through the C API.
fn context_span<'py>(
    py: Python<'py>,
    context: &Bound<'py, PyAny>,
    key: &Py<PyAny>,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: GIL held; `context` is a dict (checked by `current_context`).
    unsafe {
        let span = ffi::PyDict_GetItemWithError(context.as_ptr(), key.as_ptr());
        if span.is_null() {
            if !ffi::PyErr_Occurred().is_null() {
                let _ = PyErr::take(py);
            }
            return None;
        }
        Some(Bound::from_borrowed_ptr(py, span))
    }
}

fn span_context(span: &Bound<'_, PyAny>) -> Option<ParentSpan> {
    let sc = span.call_method0("get_span_context").ok()?;
    if !sc.getattr("is_valid").ok()?.is_truthy().ok()? {
        return None;
    }
    let trace_id: u128 = sc.getattr("trace_id").ok()?.extract().ok()?;
    let span_id: u64 = sc.getattr("span_id").ok()?.extract().ok()?;
    let flags: u8 = sc.getattr("trace_flags").ok()?.extract().ok()?;
    let remote: bool = sc.getattr("is_remote").ok()?.extract().ok()?;
    Some(ParentSpan {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
        remote,
    })
}

/// `CALLSPAN_OTEL_CONTEXT`: makes a callspan span the current span of the OpenTelemetry API
/// while a traced call runs (through `callspan._otel_bridge`), so spans that OpenTelemetry code
/// starts inside it nest under it. Returns the token for [`detach`]; None if OpenTelemetry is
/// not importable (warned once).
pub(crate) fn attach(py: Python<'_>, trace_id: u128, span_id: u64) -> Option<Py<PyAny>> {
    static BRIDGE: PyOnceLock<Option<(Py<PyAny>, Py<PyAny>)>> = PyOnceLock::new();
    let bridge = BRIDGE.get_or_init(py, || {
        let load = || -> PyResult<(Py<PyAny>, Py<PyAny>)> {
            let m = py.import("callspan._otel_bridge")?;
            Ok((m.getattr("attach")?.unbind(), m.getattr("detach")?.unbind()))
        };
        match load() {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!(
                    "CALLSPAN_OTEL_CONTEXT is set but OpenTelemetry cannot be used ({e}); ignored"
                );
                None
            }
        }
    });
    let (attach, _) = bridge.as_ref()?;
    DETACH.get_or_init(py, || bridge.as_ref().map(|(_, d)| d.clone_ref(py)));
    let pending = PyErr::take(py);
    let token = attach
        .bind(py)
        .call1((trace_id, span_id))
        .ok()
        .map(Bound::unbind);
    if let Some(e) = pending {
        e.restore(py);
    }
    token
}

static DETACH: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();

/// Undoes [`attach`], keeping an exception the traced call raised.
pub(crate) fn detach(py: Python<'_>, token: Py<PyAny>) {
    let Some(Some(detach)) = DETACH.get(py) else {
        return;
    };
    let pending = PyErr::take(py);
    let _ = detach.bind(py).call1((token,));
    if let Some(e) = pending {
        e.restore(py);
    }
}
