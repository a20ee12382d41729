//! Watching a running server from outside: its counters, whether it is
//! stopping, and proof that its acceptor and reaper are still turning.
//!
//! A [`Monitor`] is what a supervisor needs: the binary uses it for
//! systemd's `STATUS=` and `WATCHDOG=1` messages and for SIGUSR1. It holds
//! the server's state weakly, so keeping one never keeps a stopped server's
//! connections or threads alive.
//!
//! Liveness, the proof a watchdog wants, is counted in `alive`.

use std::sync::{Arc, Weak};

use crate::engine::drain::snapshot;
use crate::engine::shared::Shared;
use crate::engine::shutdown::Shutdown;
use crate::observe::alive::{Alive, Liveness};
use crate::observe::stats::Report;

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
        self.alive.liveness()
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
