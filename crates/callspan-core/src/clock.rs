//! The span clock: Unix-anchored nanoseconds, monotonic, a few instructions per read.
//!
//! Every sampled call needs a start and an end in Unix time, so the clock's cost is part of
//! every call's cost. `clock_gettime(CLOCK_MONOTONIC)` through the vDSO costs ~19 ns (a call,
//! the kernel's seqlock, a split into seconds and nanoseconds that we multiply back). Where the
//! kernel itself keeps time with the CPU's time-stamp counter (x86_64 with an invariant TSC and
//! `tsc` as the clocksource), the clock reads the TSC directly and converts ticks to nanoseconds
//! with one multiply and shift:
//!
//! ```text
//! now = ns_base + ((tsc - tsc_base) * mult) >> 32
//! ```
//!
//! **A span's two readings.** A span reads only [`ticks`] at its start and at its end (a plain
//! `rdtsc`, ~8 ns here; `rdtscp`, which waits for every earlier instruction, is ~13–18 ns), and
//! [`span_unix_ns`] converts both once it has ended, under one conversion: the end as any
//! reading is converted, the start as the end minus the duration at that conversion's rate.
//! [`now_unix_ns`], the clock as such (rate limiter, metrics, the ids' fallback seed), reads
//! `rdtscp` inside the seqlock instead (ordered after the sequence load, as the vDSO's own read
//! is).
//!
//! **Calibration and steering.** The conversion is measured, not assumed: for the first
//! [`CALIBRATION_NS`] after start-up the clock reads `CLOCK_MONOTONIC` (it has to anyway, to
//! learn the tick rate), then switches to the TSC with the rate measured over that window. Once
//! per [`STEER_PERIOD_NS`] the reader that finds the conversion due (a [`now_unix_ns`] or a
//! span's end) compares it with a fresh `CLOCK_MONOTONIC` reading and re-anchors: the new
//! conversion starts where the old one ends (no step), with the tick rate measured since the
//! previous anchor, slewed by at most [`MAX_SLEW_PPM`] to remove the offset over the next period.
//! So the clock follows `CLOCK_MONOTONIC` (and its NTP frequency corrections) within
//! microseconds over any length of run, and spans stay comparable with other processes' spans.
//! No background thread.
//!
//! **Unix anchoring.** One offset, taken at start-up, turns `CLOCK_MONOTONIC` into Unix time; a
//! wall-clock step (NTP) afterwards shifts no span, so spans stay consistent with each other.
//!
//! **Threads and order.** The conversion lives in a seqlock: readers read it with plain loads and
//! check the sequence did not change; the one writer (behind a mutex, taken with `try_lock` so a
//! reader never waits for it) marks the sequence odd before it reads the tick it anchors at, so
//! every value [`now_unix_ns`] read under the old conversion is at an earlier tick than the new
//! conversion's start: it never goes back, across threads too. A span's end is a tick read
//! before the conversion that converts it: under the conversion of its time, or under a newer
//! one anchored after it, which gives that conversion's start (a tick before an anchor converts
//! to the anchor), never less than what the older one gave. So the ends of one thread's spans
//! never go back either. (A `rdtsc` executed out of order after a re-anchoring it precedes in
//! program order would be converted at the old rate past the anchor: the two rates differ by at
//! most [`MAX_SLEW_PPM`] plus the drift of the TSC over a period, so over the few cycles an
//! instruction is reordered by, that is far below a nanosecond.) Durations are end minus start
//! of one monotonic counter, so never negative. The TSC is one counter for every CPU (the kernel
//! keeps time with it only after checking that), so a span ended on another thread than it
//! started on (a coroutine resumed elsewhere) is timed right too.
//!
//! **Fork.** The writer's mutex is held across `fork()` ([`crate::fork::around_fork`]), so a
//! child never inherits a half-written conversion; the TSC and `CLOCK_MONOTONIC` run on in the
//! child, so the parent's conversion stays valid there.
//!
//! **Durations only.** [`ticks_to_ns`] measures a duration without Unix time: one multiply, at the
//! live conversion's rate kept in an atomic of its own (no seqlock); what counting an unsampled
//! call uses. Until the first calibration ends, ticks convert at a rate measured over 50 µs at
//! set-up (0.1 % accurate); a span that ends then reads `CLOCK_MONOTONIC` for its end.
//!
//! **Elsewhere** (no invariant TSC, another clocksource, another architecture) the clock is
//! `CLOCK_MONOTONIC` plus the Unix offset, as read by the same seqlock, and ticks are its
//! nanoseconds (a span's times are its two readings plus the offset).

