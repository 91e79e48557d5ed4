//! Interned strings for everything a span names: traced functions, calling code, classes, threads.
//!
//! The hot path sees the same code objects and classes over and over. Like a `tracing` callsite,
//! each is registered once — its strings copied into Rust while the GIL is held — and referred to
//! by a small integer id from then on. The exporter thread resolves ids back to strings without
//! ever touching a Python object.
//!
//! What an id names is kept for the life of the process (strings, never Python objects), so a
//! span, edge or exception stack that carries an id can always be resolved, however late, and
//! nothing it resolves can have been freed. The tables are bounded by the number of distinct
//! *names*, not objects: an entry is shared by every object that names the same thing (a
//! function decorated a million times in a loop, a class created again and again under one
//! name). The keys — the addresses of live code objects and classes — are forgotten when the
//! object dies ([`Registry::forget`], called by the binding's weak references), so an address
//! reused by another object is registered afresh and objects are not kept alive.

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

/// A [`FunctionInfo`] as a hash key: the same description is one entry.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FunctionKey {
    span_name: Interned,
    function_name: Interned,
    file: Option<Interned>,
    line: u32,
    attributes: Vec<(Interned, AttributeKey)>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum AttributeKey {
    Str(Interned),
    Int(i64),
    /// The bits: two attributes are the same when they encode the same.
    Float(u64),
    Bool(bool),
}

impl From<&FunctionInfo> for FunctionKey {
    fn from(f: &FunctionInfo) -> Self {
        let attributes = f
            .attributes
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    AttributeValue::Str(s) => AttributeKey::Str(s),
                    AttributeValue::Int(i) => AttributeKey::Int(*i),
                    AttributeValue::Float(x) => AttributeKey::Float(x.to_bits()),
                    AttributeValue::Bool(b) => AttributeKey::Bool(*b),
                };
                (*k, v)
            })
            .collect();
        FunctionKey {
            span_name: f.span_name,
            function_name: f.function_name,
            file: f.file,
            line: f.line,
            attributes,
        }
    }
}

#[derive(Debug, Default)]
struct Tables {
    functions: Vec<FunctionInfo>,
    codes: Vec<CodeInfo>,
    classes: Vec<Interned>,
    threads: Vec<ThreadInfo>,
    /// Live code objects (callers): address → id.
    code_by_key: HashMap<usize, CodeId>,
    /// Profiled (profile-hook) callees: live code object address → function id.
    function_by_code: HashMap<usize, FunctionId>,
    /// Live classes: address → id.
    class_by_key: HashMap<usize, ClassId>,
    /// The entries by what they name: one entry per distinct name.
    function_by_info: HashMap<FunctionKey, FunctionId>,
    code_by_info: HashMap<(Interned, Interned), CodeId>,
    class_by_name: HashMap<Interned, ClassId>,
}

impl Tables {
    fn function(&mut self, info: FunctionInfo) -> FunctionId {
        let key = FunctionKey::from(&info);
        if let Some(id) = self.function_by_info.get(&key) {
            return *id;
        }
        self.functions.push(info);
        let id = next_id(self.functions.len() - 1);
        self.function_by_info.insert(key, id);
        id
    }
}

/// The process-wide intern tables. Ids are 1-based indices; 0 always means "none".
#[derive(Debug, Default)]
pub struct Registry {
    tables: RwLock<Tables>,
}

