//! The span clock: monotonic reads anchored once to wall-clock time.
//!
//! Durations must never be negative, so the hot path reads `CLOCK_MONOTONIC` (a vDSO call, no
//! syscall). Exported timestamps must be Unix time, so the clock keeps one anchor pair taken at
//! start-up and converts by offset. A wall-clock step (NTP) after start-up therefore shifts no
//! span; spans stay consistent with each other, which is what a trace view needs.

use std::sync::OnceLock;

/// Reads the monotonic clock in nanoseconds.
#[inline]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer and CLOCK_MONOTONIC exists on every supported OS.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Offset that turns a monotonic reading into Unix nanoseconds.
fn anchor() -> u64 {
    static ANCHOR: OnceLock<u64> = OnceLock::new();
    *ANCHOR.get_or_init(|| realtime_ns().wrapping_sub(monotonic_ns()))
}

/// The current time in nanoseconds since the Unix epoch, monotonic within this process.
#[inline]
pub fn now_unix_ns() -> u64 {
    anchor().wrapping_add(monotonic_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_wall_clock_and_monotonic() {
        let a = now_unix_ns();
        let b = now_unix_ns();
        assert!(b >= a);
        let wall = realtime_ns();
        // Within a second of the system clock right after anchoring.
        assert!(wall.abs_diff(b) < 1_000_000_000);
    }
}
