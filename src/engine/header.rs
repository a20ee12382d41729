//! A balancer's PROXY protocol header: the first work a worker does on a
//! connection from a peer listed in `--proxy-from`, before the TLS
//! handshake and before any request.
//!
//! The worker looks at the socket's first bytes without taking them
//! (`MSG_PEEK`) and asks [`crate::proxy::parse`] what they are. A header not
//! complete yet takes nothing and holds no worker: the connection rests in
//! the kernel with its receive low-water mark at the bytes the header still
//! needs, so half a header costs a balancer's client one wake-up, not a
//! thread, and the handshake timeout (the reaper) closes it if the rest
//! never comes. A complete header is taken from the socket to its last
//! byte and not one byte further: what follows is the client's own.
//!
//! What a header may end in (see `worker` for the ends themselves):
//! the client it names becomes the connection's client everywhere (the
//! access log, the service's view, per-address limits); a `LOCAL` header
//! (the balancer's own health check) keeps the socket's addresses; a
//! balancer that closes before sending anything (a TCP health check) is not
//! an error; anything else (a malformed header, a close mid-header, bytes
//! that are not a header) is a protocol error, closed without a reply.

use std::io::{self, ErrorKind};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::engine::conn::Conn;
use crate::engine::socket::{peek_now, recv_now};
use crate::proxy::{self, Parsed, Source};
use crate::service::Peer;

/// Room for the common header without an allocation: a v1 line is at most
/// 107 bytes, a v2 header with a few TLVs a few hundred.
const ON_STACK: usize = 512;

/// What reading a connection's PROXY header came to.
pub(crate) enum Header {
    /// Read and taken from the socket; the client it names (`None`: keep
    /// the socket's peer, as for `LOCAL`).
    Read(Option<Peer>),
    /// Not complete: wake when the socket holds this many bytes.
    Wait(usize),
    /// The balancer closed before sending a byte: a health check.
    Closed,
    /// Not a valid header (or closed mid-header): a protocol error.
    Bad(&'static str),
    /// The socket failed.
    Failed(io::Error),
}

/// Reads the PROXY header `conn` must start with, if it has all come.
pub(crate) fn read(conn: &Conn) -> Header {
    let mut small = [0u8; ON_STACK];
    let mut large = Vec::new();
    let mut room = ON_STACK;
    loop {
        let buf: &mut [u8] = if room <= ON_STACK {
            &mut small
        } else {
            large.resize(room, 0);
            &mut large
        };
        let peeked = match peek_now(&conn.stream, buf) {
            Ok(0) => return Header::Closed,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
            Err(e) => return Header::Failed(e),
        };
        match proxy::parse(&buf[..peeked]) {
            // Too narrow a look to see it all: widen it.
            Parsed::Incomplete { need } if peeked == buf.len() => {
                room = need.min(proxy::MAX_HEADER);
            }
            Parsed::Incomplete { need } => {
                // Bytes that never grow into a header: the balancer shut
                // its side mid-header (the socket stays readable, so
                // resting would wake at once, again and again).
                return if peeked > 0 && peer_shut_down(conn) {
                    Header::Bad("closed in the middle of its PROXY header")
                } else {
                    Header::Wait(need)
                };
            }
            Parsed::Invalid(why) => return Header::Bad(why),
            Parsed::Header { len, source } => {
                // The bytes were seen, so one read takes exactly them.
                return match recv_now(&conn.stream, &mut buf[..len]) {
                    Ok(n) if n == len => Header::Read(match source {
                        Source::Local => None,
                        Source::Proxied { client, .. } => Some(Peer::Ip(client)),
                    }),
                    Ok(_) => Header::Failed(io::Error::other("the PROXY header shrank")),
                    Err(e) => Header::Failed(e),
                };
            }
        }
    }
}

/// Whether the peer has shut down its sending side (`POLLRDHUP`), which a
/// look at the bytes cannot tell while some are still unread.
fn peer_shut_down(conn: &Conn) -> bool {
    let mut fds = [PollFd::new(&conn.stream, PollFlags::RDHUP)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}
