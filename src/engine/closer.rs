//! Graceful close after GOAWAY, without tying up the thread that decided it.
//!
//! Closing a TCP socket while unread input is pending makes the kernel send
//! a reset, which can destroy the GOAWAY and the responses just before it on
//! their way to the client. So a connection that ends with GOAWAY is closed
//! in steps: write the GOAWAY, shut down the write side (the client sees
//! end-of-stream after the last frame), then read and discard input until the
//! client closes its side or [`LINGER`] has passed, and only then close.
//!
//! The lingering is done here, on one thread for the whole server, with
//! non-blocking reads: the acceptor rejecting a flood of clients as BUSY, the
//! reaper, the drain and the workers hand a connection over and go straight
//! back to work. The number of lingering sockets is capped, so a flood cannot make
//! this thread hold descriptors without bound: past the cap, a connection is
//! closed at once (GOAWAY is best effort, as the protocol says).

use std::borrow::Cow;
use std::io::{ErrorKind, Read};
use std::net::Shutdown as How;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::engine::conn::{Conn, CLOSING, QUEUED, RESTING};
use crate::engine::registry::Registry;
use crate::engine::shutdown::Shutdown;
use crate::engine::socket::Stream;
use crate::engine::tls;
use crate::frame::{Framing, GoAwayCode};
use crate::observe::access::{Ending, Why};

/// How long a closing connection's input is drained before the socket closes.
pub const LINGER: Duration = Duration::from_millis(250);

/// How often lingering sockets are polled.
const POLL: Duration = Duration::from_millis(5);

/// The most sockets lingering at once (fewer under a low descriptor limit,
/// see `server`); more are closed immediately.
pub(crate) const MAX_LINGERING: usize = 4096;

/// A connection on its way out.
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) conn: Arc<Conn>,
    /// A GOAWAY still to be sent (best effort, non-blocking), with its
    /// reason; `None` when the owner already wrote it after its last
    /// response.
    pub(crate) goaway: Option<(GoAwayCode, Cow<'static, str>)>,
}

/// The sending side: cheap to clone, one per thread that closes connections.
#[derive(Debug, Clone)]
pub(crate) struct Closer {
    tx: Sender<Closing>,
    registry: Arc<Registry>,
    framing: Framing,
}

impl Closer {
    /// Hands a connection over for a graceful close. Never blocks: if the
    /// closer is saturated, the connection is closed right here.
    pub(crate) fn close(&self, closing: Closing) {
        match self.tx.try_send(closing) {
            Ok(()) => {}
            Err(TrySendError::Full(closing) | TrySendError::Disconnected(closing)) => {
                begin(&closing, self.framing);
                self.registry.remove(&closing.conn);
            }
        }
    }
}

impl Closer {
    /// Closes a connection waiting in line (new, or sent back) with the
    /// GOAWAY for `why`, unless another thread took it first; a new one
    /// gives its place in `--queue` back at once (its event, still in the
    /// kernel's line, is skipped by the worker that takes it). Returns
    /// whether this call closed it.
    pub(crate) fn turn_away(&self, conn: &Arc<Conn>, why: Why) -> bool {
        self.turn_away_saying(conn, why, why.code().reason().into())
    }

    /// [`Closer::turn_away`] with a reason of its own, such as a GOAWAY 6's
    /// retry hint.
    pub(crate) fn turn_away_saying(
        &self,
        conn: &Arc<Conn>,
        why: Why,
        reason: Cow<'static, str>,
    ) -> bool {
        if !conn.transition(QUEUED, CLOSING) {
            return false;
        }
        conn.leave_queue();
        self.close_taken_saying(conn, why, reason);
        true
    }

    /// Closes a resting connection with the GOAWAY for `why`, unless another
    /// thread took it first (a worker it woke, say). No worker is involved.
    /// Returns whether this call closed it.
    pub(crate) fn close_resting(&self, conn: &Arc<Conn>, why: Why) -> bool {
        if !conn.transition(RESTING, CLOSING) {
            return false;
        }
        self.close_taken(conn, why);
        true
    }

    /// Closes with the GOAWAY for `why` a connection the caller has just
    /// moved to CLOSING; one on a TLS listener whose handshake has not
    /// completed is closed without a word instead (no handshake for a
    /// connection turned away, no GOAWAY before the keys are agreed).
    pub(crate) fn close_taken(&self, conn: &Arc<Conn>, why: Why) {
        self.close_taken_saying(conn, why, why.code().reason().into());
    }

    fn close_taken_saying(&self, conn: &Arc<Conn>, why: Why, reason: Cow<'static, str>) {
        if conn.handshaking() {
            return self.close_silently(conn, Ending::Unshaken(why));
        }
        conn.log_ended(Ending::GoAway(why));
        self.close(Closing {
            conn: Arc::clone(conn),
            goaway: Some((why.code(), reason)),
        });
    }

