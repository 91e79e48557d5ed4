//! The shape of callspan's exporter threads: a named OS thread that owns a current-thread tokio
//! runtime for its whole life.
//!
//! `callspan-export` (spans) and `callspan-metrics` (caller-edge counts) both need an async
//! runtime for the OTLP client, and both must own it on their own thread: nothing of it may be
//! shared with the application, nor survive into a forked child (see `pipeline`'s fork
//! handling). [`spawn`] is the one place that builds such a thread.

use std::thread::JoinHandle;
use tokio::runtime::Runtime;

/// Starts the thread `name`, builds its runtime there and hands it to `body`. When the runtime
/// cannot be built, `body` does not run: `no_runtime` gets the reason instead, on the thread.
/// The error is the reason the thread itself could not start.
pub(crate) fn spawn(
    name: &'static str,
    no_runtime: impl FnOnce(String) + Send + 'static,
    body: impl FnOnce(Runtime) + Send + 'static,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
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
