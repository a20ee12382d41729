//! The reaper thread: enforces heartbeat deadlines.
//!
//! Every `reap_interval` it scans the registry. A connection's deadline is
//! `heartbeat_timeout` after the latest of its accept, its last complete
//! frame and its last response; bytes of an unfinished frame do not count,
//! so a client dribbling a byte at a time is dropped like a silent one.
//!
//! - Waiting in line past its deadline (new, or sent back by the batch
//!   budget): sent GOAWAY 3 (BUSY) through the closer; it never occupies a
//!   worker. The server was busy, not the client silent: counted and
//!   reported at warn level about once a second, like the acceptor's
//!   turn-aways (see `turned_away`, whose pending counts each turn of this
//!   loop reports when they are due).
//! - Resting (or held): closed through the closer, no worker involved. With
//!   a complete request waiting in its socket (its bytes arrived, and the
//!   line was long) it too gets GOAWAY 3: the server kept it waiting, and
//!   the request never started, so the client may resend it. Otherwise it
//!   gets GOAWAY 2.
//! - Held by a worker (ACTIVE or BUSY): never reaped. A worker never waits
//!   for a client's bytes, so it holds a connection only while it answers,
//!   runs the service or writes replies, and `--write-timeout` bounds the
//!   writing.
//!
//! A worker that takes a connection whose deadline has passed does the same
//! (see `pool`), so a deadline is acted on within one interval, which the
//! configuration keeps at no more than a quarter of the heartbeat timeout.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info};

use crate::engine::socket;
use crate::observe::access::Ending;

use crate::engine::conn::{Conn, CLOSING, QUEUED, RESTING};
use crate::engine::inbox::holds_complete_request;
use crate::engine::shared::Shared;
use crate::observe::access::Why;
use crate::observe::alive::ALIVE_TICK;
use crate::observe::stats::Stats;
use crate::observe::turned_away::Busy;

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
        shared.refused.report(shared.clock.now_ms(), false);
        // Forgets the rate state of addresses whose bucket is full again,
        // so the table holds only addresses seen lately.
        shared.per_address.prune();
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
    let now = shared.clock.now_ms();
    for conn in shared.registry.snapshot() {
        // The state first, then the deadline: a worker moves the deadline
        // before it lets go of a connection, so a connection seen resting
        // or in line here is never judged by a deadline older than that.
        let state = conn.state();
        if !conn.expired(now) {
            continue;
        }
        match state {
            QUEUED => {
                turn_away_late(shared, &conn);
            }
            RESTING => {
                reap_resting(shared, &conn);
            }
            _ => {}
        }
    }
}

/// Closes a resting connection that missed its deadline, unless another
/// thread took it first: GOAWAY 2, or GOAWAY 3 if a complete request of its
/// was waiting (see the module docs). Also used by a worker that takes such
/// a connection. Returns whether this call closed it.
pub(crate) fn reap_resting(shared: &Shared, conn: &Arc<Conn>) -> bool {
    if !conn.transition(RESTING, CLOSING) {
        return false;
    }
    // From a balancer, its PROXY header did not come in time: a protocol
    // error, closed without a word.
    if conn.awaits_header() {
        Stats::bump(&shared.stats.protocol_errors);
        info!(
            "{}: protocol error (no PROXY header within the handshake timeout), closed \
             without a reply",
            conn.who()
        );
        shared.closer.close_silently(conn, Ending::BadHeader);
        return true;
    }
    // Its TLS handshake did not complete in time: closed without a word.
    if conn.handshaking() {
        Stats::bump(&shared.stats.tls_handshakes_timeout);
        debug!(
            "{}: no TLS handshake within the handshake timeout",
            conn.who()
        );
        shared.closer.close_silently(conn, Ending::HandshakeTimeout);
        return true;
    }
    let waited = {
        let travel = conn.travel.lock();
        if conn.tls {
            // Encrypted: a request it sent cannot be seen without reading
            // it. Bytes waiting in the socket, or a whole request already
            // decrypted, count as a request that waited.
            holds_complete_request(
                shared.config.framing,
                shared.config.max_frame,
                travel.carry.as_ref(),
                None,
            ) || socket::queued(&conn.stream).unwrap_or(0) > 0
        } else {
            holds_complete_request(
                shared.config.framing,
                shared.config.max_frame,
                travel.carry.as_ref(),
                Some(&conn.stream),
            )
        }
    };
    if waited {
        late(shared, Busy::QueueDeadline);
        shared
            .closer
            .close_taken(conn, Why::Busy(Busy::QueueDeadline));
    } else {
        Stats::bump(&shared.stats.reaped);
        info!(
            "{}: reaped, no complete frame within the heartbeat timeout",
            conn.who()
        );
        shared.closer.close_taken(conn, Why::HeartbeatTimeout);
    }
    true
}

/// Closes a connection whose deadline passed while it waited in line with
/// GOAWAY 3, unless another thread took it first: the server was busy, not
/// the client silent. Also used by a worker that takes such a connection
/// from the line between two scans. Returns whether this call closed it.
pub(crate) fn turn_away_late(shared: &Shared, conn: &Arc<Conn>) -> bool {
    let why = Busy::QueueDeadline;
    let closed = shared.closer.turn_away(conn, Why::Busy(why));
    if closed {
        late(shared, why);
    }
    closed
}

/// Counts a connection turned away late, for the warn line too.
fn late(shared: &Shared, why: Busy) {
    Stats::bump(shared.stats.rejected(why));
    shared
        .turned_away
        .record(why, shared.clock.now_ms(), &shared.config);
}