    /// Closes a connection the caller has just moved to CLOSING, sending
    /// nothing.
    pub(crate) fn close_silently(&self, conn: &Arc<Conn>, ending: Ending) {
        conn.log_ended(ending);
        self.close(Closing {
            conn: Arc::clone(conn),
            goaway: None,
        });
    }
}

/// Sends the pending GOAWAY and shuts the write side.
fn begin(closing: &Closing, framing: Framing) {
    if let Some((code, reason)) = &closing.goaway {
        send_goaway_nonblocking(&closing.conn, framing, *code, reason);
    }
    closing.conn.shutdown(How::Write);
}

/// Writes a GOAWAY without blocking: it is dropped if the socket's send
/// buffer is full (a client that does not read would never see it anyway).
/// Over TLS it goes encrypted, followed by the close_notify alert; nothing
/// goes to a TLS connection whose handshake has not completed, or whose
/// session a worker holds (which does not happen to a connection in line
/// or resting, the only ones closed this way).
pub(crate) fn send_goaway_nonblocking(
    conn: &Conn,
    framing: Framing,
    code: GoAwayCode,
    reason: &str,
) {
    let mut frame = Vec::with_capacity(64);
    framing.encode_goaway(code, reason, &mut frame);
    if conn.tls {
        let Some(mut travel) = conn.travel.try_lock() else {
            return;
        };
        let Some(session) = travel.tls.as_deref_mut() else {
            return;
        };
        frame = tls::closing_bytes(session, &frame);
    }
    let _ = socket2::SockRef::from(&conn.stream)
        .send_with_flags(&frame, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
}

/// Creates the closer's channel; the receiving half goes to [`run`].
/// At most `max_lingering` connections wait in it, so the closer never
/// holds more than twice that many descriptors (see `server`).
pub(crate) fn channel(
    registry: Arc<Registry>,
    framing: Framing,
    max_lingering: usize,
) -> (Closer, Receiver<Closing>) {
    let (tx, rx) = crossbeam_channel::bounded(max_lingering.max(1));
    (
        Closer {
            tx,
            registry,
            framing,
        },
        rx,
    )
}

struct Lingering {
    closing: Closing,
    until: Instant,
}

/// The closer thread: runs until every sender is gone and every lingering
/// socket is closed. When the drain is forced, lingering stops at once.
pub(crate) fn run(
    rx: Receiver<Closing>,
    registry: Arc<Registry>,
    framing: Framing,
    shutdown: Arc<Shutdown>,
    max_lingering: usize,
) {
    let mut lingering: Vec<Lingering> = Vec::new();
    let mut scratch = vec![0u8; 16 * 1024];
    let mut open = true;
    loop {
        let next = if lingering.is_empty() {
            match rx.recv() {
                Ok(closing) => Some(closing),
                Err(_) => break, // every sender is gone and nothing lingers
            }
        } else if open {
            match rx.recv_timeout(POLL) {
                Ok(closing) => Some(closing),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        } else {
            std::thread::sleep(POLL);
            None
        };
        for closing in next.into_iter().chain(rx.try_iter()) {
            begin(&closing, framing);
            if lingering.len() >= max_lingering
                || closing.conn.stream.set_nonblocking(true).is_err()
            {
                registry.remove(&closing.conn);
                continue;
            }
            lingering.push(Lingering {
                closing,
                until: Instant::now() + LINGER,
            });
        }
        let now = Instant::now();
        let forced = shutdown.is_forced();
        lingering.retain(|l| {
            let done = forced || now >= l.until || peer_closed(&l.closing, &mut scratch);
            if done {
                registry.remove(&l.closing.conn);
            }
            !done
        });
    }
}

/// Drains pending input; true once the client has closed (or the socket failed).
fn peer_closed(closing: &Closing, scratch: &mut [u8]) -> bool {
    let stream = &closing.conn.stream;
    // Bounded so that a client flooding us cannot keep this thread reading.
    for _ in 0..16 {
        match (&*stream).read(scratch) {
            // End-of-stream: the client's FIN, or a read side that another
            // thread shut down to wake a worker. The TCP state tells which.
            Ok(0) => return peer_sent_fin(stream),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    false
}

/// Whether the client's FIN has arrived, from the kernel's TCP state: the
/// one way to see it on a socket whose read side we shut down ourselves.
fn peer_sent_fin(stream: &Stream) -> bool {
    // Linux TCP states (include/net/tcp_states.h) reached once the peer's
    // FIN has arrived, or the connection is gone.
    const TIME_WAIT: u8 = 6;
    const CLOSE: u8 = 7;
    const CLOSE_WAIT: u8 = 8;
    const LAST_ACK: u8 = 9;
    const CLOSING: u8 = 11;
    // SAFETY: tcp_info is plain data, for which all-zero bytes are valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is
    // that large; the descriptor stays open while `stream` is borrowed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    rc != 0
        || matches!(
            info.tcpi_state,
            TIME_WAIT | CLOSE | CLOSE_WAIT | LAST_ACK | CLOSING
        )
}
