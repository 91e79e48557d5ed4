//! Version quirk: code objects have no `co_qualname` before 3.11, so on 3.9/3.10 the caller's
//! qualified name is derived from the objects reachable from the frame's globals.
//!
//! A function whose `__code__` is the code and whose `__name__` is still the code's `co_name` (so
//! a `functools.wraps` wrapper, renamed after what it wraps, is not mistaken for it) gives its
//! `__qualname__`. Functions are found in the globals, in the `__dict__` of classes there (nested
//! classes up to three levels; `staticmethod`/`classmethod` wrappers and `property` accessors
//! unwrapped), behind `__wrapped__` and in decorator closures; code objects nested in a found
//! function's `co_consts` (inner functions, lambdas, comprehensions, classes and their methods) get
//! the name the compiler would give them (`outer.<locals>.inner`, `outer.<locals>.C.m`,
//! `f.<locals>.<listcomp>`). Falls back to `co_name`. Slow (walks the module, bounded by a visit
//! budget): the binding calls it once per code object and caches the result. Never runs user
//! code: dict/tuple/struct access only, type checks without `__instancecheck__`; everything walked
//! is held by a strong reference, since an allocation may run the GC and a finalizer may mutate
//! what is being walked.
//!
//! Known gaps, where the fallback or a base name is used: code only reachable through objects of
//! other types (e.g. callspan's own decorator object: the binding registers the wrapped function's
//! `__qualname__` for its `__code__` at decoration time instead), a `__qualname__` assigned by
//! hand, and a nested `def` whose name the enclosing function declares `global` (the compiler then
//! drops the `<locals>` prefix).

use std::ptr;

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

use super::layout::{Code, MethodWrapper, Property};
use super::quirks::cell_contents;
use super::{dict_get_item, str_lossy};

/// The qualified name of `code`, searched for from `globals` (see the module docs).
///
/// # Safety
/// `code` is a live code object and `globals` null or a live dict.
pub(super) unsafe fn code_qualname(
    py: Python<'_>,
    code: *mut Code,
    globals: *mut PyObject,
) -> String {
    let mut search = QualnameSearch {
        py,
        target: code,
        budget: 50_000,
    };
    // SAFETY: forwarded contract.
    if let Some(q) = unsafe { search.in_globals(globals) } {
        return q;
    }
    // SAFETY: `code` is live; `co_name` is a `str` it owns.
    unsafe { str_lossy(py, (*code).co_name) }
}

/// One search: the code object looked for and what is left of the visit budget.
struct QualnameSearch<'py> {
    py: Python<'py>,
    target: *mut Code,
    /// Objects left to visit; bounds the one-time cost on huge modules.
    budget: usize,
}

