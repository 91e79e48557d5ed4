//! The spans an exporter has taken from the queue and not yet counted, so that a shutdown that
//! runs out of time can count them.
//!
//! Between the exporter popping a span and counting its outcome (exported, or dropped because
//! the export failed) the span is in neither the queue nor any counter. A `shutdown()` that
//! gave up waiting used to return with those spans unaccounted (about half of them with a
//! collector that accepts connections and never answers; the warning said "0 queued spans are
//! dropped"). Now the exporter records what it takes ([`InFlight::take`]) and counts outcomes
//! through [`InFlight::settle`]; [`InFlight::abandon`], called by the timed-out shutdown,
//! counts everything still pending as `dropped_shutdown` and makes later outcomes of this
//! exporter count nothing, so `exported + dropped + below_min_duration == sampled` holds the
//! moment `shutdown()` returns. A request that completes after that is not counted again.

use callspan_core::stats::Stats;
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct Ledger {
    /// Spans taken and not yet settled.
    pending: u64,
    /// A shutdown gave up on this exporter: nothing more is counted.
    abandoned: bool,
}

/// Shared by one exporter's thread, its send tasks and its owner.
#[derive(Debug)]
pub(crate) struct InFlight {
    ledger: Mutex<Ledger>,
    stats: &'static Stats,
}

impl InFlight {
    pub(crate) fn new(stats: &'static Stats) -> InFlight {
        InFlight {
            ledger: Mutex::new(Ledger::default()),
            stats,
        }
    }

    /// Runs `pop` (which takes spans off the queue and returns how many) with abandonment held
    /// off, and records them as pending. Returns None, without running `pop`, once abandoned.
    pub(crate) fn take<R>(&self, pop: impl FnOnce() -> (u64, R)) -> Option<R> {
        let mut ledger = self.ledger.lock();
        if ledger.abandoned {
            return None;
        }
        let (taken, result) = pop();
        ledger.pending += taken;
        Some(result)
    }

    /// Counts the outcome of `spans` pending spans with `count`, unless the exporter was
    /// abandoned (its spans are counted as `dropped_shutdown` already).
    pub(crate) fn settle(&self, spans: u64, count: impl FnOnce(&Stats)) {
        let mut ledger = self.ledger.lock();
        if ledger.abandoned {
            return;
        }
        ledger.pending = ledger.pending.saturating_sub(spans);
        count(self.stats);
    }

    /// Counts every pending span as `dropped_shutdown`; later outcomes count nothing.
    /// Returns how many were pending.
    pub(crate) fn abandon(&self) -> u64 {
        let mut ledger = self.ledger.lock();
        ledger.abandoned = true;
        let pending = std::mem::take(&mut ledger.pending);
        Stats::add(&self.stats.dropped_shutdown, pending);
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandon_counts_pending_spans_once_and_later_outcomes_not_at_all() {
        let stats: &'static Stats = Box::leak(Box::default());
        let in_flight = InFlight::new(stats);
        assert_eq!(in_flight.take(|| (10, ())), Some(()));
        in_flight.settle(4, |s| Stats::add(&s.spans_exported, 4));
        assert_eq!(in_flight.abandon(), 6);
        in_flight.settle(6, |s| Stats::add(&s.spans_exported, 6));
        assert_eq!(in_flight.take(|| (1, ())), None);
        let snapshot = stats.snapshot(0);
        assert_eq!(snapshot.spans_exported, 4);
        assert_eq!(snapshot.dropped_shutdown, 6);
    }
}
