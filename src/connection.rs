//! Serving one connection on a worker thread: the hot path.
//!
//! A worker reads into its own buffer, answers every complete frame already
//! buffered, and only then writes all the responses at once: a pipelining
//! client gets one `write` per batch, and a lone request is answered as soon
//! as it is read. Buffers belong to the worker and are reused across frames
//! and connections, so a frame costs no allocation; the read buffer grows only
//! to the size the decoder asks for, never past one `max_frame` frame.
//!
//! Heartbeat bookkeeping is a timestamp store when a batch has been answered
//! and another when its responses are written, and the BUSY mark (the
//! service is running; never reap) is one uncontended swap in and one out,
//! per batch: no lock and no shared counter on the hot path. Between frames the worker checks the drain flag, so a
//! drain lets the request in progress finish and answers nothing after it.
//!
//! How a connection ends is decided here and carried out in [`Worker::finish`]:
//! a clean end-of-stream (responses flushed, then close), a GOAWAY (written
//! after the responses, then the graceful close of the `closer`), a client
//! that stopped reading (dropped after the write timeout) or an I/O error.

use std::any::Any;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown as How, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use crate::closer::{Closer, Closing};
use crate::config::Config;
use crate::frame::{self, DecodeError, Decoded, Frame, Framing, GoAwayCode, HEADER_LEN};
use crate::registry::{Clock, Conn, Registry, ACTIVE, BUSY, FORCED, REAPED};
use crate::service::{Response, Service};
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Read buffer size a worker starts with and returns to after a large frame.
const READ_BUF: usize = 16 * 1024;
/// Responses are written out early once this many bytes are pending.
const FLUSH_AT: usize = 256 * 1024;
/// Write buffer capacity kept between connections.
const WRITE_BUF_KEEP: usize = 64 * 1024;

/// What every worker shares: settings, the service and the server's state.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) service: Arc<dyn Service>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) clock: Clock,
    pub(crate) closer: Closer,
    /// Workers waiting for a connection (or about to): lets the acceptor
    /// tell a pool that is busy from one caught between two connections.
    pub(crate) idle_workers: AtomicUsize,
    /// Connections the reaper turned away that still sit in the queue (a
    /// channel cannot drop an entry from the middle); the acceptor makes
    /// room by taking them off the front.
    pub(crate) expired_in_queue: AtomicUsize,
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed its side; every complete request was answered.
    PeerClosed,
    /// The server ends the connection with this GOAWAY after the responses.
    GoAway(GoAwayCode),
    /// The drain was forced; the server already closed the socket.
    Forced,
    /// The client stopped taking its responses.
    WriteTimeout,
    /// The socket failed (reset by the client, ...).
    Failed(io::Error),
}

/// One worker's reusable state.
pub(crate) struct Worker {
    index: usize,
    shared: Arc<Shared>,
    read: Vec<u8>,
    write: Vec<u8>,
}

/// Where the unconsumed bytes of the read buffer are.
#[derive(Debug, Default)]
struct Cursor {
    start: usize,
    end: usize,
    /// Bytes after `start` known to hold no newline (line framing).
    scanned: usize,
    /// Total bytes the frame at `start` needs once complete.
    need: usize,
}

impl Worker {
    pub(crate) fn new(index: usize, shared: Arc<Shared>) -> Self {
        Worker {
            index,
            shared,
            read: vec![0; READ_BUF],
            write: Vec::with_capacity(WRITE_BUF_KEEP),
        }
    }

    /// The state shared with the rest of the server.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves `conn` until it ends; `conn` is ACTIVE and owned by this worker.
    pub(crate) fn serve(&mut self, conn: &Conn) -> End {
        let mut cursor = Cursor::default();
        let end = self.serve_loop(conn, &mut cursor);
        if cursor.start < cursor.end && matches!(end, End::PeerClosed) {
            debug!("{}: closed with a partial frame buffered", conn.peer);
        }
        end
    }

    fn serve_loop(&mut self, conn: &Conn, cursor: &mut Cursor) -> End {
        loop {
            let more = match self.answer_buffered(conn, cursor) {
                Ok(more) => more,
                Err(end) => return end,
            };
            if !self.write.is_empty() {
                if let Err(end) = self.flush(conn) {
                    return end;
                }
                conn.touch(self.shared.clock.now_ms());
            }
            if more {
                continue;
            }
            if self.shared.shutdown.is_draining() {
                return End::GoAway(GoAwayCode::Shutdown);
            }
            self.make_room(cursor);
            match (&conn.stream).read(&mut self.read[cursor.end..]) {
                Ok(0) => return self.after_eof(conn),
                Ok(n) => cursor.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return End::Failed(e),
            }
        }
    }

