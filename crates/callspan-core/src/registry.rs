//! Interned strings for everything a span names: traced functions, calling code, classes, threads.
//!
//! The hot path sees the same code objects and classes over and over. Like a `tracing` callsite,
//! each is registered once — its strings copied into Rust while the GIL is held — and referred to
//! by a small integer id from then on. The exporter thread resolves ids back to strings without
//! ever touching a Python object. Entries are never removed: the binding keeps the underlying
//! Python object alive, so a pointer used as a key can never be reused by another object.

use crate::record::{ClassId, CodeId, FunctionId, ThreadKey};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};

/// A string interned for the life of the process. Registry entries are never removed, so
/// their strings can be `'static`: the exporter then builds attributes without copying or
/// reference counting anything.
pub type Interned = &'static str;

/// Interns `s`: the same text is stored (leaked) once per process.
pub fn intern(s: &str) -> Interned {
    static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = STRINGS.lock();
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(existing) = set.get(s) {
        return existing;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The process's intern tables: the one registry every entry point and the exporter share.
/// Separate from the exporter's pipeline so that decorating functions (at import) reads no
/// configuration: `callspan.configure()` in `main()` still applies in full, queue size included.
pub fn global() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

/// A static attribute value given to `@callspan.trace(attributes=...)`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A string.
    Str(Interned),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// A traced function (the callee), as decorated.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionInfo {
    /// The span name: the callee's `__qualname__`, or the decorator's `name=`.
    pub span_name: Interned,
    /// `code.function.name`: module-qualified qualname.
    pub function_name: Interned,
    /// `code.file.path`, when the callee is Python code.
    pub file: Option<Interned>,
    /// `code.line.number`: the `def` line, 0 when unknown.
    pub line: u32,
    /// Static attributes from the decorator, added to every span of this function.
    pub attributes: Vec<(Interned, AttributeValue)>,
}

/// A calling code object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// `caller.function.name`: module-qualified qualname of the calling code.
    pub function_name: Interned,
    /// `caller.file.path`.
    pub file: Interned,
}

/// A thread that made traced calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// `thread.id`: `threading.get_ident()`.
    pub id: u64,
    /// `thread.name` when the thread first made a traced call.
    pub name: Interned,
}

#[derive(Debug, Default)]
struct Tables {
    functions: Vec<FunctionInfo>,
    codes: Vec<CodeInfo>,
    classes: Vec<Interned>,
    threads: Vec<ThreadInfo>,
    code_by_key: HashMap<usize, CodeId>,
    /// Profiled (profile-hook) callees: code object address → function id.
    function_by_code: HashMap<usize, FunctionId>,
    class_by_key: HashMap<usize, ClassId>,
}

/// The process-wide intern tables. Ids are 1-based indices; 0 always means "none".
#[derive(Debug, Default)]
pub struct Registry {
    tables: RwLock<Tables>,
}

/// A read-only view used by the exporter to resolve a whole batch under one lock.
#[derive(Debug)]
pub struct RegistryView<'a> {
    tables: parking_lot::RwLockReadGuard<'a, Tables>,
}

fn lookup<T>(items: &[T], id: u32) -> Option<&T> {
    (id as usize).checked_sub(1).and_then(|i| items.get(i))
}

impl RegistryView<'_> {
    /// The traced function with this id.
    pub fn function(&self, id: FunctionId) -> Option<&FunctionInfo> {
        lookup(&self.tables.functions, id)
    }
    /// The calling code with this id.
    pub fn code(&self, id: CodeId) -> Option<&CodeInfo> {
        lookup(&self.tables.codes, id)
    }
    /// The module-qualified class name with this id.
    pub fn class(&self, id: ClassId) -> Option<&Interned> {
        lookup(&self.tables.classes, id)
    }
    /// The thread with this key.
    pub fn thread(&self, key: ThreadKey) -> Option<&ThreadInfo> {
        lookup(&self.tables.threads, key)
    }
}

