//! Serving one connection for one turn on a worker thread: the hot path.
//!
//! A turn starts when a worker takes a connection from the line and ends
//! when it lets go of it. In between, the worker repeats: answer every
//! complete frame in its buffer, write all the replies at once, then either
//! read more or let go. Letting go is one of these [`Outcome`]s:
//!
//! - **Rest**: nothing to answer and nothing more to read without waiting.
//!   The connection is armed in the epoll set with its unfinished bytes, and
//!   its next bytes put it back in line. A worker that has just answered
//!   rests the connection at once, without a read that would come back
//!   empty, unless its last read filled the buffer: arming checks the
//!   socket anyway. An unfinished frame whose length is known raises the
//!   socket's receive low-water mark to what it still needs, so a large
//!   frame arriving in many pieces wakes a worker once, not once a piece.
//! - **Await** (only while the `--max-buffered` budget is spent): an
//!   unfinished frame, which is not read further; the connection rests until
//!   the whole frame has arrived (see `resting`).
//! - **Requeue**: it has had its batch budget ([`BATCH_BUDGET`] requests
//!   this turn) and somebody waits: it goes to the back of the line,
//!   carrying whatever it has not been answered yet (never to rest, where
//!   bytes already read would never wake it), and the worker serves the one
//!   that waited.
//! - **End**: the client closed, a GOAWAY is due, or the socket failed.
//!
//! A worker never waits for a client: every read is non-blocking, and only
//! writing replies may block, within `--write-timeout`.
//!
//! Heartbeat bookkeeping is a timestamp store when a batch has been answered
//! and another when its replies are written, and the BUSY mark (the service
//! is running; never reap) is one uncontended swap in and one out, per
//! batch. Between frames the worker checks the drain flag, so a drain lets
//! the request in progress finish and answers nothing after it.

use std::io::{self, ErrorKind};
use std::sync::Arc;

use log::{info, log_enabled, trace, Level};

use crate::engine::conn::{Conn, Travel, ACTIVE, BUSY, FORCED};
use crate::engine::header::{self, Header};
use crate::engine::inbox::Inbox;
use crate::engine::line::Event;
use crate::engine::per_address::{ClientKey, Limited};
use crate::engine::reply::{self, Context};
use crate::engine::shared::Shared;
use crate::engine::{tls, writer};
use crate::frame::{DecodeError, GoAwayCode};
use crate::observe::access;
use crate::observe::stats::Stats;

/// Requests a connection may have answered in one turn before it goes back
/// behind others that wait (like memcached's `-R`, 20 requests per event).
pub const BATCH_BUDGET: u32 = 20;

/// Replies are written out early once this many bytes are pending.
const FLUSH_AT: usize = 256 * 1024;
/// Write buffer capacity a worker starts with.
const WRITE_BUF: usize = 64 * 1024;
/// Write buffer capacity kept between connections (see `inbox::KEEP_BUF`).
const WRITE_BUF_KEEP: usize = 256 * 1024 + 64;

/// How a turn ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Quiet: arm it in the epoll set; with an unfinished frame whose size
    /// is known, to wake once this many more bytes have arrived.
    Rest(Option<usize>),
    /// An unfinished frame while the `--max-buffered` budget is spent: rest
    /// until this many more bytes have arrived (see `resting`).
    Await(usize),
    /// Batch budget used while somebody waits: back of the line. The worker
    /// found what waited, and serves it next.
    Requeue(Event),
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
    /// The TLS layer refused the client: its handshake failed, or it sent
    /// a record that does not decrypt. Closed with the alert rustls sent,
    /// no GOAWAY.
    Tls(rustls::Error),
    /// A TLS connection whose handshake had not completed: closed without
    /// a word (the drain, say).
    Unshaken,
    /// From a balancer, it did not start with a valid PROXY header: a
    /// protocol error, closed without a reply.
    BadHeader(&'static str),
    /// The client its PROXY header named is over a per-address limit:
    /// GOAWAY 6, or on a TLS listener closed without a handshake.
    Limited(Limited),
}

/// What one read attempt found.
pub(crate) enum Read {
    /// This many bytes; `filled`: as many as there was room for, so the
    /// socket may hold more.
    Data {
        n: usize,
        filled: bool,
    },
    /// Nothing there.
    Nothing,
    /// Only part of a frame, left unread (the budget is spent): the socket
    /// must receive this many more bytes to complete it.
    Unfinished(usize),
    Eof,
    Failed(io::Error),
    /// The TLS layer refused the client (a failed handshake, a bad record).
    Refused(rustls::Error),
}

/// How answering the buffered frames stopped.
enum Answered {
    /// Nothing complete is left.
    All,
    /// The output buffer filled up: write, then go on.
    More,
    /// The batch budget ran out and somebody waits: what was found.
    Yield(Event),
}

