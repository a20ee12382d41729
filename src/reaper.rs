//! The reaper thread: enforces heartbeat deadlines.
//!
//! Every `reap_interval` it scans the registry. A connection's deadline is
//! `heartbeat_timeout` after the latest of its accept, its last complete
//! frame and its last response; bytes of an unfinished frame do not count,
//! so a client dribbling a byte at a time is dropped like a silent one.
//!
//! - Waiting in line past its deadline (new, or open with work): sent
//!   GOAWAY 3 (BUSY) through the closer; it never occupies a worker. The
//!   server was busy, not the client silent: counted and reported at warn
//!   level about once a second, like the acceptor's turn-aways (see
//!   `turned_away`, whose pending counts each turn of this loop reports
//!   when they are due).
//! - Resting in the poller (or held): sent GOAWAY 2 through the closer; no
//!   worker is involved.
//! - Held by a worker that stays on it: marked REAPED and its read side shut
//!   down, which wakes the worker blocked in `read`; the worker, the only
//!   writer of that socket, sends GOAWAY 2 and closes. If the worker is
//!   stuck writing to a client that does not read, a later scan (one
//!   interval plus the closer's linger after the deadline) shuts the socket
//!   down completely.
//! - BUSY (its service is running): never reaped.
//!
//! A missed deadline is therefore acted on within one interval, which the
//! configuration keeps at no more than a quarter of the heartbeat timeout.

use std::net::Shutdown as How;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info};

use crate::access::Why;
use crate::alive::ALIVE_TICK;
use crate::closer::LINGER;
use crate::conn::{Conn, ACTIVE, QUEUED, REAPED, RESTING};
use crate::shared::Shared;
use crate::stats::Stats;
use crate::turned_away::Busy;

/// Scans every `reap_interval` until `stop` disconnects. The loop turns at
/// least every [`ALIVE_TICK`] (counted for a watchdog, see `alive`), even
/// when the interval is longer.
pub(crate) fn run(shared: Arc<Shared>, stop: Receiver<()>) {
    let interval = shared.config.reap_interval;
    let mut next_scan = Instant::now() + interval;
    loop {
        shared.alive.reaper();
        // A burst of turn-aways that has stopped still gets its line.
        shared
            .turned_away
            .report_due(shared.clock.now_ms(), &shared.config);
        if Instant::now() >= next_scan {
            scan(&shared);
            next_scan = Instant::now() + interval;
        }
        let wait = next_scan
            .saturating_duration_since(Instant::now())
            .min(ALIVE_TICK);
        // Nothing is ever sent on `stop`: it only disconnects.
        if let Err(RecvTimeoutError::Disconnected) = stop.recv_timeout(wait) {
            break;
        }
    }
    debug!("reaper stopped");
}

fn scan(shared: &Shared) {
    let timeout = shared.config.heartbeat_timeout;
    let now = shared.clock.now_ms();
    for conn in shared.registry.snapshot() {
        // The state first, then the deadline: a worker moves the deadline
        // before it lets go of a connection, so a connection seen resting
        // or in line here is never judged by a deadline older than that.
        let state = conn.state();
        if !conn.expired(now, timeout) {
            continue;
        }
        match state {
            QUEUED => {
                turn_away_late(shared, &conn);
            }
            RESTING => {
                reap_resting(shared, &conn);
            }
            ACTIVE if conn.transition(ACTIVE, REAPED) => {
                // Between the deadline check and the swap its worker may have
                // finished a long request (BUSY, then ACTIVE again with a new
                // deadline): then give the connection back.
                if !conn.expired(now, timeout) && conn.transition(REAPED, ACTIVE) {
                    continue;
                }
                Stats::bump(&shared.stats.reaped);
                conn.shutdown(How::Read);
            }
            // Still here a scan later, and not just lingering in the closer:
            // its worker is stuck writing to a client that does not read.
            REAPED if conn.expired(now, timeout + shared.config.reap_interval + LINGER) => {
                conn.shutdown(How::Both);
            }
            _ => {}
        }
    }
}

/// Closes a resting connection that missed its deadline with GOAWAY 2,
/// unless another thread took it first. Also used by the poller, which does
/// not wake a connection whose deadline has passed: bytes that do not
/// complete a frame in time are the client's silence, not the server's
/// delay. Returns whether this call reaped it.
pub(crate) fn reap_resting(shared: &Shared, conn: &Arc<Conn>) -> bool {
    let closed = shared.closer.close_resting(conn, Why::HeartbeatTimeout);
    if closed {
        Stats::bump(&shared.stats.reaped);
        info!(
            "{}: reaped, no complete frame within the heartbeat timeout",
            conn.who()
        );
    }
    closed
}

/// Closes a connection whose deadline passed while it waited in line with
/// GOAWAY 3, unless another thread took it first: the server was busy, not
/// the client silent. Also used by a worker that takes such a connection
/// from the line between two scans. Returns whether this call closed it.
pub(crate) fn turn_away_late(shared: &Shared, conn: &Arc<Conn>) -> bool {
    let why = Busy::QueueDeadline;
    let closed = shared.closer.turn_away(conn, Why::Busy(why));
    if closed {
        Stats::bump(shared.stats.rejected(why));
        shared
            .turned_away
            .record(why, shared.clock.now_ms(), &shared.config);
    }
    closed
}
