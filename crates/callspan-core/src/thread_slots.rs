//! Per-thread slots: state that only one thread writes and any thread may read, for counters
//! the hot path bumps on every call ([`crate::stats`]'s call counts, [`crate::edges`]' caller
//! edges).
//!
//! A shared atomic add is a locked instruction (about 20 cycles uncontended, and a cache line
//! bouncing between cores when threads count at once); a thread adding to a slot that only it
//! writes is a plain load and store. Readers sum the slots. A slot outlives its thread: at
//! thread exit its [`Claim`] releases it, and the next thread that needs a slot takes it over
//! and keeps adding to it, so the sum never loses or counts anything twice. Slots are never
//! freed, and there are never more than threads alive at once. The list is push-only and
//! lock-free, so a forked child (whose other threads are gone) can still walk it.

use std::cell::Cell;
use std::ops::Deref;
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicPtr};

/// One thread's state in a [`SlotList`].
#[derive(Debug)]
pub struct Slot<T: 'static> {
    value: T,
    taken: AtomicBool,
    /// The next slot of the list (immutable once the slot is published).
    next: AtomicPtr<Slot<T>>,
}

impl<T> Slot<T> {
    /// A slot outside any list, taken for good (for counts made where no claim is possible).
    pub const fn detached(value: T) -> Slot<T> {
        Slot {
            value,
            taken: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn release(&self) {
        // Release: the next holder sees this thread's last writes before adding to them.
        self.taken.store(false, Release);
    }
}

impl<T> Deref for Slot<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Every slot ever made, newest first.
#[derive(Debug)]
pub struct SlotList<T: 'static> {
    head: AtomicPtr<Slot<T>>,
}

impl<T: Sync> SlotList<T> {
    /// An empty list (for a `static`).
    pub const fn new() -> SlotList<T> {
        SlotList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// A slot no thread holds, else a new one made by `make`.
    #[cold]
    pub fn claim(&'static self, make: impl FnOnce() -> T) -> &'static Slot<T> {
        let mut cursor = self.head.load(Acquire);
        // SAFETY: slots are never freed; `next` is set before a slot is published.
        while let Some(slot) = unsafe { cursor.as_ref() } {
            if !slot.taken.load(Relaxed)
                && slot
                    .taken
                    .compare_exchange(false, true, Acquire, Relaxed)
                    .is_ok()
            {
                return slot;
            }
            cursor = slot.next.load(Relaxed);
        }
        let slot: &'static Slot<T> = Box::leak(Box::new(Slot::detached(make())));
        let mut head = self.head.load(Relaxed);
        loop {
            slot.next.store(head, Relaxed);
            match self.head.compare_exchange_weak(
                head,
                ptr::from_ref(slot).cast_mut(),
                AcqRel,
                Relaxed,
            ) {
                Ok(_) => return slot,
                Err(current) => head = current,
            }
        }
    }

    /// Calls `f` with every slot, held or not.
    pub fn for_each(&self, mut f: impl FnMut(&'static T)) {
        let mut cursor = self.head.load(Acquire);
        // SAFETY: slots are never freed.
        while let Some(slot) = unsafe { cursor.as_ref() } {
            f(&slot.value);
            cursor = slot.next.load(Relaxed);
        }
    }
}

impl<T: Sync> Default for SlotList<T> {
    fn default() -> SlotList<T> {
        SlotList::new()
    }
}

/// A thread's hold on a slot of one list, for a `thread_local!`: claimed on first use, released
/// when the thread exits.
#[derive(Debug)]
pub struct Claim<T: 'static>(Cell<Option<&'static Slot<T>>>);

impl<T: Sync> Claim<T> {
    /// No slot yet (for a `const` thread-local initialiser).
    pub const fn new() -> Claim<T> {
        Claim(Cell::new(None))
    }

    /// This thread's slot of `list`, claimed (or made by `make`) on first use.
    #[inline]
    pub fn slot(&self, list: &'static SlotList<T>, make: impl FnOnce() -> T) -> &'static T {
        match self.0.get() {
            Some(slot) => slot,
            None => {
                let slot = list.claim(make);
                self.0.set(Some(slot));
                slot
            }
        }
    }
}

impl<T: Sync> Default for Claim<T> {
    fn default() -> Claim<T> {
        Claim::new()
    }
}

impl<T> Drop for Claim<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.get() {
            slot.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    static LIST: SlotList<AtomicU64> = SlotList::new();

    thread_local! {
        static CLAIM: Claim<AtomicU64> = const { Claim::new() };
    }

    fn bump() {
        CLAIM.with(|c| {
            let n = c.slot(&LIST, || AtomicU64::new(0));
            n.store(n.load(Relaxed) + 1, Relaxed);
        });
    }

    #[test]
    fn exited_threads_slots_are_reused_and_nothing_is_lost() {
        for _ in 0..3 {
            let threads: Vec<_> = (0..4)
                .map(|_| std::thread::spawn(|| (0..1000).for_each(|_| bump())))
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        let (mut slots, mut sum) = (0, 0);
        LIST.for_each(|n| {
            slots += 1;
            sum += n.load(Relaxed);
        });
        assert_eq!(sum, 12_000);
        // Three rounds of four threads: the later rounds took over the first round's slots.
        assert!(slots <= 4, "{slots} slots for 4 threads at a time");
    }
}