use parking_lot::Mutex;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicU64};

/// How long the TSC is compared with `CLOCK_MONOTONIC` before the clock uses it (the first
/// rate measurement: a ~50 ns pairing error over 20 ms is 2.5 ppm, corrected by steering).
pub const CALIBRATION_NS: u64 = 20_000_000;
/// How often the TSC conversion is compared with `CLOCK_MONOTONIC` and re-anchored.
pub const STEER_PERIOD_NS: u64 = 1_000_000_000;
/// The largest rate correction one re-anchoring applies, in parts per million (NTP's own bound
/// on slewing is 500 ppm).
pub const MAX_SLEW_PPM: i128 = 500;
/// An offset from `CLOCK_MONOTONIC` larger than this is not slewed away: behind, the clock steps
/// forward; ahead (the TSC kept running while the monotonic clock stopped, as across a
/// suspend), it keeps its own time and moves its Unix anchor instead (it never steps back).
pub const MAX_SLEW_OFFSET_NS: i128 = 1_000_000_000;

const SHIFT: u32 = 32;
const TICKS_UNSET: u64 = 0;
const TICKS_TSC: u64 = 1;
const TICKS_MONOTONIC: u64 = 2;
/// How long the set-up measures the tick rate [`ticks_to_ns`] uses until calibration ends.
const QUICK_CALIBRATION_NS: u64 = 50_000;

/// Reads `CLOCK_MONOTONIC` in nanoseconds.
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

/// The time-stamp counter, read after every earlier instruction has executed (`rdtscp`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ticks_ordered() -> u64 {
    let mut aux = 0u32;
    // SAFETY: `rdtscp` exists where `tsc_usable` said so, the only case this is called in.
    unsafe { std::arch::x86_64::__rdtscp(&mut aux) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn ticks_ordered() -> u64 {
    unreachable!("the TSC clock is only chosen on x86_64")
}

/// The time-stamp counter, unordered (`rdtsc`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ticks_unordered() -> u64 {
    // SAFETY: `rdtsc` exists on every x86_64 CPU.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn ticks_unordered() -> u64 {
    unreachable!("the TSC clock is only chosen on x86_64")
}

/// Whether the TSC can be the clock: invariant (constant rate, runs in every power state),
/// `rdtscp` exists, and on Linux the kernel keeps its own time with it (so it found the TSC
/// synchronised across CPUs and its watchdog has not disowned it).
#[cfg(target_arch = "x86_64")]
fn tsc_usable() -> bool {
    use std::arch::x86_64::__cpuid;
    let max_extended = __cpuid(0x8000_0000).eax;
    if max_extended < 0x8000_0007 {
        return false;
    }
    let invariant = __cpuid(0x8000_0007).edx & (1 << 8) != 0;
    let rdtscp = __cpuid(0x8000_0001).edx & (1 << 27) != 0;
    invariant && rdtscp && kernel_uses_tsc()
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc_usable() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn kernel_uses_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn kernel_uses_tsc() -> bool {
    true
}

/// A tick and the `CLOCK_MONOTONIC` reading taken with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    /// The tick half-way through the monotonic read.
    tick: u64,
    mono_ns: u64,
    /// Half the ticks the monotonic read took: how far `tick` may be from `mono_ns`.
    half_gap: u64,
}

/// The tightest of three (tick, monotonic, tick) sandwiches: a thread preempted in one has a
/// wide gap and loses.
fn paired_reading() -> Pair {
    let mut best: Option<Pair> = None;
    for _ in 0..3 {
        let before = ticks_ordered();
        let mono_ns = monotonic_ns();
        let after = ticks_ordered();
        let half_gap = after.saturating_sub(before) / 2;
        if best.is_none_or(|b| half_gap < b.half_gap) {
            best = Some(Pair {
                tick: before + half_gap,
                mono_ns,
                half_gap,
            });
        }
    }
    best.unwrap_or(Pair {
        tick: 0,
        mono_ns: 0,
        half_gap: 0,
    })
}

