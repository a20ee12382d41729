//! Watching a running server from outside: its counters, whether it is
//! stopping, and proof that its acceptor and reaper are still turning.
//!
//! A [`Monitor`] is what a supervisor needs: the binary uses it for
//! systemd's `STATUS=` and `WATCHDOG=1` messages and for SIGUSR1. It holds
//! the server's state weakly, so keeping one never keeps a stopped server's
//! connections or threads alive.
//!
//! **Liveness.** The acceptor and the reaper each count their loop turns
//! ([`Liveness`]), and each waits at most [`ALIVE_TICK`] per turn, so a
//! counter that has not moved for a few ticks means a thread that is stuck
//! (or gone). The acceptor's counter stops for good when the drain starts
//! (it has nothing left to do), the reaper's when the drain is over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::drain::snapshot;
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::stats::Report;

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

/// A read-only view of a running server, for supervisors. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub(crate) shared: Weak<Shared>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) alive: Arc<Alive>,
}

impl Monitor {
    /// The counters so far (what [`crate::Server::join`] returns at the
    /// end), or `None` once the server has finished stopping.
    pub fn report(&self) -> Option<Report> {
        let shared = self.shared.upgrade()?;
        Some(shared.stats.report(false))
    }

    /// Where the connections are and the main counters, on one line:
    /// `open=.. active=.. queued=.. resting=.. accepted=.. rejected_busy=..
    /// reaped=.. requests=..`. `None` once the server has finished stopping.
    pub fn status_line(&self) -> Option<String> {
        let shared = self.shared.upgrade()?;
        let now = snapshot(&shared);
        Some(format!(
            "open={} active={} queued={} resting={} accepted={} rejected_busy={} reaped={} \
             requests={}",
            now.open,
            now.active,
            now.queued,
            now.resting,
            now.report.accepted,
            now.report.rejected_busy,
            now.report.reaped,
            now.report.requests
        ))
    }

    /// The acceptor's and the reaper's loop turns so far.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            acceptor: self.alive.acceptor.load(Ordering::Relaxed),
            reaper: self.alive.reaper.load(Ordering::Relaxed),
        }
    }

    /// Whether a stop was requested (the drain delay or the drain).
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_stopping()
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_draining()
    }
}
