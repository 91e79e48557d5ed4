//! Random trace and span ids from a per-thread generator.
//!
//! Ids must be unique, not secret, and cheap: a per-thread wyrand seeded from the OS costs a
//! multiply per id and no atomics. After `fork()` the child would replay its parent's sequence,
//! so each generator remembers the [`crate::fork::epoch`] it was seeded in and reseeds when the
//! process has forked since.

use crate::per_thread;
use std::cell::Cell;

/// One thread's generator (a field of [`crate::per_thread::PerThread`]).
#[derive(Debug)]
pub struct ThreadRng {
    state: Cell<u64>,
    epoch: Cell<u64>,
}

fn os_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: the buffer is valid for 8 bytes. getrandom(2) only fails before the entropy pool
    // is ready or on ancient kernels; the fallback mixes time, pid and an address instead.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n == 8 {
        return u64::from_ne_bytes(seed);
    }
    let local = 0u8;
    crate::clock::now_unix_ns()
        ^ (u64::from(std::process::id()) << 32)
        ^ (&local as *const u8 as u64).rotate_left(17)
}

impl ThreadRng {
    /// A generator seeded on first use.
    pub(crate) const fn new() -> ThreadRng {
        ThreadRng {
            state: Cell::new(0),
            epoch: Cell::new(u64::MAX),
        }
    }

    /// The next output, reseeding first if the process has forked since the last seed.
    #[inline]
    fn next(&self) -> u64 {
        let epoch = crate::fork::epoch();
        if self.epoch.get() != epoch {
            self.state.set(os_seed());
            self.epoch.set(epoch);
        }
        // wyrand: passes BigCrush and PractRand, one multiply per output.
        let s = self.state.get().wrapping_add(0xa076_1d64_78bd_642f);
        self.state.set(s);
        let t = u128::from(s).wrapping_mul(u128::from(s ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A random 64-bit number.
    #[inline]
    pub fn random_u64(&self) -> u64 {
        self.next()
    }

    /// A new random, non-zero 64-bit span id.
    #[inline]
    pub fn span_id(&self) -> u64 {
        loop {
            let id = self.next();
            if id != 0 {
                return id;
            }
        }
    }

    /// A new random, non-zero 128-bit trace id.
    #[inline]
    pub fn trace_id(&self) -> u128 {
        loop {
            let id = (u128::from(self.next()) << 64) | u128::from(self.next());
            if id != 0 {
                return id;
            }
        }
    }
}

/// Runs `f` on this thread's generator, or on a fresh one once the thread's state is gone
/// (thread exit).
#[inline]
fn with_rng<R>(f: impl Fn(&ThreadRng) -> R) -> R {
    per_thread::with(|t| f(&t.ids)).unwrap_or_else(|| f(&ThreadRng::new()))
}

/// A random 64-bit number (for sampling draws that must not depend on the trace id).
#[inline]
pub fn random_u64() -> u64 {
    with_rng(ThreadRng::random_u64)
}

/// A new random, non-zero 64-bit span id.
#[inline]
pub fn span_id() -> u64 {
    with_rng(ThreadRng::span_id)
}

/// A new random, non-zero 128-bit trace id.
#[inline]
pub fn trace_id() -> u128 {
    with_rng(ThreadRng::trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_nonzero() {
        let spans: HashSet<u64> = (0..100_000).map(|_| span_id()).collect();
        assert_eq!(spans.len(), 100_000);
        let traces: HashSet<u128> = (0..100_000).map(|_| trace_id()).collect();
        assert_eq!(traces.len(), 100_000);
        assert!(!spans.contains(&0));
    }

    #[test]
    fn threads_get_different_sequences() {
        let a = std::thread::spawn(span_id).join().unwrap();
        let b = std::thread::spawn(span_id).join().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn bits_are_balanced() {
        // A broken generator (e.g. a stuck state) shows up as heavily biased bits.
        let n = 20_000u32;
        let ones: u32 = (0..n).map(|_| span_id().count_ones()).sum();
        let mean = f64::from(ones) / f64::from(n);
        assert!((mean - 32.0).abs() < 0.5, "mean popcount {mean}");
    }
}