/// The tick-to-time conversion readers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Conversion {
    /// Nanoseconds per tick × 2^32; 0: not the TSC, read `CLOCK_MONOTONIC` + `offset`.
    mult: u64,
    /// The tick `ns_base` is the time of.
    tsc_base: u64,
    /// Unix nanoseconds at `tsc_base`.
    ns_base: u64,
    /// Unix nanoseconds minus `CLOCK_MONOTONIC` nanoseconds.
    offset: u64,
    /// With the TSC: ticks after `tsc_base` when the conversion is re-anchored. Without it: the
    /// Unix time when calibration ends (`u64::MAX`: never).
    due: u64,
}

impl Conversion {
    #[inline(always)]
    fn at(&self, tick: u64) -> u64 {
        let elapsed = tick.saturating_sub(self.tsc_base);
        self.ns_base
            .wrapping_add(((u128::from(elapsed) * u128::from(self.mult)) >> SHIFT) as u64)
    }
}

/// Ticks per `ns` nanoseconds at `mult`.
fn ticks_in(ns: u64, mult: u64) -> u64 {
    ((u128::from(ns) << SHIFT) / u128::from(mult.max(1))).min(u128::from(u64::MAX)) as u64
}

/// `mult` for `ns` nanoseconds over `ticks` ticks.
fn mult_of(ns: u64, ticks: u64) -> u64 {
    ((u128::from(ns) << SHIFT) / u128::from(ticks.max(1))).clamp(1, u128::from(u64::MAX)) as u64
}

/// The next conversion, anchored at tick `at` (taken after the old conversion was retired),
/// from `pair`, a monotonic reading taken just before, and `previous`, the one the old
/// conversion was made from (the rate is measured between the two).
fn reanchor(old: &Conversion, previous: Pair, pair: Pair, at: u64, period_ns: u64) -> Conversion {
    let rate = mult_of(
        pair.mono_ns.saturating_sub(previous.mono_ns),
        pair.tick.saturating_sub(previous.tick),
    );
    // CLOCK_MONOTONIC at `at`, extrapolated from the pair, and as Unix nanoseconds.
    let mono_at = pair.mono_ns.wrapping_add(
        ((u128::from(at.saturating_sub(pair.tick)) * u128::from(rate)) >> SHIFT) as u64,
    );
    let target = old.offset.wrapping_add(mono_at);
    let mut next = Conversion {
        mult: rate,
        tsc_base: at,
        ns_base: target,
        offset: old.offset,
        due: ticks_in(period_ns, rate),
    };
    if old.mult == 0 {
        // From CLOCK_MONOTONIC to the TSC: every value read so far is at most CLOCK_MONOTONIC at
        // `at`; start half a pairing gap ahead so that pairing error cannot make it less.
        next.ns_base =
            target.wrapping_add(((u128::from(pair.half_gap) * u128::from(rate)) >> SHIFT) as u64);
        return next;
    }
    let now = old.at(at);
    let offset = i128::from(target) - i128::from(now);
    if offset > MAX_SLEW_OFFSET_NS {
        // Far behind: step forward.
        return next;
    }
    // Continue from where the old conversion ends: the clock never steps back.
    next.ns_base = now;
    if offset < -MAX_SLEW_OFFSET_NS {
        // Far ahead: keep this time, anchor Unix time to it anew.
        next.offset = now.wrapping_sub(mono_at);
        return next;
    }
    let limit = i128::from(rate) * MAX_SLEW_PPM / 1_000_000;
    let correction = (i128::from(rate) * offset / i128::from(period_ns)).clamp(-limit, limit);
    next.mult = (i128::from(rate) + correction).max(1) as u64;
    next
}

/// Where the clock's readings come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The TSC where [`tsc_usable`], else `CLOCK_MONOTONIC`.
    Detect,
    /// `CLOCK_MONOTONIC` always.
    #[cfg_attr(not(test), allow(dead_code))]
    Monotonic,
}

