//! Fork awareness: a process-wide epoch that changes in every child after `fork()`.
//!
//! Threads do not survive `fork()`: the child has the parent's memory (its id generators, its
//! queue contents, its exporter's state) but only the forking thread. Code that caches
//! per-process state compares [`epoch`] with the epoch it was set up in and starts afresh when
//! they differ. Handlers registered with [`on_fork_child`] run in the child right after the fork,
//! before any Python code, while the child is still single-threaded.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Handlers run in the child, in registration order. Plain function pointers: a child must not
/// run closures that captured state tied to the parent's threads.
static CHILD_HANDLERS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
/// A lock to take before `fork()` and the function that releases it afterwards.
type AroundFork = (fn(), fn());
static PREPARE_HANDLERS: Mutex<Vec<AroundFork>> = Mutex::new(Vec::new());

/// The current fork epoch: 0 in the original process, incremented in each forked child.
#[inline]
pub fn epoch() -> u64 {
    // Relaxed: the store happens in the child before any other thread exists.
    EPOCH.load(Ordering::Relaxed)
}

extern "C" fn prepare() {
    // Take the locks the child will need, so that no other thread holds them mid-fork.
    for (before, _) in PREPARE_HANDLERS.lock().iter() {
        before();
    }
    std::mem::forget(CHILD_HANDLERS.lock());
}

extern "C" fn parent() {
    // SAFETY: `prepare` leaked exactly this guard on this thread.
    unsafe { CHILD_HANDLERS.force_unlock() };
    for (_, after) in PREPARE_HANDLERS.lock().iter().rev() {
        after();
    }
}

extern "C" fn child() {
    EPOCH.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `prepare` leaked exactly this guard in the (only) thread that exists now.
    unsafe { CHILD_HANDLERS.force_unlock() };
    for (_, after) in PREPARE_HANDLERS.lock().iter().rev() {
        after();
    }
    for handler in CHILD_HANDLERS.lock().iter() {
        handler();
    }
}

fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handlers are `extern "C"` functions with static lifetime.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}

/// Runs `handler` in every forked child, right after the fork.
pub fn on_fork_child(handler: fn()) {
    install();
    CHILD_HANDLERS.lock().push(handler);
}

/// Runs `before` in the forking thread just before `fork()` and `after` in both processes right
/// after it: used to hold a lock across the fork so the child never inherits it locked by a
/// thread that no longer exists.
pub fn around_fork(before: fn(), after: fn()) {
    install();
    PREPARE_HANDLERS.lock().push((before, after));
}

#[cfg(test)]
mod tests {
    use super::*;

    static CHILD_RAN: AtomicU64 = AtomicU64::new(0);

    fn mark_child() {
        CHILD_RAN.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn child_sees_new_epoch_and_runs_handlers() {
        on_fork_child(mark_child);
        let before = epoch();
        // SAFETY: the child only reads atomics and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = epoch() == before + 1 && CHILD_RAN.load(Ordering::Relaxed) == 1;
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers or
            // destructors, the only exit that is sound in a forked child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our own child and `status` a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
        assert_eq!(epoch(), before);
    }
}
