//! Refuses a traced call, with `RecursionError`, when the thread's C stack is nearly used up.
//!
//! Every traced call is a C call (our vectorcall, then CPython's), so a traced recursion uses
//! far more C stack per level than Python frames do (3.11+ runs Python-to-Python calls without
//! any): at `sys.setrecursionlimit(20000)` a traced recursion used to overflow the 8 MiB main
//! stack at about 9,000 levels and die with SIGSEGV, where untraced code raised
//! `RecursionError` or completed. The profile hook on 3.9–3.11 is a frame-evaluation function:
//! every Python call passes through it on the C stack (on 3.11 the interpreter stops inlining
//! Python-to-Python calls while one is installed), so it checks every frame the same way.
//! [`enough_stack`] compares the stack pointer with the thread's stack bounds, read once per
//! thread with `pthread_getattr_np`: a few instructions per call. Where the bounds cannot be
//! read the check is off (never refuses).

use callspan_core::per_thread::PerThread;
use pyo3::ffi;

/// What must stay free below a traced call: room for the wrapped function and the C code it
/// calls before the next traced call checks again. A quarter of the stack for small stacks.
const MARGIN_BYTES: usize = 256 * 1024;

/// The current stack pointer, near enough: the address of a local.
#[inline(always)]
fn stack_pointer() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// What is refused when the stack runs short (the `RecursionError` says which).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry {
    /// A call of a `@callspan.trace` function.
    Traced,
    /// A Python frame under the profile hook (3.9–3.11).
    #[cfg_attr(
        any(Py_3_12, not(callspan_frame_direct)),
        allow(
            dead_code,
            reason = "only the 3.9-3.11 frame-evaluation hook checks frames"
        )
    )]
    Profiled,
}

/// Whether a call of `entry`'s kind may start here; if not, `RecursionError` is set. The limit
/// is `local.stack_limit` (read once per thread).
///
/// # Safety
/// The GIL is held (to set the exception).
#[inline(always)]
pub(crate) unsafe fn enough_stack(local: &PerThread, entry: Entry) -> bool {
    let here = stack_pointer();
    if here > local.stack_limit.get() {
        return true;
    }
    // SAFETY: the caller's contract.
    unsafe { slow_check(local, here, entry) }
}

#[cold]
#[inline(never)]
unsafe fn slow_check(local: &PerThread, here: usize, entry: Entry) -> bool {
    let mut limit = local.stack_limit.get();
    if limit == usize::MAX {
        limit = read_limit();
        local.stack_limit.set(limit);
        if here > limit {
            return true;
        }
    }
    let what = match entry {
        Entry::Traced => "a traced call (each traced call uses more C stack than a Python frame)",
        Entry::Profiled => {
            "a Python call under callspan's profile hook (on Python 3.9-3.11 the hook runs \
             every Python call on the C stack)"
        }
    };
    let message = format!(
        "callspan: maximum recursion depth exceeded: less than {} KiB of this thread's C \
         stack is left for {what}; for deeper recursion give the thread a larger stack \
         (threading.stack_size() before starting it, or `ulimit -s` for the main thread)",
        MARGIN_BYTES / 1024
    );
    let message = std::ffi::CString::new(message).expect("no NUL in the message");
    // SAFETY: GIL held (the caller's contract).
    unsafe { ffi::PyErr_SetString(ffi::PyExc_RecursionError, message.as_ptr()) };
    false
}

/// This thread's lowest usable stack address plus the margin, or 0 if unknown.
#[cfg(not(target_os = "linux"))]
fn read_limit() -> usize {
    0
}

/// This thread's lowest usable stack address plus the margin, or 0 if unknown.
#[cfg(target_os = "linux")]
fn read_limit() -> usize {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read and destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return 0;
        }
        let mut low: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut low, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if !ok || low.is_null() || size == 0 {
            return 0;
        }
        let margin = MARGIN_BYTES.min(size / 4);
        low as usize + margin
    }
}