/// The writer's own state.
#[derive(Debug)]
struct Writer {
    /// The pair the live conversion was made from (the start of the next rate measurement).
    previous: Pair,
}

/// A clock: a conversion in a seqlock, and its writer.
#[derive(Debug)]
struct Clock {
    /// Even: the conversion is stable; odd: being rewritten; 0: not set up yet.
    seq: AtomicU64,
    mult: AtomicU64,
    tsc_base: AtomicU64,
    ns_base: AtomicU64,
    offset: AtomicU64,
    due: AtomicU64,
    /// What [`ticks`] read: [`TICKS_UNSET`], [`TICKS_TSC`] or [`TICKS_MONOTONIC`].
    tick_source: AtomicU64,
    /// Nanoseconds per tick × 2^32 for [`ticks_to_ns`]: the set-up's estimate, then the live
    /// conversion's rate.
    tick_mult: AtomicU64,
    writer: Mutex<Option<Writer>>,
    source: Source,
    calibration_ns: u64,
    period_ns: u64,
}

impl Clock {
    const fn new(source: Source, calibration_ns: u64, period_ns: u64) -> Clock {
        Clock {
            seq: AtomicU64::new(0),
            mult: AtomicU64::new(0),
            tsc_base: AtomicU64::new(0),
            ns_base: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            due: AtomicU64::new(0),
            tick_source: AtomicU64::new(TICKS_UNSET),
            tick_mult: AtomicU64::new(1 << SHIFT),
            writer: Mutex::new(None),
            source,
            calibration_ns,
            period_ns,
        }
    }

    /// The current time in Unix nanoseconds.
    #[inline(always)]
    fn now(&self) -> u64 {
        loop {
            let (value, is_due) = self.read(|c: Conversion| {
                if c.mult != 0 {
                    let tick = ticks_ordered();
                    (c.at(tick), tick.saturating_sub(c.tsc_base) >= c.due)
                } else {
                    let ns = monotonic_ns().wrapping_add(c.offset);
                    (ns, ns >= c.due)
                }
            });
            if is_due && self.steer() {
                continue;
            }
            return value;
        }
    }

    /// The Unix nanoseconds of two [`Clock::ticks`] readings, `start` and then `end` (their
    /// difference converted at the rate that converts `end`), under one conversion.
    #[inline(always)]
    fn span_unix_ns(&self, start: u64, end: u64) -> (u64, u64) {
        let ((end_ns, mult), is_due) = self.read(|c: Conversion| {
            if c.mult != 0 {
                let due = end.saturating_sub(c.tsc_base) >= c.due;
                ((c.at(end), c.mult), due)
            } else {
                self.span_end_without_tsc(c.offset, c.due, end)
            }
        });
        if is_due {
            // `end_ns` stays: a newer conversion agrees with this one at its anchor, which is
            // after `end`, so no later reading is earlier.
            self.steer();
        }
        let duration = ((u128::from(end.saturating_sub(start)) * u128::from(mult)) >> SHIFT) as u64;
        (end_ns.saturating_sub(duration), end_ns)
    }

    /// [`Clock::span_unix_ns`]'s end where the conversion is not the TSC's (its `offset` and
    /// `due`): the ticks are `CLOCK_MONOTONIC` nanoseconds (no TSC), or the TSC is still being
    /// calibrated and the end is read now; with the rate that converts ticks to nanoseconds.
    #[cold]
    #[inline(never)]
    fn span_end_without_tsc(&self, offset: u64, due: u64, end: u64) -> ((u64, u64), bool) {
        if self.tick_source.load(Relaxed) == TICKS_MONOTONIC {
            return ((end.wrapping_add(offset), 1 << SHIFT), false);
        }
        let ns = monotonic_ns().wrapping_add(offset);
        ((ns, self.tick_mult.load(Relaxed)), ns >= due)
    }

