//! The fixed pool of worker threads, and what a worker does with a
//! connection when its turn ends.
//!
//! Each worker takes the next connection from the line, serves it for one
//! turn (`worker`), and lets go of it: to the poller if it is quiet, to the
//! back of the line if its batch budget ran out while others wait, or to its
//! end. No thread is ever started per client. A worker never dies from a
//! client: errors end that connection only, and even a panic outside the
//! service is caught, logged and survived.
//!
//! A connection whose heartbeat deadline passed while it waited in line is
//! sent GOAWAY 3 and never occupies the worker (and is counted as a
//! rejection, not in the queue-wait histogram, which times the waits that
//! ended with a worker). While draining, a
//! connection taken from the line is sent GOAWAY 1 instead of being served.
//! Workers exit when they take the exit message the drain puts in line.

use std::net::Shutdown as How;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use crossbeam_utils::sync::WaitGroup;
use log::{debug, error, info, trace, warn};

use crate::access::{Ending, Why};
use crate::closer::Closing;
use crate::conn::{Conn, Travel, ACTIVE, QUEUED};
use crate::error::Error;
use crate::frame::GoAwayCode;
use crate::human;
use crate::reply::panic_message;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::worker::{leave_active, taken, End, Outcome, Worker};
use crate::{poller, reaper};

