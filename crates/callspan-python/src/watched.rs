//! Code objects and classes the registry knows by address, watched through weak references.
//!
//! The registry and the per-thread caches of `caller` key code objects and classes by address.
//! Keeping every such object alive would keep the address its own, but also every dynamically
//! created class and code object for the life of the process (issue 12, item 7). Instead each is
//! watched by a weak reference whose callback runs while the object is being freed — before its
//! memory can be reused — and forgets the address everywhere it is a key: the registry
//! ([`Registry::forget`](callspan_core::registry::Registry::forget)), the profile hook's set of
//! decorated code, and, by advancing [`epoch`], every thread's caches (each compares the epoch
//! it was filled in before trusting an entry). The registry ids stay valid: what a span, an edge
//! or an exception stack carries still names the code or class after it is gone.
//!
//! An object that cannot be weakly referenced is kept alive instead (the former behaviour).

use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Advanced each time a watched object dies.
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// The weak reference of each watched object, by the object's address.
static WATCHED: Mutex<Option<HashMap<usize, Py<PyAny>>>> = Mutex::new(None);

/// The method the weak references call back (created once, never freed).
static CALLBACK_DEF: AtomicUsize = AtomicUsize::new(0);

/// Changes whenever an address may have come to mean another object.
#[inline]
pub(crate) fn epoch() -> u32 {
    EPOCH.load(Ordering::Relaxed)
}

/// How many objects are watched (live code objects and classes the registry knows).
pub(crate) fn count() -> usize {
    WATCHED.lock().as_ref().map_or(0, HashMap::len)
}

/// Watches `obj`, whose address the registry has just taken as a key.
pub(crate) fn watch(obj: &Bound<'_, PyAny>) {
    let py = obj.py();
    let key = obj.as_ptr() as usize;
    if WATCHED
        .lock()
        .as_ref()
        .is_some_and(|m| m.contains_key(&key))
    {
        return;
    }
    match weak_reference(py, obj, key) {
        // Created before taking the lock: allocating may collect garbage, whose callbacks
        // take it too.
        Ok(weak) => {
            let displaced = WATCHED
                .lock()
                .get_or_insert_with(HashMap::new)
                .insert(key, weak);
            drop(displaced);
        }
        Err(_) => {
            // Not weakly referenceable: keep it alive, so that its address stays its own.
            std::mem::forget(obj.clone().unbind());
        }
    }
}

/// `weakref.ref(obj, forget_key)` with the callback bound to `key`.
fn weak_reference(py: Python<'_>, obj: &Bound<'_, PyAny>, key: usize) -> PyResult<Py<PyAny>> {
    let def = match CALLBACK_DEF.load(Ordering::Acquire) {
        0 => {
            let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
                ml_name: c"callspan_forget_address".as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunction: forget_key,
                },
                ml_flags: ffi::METH_O,
                ml_doc: c"Forgets the address of a code object or class being freed.".as_ptr(),
            }));
            let def = def as *mut ffi::PyMethodDef as usize;
            // The GIL serializes this; a lost race would only leak one more definition.
            CALLBACK_DEF.store(def, Ordering::Release);
            def
        }
        def => def,
    };
    // SAFETY: GIL held; `def` lives forever; each call returns a new reference or NULL.
    unsafe {
        let bound_key = ffi::PyLong_FromSize_t(key);
        if bound_key.is_null() {
            return Err(PyErr::fetch(py));
        }
        let callback = ffi::PyCFunction_NewEx(
            def as *mut ffi::PyMethodDef,
            bound_key,
            std::ptr::null_mut(),
        );
        ffi::Py_DecRef(bound_key);
        if callback.is_null() {
            return Err(PyErr::fetch(py));
        }
        let weak = ffi::PyWeakref_NewRef(obj.as_ptr(), callback);
        ffi::Py_DecRef(callback);
        if weak.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, weak).unbind())
    }
}

/// The weak reference's callback: the object at `key` is being freed.
unsafe extern "C" fn forget_key(
    key: *mut ffi::PyObject,
    _weak: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls back with the GIL held; `key` is the int bound in `weak_reference`.
    unsafe {
        let key = ffi::PyLong_AsSize_t(key);
        forget(key);
        ffi::Py_IncRef(ffi::Py_None());
        ffi::Py_None()
    }
}

fn forget(key: usize) {
    callspan_core::registry::global().forget(key);
    crate::hook::forget_decorated(key);
    EPOCH.fetch_add(1, Ordering::Relaxed);
    // Dropped after the lock is released: releasing the weak reference is Python work.
    let weak = WATCHED.lock().as_mut().and_then(|m| m.remove(&key));
    drop(weak);
}