    /// Reads the conversion under the seqlock and hands it to `f`, which reads what it needs
    /// (the TSC, `CLOCK_MONOTONIC`) and says whether the conversion is due for steering;
    /// `f` runs again if the conversion changed meanwhile.
    #[inline(always)]
    fn read<T>(&self, f: impl Fn(Conversion) -> (T, bool)) -> (T, bool) {
        loop {
            let seq = self.seq.load(Acquire);
            if seq & 1 == 1 || seq == 0 {
                self.wait(seq);
                continue;
            }
            let conversion = Conversion {
                mult: self.mult.load(Relaxed),
                tsc_base: self.tsc_base.load(Relaxed),
                ns_base: self.ns_base.load(Relaxed),
                offset: self.offset.load(Relaxed),
                due: self.due.load(Relaxed),
            };
            let read = f(conversion);
            fence(Acquire);
            if self.seq.load(Relaxed) == seq {
                return read;
            }
        }
    }

    /// Sets the clock up (`seq == 0`) or waits out a rewrite (odd `seq`, ~100 instructions).
    #[cold]
    #[inline(never)]
    fn wait(&self, seq: u64) {
        if seq == 0 {
            self.set_up();
        } else {
            std::thread::yield_now();
        }
    }

    #[cold]
    fn set_up(&self) {
        let mut writer = self.writer.lock();
        if self.seq.load(Acquire) != 0 {
            return;
        }
        let tsc = self.source == Source::Detect && tsc_usable();
        let mono_ns = monotonic_ns();
        let offset = realtime_ns().wrapping_sub(mono_ns);
        self.offset.store(offset, Relaxed);
        self.mult.store(0, Relaxed);
        self.due.store(
            if tsc {
                offset
                    .wrapping_add(mono_ns)
                    .saturating_add(self.calibration_ns)
            } else {
                u64::MAX
            },
            Relaxed,
        );
        if tsc {
            let previous = paired_reading();
            let mut quick = paired_reading();
            while quick.mono_ns.saturating_sub(previous.mono_ns) < QUICK_CALIBRATION_NS {
                std::hint::spin_loop();
                quick = paired_reading();
            }
            let rate = mult_of(
                quick.mono_ns - previous.mono_ns,
                quick.tick.saturating_sub(previous.tick),
            );
            self.tick_mult.store(rate, Relaxed);
            *writer = Some(Writer { previous });
        }
        self.tick_source
            .store(if tsc { TICKS_TSC } else { TICKS_MONOTONIC }, Release);
        self.seq.store(2, Release);
        drop(writer);
        install_fork_handler();
    }

    /// Re-anchors the conversion (calibrates, the first time); false if another thread is at it.
    #[cold]
    #[inline(never)]
    fn steer(&self) -> bool {
        let Some(mut guard) = self.writer.try_lock() else {
            return false;
        };
        let Some(writer) = guard.as_mut() else {
            return false;
        };
        // Another thread may have re-anchored between this thread's read and its lock.
        let mult = self.mult.load(Relaxed);
        let still_due = if mult != 0 {
            ticks_ordered().saturating_sub(self.tsc_base.load(Relaxed)) >= self.due.load(Relaxed)
        } else {
            monotonic_ns().wrapping_add(self.offset.load(Relaxed)) >= self.due.load(Relaxed)
        };
        if !still_due {
            return true;
        }
        // The monotonic read (a vDSO call) happens before the conversion is retired, so readers
        // wait only for the arithmetic below.
        let pair = paired_reading();
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq + 1, Relaxed);
        // Every reader that later sees the old sequence read its tick before this one.
        fence(SeqCst);
        let at = ticks_ordered();
        let old = Conversion {
            mult: self.mult.load(Relaxed),
            tsc_base: self.tsc_base.load(Relaxed),
            ns_base: self.ns_base.load(Relaxed),
            offset: self.offset.load(Relaxed),
            due: self.due.load(Relaxed),
        };
        let next = reanchor(&old, writer.previous, pair, at, self.period_ns);
        self.mult.store(next.mult, Relaxed);
        self.tsc_base.store(next.tsc_base, Relaxed);
        self.ns_base.store(next.ns_base, Relaxed);
        self.offset.store(next.offset, Relaxed);
        self.due.store(next.due, Relaxed);
        self.seq.store(seq + 2, Release);
        self.tick_mult.store(next.mult, Relaxed);
        writer.previous = pair;
        true
    }
}

