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

/// A read-only view of a running server, for supervisors. Cheap to clone,
/// and `Send`, so a supervising thread can own one.
///
/// It holds the server weakly: it never keeps a stopped server's
/// connections or threads alive, and once the server has finished stopping
/// its readings of the server's state are `None`.
///
/// ```
/// use wharf::{Client, ClientOptions, Config, Echo, Server};
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Echo::default())?;
/// let monitor = server.monitor();
///
/// let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
/// client.request(b"hello")?;
/// assert_eq!(monitor.report().unwrap().accepted, 1);
/// assert!(monitor.status_line().unwrap().starts_with("open=1 "));
/// assert!(!monitor.is_stopping());
///
/// server.handle().shutdown();
/// assert!(monitor.is_stopping() && monitor.is_draining());
/// drop(client);
/// server.join();
/// // Stopped: nothing of the server is left to read.
/// assert!(monitor.report().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Monitor {
    pub(crate) shared: Weak<Shared>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) alive: Arc<Alive>,
}

impl Monitor {
    /// The counters so far (what [`crate::Server::join`] returns at the
    /// end), or `None` once the server has finished stopping. Each counter
    /// only grows, but they are read one by one, not as one snapshot, and
    /// a worker adds its request counts once per batch.
    pub fn report(&self) -> Option<Report> {
        let shared = self.shared.upgrade()?;
        Some(shared.stats.report(false))
    }

    /// Where the connections are and the main counters, on one line:
    /// `open=.. active=.. queued=.. resting=.. accepted=.. rejected_busy=..
    /// reaped=.. requests=..`. `None` once the server has finished stopping.
    /// It walks every open connection to count them, so it costs in
    /// proportion to the connections open: something to read every few
    /// seconds, not per request.
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

    /// The acceptor's and the reaper's loop turns so far, for a watchdog.
    /// Each thread turns at least every [`ALIVE_TICK`](crate::ALIVE_TICK)
    /// while it runs, so a counter that has not moved between two readings
    /// a few ticks apart means that thread is stuck or gone. The
    /// acceptor's stops for good when the drain starts, the reaper's when
    /// the drain is over: check [`Monitor::is_draining`] before
    /// concluding.
    pub fn liveness(&self) -> Liveness {
        self.alive.liveness()
    }

    /// Whether a stop was requested (the drain delay or the drain): what a
    /// readiness probe reports as not ready.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_stopping()
    }

    /// Whether the drain has started: the server no longer accepts
    /// connections.
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_draining()
    }
}