    /// Answers the complete frames at the front of the read buffer. Returns
    /// whether complete frames may remain (the output buffer filled up).
    fn answer_buffered(&mut self, conn: &Conn, cursor: &mut Cursor) -> Result<bool, End> {
        let framing = self.shared.config.framing;
        let max_frame = self.shared.config.max_frame;
        let mut busy = false;
        let mut answered = 0;
        let outcome = loop {
            if self.shared.shutdown.is_draining() {
                break Err(End::GoAway(GoAwayCode::Shutdown));
            }
            let pending = &self.read[cursor.start..cursor.end];
            match framing.decode(pending, cursor.scanned, max_frame) {
                Err(e) => break Err(self.protocol_error(conn, e)),
                Ok(Decoded::Partial { need }) => {
                    cursor.scanned = pending.len();
                    cursor.need = need;
                    break Ok(false);
                }
                Ok(Decoded::Frame { frame, used }) => {
                    if !busy {
                        if !conn.transition(ACTIVE, BUSY) {
                            return Err(taken(conn));
                        }
                        busy = true;
                    }
                    answer(&self.shared, framing, frame, &mut self.write, conn);
                    cursor.start += used;
                    cursor.scanned = 0;
                    answered += 1;
                    if self.write.len() >= FLUSH_AT {
                        break Ok(true);
                    }
                }
            }
        };
        if busy {
            self.shared.stats.add_requests(self.index, answered);
            conn.touch(self.shared.clock.now_ms());
            if !conn.transition(BUSY, ACTIVE) {
                return Err(taken(conn));
            }
        }
        outcome
    }

    fn protocol_error(&self, conn: &Conn, e: DecodeError) -> End {
        Stats::bump(&self.shared.stats.protocol_errors);
        info!("{}: protocol error ({e}), sending GOAWAY", conn.peer);
        End::GoAway(e.goaway_code())
    }

    /// Moves unconsumed bytes to the front and grows the buffer so the frame
    /// being assembled fits; never beyond one `max_frame` frame.
    fn make_room(&mut self, cursor: &mut Cursor) {
        if cursor.start == cursor.end {
            *cursor = Cursor {
                need: cursor.need,
                ..Cursor::default()
            };
        }
        let need = cursor.need.max(1);
        if cursor.start > 0
            && (cursor.end == self.read.len() || cursor.start + need > self.read.len())
        {
            self.read.copy_within(cursor.start..cursor.end, 0);
            cursor.end -= cursor.start;
            cursor.start = 0;
        }
        if need > self.read.len() {
            let limit = self.shared.config.max_frame as usize + HEADER_LEN;
            let size = need.max(self.read.len() * 2).min(limit).max(need);
            self.read.resize(size, 0);
        }
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

    fn flush(&mut self, conn: &Conn) -> Result<(), End> {
        let result = write_within(&conn.stream, &self.write, self.shared.config.write_timeout);
        self.write.clear();
        result.map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => End::WriteTimeout,
            _ => End::Failed(e),
        })
    }

    /// Carries out the end of a connection and gets the buffers ready for the
    /// next one.
    pub(crate) fn finish(&mut self, conn: Arc<Conn>, end: End) {
        let shared = Arc::clone(&self.shared);
        match end {
            End::PeerClosed => {
                debug!("{}: closed by client", conn.peer);
                conn.shutdown(How::Write);
                shared.registry.remove(&conn);
            }
            End::GoAway(code) => {
                if code == GoAwayCode::HeartbeatTimeout {
                    info!(
                        "{}: reaped, no complete frame within the heartbeat timeout",
                        conn.peer
                    );
                } else {
                    debug!("{}: sending GOAWAY {code}", conn.peer);
                }
                let framing = shared.config.framing;
                framing.encode_goaway(code, code.reason(), &mut self.write);
                match self.flush(&conn) {
                    Ok(()) => {
                        shared.closer.close(Closing { conn, goaway: None });
                    }
                    Err(end) => self.finish(conn, end),
                }
            }
            End::Forced => {}
            End::WriteTimeout => {
                Stats::bump(&shared.stats.write_timeouts);
                warn!(
                    "{}: dropped, did not read its responses within the write timeout ({:?})",
                    conn.peer, shared.config.write_timeout
                );
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
            End::Failed(e) => {
                if is_disconnect(&e) || shared.shutdown.is_forced() {
                    debug!("{}: connection lost: {e}", conn.peer);
                } else {
                    warn!("{}: connection failed: {e}", conn.peer);
                }
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
            }
        }
        self.reset_buffers();
    }

    /// Returns buffers that grew for a large frame to their usual size.
    pub(crate) fn reset_buffers(&mut self) {
        self.write.clear();
        if self.write.capacity() > WRITE_BUF_KEEP {
            self.write.shrink_to(WRITE_BUF_KEEP);
        }
        if self.read.len() > READ_BUF {
            self.read.truncate(READ_BUF);
            self.read.shrink_to_fit();
        }
    }
}

