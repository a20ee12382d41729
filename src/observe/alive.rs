//! Proof that the acceptor and the reaper are still turning, for a
//! watchdog (systemd's `WATCHDOG=1`, see `monitor`).
//!
//! The acceptor and the reaper each count their loop turns ([`Liveness`]),
//! and each waits at most [`ALIVE_TICK`] per turn, so a counter that has not
//! moved for a few ticks means a thread that is stuck (or gone). A thread
//! that only pinged would prove nothing; these counters move only when the
//! loops that do the work go round. The acceptor's counter stops for good
//! when the drain starts (it has nothing left to do), the reaper's when the
//! drain is over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest the acceptor and the reaper wait between two turns of their
/// loops, that is between two bumps of their [`Liveness`] counters.
pub const ALIVE_TICK: Duration = Duration::from_millis(250);

/// Loop-turn counters of the threads whose life a watchdog checks.
#[derive(Debug, Default)]
pub(crate) struct Alive {
    acceptor: AtomicU64,
    reaper: AtomicU64,
}

impl Alive {
    /// The acceptor went round its loop once more.
    pub(crate) fn acceptor(&self) {
        self.acceptor.fetch_add(1, Ordering::Relaxed);
    }

    /// The reaper went round its loop once more.
    pub(crate) fn reaper(&self) {
        self.reaper.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many times the acceptor and the reaper have gone round their loops.
/// Each turns at least every [`ALIVE_TICK`] while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Turns of the acceptor's loop; it stops moving once the drain starts.
    pub acceptor: u64,
    /// Turns of the reaper's loop; it stops moving once the drain is over.
    pub reaper: u64,
}

impl Alive {
    /// Both counters now.
    pub(crate) fn liveness(&self) -> Liveness {
        Liveness {
            acceptor: self.acceptor.load(Ordering::Relaxed),
            reaper: self.reaper.load(Ordering::Relaxed),
        }
    }
}
