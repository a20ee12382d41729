//! Serving one connection for one turn on a worker thread: the hot path.
//!
//! A turn starts when a worker takes a connection from the line and ends
//! when it lets go of it. In between, the worker repeats: answer every
//! complete frame in its buffer, write all the replies at once, then either
//! read more or let go. Letting go is one of three [`Outcome`]s:
//!
//! - **Rest**: nothing to answer and nothing more to read without waiting,
//!   while somebody else needs a worker (or the budget is spent). The
//!   connection goes to the poller with its unfinished bytes.
//! - **Requeue**: it has had its batch budget ([`BATCH_BUDGET`] requests
//!   this turn) and others wait: it goes to the back of the line, carrying
//!   whatever it has not been answered yet (never to the poller, which would
//!   not see bytes already read).
//! - **End**: the client closed, a GOAWAY is due, or the socket failed.
//!
//! With nobody waiting the worker *stays*: it blocks in `read` on its quiet
//! connection, one system call per request as in a thread-per-connection
//! server, until bytes arrive or another connection needs it (see `wake`).
//! Called away, it lets go of its connection even if bytes arrived at the
//! same moment (they go back in line with it): the connection in line asked
//! first. With somebody waiting it reads without blocking and rests the
//! connection if nothing is there.
//!
//! Heartbeat bookkeeping is a timestamp store when a batch has been answered
//! and another when its replies are written, and the BUSY mark (the service
//! is running; never reap) is one uncontended swap in and one out, per
//! batch. Between frames the worker checks the drain flag, so a drain lets
//! the request in progress finish and answers nothing after it.

use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::Arc;

use log::{info, log_enabled, trace, Level};
use socket2::SockRef;

use crate::access;
use crate::conn::{Conn, Travel, ACTIVE, BUSY, FORCED, REAPED};
use crate::frame::{DecodeError, GoAwayCode};
use crate::inbox::Inbox;
use crate::queue::Stay;
use crate::reply::{self, Context};
use crate::shared::Shared;
use crate::stats::Stats;
use crate::{wake, writer};

/// Requests a connection may have answered in one turn before it goes back
/// behind others that wait (like memcached's `-R`, 20 requests per event).
pub const BATCH_BUDGET: u32 = 20;

/// Replies are written out early once this many bytes are pending.
const FLUSH_AT: usize = 256 * 1024;
/// Write buffer capacity kept between connections.
const WRITE_BUF_KEEP: usize = 64 * 1024;

/// How a turn ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Quiet: hand it to the poller.
    Rest,
    /// An unfinished frame while the `--max-buffered` budget is spent: keep
    /// it away from the poller until room frees (see `budget`).
    Hold,
    /// Batch budget used while others wait: back of the line.
    Requeue,
    /// The connection ends.
    End(End),
}

/// How a connection ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed its side; every complete request was answered.
    PeerClosed,
    /// The server ends the connection with this GOAWAY after the replies.
    GoAway(GoAwayCode),
    /// The stream can never become a valid frame: GOAWAY 4 or 5 after the
    /// replies, with a reason that says what was wrong (see
    /// [`DecodeError::goaway_reason`]).
    Malformed(DecodeError),
    /// The drain was forced; the server already closed the socket.
    Forced,
    /// The client stopped taking its replies.
    WriteTimeout,
    /// The socket failed (reset by the client, ...).
    Failed(io::Error),
}

/// What one read attempt found.
enum Read {
    Data(usize),
    /// Nothing there, or the worker was called away: decide again.
    Nothing,
    /// Only part of a frame, left unread: the budget is spent.
    Unfinished,
    /// Interrupted while staying, having read this many bytes: a connection
    /// in line needs the worker, and it came first.
    CalledAway(usize),
    Eof,
    Failed(io::Error),
}