/// Starts `shared.config.workers` workers and returns once every one of
/// them is waiting for a connection. Each holds a clone of `done`, so the
/// receiving side disconnects when the last worker has exited.
pub(crate) fn spawn(shared: &Arc<Shared>, done: &Sender<()>) -> Result<Vec<JoinHandle<()>>, Error> {
    let ready = WaitGroup::new();
    let workers = (0..shared.config.workers)
        .map(|index| {
            let worker = Worker::new(index, Arc::clone(shared));
            let done = done.clone();
            let ready = ready.clone();
            std::thread::Builder::new()
                .name(format!("wharf-worker-{index}"))
                .spawn(move || run(worker, done, ready))
                .map_err(|source| Error::Spawn {
                    what: "worker",
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ready.wait();
    Ok(workers)
}

fn run(mut worker: Worker, done: Sender<()>, ready: WaitGroup) {
    let shared = Arc::clone(&worker.shared);
    shared.line.register_worker(worker.index);
    drop(ready);
    while let Some(conn) = shared.line.take(worker.index) {
        // Its deadline passed in line: BUSY, and it never takes a worker.
        if conn.expired(shared.clock.now_ms(), shared.config.heartbeat_timeout) {
            reaper::turn_away_late(&shared, &conn);
            continue;
        }
        // Closed by the reaper or the drain while it waited.
        if !conn.transition(QUEUED, ACTIVE) {
            continue;
        }
        if let Some(waited) = shared.line.waited_ns(&conn) {
            shared.stats.observe_queue_wait(worker.index, waited);
        }
        conn.log_served();
        // (A new connection already left `--queue` in `take`.)
        let mut travel = std::mem::take(&mut *conn.travel.lock());
        // Pairs with the drain, which sets the flag before it looks for
        // ACTIVE connections to wake: one of the two sees the other.
        if shared.shutdown.is_draining() {
            worker.finish(conn, travel, End::GoAway(GoAwayCode::Shutdown));
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| worker.serve(&conn, &mut travel))) {
            Ok(Outcome::End(end)) => worker.finish(conn, travel, end),
            Ok(Outcome::Rest) => worker.rest(conn, travel, false),
            Ok(Outcome::Hold) => worker.rest(conn, travel, true),
            Ok(Outcome::Requeue) => worker.requeue(conn, travel),
            Err(panic) => {
                error!(
                    "{}: worker recovered from a panic: {}",
                    conn.who(),
                    panic_message(&panic)
                );
                conn.log_ended(Ending::Panicked);
                conn.log_answered(travel.requests);
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
                worker.inbox.clear();
                worker.reset_output();
            }
        }
    }
    debug!("worker {} stopped", worker.index);
    drop(done);
}

impl Worker {
    /// Hands a quiet connection to the poller, with its unfinished bytes;
    /// `hold` keeps it from being watched until budget room frees.
    fn rest(&mut self, conn: Arc<Conn>, mut travel: Travel, hold: bool) {
        travel.carry = self.inbox.stash();
        self.reset_output();
        *conn.travel.lock() = travel;
        self.shared.stats.add_rest(self.index);
        trace!("{}: rests in the poller", conn.who());
        if poller::rest(&self.shared, &conn, hold).is_err() {
            self.finish_taken(conn);
        }
    }

    /// Sends a connection to the back of the line, with what it has not
    /// been answered yet.
    fn requeue(&mut self, conn: Arc<Conn>, mut travel: Travel) {
        travel.carry = self.inbox.stash();
        self.reset_output();
        *conn.travel.lock() = travel;
        if !leave_active(&conn, QUEUED) {
            return self.finish_taken(conn);
        }
        self.shared.stats.add_requeue(self.index);
        trace!(
            "{}: back in line after its batch of requests, others wait",
            conn.who()
        );
        if let Err(full) = self.shared.line.push(Arc::clone(&conn)) {
            error!("{}: the line is full, which should not happen", conn.who());
            self.shared.closer.turn_away(&full.0, Why::Trouble);
            return;
        }
        // The drain may have scanned before it was back in line.
        if self.shared.shutdown.is_draining() {
            self.shared.closer.turn_away(&conn, Why::Shutdown);
        }
    }

    /// The reaper or the drain took the connection while the worker was
    /// letting go of it: carry out what they decided.
    fn finish_taken(&mut self, conn: Arc<Conn>) {
        let travel = std::mem::take(&mut *conn.travel.lock());
        let end = taken(&conn);
        self.finish(conn, travel, end);
    }

    /// Carries out the end of a connection and gets the buffers ready for
    /// the next one. The session (in `travel`) is dropped here.
    pub(crate) fn finish(&mut self, conn: Arc<Conn>, travel: Travel, end: End) {
        self.inbox.clear();
        let shared = Arc::clone(&self.shared);
        if conn.access.is_some() {
            conn.log_ended(self.ending(&end));
            conn.log_answered(travel.requests);
        }
        match end {
            End::PeerClosed => {
                conn.shutdown(How::Write);
                shared.registry.remove(&conn);
            }
            End::Malformed(e) => {
                let reason = e.goaway_reason();
                return self.goodbye(conn, travel, e.goaway_code(), &reason);
            }
            End::GoAway(code) => return self.goodbye(conn, travel, code, code.reason()),
            End::Forced => {}
            End::WriteTimeout => {
                Stats::bump(&shared.stats.write_timeouts);
                warn!(
                    "{}: dropped, did not read its replies within the write timeout ({})",
                    conn.who(),
                    human::duration(shared.config.write_timeout)
                );
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
            End::Failed(e) => {
                // A client that goes away is the access log's business only.
                if !is_disconnect(&e) && !shared.shutdown.is_forced() {
                    warn!("{}: connection failed: {e}", conn.who());
                }
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
        }
        drop(travel);
        self.reset_output();
    }

    /// How `end` reads in the access log.
    fn ending(&self, end: &End) -> Ending {
        match end {
            End::PeerClosed => Ending::PeerClosed,
            End::GoAway(code) => Ending::GoAway(Why::from_code(*code)),
            End::Malformed(e) => Ending::GoAway(Why::from_code(e.goaway_code())),
            End::Forced => Ending::Forced,
            End::WriteTimeout => Ending::WriteTimeout,
            End::Failed(_) if self.shared.shutdown.is_forced() => Ending::Forced,
            End::Failed(e) if is_disconnect(e) => Ending::Reset,
            End::Failed(_) => Ending::Failed,
        }
    }

    /// Sends GOAWAY `code` with `reason` after the replies already written,
    /// then hands the connection to the closer.
    fn goodbye(&mut self, conn: Arc<Conn>, travel: Travel, code: GoAwayCode, reason: &str) {
        let shared = Arc::clone(&self.shared);
        if code == GoAwayCode::Shutdown {
            // Its requests are answered: what is left is no work.
            shared.line.winding(self.index);
        }
        if code == GoAwayCode::HeartbeatTimeout {
            info!(
                "{}: reaped, no complete frame within the heartbeat timeout",
                conn.who()
            );
        }
        shared
            .config
            .framing
            .encode_goaway(code, reason, &mut self.out);
        match self.flush(&conn) {
            Ok(()) => shared.closer.close(Closing { conn, goaway: None }),
            Err(end) => return self.finish(conn, travel, end),
        }
        drop(travel);
        self.reset_output();
    }
}

/// Whether an error just means the client went away: not worth a warning
/// (health checkers such as HAProxy's close with a reset on purpose).
fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
            | ErrorKind::UnexpectedEof
    )
}