impl Clock {
    /// A reading for [`Clock::ticks_to_ns`].
    #[inline(always)]
    fn ticks(&self) -> u64 {
        // No loop here: the set-up's (out of line) would have its address loaded on every read.
        match self.tick_source.load(Relaxed) {
            TICKS_TSC => ticks_unordered(),
            _ => self.ticks_elsewhere(),
        }
    }

    /// [`Clock::ticks`] where there is no TSC, or before the clock is set up.
    #[cold]
    #[inline(never)]
    fn ticks_elsewhere(&self) -> u64 {
        loop {
            match self.tick_source.load(Relaxed) {
                TICKS_TSC => return ticks_unordered(),
                TICKS_MONOTONIC => return monotonic_ns(),
                _ => self.wait(0),
            }
        }
    }

    /// `ticks` elapsed in nanoseconds.
    #[inline(always)]
    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ((u128::from(ticks) * u128::from(self.tick_mult.load(Relaxed))) >> SHIFT) as u64
    }
}

static CLOCK: Clock = Clock::new(Source::Detect, CALIBRATION_NS, STEER_PERIOD_NS);

/// The current time in nanoseconds since the Unix epoch, monotonic within this process.
#[inline]
pub fn now_unix_ns() -> u64 {
    CLOCK.now()
}

/// A tick-counter reading, for [`ticks_to_ns`]`(end - start)` or [`span_unix_ns`]: cheaper than
/// [`now_unix_ns`], not Unix time (an unordered `rdtsc`, or `CLOCK_MONOTONIC` where there is no
/// TSC).
#[inline]
pub fn ticks() -> u64 {
    CLOCK.ticks()
}

/// The Unix nanoseconds of a span that started at tick `start` and ended at tick `end` (two
/// [`ticks`] readings, `start` first): `(start, end)`, converted under one conversion, `end`
/// read no earlier than any earlier span end of the thread. Steers the clock when it is due.
#[inline]
pub fn span_unix_ns(start: u64, end: u64) -> (u64, u64) {
    CLOCK.span_unix_ns(start, end)
}

/// Nanoseconds in `ticks` elapsed ticks (a difference of two [`ticks`] readings).
#[inline]
pub fn ticks_to_ns(ticks: u64) -> u64 {
    CLOCK.ticks_to_ns(ticks)
}

/// Whether the clock reads the TSC (false while it calibrates, and where it cannot).
pub fn uses_tsc() -> bool {
    now_unix_ns();
    CLOCK.mult.load(Relaxed) != 0
}

/// Holds the clock's writer across `fork()`.
fn lock_for_fork() {
    std::mem::forget(CLOCK.writer.lock());
}

fn unlock_after_fork() {
    // SAFETY: `lock_for_fork` leaked exactly this guard on this thread.
    unsafe { CLOCK.writer.force_unlock() };
}