/// One worker's reusable state.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) inbox: Inbox,
    pub(crate) out: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(index: usize, shared: Arc<Shared>) -> Self {
        let inbox = Inbox::new(
            shared.config.framing,
            shared.config.max_frame,
            Arc::clone(&shared.budget),
        );
        Worker {
            index,
            shared,
            inbox,
            out: Vec::with_capacity(WRITE_BUF_KEEP),
        }
    }

    /// Serves `conn` (ACTIVE, held by this worker) for one turn. Its carried
    /// bytes are taken from `travel`; whatever is left unanswered stays in
    /// the inbox for the caller to stash or clear.
    pub(crate) fn serve(&mut self, conn: &Conn, travel: &mut Travel) -> Outcome {
        if let Some(carry) = travel.carry.take() {
            self.inbox.restore(carry);
        }
        let mut answered = 0;
        loop {
            let before = answered;
            let more = match self.answer_buffered(conn, travel, &mut answered) {
                Ok(more) => more,
                Err(end) => return Outcome::End(end),
            };
            if !self.out.is_empty() {
                if let Err(end) = self.flush(conn) {
                    return Outcome::End(end);
                }
                conn.touch(self.shared.clock.now_ms());
            }
            if self.shared.shutdown.is_draining() {
                return Outcome::End(End::GoAway(GoAwayCode::Shutdown));
            }
            let waits = self.shared.line.someone_waits();
            if waits && answered >= u64::from(BATCH_BUDGET) {
                return Outcome::Requeue;
            }
            if more {
                continue;
            }
            // Nothing complete is left: what is buffered is unfinished.
            self.inbox.count_unfinished();
            // Others wait, and this connection was just answered: its next
            // request is most likely not here yet (a ping-pong client waits
            // for the reply first), so rest it without a read that would
            // come back empty. Re-arming the poller checks the socket anyway.
            if waits && answered > before {
                return Outcome::Rest;
            }
            let spent = self.shared.budget.is_spent();
            let read = if spent {
                self.read_complete_frames(conn)
            } else {
                self.read(conn, waits)
            };
            match read {
                Read::Data(n) => self.inbox.filled(n),
                Read::Nothing if spent || waits || !self.shared.config.stay_on_quiet => {
                    return Outcome::Rest
                }
                Read::Nothing => {}
                Read::Unfinished => return Outcome::Hold,
                // Bytes already read must not wait in the poller, which
                // would not see them: back of the line with them.
                Read::CalledAway(0) => return Outcome::Rest,
                Read::CalledAway(n) => {
                    self.inbox.filled(n);
                    return Outcome::Requeue;
                }
                Read::Eof => return Outcome::End(self.after_eof(conn)),
                Read::Failed(e) => return Outcome::End(End::Failed(e)),
            }
        }
    }

    /// Reads what the socket has. With somebody waiting (or staying turned
    /// off) it does not block; otherwise the worker stays on the connection.
    fn read(&mut self, conn: &Conn, waits: bool) -> Read {
        if waits || !self.shared.config.stay_on_quiet {
            return classify(recv_now(&conn.stream, self.inbox.spare()));
        }
        let line = &self.shared.line;
        wake::begin(&conn.stream);
        match line.begin_stay(self.index) {
            // Announced before it looks at the drain flag: a drain that
            // started before the announcement did not see it (see
            // `Line::interrupt_staying`), so do not stay.
            Stay::Yes if self.shared.shutdown.is_draining() => {
                wake::end();
                if line.end_stay(self.index) {
                    wake::absorb(&conn.stream);
                }
                return Read::CalledAway(0);
            }
            Stay::Yes => {}
            Stay::No => {
                wake::end();
                return classify(recv_now(&conn.stream, self.inbox.spare()));
            }
            Stay::Interrupted => {
                wake::end();
                wake::absorb(&conn.stream);
                return Read::CalledAway(0);
            }
        }
        let result = wake::read(&conn.stream, self.inbox.spare());
        if !line.end_stay(self.index) {
            wake::restore_blocking(&conn.stream);
        } else {
            wake::absorb(&conn.stream);
            match result {
                Ok(n) if n > 0 => return Read::CalledAway(n),
                Err(ref e)
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) =>
                {
                    return Read::CalledAway(0)
                }
                _ => {}
            }
        }
        classify(result)
    }

    /// While the budget is spent, reads only bytes that complete frames:
    /// it looks at what the socket holds without taking it, and takes it
    /// only up to the end of the last complete frame. The rest stays in the
    /// kernel, where TCP flow control holds the client back.
    fn read_complete_frames(&mut self, conn: &Conn) -> Read {
        let peeked = match peek_now(&conn.stream, self.inbox.spare()) {
            Ok(0) => return Read::Eof,
            Ok(n) => n,
            Err(e) => return classify(Err(e)),
        };
        match self.inbox.complete_prefix(peeked) {
            0 => Read::Unfinished,
            complete => classify(recv_now(&conn.stream, &mut self.inbox.spare()[..complete])),
        }
    }

    /// Answers the complete frames at the front of the inbox. Returns
    /// whether complete frames may remain (the output buffer filled up, or
    /// the batch budget ran out while others wait).
    fn answer_buffered(
        &mut self,
        conn: &Conn,
        travel: &mut Travel,
        answered: &mut u64,
    ) -> Result<bool, End> {
        let shared = &*self.shared;
        let mut cx = Context {
            framing: shared.config.framing,
            service: &*shared.service,
            stats: &shared.stats,
            worker: self.index,
            timed: shared.timed,
            data: 0,
            conn: &conn.info,
            session: &mut travel.session,
        };
        let mut busy = false;
        let mut batch: u64 = 0;
        // Once per batch, not per frame: at info level this is all the
        // per-frame trace lines cost.
        let tracing = log_enabled!(Level::Trace);
        let outcome = loop {
            if shared.shutdown.is_draining() {
                break Err(End::GoAway(GoAwayCode::Shutdown));
            }
            match self.inbox.next_frame() {
                Err(e) => break Err(protocol_error(shared, conn, e)),
                Ok(None) => break Ok(false),
                Ok(Some(frame)) => {
                    if !busy {
                        if !leave_active(conn, BUSY) {
                            return Err(taken(conn));
                        }
                        busy = true;
                    }
                    if tracing {
                        let bytes = frame.payload.len();
                        trace!(
                            "{}: request {}: {} frame, {bytes} {} of payload",
                            conn.who(),
                            travel.requests + batch + 1,
                            access::kind_name(frame.kind),
                            if bytes == 1 { "byte" } else { "bytes" }
                        );
                    }
                    reply::answer(&mut cx, frame, &mut self.out);
                    batch += 1;
                    if self.out.len() >= FLUSH_AT {
                        break Ok(true);
                    }
                    // Every BATCH_BUDGET requests of a turn, see whether
                    // others wait: if so, stop here and let the rest of the
                    // buffer go back in line with the connection.
                    let total = *answered + batch;
                    if total.is_multiple_of(u64::from(BATCH_BUDGET)) && shared.line.someone_waits()
                    {
                        break Ok(true);
                    }
                }
            }
        };
        if busy {
            *answered += batch;
            travel.requests += batch;
            shared.stats.add_requests(self.index, batch);
            shared.stats.add_data_requests(self.index, cx.data);
            conn.touch(shared.clock.now_ms());
            if !conn.transition(BUSY, ACTIVE) {
                return Err(taken(conn));
            }
        }
        outcome
    }

    /// The read side reported end-of-stream: the client closed, or another
    /// thread shut the read side to wake this worker.
    fn after_eof(&self, conn: &Conn) -> End {
        if self.shared.shutdown.is_draining() {
            End::GoAway(GoAwayCode::Shutdown)
        } else if conn.state() == REAPED {
            End::GoAway(GoAwayCode::HeartbeatTimeout)
        } else {
            End::PeerClosed
        }
    }

    /// Writes the pending replies.
    pub(crate) fn flush(&mut self, conn: &Conn) -> Result<(), End> {
        let result =
            writer::write_within(&conn.stream, &self.out, self.shared.config.write_timeout);
        self.out.clear();
        result.map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => End::WriteTimeout,
            _ => End::Failed(e),
        })
    }

    /// Gets the output buffer ready for the next connection.
    pub(crate) fn reset_output(&mut self) {
        self.out.clear();
        if self.out.capacity() > WRITE_BUF_KEEP {
            self.out.shrink_to(WRITE_BUF_KEEP);
        }
    }
}

