//! The fixed pool of worker threads, and what a worker does with a
//! connection when its turn ends.
//!
//! Each worker waits in line (`line`) for the next connection with work,
//! serves it for one turn (`worker`), and lets go of it: to rest in the
//! epoll set if it is quiet (`resting`), to the back of the line if its batch
//! budget ran out while somebody waits (and then it serves the one that
//! waited), or to its end. No thread is ever started per client. A worker
//! never dies from a client: errors end that connection only, and even a
//! panic outside the service is caught, logged and survived.
//!
//! A connection whose heartbeat deadline passed while it waited in line is
//! not served (see `reaper`): GOAWAY 3 if it waited with work, GOAWAY 2 if
//! its bytes came too late; it never occupies the worker (and a GOAWAY 3 is
//! counted as a rejection, not in the queue-wait histogram, which times the
//! waits that ended with a worker). While draining, a connection taken from
//! the line is sent GOAWAY 1 instead of being served. Workers exit when
//! they find the drain's event in line.

use std::io::Write as _;
use std::net::Shutdown as How;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use crossbeam_utils::sync::WaitGroup;
use log::{debug, error, info, trace, warn};

use crate::engine::acceptor::turned_away_by;
use crate::engine::closer::Closing;
use crate::engine::conn::{Conn, Travel, ACTIVE, QUEUED, RESTING};
use crate::engine::line::Event;
use crate::engine::reaper;
use crate::engine::reply::panic_message;
use crate::engine::resting::{self, Wake};
use crate::engine::shared::Shared;
use crate::engine::socket;
use crate::engine::tls;
use crate::engine::worker::{taken, End, Outcome, Worker};
use crate::error::Error;
use crate::frame::{limited_reason, GoAwayCode};
use crate::human;
use crate::observe::access::{Ending, Why};
use crate::observe::refused::Cause;
use crate::observe::stats::Stats;

/// Starts `shared.config.workers` workers and returns once every one of
/// them is about to wait in line. Each holds a clone of `done`, so the
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
    // What the batch budget found waiting, served before the line again.
    let mut next = None;
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => shared.line.take(worker.index),
        };
        let conn = match event {
            Event::Drain => break,
            Event::Room => {
                resting::release_held(&shared);
                continue;
            }
            Event::Conn(key) => match claim(&shared, worker.index, key) {
                Some(claimed) => claimed,
                None => continue,
            },
        };
        next = worker.turn(conn);
    }
    shared.line.exited(worker.index);
    debug!("worker {} stopped", worker.index);
    drop(done);
}

/// Takes the connection an event in line is for, if it is still there and
/// still waiting (QUEUED or RESTING): it is then ACTIVE, held by this
/// worker. One whose deadline has passed is closed instead.
fn claim(shared: &Shared, me: usize, key: usize) -> Option<Claimed> {
    let conn = shared.registry.get(key)?;
    let expired = conn.expired(shared.clock.now_ms());
    match conn.state() {
        QUEUED if expired => {
            reaper::turn_away_late(shared, &conn);
            None
        }
        QUEUED if conn.transition(QUEUED, ACTIVE) => {
            if let Some(waited) = shared.line.waited_ns(&conn) {
                shared.stats.observe_queue_wait(me, waited);
            }
            Some(Claimed { conn, woken: false })
        }
        RESTING if expired => {
            reaper::reap_resting(shared, &conn);
            None
        }
        RESTING if conn.transition(RESTING, ACTIVE) => {
            shared.stats.add_wakeup(me);
            trace!("{}: woken, bytes arrived", conn.who());
            Some(Claimed { conn, woken: true })
        }
        // Closed by the reaper or the drain meanwhile.
        _ => None,
    }
}

/// How a connection rests.
enum Resting {
    /// Quiet; with an unfinished frame whose size is known, until this many
    /// more bytes have arrived.
    Quiet(Option<usize>),
    /// An unfinished frame of this many more bytes, while the budget is
    /// spent.
    Spent(usize),
}

/// A connection a worker took from the line.
struct Claimed {
    conn: Arc<Conn>,
    /// It was resting, and its bytes arrived: how long they waited in line
    /// is read with them (see `Worker::serve`).
    woken: bool,
}

