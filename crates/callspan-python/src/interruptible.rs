//! Waits that Ctrl-C interrupts.
//!
//! A wait on the exporter (`flush()`) runs with the GIL released, so Python's SIGINT handler
//! only sets a flag; nothing looked at it until the wait ended, so `flush(5)` ignored Ctrl-C for
//! up to five seconds. [`wait`] waits in short slices and, between them, with the GIL, runs
//! the pending signal handlers (`PyErr_CheckSignals`): the `KeyboardInterrupt` they raise ends
//! the wait and is returned to the caller. The exporter goes on with its work in the background.

use pyo3::prelude::*;
use std::time::{Duration, Instant};

/// How often a wait looks for signals: short enough that Ctrl-C feels immediate.
const SLICE: Duration = Duration::from_millis(50);

/// Calls `poll(slice)` with the GIL released until it answers or `timeout` has passed
/// (`Ok(None)`), checking for signals between slices (`Err` with what a handler raised).
pub(crate) fn wait<T>(
    py: Python<'_>,
    timeout: Duration,
    poll: impl Fn(Duration) -> Option<T> + Sync,
) -> PyResult<Option<T>>
where
    T: Send,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(answer) = py.detach(|| poll(left.min(SLICE))) {
            return Ok(Some(answer));
        }
        // SAFETY: GIL held (attached again after the slice).
        if unsafe { pyo3::ffi::PyErr_CheckSignals() } != 0 {
            return Err(PyErr::fetch(py));
        }
        if left.is_zero() {
            return Ok(None);
        }
    }
}
