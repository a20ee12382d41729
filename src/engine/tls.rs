//! A TLS connection on a worker: the handshake, reading plaintext, and
//! writing replies, over the same non-blocking socket a plain connection
//! uses.
//!
//! The handshake is work like any other. A worker reads what the client
//! has sent, lets rustls process it, writes the answer (a flight of the
//! handshake, or an alert), and, if the client has nothing more to say for
//! now, lets the connection rest: a client that connects and sends nothing,
//! or stalls half-way through its hello, holds no worker. Its only deadline
//! until the handshake completes is `--handshake-timeout`.
//!
//! **Never rest with decrypted bytes inside.** rustls decrypts whole
//! records; bytes of a record the worker has not taken yet sit inside the
//! session, where the socket's readiness cannot see them (sozu#460). So a
//! read takes plaintext first and only goes to the socket when the session
//! holds none, and it says the connection is drained only when the socket
//! had nothing more *and* the session holds no plaintext: a connection rests
//! only then, as a plain one with unparsed bytes goes to the line, not to
//! rest.
//!
//! Replies are encrypted into the worker's own buffer and written with the
//! same deadline as plain ones (`writer`): no `complete_io`, which can
//! deadlock on a non-blocking socket when both directions are full
//! (rustls#2556).

use std::io::{self, ErrorKind, Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};

use crate::engine::socket::recv_now;
use crate::engine::socket::Stream;
use crate::engine::writer;
use crate::tls::{ClientIdentity, TlsInfo, TlsVersion};

/// The most plaintext one TLS record carries (RFC 8446 §5.1): the most of
/// a frame an unfinished record inside a session can hold.
pub(crate) const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

/// A new session for a connection accepted on a TLS listener.
pub(crate) fn session(config: Arc<ServerConfig>) -> Result<Box<ServerConnection>, rustls::Error> {
    let mut session = ServerConnection::new(config)?;
    // Replies are bounded by the worker's own output buffer: let the
    // session take a whole batch.
    session.set_buffer_limit(None);
    Ok(Box::new(session))
}

/// What one read of a TLS connection found.
#[derive(Debug)]
pub(crate) enum TlsRead {
    /// Plaintext; `drained`: the socket had nothing more, and the session
    /// holds no more plaintext.
    Data { n: usize, drained: bool },
    /// Nothing to take now (the handshake may have progressed).
    Nothing,
    /// The client closed (with close_notify, or the socket's end).
    Eof,
    /// The TLS layer failed: a handshake refused or a bad record. The
    /// alert, if any, has been sent.
    Failed(rustls::Error),
    /// The socket failed.
    Io(io::Error),
}

/// Reads plaintext into `buf`: what the session holds first, then what the
/// socket holds (processing it, and answering the handshake if it wants).
pub(crate) fn read(
    session: &mut ServerConnection,
    stream: &Stream,
    buf: &mut [u8],
    write_timeout: Duration,
    scratch: &mut Vec<u8>,
) -> TlsRead {
    let mut socket_short = false;
    loop {
        match session.reader().read(buf) {
            Ok(0) if !buf.is_empty() => return TlsRead::Eof,
            Ok(n) if n > 0 => {
                let more = session
                    .process_new_packets()
                    .map_or(true, |state| state.plaintext_bytes_to_read() > 0);
                return TlsRead::Data {
                    n,
                    drained: socket_short && !more,
                };
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // The socket ended without close_notify: the client is gone.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return TlsRead::Eof,
            Err(e) => return TlsRead::Io(e),
        }
        if socket_short {
            return TlsRead::Nothing;
        }
        let mut socket = Socket {
            stream,
            short: false,
        };
        match session.read_tls(&mut socket) {
            Ok(0) => return TlsRead::Eof,
            Ok(_) => socket_short = socket.short,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return TlsRead::Nothing
            }
            Err(e) => return TlsRead::Io(e),
        }
        if let Err(e) = session.process_new_packets() {
            // Send the alert that says why, if it can go out.
            let _ = flush(session, stream, write_timeout, scratch);
            return TlsRead::Failed(e);
        }
        if session.wants_write() {
            if let Err(e) = flush(session, stream, write_timeout, scratch) {
                return TlsRead::Io(e);
            }
        }
    }
}

/// Encrypts `plaintext` and writes it, with anything else the session has
/// to send, within `limit`.
pub(crate) fn write_all(
    session: &mut ServerConnection,
    stream: &Stream,
    plaintext: &[u8],
    limit: Duration,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    session.writer().write_all(plaintext)?;
    flush(session, stream, limit, scratch)
}

/// Writes what the session has to send within `limit`.
pub(crate) fn flush(
    session: &mut ServerConnection,
    stream: &Stream,
    limit: Duration,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    scratch.clear();
    while session.wants_write() {
        session.write_tls(scratch)?;
    }
    if scratch.is_empty() {
        return Ok(());
    }
    let result = writer::write_within(stream, scratch, limit);
    scratch.clear();
    result
}

/// The close of a TLS connection: `goaway` (a whole frame), then the
/// close_notify alert, encrypted into bytes to send as they are.
pub(crate) fn closing_bytes(session: &mut ServerConnection, goaway: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    if session.is_handshaking() {
        return bytes;
    }
    let _ = session.writer().write_all(goaway);
    session.send_close_notify();
    while session.wants_write() {
        if session.write_tls(&mut bytes).is_err() {
            break;
        }
    }
    bytes
}

/// What a completed handshake established.
pub(crate) fn established(session: &ServerConnection) -> TlsInfo {
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::V1_2,
        _ => TlsVersion::V1_3,
    };
    let client = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| ClientIdentity::from_der(leaf));
    TlsInfo { version, client }
}

/// The socket as rustls reads it: one non-blocking `recv`, remembering
/// whether it took less than there was room for (the socket was drained).
struct Socket<'a> {
    stream: &'a Stream,
    short: bool,
}

impl io::Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = recv_now(self.stream, buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}