impl Worker {
    /// One turn on a connection this worker took from the line, and what
    /// becomes of it. Returns what the batch budget found waiting in line,
    /// if the connection went back behind it.
    fn turn(&mut self, Claimed { conn, woken }: Claimed) -> Option<Event> {
        let shared = Arc::clone(&self.shared);
        self.time_next_read = woken && shared.timed;
        conn.log_served();
        let mut travel = std::mem::take(&mut *conn.travel.lock());
        // A new connection leaves `--queue` now that a worker has it.
        drop(travel.place.take());
        if std::mem::take(&mut travel.lowat) {
            if let Err(e) = socket::set_lowat(&conn.stream, 1) {
                warn!(
                    "{}: cannot lower the receive low-water mark: {e}",
                    conn.who()
                );
            }
        }
        // Pairs with the drain, which sets the flag before it looks for
        // connections in line or resting: one of the two sees the other.
        if shared.shutdown.is_draining() {
            self.finish(conn, travel, End::GoAway(GoAwayCode::Shutdown));
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| self.serve(&conn, &mut travel))) {
            Ok(Outcome::End(end)) => self.finish(conn, travel, end),
            Ok(Outcome::Rest(until)) => self.rest(conn, travel, Resting::Quiet(until)),
            Ok(Outcome::Await(more)) => self.rest(conn, travel, Resting::Spent(more)),
            Ok(Outcome::Requeue(event)) => {
                self.requeue(conn, travel);
                return Some(event);
            }
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
                self.inbox.clear();
                self.reset_output();
            }
        }
        None
    }

    /// Lets a quiet connection rest, with its unfinished bytes, to be woken
    /// as `resting` says (see the `resting` module).
    fn rest(&mut self, conn: Arc<Conn>, mut travel: Travel, resting: Resting) {
        travel.carry = self.inbox.stash();
        self.reset_output();
        let wake = match resting {
            Resting::Quiet(None) => Wake::Bytes,
            // The kernel may grant less (or wake early when its receive
            // window is nearly shut): either way the bytes get read.
            Resting::Quiet(Some(more)) => {
                // Through TLS, part of the frame may sit in the session as
                // an unfinished record: only what lies beyond one record is
                // sure to cross the socket.
                let more = match travel.tls {
                    Some(_) => more.saturating_sub(tls::MAX_RECORD_PLAINTEXT).max(1),
                    None => more,
                };
                travel.lowat = socket::set_lowat(&conn.stream, more).is_ok();
                Wake::Bytes
            }
            Resting::Spent(more) => {
                travel.lowat = true;
                if matches!(socket::set_lowat(&conn.stream, more), Ok(true)) {
                    Wake::WholeOrRoom
                } else {
                    // More than the kernel waits for: only room wakes it.
                    travel.lowat = false;
                    let _ = socket::set_lowat(&conn.stream, 1);
                    Wake::Room
                }
            }
        };
        *conn.travel.lock() = travel;
        self.shared.stats.add_rest(self.index);
        trace!("{}: rests", conn.who());
        if resting::rest(&self.shared, &conn, wake).is_err() {
            self.finish_taken(conn);
        }
    }

    /// Sends a connection to the back of the line, with what it has not
    /// been answered yet.
    fn requeue(&mut self, conn: Arc<Conn>, mut travel: Travel) {
        travel.carry = self.inbox.stash();
        self.reset_output();
        *conn.travel.lock() = travel;
        if !conn.transition(ACTIVE, QUEUED) {
            return self.finish_taken(conn);
        }
        self.shared.stats.add_requeue(self.index);
        trace!(
            "{}: back in line after its batch of requests, somebody waits",
            conn.who()
        );
        if let Err(e) = self.shared.line.put_back(&conn) {
            error!("{}: cannot put a connection back in line: {e}", conn.who());
            self.shared.closer.turn_away(&conn, Why::Trouble);
            return;
        }
        // The drain may have scanned before it was back in line.
        if self.shared.shutdown.is_draining() {
            self.shared.closer.turn_away(&conn, Why::Shutdown);
        }
    }

    /// A forced stop took the connection while the worker was letting go of
    /// it: carry that out.
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
        // Before its handshake completes, a TLS connection is closed without
        // a word: no GOAWAY before the keys are agreed.
        let end = match end {
            End::GoAway(_) | End::Malformed(_) if conn.handshaking() => End::Unshaken,
            end => end,
        };
        if conn.access.is_some() {
            conn.log_ended(self.ending(&conn, &end));
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
            End::Unshaken => {
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
            End::Limited(limited) => {
                let why = turned_away_by(limited.limit);
                Stats::bump(shared.stats.rejected(why));
                let now = shared.clock.now_ms();
                shared.turned_away.record(why, now, &shared.config);
                if !conn.handshaking() {
                    let reason = limited_reason(limited.retry_after, &why.describe(&shared.config));
                    return self.goodbye(conn, travel, GoAwayCode::Limited, &reason);
                }
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
            End::BadHeader(why) => {
                Stats::bump(&shared.stats.protocol_errors);
                info!(
                    "{}: protocol error ({why}), closed without a reply",
                    conn.who()
                );
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
            End::Tls(e) => {
                Stats::bump(&shared.stats.tls_handshakes_failed);
                let detail = format!("{}: {e}", conn.who());
                shared
                    .refused
                    .record(Cause::of(&e), detail, shared.clock.now_ms());
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
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
    fn ending(&self, conn: &Conn, end: &End) -> Ending {
        match end {
            End::PeerClosed => Ending::PeerClosed,
            End::GoAway(code) => Ending::GoAway(Why::from_code(*code)),
            End::Malformed(e) => Ending::GoAway(Why::from_code(e.goaway_code())),
            End::Forced => Ending::Forced,
            End::Unshaken => Ending::Unshaken(Why::Shutdown),
            End::BadHeader(_) => Ending::BadHeader,
            End::Limited(limited) => {
                let why = Why::Busy(turned_away_by(limited.limit));
                if conn.handshaking() {
                    Ending::Unshaken(why)
                } else {
                    Ending::GoAway(why)
                }
            }
            End::Tls(_) => Ending::TlsRefused,
            End::WriteTimeout => Ending::WriteTimeout,
            End::Failed(_) if self.shared.shutdown.is_forced() => Ending::Forced,
            End::Failed(e) if is_disconnect(e) => Ending::Reset,
            End::Failed(_) => Ending::Failed,
        }
    }

    /// Sends GOAWAY `code` with `reason` after the replies already written,
    /// then hands the connection to the closer.
    fn goodbye(&mut self, conn: Arc<Conn>, mut travel: Travel, code: GoAwayCode, reason: &str) {
        let shared = Arc::clone(&self.shared);
        if code == GoAwayCode::Shutdown {
            // Its requests are answered: what is left is no work.
            shared.line.winding(self.index);
        }
        shared
            .config
            .framing
            .encode_goaway(code, reason, &mut self.out);
        // Over TLS, the close_notify alert follows the last replies and the
        // GOAWAY: they are sealed into the session first (the session has
        // no buffer limit, so this takes them all).
        if let Some(session) = travel.tls.as_deref_mut() {
            let _ = session.writer().write_all(&self.out);
            self.out.clear();
            session.send_close_notify();
        }
        match self.flush(&conn, travel.tls.as_deref_mut()) {
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
