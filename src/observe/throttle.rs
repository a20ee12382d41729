//! At most one log line a second for a kind of event, with nothing lost:
//! each event only adds to a pending count (one atomic add) and looks at
//! the time (one atomic load); the thread whose event finds a second passed
//! since the kind's last line takes everything pending for the next line.
//! The first event after a quiet second is reported at once, so the start
//! of trouble is never delayed. A burst that stops leaves a count pending
//! with nobody to report it: a periodic caller (the reaper, which turns at
//! least every quarter second) asks [`Throttle::due`], and the drain asks
//! once more at the end with `always`, so the lines add up to the counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Least time between two lines for the same kind.
const EVERY_MS: u64 = 1000;

/// No line yet.
const NEVER: u64 = u64::MAX;

/// Events of one kind not yet reported.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// Events since the last line.
    count: AtomicU64,
    /// When the first of those was (server clock, ms).
    since_ms: AtomicU64,
    /// When the last line was written, or [`NEVER`].
    last_line_ms: AtomicU64,
}

/// What the next line reports: how many events, over how long (ms).
pub(crate) type Due = (u64, u64);

impl Throttle {
    pub(crate) fn new() -> Self {
        Throttle {
            count: AtomicU64::new(0),
            since_ms: AtomicU64::new(0),
            last_line_ms: AtomicU64::new(NEVER),
        }
    }

    /// Counts one event at `now_ms`; what to report now, if a line is due.
    pub(crate) fn record(&self, now_ms: u64) -> Option<Due> {
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.since_ms.store(now_ms, Ordering::Relaxed);
        }
        self.due(now_ms, false)
    }

    /// What to report at `now_ms`, if a line is due (or, with `always`, if
    /// anything is pending at all). Only one caller gets it.
    pub(crate) fn due(&self, now_ms: u64, always: bool) -> Option<Due> {
        let last = self.last_line_ms.load(Ordering::Relaxed);
        if !always && last != NEVER && now_ms < last.saturating_add(EVERY_MS) {
            return None;
        }
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // One thread writes the line; the others' counts go into it or the
        // next one.
        self.last_line_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let count = self.count.swap(0, Ordering::Relaxed);
        let since = self.since_ms.load(Ordering::Relaxed);
        (count > 0).then(|| (count, now_ms.saturating_sub(since)))
    }

    /// Events not yet reported.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_line_a_second_and_nothing_lost() {
        let throttle = Throttle::new();
        // The first is reported at once.
        assert_eq!(throttle.record(5_000), Some((1, 0)));
        // Then they wait for the second to pass...
        for ms in 5_001..5_999 {
            assert_eq!(throttle.record(ms), None);
        }
        assert_eq!(throttle.due(5_999, false), None);
        assert_eq!(throttle.pending(), 998);
        // ... and a periodic turn reports them when it has, with no new one.
        assert_eq!(throttle.due(6_000, false), Some((998, 999)));
        assert_eq!(throttle.pending(), 0);
        assert_eq!(throttle.record(6_002), None);
        assert_eq!(throttle.due(6_003, true), Some((1, 1)));
    }
}