/// One worker's reusable state.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) inbox: Inbox,
    pub(crate) out: Vec<u8>,
    /// Time the wait of the bytes the next read takes (a woken connection,
    /// with the histograms on): the kernel stamps their arrival.
    pub(crate) time_next_read: bool,
    /// TLS records on their way to the socket (see `tls`).
    pub(crate) sealed: Vec<u8>,
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
            out: Vec::with_capacity(WRITE_BUF),
            time_next_read: false,
            sealed: Vec::new(),
        }
    }

    /// Serves `conn` (ACTIVE, held by this worker) for one turn. Its carried
    /// bytes are taken from `travel`; whatever is left unanswered stays in
    /// the inbox for the caller to stash or clear.
    pub(crate) fn serve(&mut self, conn: &Conn, travel: &mut Travel) -> Outcome {
        if conn.awaits_header() {
            match header::read(conn) {
                Header::Read(client) => {
                    let shared = &self.shared;
                    conn.header_read(
                        client,
                        shared.clock.now_ms(),
                        shared.config.heartbeat_timeout,
                    );
                    travel.info = Some(conn.view());
                    // The client is known now: the per-address limits decide.
                    match shared.per_address.admit(ClientKey::from(conn.client())) {
                        Ok(address) => conn.hold_address(address),
                        Err(limited) => return Outcome::End(End::Limited(limited)),
                    }
                }
                Header::Wait(need) => return Outcome::Rest(Some(need)),
                Header::Closed => return Outcome::End(End::PeerClosed),
                Header::Bad(why) => return Outcome::End(End::BadHeader(why)),
                Header::Failed(e) => return Outcome::End(End::Failed(e)),
            }
        }
        if let Some(carry) = travel.carry.take() {
            self.inbox.restore(carry);
        }
        if conn.tls && travel.tls.is_none() {
            match self
                .shared
                .tls
                .as_ref()
                .map(|tls| tls::session(tls.config()))
            {
                Some(Ok(session)) => travel.tls = Some(session),
                Some(Err(e)) => return Outcome::End(End::Tls(e)),
                None => {
                    let e = io::Error::other("a TLS listener without a TLS set");
                    return Outcome::End(End::Failed(e));
                }
            }
        }
        let mut answered = 0;
        // Whether the last read took all the socket had.
        let mut drained = false;
        loop {
            let before = answered;
            let answer = match self.answer_buffered(conn, travel, &mut answered) {
                Ok(answer) => answer,
                Err(end) => return Outcome::End(end),
            };
            if !self.out.is_empty() {
                if let Err(end) = self.flush(conn, travel.tls.as_deref_mut()) {
                    return Outcome::End(end);
                }
                conn.touch(self.shared.clock.now_ms());
            }
            if let Answered::Yield(event) = answer {
                return Outcome::Requeue(event);
            }
            if self.shared.shutdown.is_draining() {
                return Outcome::End(End::GoAway(GoAwayCode::Shutdown));
            }
            if let Answered::More = answer {
                continue;
            }
            // Nothing complete is left: what is buffered is unfinished.
            self.inbox.count_unfinished();
            // Just answered, and the last read took everything there was:
            // the next request is most likely not here yet (a ping-pong
            // client waits for the reply first). Arming checks anyway.
            if drained && answered > before {
                return Outcome::Rest(self.inbox.still_needs());
            }
            let read = self.read(conn, travel);
            match read {
                Read::Data { n, filled } => {
                    self.inbox.filled(n);
                    drained = !filled;
                }
                Read::Nothing => return Outcome::Rest(self.inbox.still_needs()),
                Read::Unfinished(more) => return Outcome::Await(more),
                Read::Eof => return Outcome::End(self.after_eof()),
                Read::Failed(e) => return Outcome::End(End::Failed(e)),
                Read::Refused(e) => return Outcome::End(End::Tls(e)),
            }
        }
    }

    /// Answers the complete frames at the front of the inbox, and says why
    /// it stopped: nothing complete left, the output buffer full, or the
    /// batch budget used up while somebody waits in line.
    fn answer_buffered(
        &mut self,
        conn: &Conn,
        travel: &mut Travel,
        answered: &mut u64,
    ) -> Result<Answered, End> {
        let shared = &*self.shared;
        let mut cx = Context {
            framing: shared.config.framing,
            service: &*shared.service,
            stats: &shared.stats,
            worker: self.index,
            timed: shared.timed,
            data: 0,
            conn: travel.info.as_ref().unwrap_or(&conn.info),
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
                Ok(None) => break Ok(Answered::All),
                Ok(Some(frame)) => {
                    if !busy {
                        if !conn.transition(ACTIVE, BUSY) {
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
                        break Ok(Answered::More);
                    }
                    // Every BATCH_BUDGET requests of a turn, see whether
                    // somebody waits: if so, stop here and let the rest of
                    // the buffer go back in line with the connection.
                    let total = *answered + batch;
                    if total.is_multiple_of(u64::from(BATCH_BUDGET)) {
                        if let Some(event) = shared.line.probe() {
                            break Ok(Answered::Yield(event));
                        }
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

    /// The client closed its side: every complete request it sent has been
    /// answered (during a drain it still gets its GOAWAY 1).
    fn after_eof(&self) -> End {
        if self.shared.shutdown.is_draining() {
            End::GoAway(GoAwayCode::Shutdown)
        } else {
            End::PeerClosed
        }
    }

    /// Writes the pending replies.
    pub(crate) fn flush(
        &mut self,
        conn: &Conn,
        tls: Option<&mut rustls::ServerConnection>,
    ) -> Result<(), End> {
        let limit = self.shared.config.write_timeout;
        let result = match tls {
            None => writer::write_within(&conn.stream, &self.out, limit),
            Some(session) => {
                tls::write_all(session, &conn.stream, &self.out, limit, &mut self.sealed)
            }
        };
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

/// Another thread took the connection away from its worker: only a forced
/// stop does.
pub(crate) fn taken(conn: &Conn) -> End {
    match conn.state() {
        FORCED => End::Forced,
        other => End::Failed(io::Error::other(format!(
            "connection in state {}",
            crate::engine::conn::state_name(other)
        ))),
    }
}

pub(crate) fn classify(e: io::Error) -> Read {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) {
        Read::Nothing
    } else {
        Read::Failed(e)
    }
}
