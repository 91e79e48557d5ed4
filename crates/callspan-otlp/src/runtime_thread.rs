//! The shape of callspan's exporter threads: a named OS thread that owns a current-thread tokio
//! runtime for its whole life.
//!
//! `callspan-export` (spans) and `callspan-metrics` (caller-edge counts) both need an async
//! runtime for the OTLP client, and both must own it on their own thread: nothing of it may be
//! shared with the application, nor survive into a forked child (see `pipeline`'s fork
//! handling). [`spawn`] is the one place that builds such a thread.
//!
//! **Priority.** The threads run `CALLSPAN_EXPORTER_NICE` nice levels below the thread that
//! started them (Linux keeps a nice value per thread): exporting is background work, and when
//! every CPU is busy the application's threads should run first, as callspan's contract says
//! (the application is never slowed down by the exporter). An exporter kept off the CPU that way
//! lets the queue fill, and the spans that find it full are dropped and counted, as always.

use std::thread::JoinHandle;
use tokio::runtime::Runtime;

/// Starts the thread `name`, `nice` levels below the calling thread's priority, builds its
/// runtime there and hands it to `body`. When the runtime cannot be built, `body` does not run:
/// `no_runtime` gets the reason instead, on the thread. The error is the reason the thread
/// itself could not start.
pub(crate) fn spawn(
    name: &'static str,
    nice: i32,
    no_runtime: impl FnOnce(String) + Send + 'static,
    body: impl FnOnce(Runtime) + Send + 'static,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority(name, nice);
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => body(runtime),
                Err(e) => no_runtime(format!("cannot start the {name} runtime: {e}")),
            }
        })
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

/// Makes the calling thread `by` nice levels lower in priority than it is (at most 19, the
/// lowest). A thread may always lower its own priority; a failure is only warned about.
#[cfg(target_os = "linux")]
fn lower_priority(name: &str, by: i32) {
    if by <= 0 {
        return;
    }
    // SAFETY: `gettid` has no preconditions; `getpriority`/`setpriority` with `PRIO_PROCESS`
    // and a thread id read or set that one thread's nice value (Linux keeps one per thread).
    // `getpriority` may legitimately return -1, so errno tells its failure apart.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        if current == -1 && *libc::__errno_location() != 0 {
            tracing::warn!("{name}: cannot read the thread's priority; it stays as it is");
            return;
        }
        if libc::setpriority(libc::PRIO_PROCESS, tid, (current + by).min(19)) != 0 {
            tracing::warn!(
                "{name}: cannot lower the thread's priority (CALLSPAN_EXPORTER_NICE): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Elsewhere threads share their process's priority: `CALLSPAN_EXPORTER_NICE` does nothing.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_name: &str, _by: i32) {}
