//! The reaper thread: enforces heartbeat deadlines.
//!
//! Every `reap_interval` it scans the registry. A connection's deadline is
//! `heartbeat_timeout` after the latest of its accept, its last complete
//! frame and its last response; bytes of an unfinished frame do not count,
//! so a client dribbling a byte at a time is dropped like a silent one.
//!
//! - Still in the queue past its deadline: sent GOAWAY 3 (BUSY) and closed
//!   through the closer; it never occupies a worker.
//! - Being served: marked REAPED and its read side shut down, which wakes the
//!   worker blocked in `read`; the worker, the only writer of that socket,
//!   sends GOAWAY 2 and closes. If the worker is stuck writing to a client
//!   that does not read, a later scan (one interval plus the closer's linger
//!   after the deadline) shuts the socket down completely.
//! - BUSY (its service is running): never reaped.
//!
//! A missed deadline is therefore acted on within one interval, which the
//! configuration keeps at no more than a quarter of the heartbeat timeout.

use std::net::Shutdown as How;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info};

use crate::closer::LINGER;
use crate::connection::Shared;
use crate::frame::GoAwayCode;
use crate::pool;
use crate::registry::{Conn, ACTIVE, QUEUED, REAPED};
use crate::stats::Stats;

/// Scans every `reap_interval` until `stop` disconnects.
pub(crate) fn run(shared: Arc<Shared>, stop: Receiver<()>) {
    let interval = shared.config.reap_interval;
    // Nothing is ever sent on `stop`: it only disconnects.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        scan(&shared);
    }
    debug!("reaper stopped");
}

fn scan(shared: &Shared) {
    let timeout = shared.config.heartbeat_timeout;
    let now = shared.clock.now_ms();
    for conn in shared.registry.snapshot() {
        if !conn.expired(now, timeout) {
            continue;
        }
        match conn.state() {
            QUEUED => {
                // It stays in the queue: the acceptor takes it off the front
                // if it needs the room. Counted before it can be taken.
                shared.expired_in_queue.fetch_add(1, Ordering::SeqCst);
                if !turn_away_expired(shared, conn) {
                    pool::note_expired_taken(shared);
                }
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

/// Sends GOAWAY 3 to a connection whose deadline passed while it waited in
/// the queue, unless someone took it first. Used by the reaper's scan and
/// by a worker that dequeues an expired connection between two scans.
/// Returns whether this call turned it away.
pub(crate) fn turn_away_expired(shared: &Shared, conn: Arc<Conn>) -> bool {
    let peer = conn.peer;
    let turned_away = shared.closer.turn_away(conn, GoAwayCode::Busy);
    if turned_away {
        Stats::bump(&shared.stats.rejected_busy);
        info!("{peer}: waited in the queue past its heartbeat deadline; sent BUSY");
    }
    turned_away
}