fn protocol_error(shared: &Shared, conn: &Conn, e: DecodeError) -> End {
    Stats::bump(&shared.stats.protocol_errors);
    info!("{}: protocol error ({e}), sending GOAWAY", conn.who());
    End::Malformed(e)
}

/// Moves a connection its worker holds out of ACTIVE. The reaper may have
/// taken it and, finding its deadline moved meanwhile, be giving it back:
/// if it is ACTIVE again, try again.
pub(crate) fn leave_active(conn: &Conn, to: u8) -> bool {
    for _ in 0..2 {
        if conn.transition(ACTIVE, to) {
            return true;
        }
        if conn.state() != ACTIVE {
            return false;
        }
    }
    false
}

/// Another thread took the connection away from its worker.
pub(crate) fn taken(conn: &Conn) -> End {
    match conn.state() {
        REAPED => End::GoAway(GoAwayCode::HeartbeatTimeout),
        FORCED => End::Forced,
        other => End::Failed(io::Error::other(format!(
            "connection in state {}",
            crate::conn::state_name(other)
        ))),
    }
}

/// One `recv` that does not block, whatever the socket's mode.
fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `recv` only writes initialised bytes, so viewing the
    // initialised buffer as possibly-uninitialised memory is sound.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    SockRef::from(stream).recv_with_flags(buf, libc::MSG_DONTWAIT)
}

/// One `recv` that looks without taking and does not block.
fn peek_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: as in `recv_now`.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    SockRef::from(stream).recv_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_PEEK)
}

fn classify(result: io::Result<usize>) -> Read {
    match result {
        Ok(0) => Read::Eof,
        Ok(n) => Read::Data(n),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            Read::Nothing
        }
        Err(e) => Read::Failed(e),
    }
}