/// Writes all of `buf` within `limit` in total. The socket's send timeout
/// (set to `limit` at accept) bounds each `write` call; a client that reads a
/// little at a time would make every call succeed partially and hold the
/// worker for ever, so after a partial write each call may only block for
/// what is left. The common case, one complete write, costs one clock read.
fn write_within(stream: &TcpStream, mut buf: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut shortened = false;
    let result = loop {
        match (&*stream).write(buf) {
            Ok(n) if n == buf.len() => break Ok(()),
            Ok(0) => break Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(io::Error::from(ErrorKind::TimedOut));
        }
        if let Err(e) = stream.set_write_timeout(Some(left)) {
            break Err(e);
        }
        shortened = true;
    };
    if shortened {
        let _ = stream.set_write_timeout(Some(limit));
    }
    result
}

/// Another thread took the connection away from its worker.
fn taken(conn: &Conn) -> End {
    match conn.state() {
        REAPED => End::GoAway(GoAwayCode::HeartbeatTimeout),
        FORCED => End::Forced,
        other => End::Failed(io::Error::other(format!("connection in state {other}"))),
    }
}

/// Whether an error just means the client went away: not worth a warning
/// (health checkers such as HAProxy's close with a reset on purpose).
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
            | ErrorKind::UnexpectedEof
    )
}

/// Appends the one reply that `frame` gets.
fn answer(shared: &Shared, framing: Framing, frame: Frame<'_>, out: &mut Vec<u8>, conn: &Conn) {
    match frame.kind {
        frame::DATA => call_service(shared, framing, frame.payload, out, conn),
        frame::PING if frame.payload.len() <= frame::MAX_PING_PAYLOAD => {
            framing.encode(frame::PONG, frame.payload, out)
        }
        frame::PING => framing.encode_error("PING payload longer than 64 bytes", out),
        frame::PONG => framing.encode_error("unexpected PONG from client", out),
        frame::GOAWAY => framing.encode_error("unexpected GOAWAY from client", out),
        frame::ERROR => framing.encode_error("unexpected ERROR from client", out),
        kind => framing.encode_error(&format!("unknown frame kind 0x{kind:02x}"), out),
    }
}

/// Runs the service and frames its response in place: a length header is
/// reserved first and filled in afterwards, so the response is never copied.
fn call_service(shared: &Shared, framing: Framing, request: &[u8], out: &mut Vec<u8>, conn: &Conn) {
    let frame_start = out.len();
    if framing == Framing::Length {
        out.extend_from_slice(&[0, 0, 0, 0, frame::DATA]);
    }
    let body_start = out.len();
    let result = catch_unwind(AssertUnwindSafe(|| {
        shared.service.call(request, &mut Response::new(out))
    }));
    let failure = match result {
        Ok(Ok(())) => match framing {
            Framing::Length => match u32::try_from(out.len() - body_start + 1) {
                Ok(len) => {
                    out[frame_start..frame_start + 4].copy_from_slice(&len.to_be_bytes());
                    return;
                }
                Err(_) => "response too large for one frame".to_owned(),
            },
            Framing::Line => {
                if memchr::memchr(b'\n', &out[body_start..]).is_none() {
                    out.push(b'\n');
                    return;
                }
                "response contains a newline; not representable in line framing".to_owned()
            }
        },
        Ok(Err(e)) => e.0,
        Err(panic) => {
            Stats::bump(&shared.stats.service_panics);
            error!(
                "{}: service panicked: {}; answered with ERROR",
                conn.peer,
                panic_message(&panic)
            );
            "internal error".to_owned()
        }
    };
    out.truncate(frame_start);
    framing.encode_error(&failure, out);
}

/// The message a panic was raised with, if it is a string.
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}