impl<'py> QualnameSearch<'py> {
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// Values of a dict, as strong references (so that nothing we walk can be freed under us
    /// should an allocation run the GC and a finalizer mutate the dict).
    ///
    /// # Safety
    /// `dict` is null or a live object.
    unsafe fn dict_values(&self, dict: *mut PyObject) -> Vec<Bound<'py, PyAny>> {
        let mut out = Vec::new();
        // SAFETY: `dict` is checked to be a dict; `PyDict_Next` hands out borrowed values of the
        // live dict, each increfed at once (nothing runs Python code between the two).
        unsafe {
            if dict.is_null() || ffi::PyDict_Check(dict) == 0 {
                return out;
            }
            let mut pos: ffi::Py_ssize_t = 0;
            let mut key = ptr::null_mut();
            let mut value = ptr::null_mut();
            while ffi::PyDict_Next(dict, &mut pos, &mut key, &mut value) != 0 {
                out.push(Bound::from_borrowed_ptr(self.py, value));
            }
        }
        out
    }

    /// # Safety
    /// `globals` is null or a live object.
    unsafe fn in_globals(&mut self, globals: *mut PyObject) -> Option<String> {
        // SAFETY: forwarded contract.
        let values = unsafe { self.dict_values(globals) };
        let functions: Vec<_> = values.iter().filter(|v| is_function(v.as_ptr())).collect();
        // Plain functions first (the common case), then classes, then nested code. Every value
        // is held by `values`.
        for v in &functions {
            // SAFETY: a live function object.
            if let Some(q) = unsafe { self.function_direct(v.as_ptr()) } {
                return Some(q);
            }
        }
        for v in &values {
            // SAFETY: a live object.
            if let Some(q) = unsafe { self.in_class(v.as_ptr(), 0) } {
                return Some(q);
            }
        }
        for v in &functions {
            // SAFETY: a live function object.
            if let Some(q) = unsafe { self.function_nested(v.as_ptr(), 0) } {
                return Some(q);
            }
        }
        None
    }

    /// The function's own `__qualname__` if its code is the target and it was not renamed.
    ///
    /// # Safety
    /// `func` is a live function object.
    unsafe fn function_direct(&mut self, func: *mut PyObject) -> Option<String> {
        if !self.spend() {
            return None;
        }
        let f = func.cast::<ffi::PyFunctionObject>();
        // SAFETY: a live function object; `func_code` and `func_qualname` are objects it owns.
        unsafe {
            if (*f).func_code.cast::<Code>() != self.target || !self.unrenamed(f) {
                return None;
            }
            Some(str_lossy(self.py, (*f).func_qualname))
        }
    }

    /// `__name__` still equals `co_name`, so `__qualname__` was not copied from elsewhere.
    ///
    /// # Safety
    /// `f` is a live function object.
    unsafe fn unrenamed(&self, f: *mut ffi::PyFunctionObject) -> bool {
        // SAFETY: a live function object owns its name and code; `co_name` is read only once the
        // code is known to be a code object. `PyUnicode_Compare` of two `str`s runs no Python.
        unsafe {
            let code = (*f).func_code;
            if !is_code(code) {
                return false;
            }
            let name = (*f).func_name;
            let co_name = (*code.cast::<Code>()).co_name;
            name == co_name
                || (ffi::PyUnicode_Check(name) != 0
                    && ffi::PyUnicode_Check(co_name) != 0
                    && ffi::PyUnicode_Compare(name, co_name) == 0)
        }
    }

    /// Code nested in a function (by its compiler-given qualname), and what the function wraps.
    ///
    /// # Safety
    /// `func` is a live function object.
    unsafe fn function_nested(&mut self, func: *mut PyObject, depth: u32) -> Option<String> {
        if depth > 2 || !self.spend() {
            return None;
        }
        let f = func.cast::<ffi::PyFunctionObject>();
        // SAFETY: `func` is live and held by `_hold` while we allocate; its code, qualname, dict
        // and closure are objects it owns (the dict and closure may be null, checked); the cells
        // of a closure tuple are live, and what they hold is increfed before anything else runs.
        unsafe {
            // Keep the function alive while we allocate.
            let _hold = Bound::from_borrowed_ptr(self.py, func);
            let code = (*f).func_code.cast::<Code>();
            if self.unrenamed(f) {
                if depth > 0 && code == self.target {
                    return Some(str_lossy(self.py, (*f).func_qualname));
                }
                let qual = str_lossy(self.py, (*f).func_qualname);
                if let Some(q) = self.in_code_consts(code, &qual) {
                    return Some(q);
                }
            }
            // Decorator patterns: `functools.wraps` stores the original in `__wrapped__`;
            // plain closures keep it in a cell.
            let mut inner = Vec::new();
            let wrapped_key = pyo3::intern!(self.py, "__wrapped__");
            if let Some(w) = dict_get_item((*f).func_dict, wrapped_key) {
                inner.push(Bound::from_borrowed_ptr(self.py, w));
            }
            let closure = (*f).func_closure;
            if !closure.is_null() && ffi::PyTuple_Check(closure) != 0 {
                for i in 0..ffi::PyTuple_GET_SIZE(closure) {
                    let c = cell_contents(ffi::PyTuple_GET_ITEM(closure, i));
                    if !c.is_null() {
                        inner.push(Bound::from_borrowed_ptr(self.py, c));
                    }
                }
            }
            for w in inner {
                let w = unwrap_method(self.py, w.as_ptr());
                if is_function(w) {
                    if let Some(q) = self.function_nested(w, depth + 1) {
                        return Some(q);
                    }
                }
            }
        }
        None
    }

    /// Walks `co_consts` of `parent` (whose qualname is `qual`) applying the compiler's rule
    /// (`compiler_set_qualname`): a function, lambda or class nested in a function or lambda is
    /// `<parent>.<locals>.<name>`; in a class body or a comprehension, `<parent>.<name>`.
    ///
    /// # Safety
    /// `parent` is a live code object.
    unsafe fn in_code_consts(&mut self, parent: *mut Code, qual: &str) -> Option<String> {
        // SAFETY: `parent` is live and owns `co_consts` (checked to be a tuple, then held by
        // `_hold`), whose items are live; an item is read as a code object only after the check.
        unsafe {
            let consts = (*parent).co_consts;
            if consts.is_null() || ffi::PyTuple_Check(consts) == 0 {
                return None;
            }
            let parent_name = str_lossy(self.py, (*parent).co_name);
            let is_function_scope = (*parent).co_flags & ffi::CO_NEWLOCALS != 0
                && !matches!(
                    parent_name.as_str(),
                    "<listcomp>" | "<setcomp>" | "<dictcomp>" | "<genexpr>"
                );
            let _hold = Bound::from_borrowed_ptr(self.py, consts);
            for i in 0..ffi::PyTuple_GET_SIZE(consts) {
                let c = ffi::PyTuple_GET_ITEM(consts, i);
                if !is_code(c) || !self.spend() {
                    continue;
                }
                let child = c.cast::<Code>();
                let name = str_lossy(self.py, (*child).co_name);
                let child_qual = if is_function_scope {
                    format!("{qual}.<locals>.{name}")
                } else {
                    format!("{qual}.{name}")
                };
                if child == self.target {
                    return Some(child_qual);
                }
                if let Some(q) = self.in_code_consts(child, &child_qual) {
                    return Some(q);
                }
                if self.budget == 0 {
                    return None;
                }
            }
        }
        None
    }

    /// Functions in a class `__dict__` (unwrapping staticmethod/classmethod/property), nested
    /// classes up to depth 3.
    ///
    /// # Safety
    /// `obj` is a live object.
    unsafe fn in_class(&mut self, obj: *mut PyObject, depth: u32) -> Option<String> {
        // SAFETY: `obj` is live, read as a type only after `PyType_Check`, and held by `_hold`;
        // a heap type's `tp_dict` is a dict it owns, whose values `dict_values` holds; a value
        // is read as a `property` only after the type check, and its accessors are null or
        // objects it owns.
        unsafe {
            if depth > 2 || ffi::PyType_Check(obj) == 0 || !self.spend() {
                return None;
            }
            let ty = obj.cast::<ffi::PyTypeObject>();
            // Only classes defined in Python: built-in types hold no Python functions.
            if ffi::PyType_HasFeature(ty, ffi::Py_TPFLAGS_HEAPTYPE) == 0 {
                return None;
            }
            let _hold = Bound::from_borrowed_ptr(self.py, obj);
            let values = self.dict_values((*ty).tp_dict);
            let mut funcs = Vec::new();
            for v in &values {
                let p = v.as_ptr();
                if ffi::PyType_Check(p) != 0 {
                    if let Some(q) = self.in_class(p, depth + 1) {
                        return Some(q);
                    }
                    continue;
                }
                if ffi::PyObject_TypeCheck(p, ptr::addr_of_mut!(ffi::PyProperty_Type)) != 0 {
                    let prop = p.cast::<Property>();
                    funcs.extend([(*prop).prop_get, (*prop).prop_set, (*prop).prop_del]);
                    continue;
                }
                funcs.push(unwrap_method(self.py, p));
            }
            // Every entry of `funcs` is held by `values` (directly, or by its wrapper there).
            funcs.retain(|&f| is_function(f));
            for &f in &funcs {
                if let Some(q) = self.function_direct(f) {
                    return Some(q);
                }
            }
            for &f in &funcs {
                if let Some(q) = self.function_nested(f, 0) {
                    return Some(q);
                }
            }
        }
        None
    }
}