/// The number of entries of each table ([`Registry::sizes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrySizes {
    /// Distinct traced or profiled functions.
    pub functions: usize,
    /// Distinct calling code (name and file).
    pub codes: usize,
    /// Distinct class names.
    pub classes: usize,
    /// Addresses of live code objects and classes.
    pub live_keys: usize,
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

    /// Registers a traced function: decorations that describe it the same (names, file, line,
    /// attributes) share one id.
    pub fn add_function(&self, info: FunctionInfo) -> FunctionId {
        self.tables.write().function(info)
    }

    /// The function id the profile hook gave the callee code object at `key`, if any.
    #[inline]
    pub fn function_for_code(&self, key: usize) -> Option<FunctionId> {
        self.tables.read().function_by_code.get(&key).copied()
    }

    /// Registers the callee code object at `key` (the address of a live code object, until
    /// [`Registry::forget`]) as a profiled function; returns the existing id if it was
    /// registered before.
    pub fn add_code_function(&self, key: usize, info: FunctionInfo) -> FunctionId {
        let mut t = self.tables.write();
        if let Some(id) = t.function_by_code.get(&key) {
            return *id;
        }
        let id = t.function(info);
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

    /// Registers the code object identified by `key` (the address of a live code object, until
    /// [`Registry::forget`]); code objects with the same name and file share one id.
    pub fn add_code(&self, key: usize, info: CodeInfo) -> CodeId {
        let mut t = self.tables.write();
        if let Some(id) = t.code_by_key.get(&key) {
            return *id;
        }
        let named = (info.function_name, info.file);
        let id = match t.code_by_info.get(&named) {
            Some(id) => *id,
            None => {
                t.codes.push(info);
                let id = next_id(t.codes.len() - 1);
                t.code_by_info.insert(named, id);
                id
            }
        };
        t.code_by_key.insert(key, id);
        id
    }

    /// The id of the class identified by `key`, if it was registered before.
    #[inline]
    pub fn class_id(&self, key: usize) -> Option<ClassId> {
        self.tables.read().class_by_key.get(&key).copied()
    }

    /// Registers the class identified by `key` (the address of a live class, until
    /// [`Registry::forget`]); classes with the same name share one id.
    pub fn add_class(&self, key: usize, name: Interned) -> ClassId {
        let mut t = self.tables.write();
        if let Some(id) = t.class_by_key.get(&key) {
            return *id;
        }
        let id = match t.class_by_name.get(name) {
            Some(id) => *id,
            None => {
                t.classes.push(name);
                let id = next_id(t.classes.len() - 1);
                t.class_by_name.insert(name, id);
                id
            }
        };
        t.class_by_key.insert(key, id);
        id
    }

    /// Forgets the address `key`: the object registered under it is being freed, so the
    /// address may come to mean another object. Its ids, and what they name, stay.
    pub fn forget(&self, key: usize) {
        let mut t = self.tables.write();
        t.code_by_key.remove(&key);
        t.function_by_code.remove(&key);
        t.class_by_key.remove(&key);
    }

    /// How many entries the tables hold: functions, codes, classes, live keys (for tests of
    /// the bound).
    pub fn sizes(&self) -> RegistrySizes {
        let t = self.tables.read();
        RegistrySizes {
            functions: t.functions.len(),
            codes: t.codes.len(),
            classes: t.classes.len(),
            live_keys: t.code_by_key.len() + t.function_by_code.len() + t.class_by_key.len(),
        }
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
    fn forgotten_addresses_are_registered_afresh_and_ids_keep_their_names() {
        let r = Registry::new();
        let a = r.add_class(0x100, intern("m.A"));
        let f = r.add_code(0x200, code("m.f"));
        r.forget(0x100);
        r.forget(0x200);
        assert_eq!(r.class_id(0x100), None);
        assert_eq!(r.code_id(0x200), None);
        // Another class at the same address gets its own name; the old id still resolves.
        let b = r.add_class(0x100, intern("m.B"));
        assert_ne!(a, b);
        assert_eq!(*r.view().class(a).unwrap(), "m.A");
        assert_eq!(*r.view().class(b).unwrap(), "m.B");
        // A class created again under the same name shares the entry.
        assert_eq!(r.add_class(0x300, intern("m.A")), a);
        assert_eq!(r.add_code(0x400, code("m.f")), f);
        let sizes = r.sizes();
        assert_eq!((sizes.classes, sizes.codes, sizes.live_keys), (2, 1, 3));
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
        let g = FunctionInfo {
            function_name: intern("m.g"),
            ..f.clone()
        };
        assert_eq!(r.add_function(g), 2);
        // The same description again (a closure decorated in a loop): the same id.
        assert_eq!(r.add_function(f), 1);
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
