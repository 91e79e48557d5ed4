//! `thread.id` and `thread.name`, looked up once per OS thread and cached as a registry key.
//!
//! Asking `threading` for the name runs (threading's own) Python code, so it happens on a
//! thread's first traced call only; a name changed later is not picked up. After `fork()` the
//! child's only thread keeps its ident, but its name may have changed meaning (e.g. a worker
//! process's main thread), so the cache is keyed by fork epoch too.

use callspan_core::fork;
use callspan_core::per_thread::PerThread;
use callspan_core::record::ThreadKey;
use callspan_core::registry::{intern, Registry, ThreadInfo};
use pyo3::ffi;
use pyo3::prelude::*;

/// The registry key of the calling thread (`local` is its state: the key is cached in
/// `local.thread_key` as (fork epoch + 1, key)).
#[inline]
pub(crate) fn current_key(py: Python<'_>, registry: &Registry, local: &PerThread) -> ThreadKey {
    let epoch = fork::epoch() + 1;
    let (cached_epoch, key) = local.thread_key.get();
    if cached_epoch == epoch {
        return key;
    }
    let key = register(py, registry);
    local.thread_key.set((epoch, key));
    key
}

#[cold]
fn register(py: Python<'_>, registry: &Registry) -> ThreadKey {
    // SAFETY: `PyThread_get_thread_ident` only reads the calling OS thread's id; no
    // precondition.
    let ident = unsafe { ffi::PyThread_get_thread_ident() };
    #[allow(clippy::useless_conversion)] // c_ulong is u64 on 64-bit Linux, u32 elsewhere.
    let id = u64::from(ident);
    let name = thread_name(py).unwrap_or_else(|| format!("Thread-{id}"));
    registry.add_thread(ThreadInfo {
        id,
        name: intern(&name),
    })
}

fn thread_name(py: Python<'_>) -> Option<String> {
    // Keep a pending exception (if any) out of the way of this lookup.
    let pending = PyErr::take(py);
    let name = py
        .import("threading")
        .and_then(|t| t.call_method0("current_thread"))
        .and_then(|t| t.getattr("name"))
        .and_then(|n| n.extract::<String>())
        .ok();
    if let Some(err) = pending {
        err.restore(py);
    }
    name
}