/// Keeps the clock's writer out of `fork()`; called by the clock's set-up once it has released
/// the writer (the fork handler takes the two locks in the other order).
fn install_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| crate::fork::around_fork(lock_for_fork, unlock_after_fork));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn close_to_wall_clock_and_monotonic() {
        let a = now_unix_ns();
        let b = now_unix_ns();
        assert!(b >= a);
        let wall = realtime_ns();
        // Within a second of the system clock right after anchoring.
        assert!(wall.abs_diff(b) < 1_000_000_000);
    }

    /// Reads `clock` between two `CLOCK_MONOTONIC` reads for `for_ns` and returns the largest
    /// distance from the monotonic clock (+ the clock's offset) seen, skipping sandwiches a
    /// preemption widened past 20 µs.
    fn worst_offset(clock: &Clock, for_ns: u64) -> (u64, usize) {
        let offset = {
            clock.now();
            clock.offset.load(Relaxed)
        };
        let end = monotonic_ns() + for_ns;
        let (mut worst, mut samples) = (0, 0);
        loop {
            let before = monotonic_ns();
            let value = clock.now();
            let after = monotonic_ns();
            if after >= end {
                return (worst, samples);
            }
            if after - before > 20_000 {
                continue;
            }
            let (lo, hi) = (before.wrapping_add(offset), after.wrapping_add(offset));
            let off = if value < lo {
                lo - value
            } else {
                value.saturating_sub(hi)
            };
            worst = worst.max(off);
            samples += 1;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// The TSC clock agrees with `clock_gettime` within 50 µs over a second, through its
    /// calibration and re-anchoring (every 100 ms here). Bound: 50 ppm of drift over the
    /// calibration window would be 1 µs; the rest is room for a loaded machine.
    #[test]
    fn agrees_with_clock_gettime_over_a_second() {
        let clock = Clock::new(Source::Detect, 10_000_000, 100_000_000);
        let (worst, samples) = worst_offset(&clock, 1_000_000_000);
        assert!(samples > 100, "{samples} samples");
        eprintln!("{worst} ns from CLOCK_MONOTONIC at worst, {samples} samples");
        assert!(worst < 50_000, "{worst} ns from CLOCK_MONOTONIC");
        if tsc_usable() {
            assert_ne!(
                clock.mult.load(Relaxed),
                0,
                "the TSC clock did not calibrate"
            );
        } else {
            eprintln!("no usable TSC here: tested the CLOCK_MONOTONIC clock");
        }
    }

    /// Ticks measure a 20 ms sleep as CLOCK_MONOTONIC does, within 1 % (0.1 % before
    /// calibration ends; the rest is the two reads being apart).
    #[test]
    fn ticks_measure_what_clock_gettime_measures() {
        for clock in [
            Clock::new(Source::Detect, 10_000_000, 100_000_000),
            Clock::new(Source::Monotonic, 1, 1),
        ] {
            for _ in 0..3 {
                let (t0, m0) = (clock.ticks(), monotonic_ns());
                std::thread::sleep(std::time::Duration::from_millis(20));
                let (m1, t1) = (monotonic_ns(), clock.ticks());
                let measured = clock.ticks_to_ns(t1 - t0);
                let reference = m1 - m0;
                assert!(
                    measured.abs_diff(reference) < reference / 100,
                    "{measured} ns by ticks, {reference} ns by CLOCK_MONOTONIC ({:?})",
                    clock.source
                );
                clock.now();
            }
            let expect = if clock.source == Source::Detect && tsc_usable() {
                TICKS_TSC
            } else {
                TICKS_MONOTONIC
            };
            assert_eq!(clock.tick_source.load(Relaxed), expect);
        }
    }

    /// A span's two tick readings, converted together, land between `now_unix_ns` readings
    /// taken around them and measure what those measure, through calibration and
    /// re-anchorings (every 10 ms here); the ends never go back. Both sources.
    #[test]
    fn span_times_agree_with_the_clock() {
        for clock in [
            Clock::new(Source::Detect, 5_000_000, 10_000_000),
            Clock::new(Source::Monotonic, 1, 1),
        ] {
            let end_at = monotonic_ns() + 200_000_000;
            let (mut last_end, mut spans) = (0, 0);
            while monotonic_ns() < end_at {
                let before = clock.now();
                let start = clock.ticks();
                std::thread::sleep(std::time::Duration::from_micros(500));
                let end = clock.ticks();
                let (start_ns, end_ns) = clock.span_unix_ns(start, end);
                let after = clock.now();
                if after - before > 5_000_000 {
                    continue; // preempted: the bounds below would say little
                }
                // 20 µs of slack: the tick rate is 0.1 % off before calibration ends.
                assert!(start_ns + 20_000 >= before, "{start_ns} < {before}");
                assert!(end_ns <= after + 20_000, "{end_ns} > {after}");
                assert!(end_ns >= start_ns + 450_000, "{} ns", end_ns - start_ns);
                assert!(
                    end_ns >= last_end,
                    "{end_ns} < {last_end}: the end went back"
                );
                last_end = end_ns;
                spans += 1;
            }
            assert!(spans > 50, "{spans} spans ({:?})", clock.source);
        }
    }

    #[test]
    fn the_fallback_reads_clock_gettime() {
        let clock = Clock::new(Source::Monotonic, 1, 1);
        let (worst, samples) = worst_offset(&clock, 100_000_000);
        assert!(samples > 10);
        assert!(worst < 1_000, "{worst} ns from CLOCK_MONOTONIC");
        assert_eq!(
            clock.mult.load(Relaxed),
            0,
            "the fallback must not calibrate"
        );
        assert_eq!(clock.due.load(Relaxed), u64::MAX);
    }

    /// Each thread reads the last value any thread published, then the clock: the clock must
    /// not be behind it, through re-anchorings every millisecond.
    #[test]
    fn monotonic_across_threads() {
        let clock = Arc::new(Clock::new(Source::Detect, 1_000_000, 1_000_000));
        let last = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (clock, last) = (clock.clone(), last.clone());
                std::thread::spawn(move || {
                    let end = monotonic_ns() + 300_000_000;
                    let mut reads = 0u64;
                    while monotonic_ns() < end {
                        let seen = last.load(Acquire);
                        let now = clock.now();
                        assert!(now >= seen, "{now} < {seen}: the clock went back");
                        last.fetch_max(now, Release);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(reads > 1000);
        assert_eq!(clock.mult.load(Relaxed) != 0, tsc_usable());
    }

    /// A simulated TSC that runs `ppm` fast against CLOCK_MONOTONIC: steering brings the clock to
    /// within a microsecond of it and keeps it continuous and monotonic at every re-anchoring.
    #[test]
    fn steering_follows_a_drifting_monotonic_clock() {
        let ticks_per_ns = 3.0 * (1.0 + 80e-6); // a 3 GHz TSC 80 ppm fast
        let tick_at = |mono: u64| (mono as f64 * ticks_per_ns) as u64 + 1_000_000;
        let pair = |mono: u64| Pair {
            tick: tick_at(mono),
            mono_ns: mono,
            half_gap: 30,
        };
        let offset = 1_700_000_000_000_000_000u64;
        let start = pair(1_000_000);
        let mut conv = Conversion {
            mult: 0,
            offset,
            ..Conversion::default()
        };
        let mut previous = start;
        let mut mono = 1_000_000 + CALIBRATION_NS;
        let mut last_value = 0;
        for step in 0..30 {
            let p = pair(mono);
            let at = p.tick + 500;
            if conv.mult != 0 {
                let before = conv.at(at);
                let next = reanchor(&conv, previous, p, at, STEER_PERIOD_NS);
                assert_eq!(next.at(at), before, "step {step}: not continuous");
                conv = next;
            } else {
                conv = reanchor(&conv, previous, p, at, STEER_PERIOD_NS);
            }
            assert!(conv.at(at) >= last_value);
            previous = p;
            mono += STEER_PERIOD_NS;
            let end_tick = tick_at(mono);
            last_value = conv.at(end_tick);
            let error = (last_value as i128) - i128::from(offset + mono);
            if step >= 3 {
                assert!(error.abs() < 1_000, "step {step}: {error} ns off");
            }
        }
    }

    #[test]
    fn far_ahead_moves_the_anchor_and_far_behind_steps() {
        let conv = Conversion {
            mult: 1 << SHIFT,
            tsc_base: 0,
            ns_base: 10_000_000_000,
            offset: 0,
            due: 0,
        };
        let previous = Pair {
            tick: 0,
            mono_ns: 0,
            half_gap: 0,
        };
        // The monotonic clock says 2 s, the clock 10 s at tick 2e9: far ahead.
        let p = Pair {
            tick: 2_000_000_000,
            mono_ns: 2_000_000_000,
            half_gap: 0,
        };
        let next = reanchor(&conv, previous, p, p.tick, STEER_PERIOD_NS);
        assert_eq!(next.ns_base, conv.at(p.tick));
        assert_eq!(next.offset, conv.at(p.tick) - p.mono_ns);
        // The monotonic clock says 30 s: far behind, step forward.
        let p = Pair {
            mono_ns: 30_000_000_000,
            ..p
        };
        let next = reanchor(&conv, previous, p, p.tick, STEER_PERIOD_NS);
        assert_eq!(next.ns_base, 30_000_000_000);
    }
}