fn next_id(len: usize) -> u32 {
    // Four billion distinct code objects would exhaust memory long before the id space.
    u32::try_from(len + 1).unwrap_or(u32::MAX)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a traced function; each decoration gets its own id.
    pub fn add_function(&self, info: FunctionInfo) -> FunctionId {
        let mut t = self.tables.write();
        t.functions.push(info);
        next_id(t.functions.len() - 1)
    }

    /// The function id the profile hook gave the callee code object at `key`, if any.
    #[inline]
    pub fn function_for_code(&self, key: usize) -> Option<FunctionId> {
        self.tables.read().function_by_code.get(&key).copied()
    }

    /// Registers the callee code object at `key` (its address, kept alive by the caller) as a
    /// profiled function; returns the existing id if it was registered before.
    pub fn add_code_function(&self, key: usize, info: FunctionInfo) -> FunctionId {
        let mut t = self.tables.write();
        if let Some(id) = t.function_by_code.get(&key) {
            return *id;
        }
        t.functions.push(info);
        let id = next_id(t.functions.len() - 1);
        t.function_by_code.insert(key, id);
        id
    }

    /// Registers a thread.
    pub fn add_thread(&self, info: ThreadInfo) -> ThreadKey {
        let mut t = self.tables.write();
        t.threads.push(info);
        next_id(t.threads.len() - 1)
    }

    /// The id of the code object identified by `key`, if it was registered before.
    #[inline]
    pub fn code_id(&self, key: usize) -> Option<CodeId> {
        self.tables.read().code_by_key.get(&key).copied()
    }

    /// Registers the code object identified by `key` (its address, kept alive by the caller).
    pub fn add_code(&self, key: usize, info: CodeInfo) -> CodeId {
        let mut t = self.tables.write();
        if let Some(id) = t.code_by_key.get(&key) {
            return *id;
        }
        t.codes.push(info);
        let id = next_id(t.codes.len() - 1);
        t.code_by_key.insert(key, id);
        id
    }

    /// The id of the class identified by `key`, if it was registered before.
    #[inline]
    pub fn class_id(&self, key: usize) -> Option<ClassId> {
        self.tables.read().class_by_key.get(&key).copied()
    }

    /// Registers the class identified by `key` (its address, kept alive by the caller).
    pub fn add_class(&self, key: usize, name: Interned) -> ClassId {
        let mut t = self.tables.write();
        if let Some(id) = t.class_by_key.get(&key) {
            return *id;
        }
        t.classes.push(name);
        let id = next_id(t.classes.len() - 1);
        t.class_by_key.insert(key, id);
        id
    }

    /// A consistent view for resolving many ids at once.
    pub fn view(&self) -> RegistryView<'_> {
        RegistryView {
            tables: self.tables.read(),
        }
    }

    /// Holds the write lock across `fork()` (see [`crate::fork::around_fork`]).
    pub fn lock_for_fork(&self) {
        std::mem::forget(self.tables.write());
    }

    /// Releases the lock taken by [`Registry::lock_for_fork`].
    ///
    /// # Safety
    /// Must be paired with exactly one earlier `lock_for_fork` in this process image.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.tables.force_unlock_write() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(name: &str) -> CodeInfo {
        CodeInfo {
            function_name: intern(name),
            file: intern("/app/x.py"),
        }
    }

    #[test]
    fn interning_is_idempotent_per_key() {
        let r = Registry::new();
        assert_eq!(r.code_id(0x10), None);
        let a = r.add_code(0x10, code("m.a"));
        let b = r.add_code(0x20, code("m.b"));
        assert_ne!(a, b);
        assert_eq!(r.add_code(0x10, code("ignored")), a);
        assert_eq!(r.code_id(0x10), Some(a));
        let v = r.view();
        assert_eq!(v.code(a).unwrap().function_name, "m.a");
        assert_eq!(v.code(b).unwrap().function_name, "m.b");
    }

    #[test]
    fn code_functions_are_registered_once_per_code_object() {
        let r = Registry::new();
        let info = |name: &str| FunctionInfo {
            span_name: intern(name),
            function_name: intern(name),
            file: None,
            line: 1,
            attributes: Vec::new(),
        };
        assert_eq!(r.function_for_code(0x10), None);
        let a = r.add_code_function(0x10, info("m.a"));
        assert_eq!(r.add_code_function(0x10, info("ignored")), a);
        let b = r.add_code_function(0x20, info("m.b"));
        assert_ne!(a, b);
        assert_eq!(r.function_for_code(0x10), Some(a));
        assert_eq!(r.view().function(b).unwrap().function_name, "m.b");
    }

    #[test]
    fn zero_means_none() {
        let r = Registry::new();
        let c = r.add_class(1, intern("m.C"));
        assert_eq!(c, 1);
        let v = r.view();
        assert!(v.class(0).is_none());
        assert!(v.code(0).is_none());
        assert_eq!(*v.class(c).unwrap(), "m.C");
    }

    #[test]
    fn functions_and_threads_get_sequential_ids() {
        let r = Registry::new();
        let f = FunctionInfo {
            span_name: intern("f"),
            function_name: intern("m.f"),
            file: None,
            line: 0,
            attributes: vec![],
        };
        assert_eq!(r.add_function(f.clone()), 1);
        assert_eq!(r.add_function(f), 2);
        assert_eq!(
            r.add_thread(ThreadInfo {
                id: 7,
                name: intern("MainThread")
            }),
            1
        );
        assert_eq!(r.view().thread(1).unwrap().id, 7);
    }
}