/// Whether `p` is non-null and a code object.
fn is_code(p: *mut PyObject) -> bool {
    // SAFETY: callers pass null or a live object; the check reads its type only.
    !p.is_null() && unsafe { ffi::PyCode_Check(p) } != 0
}

/// Whether `p` is non-null and a (Python) function object.
fn is_function(p: *mut PyObject) -> bool {
    // SAFETY: callers pass null or a live object; the check reads its type only.
    !p.is_null() && unsafe { ffi::PyFunction_Check(p) } != 0
}

/// The callable inside a `staticmethod`/`classmethod` (or subclass), else `p` itself.
///
/// # Safety
/// `p` is a live object.
unsafe fn unwrap_method(py: Python<'_>, p: *mut PyObject) -> *mut PyObject {
    let (sm, cm) = method_wrapper_types(py);
    let is_instance = |ty: *mut ffi::PyTypeObject| {
        // SAFETY: `p` is live and `ty` a live type object.
        !ty.is_null() && unsafe { ffi::PyObject_TypeCheck(p, ty) } != 0
    };
    // SAFETY: `p` is live; it is read as a method wrapper only once its type is one.
    unsafe {
        if is_instance(sm) || is_instance(cm) {
            (*p.cast::<MethodWrapper>()).callable
        } else {
            p
        }
    }
}

/// `staticmethod` and `classmethod` type objects. Not exported as data by PyO3's FFI, and not
/// looked up in `builtins` (which user code may patch): taken from instances made by the C API.
fn method_wrapper_types(py: Python<'_>) -> (*mut ffi::PyTypeObject, *mut ffi::PyTypeObject) {
    // `PyOnceLock`, not `OnceLock`: initialisation allocates (may run the GC and let another
    // thread take the GIL), and a thread blocked in `OnceLock` while holding the GIL deadlocks.
    static TYPES: pyo3::sync::PyOnceLock<(usize, usize)> = pyo3::sync::PyOnceLock::new();
    // SAFETY: GIL held (`py`); wrapping `None` runs no Python code, and the static types outlive
    // the probe objects, released right away. A failed allocation leaves a null type (and no
    // pending error), which `unwrap_method` treats as "no such wrapper".
    let (sm, cm) = *TYPES.get_or_init(py, || unsafe {
        let type_of = |wrapper: *mut PyObject| {
            if wrapper.is_null() {
                ffi::PyErr_Clear();
                return 0;
            }
            let ty = ffi::Py_TYPE(wrapper) as usize;
            ffi::Py_DECREF(wrapper);
            ty
        };
        let probe = ffi::Py_None();
        (
            type_of(ffi::PyStaticMethod_New(probe)),
            type_of(ffi::PyClassMethod_New(probe)),
        )
    });
    (sm as *mut _, cm as *mut _)
}
