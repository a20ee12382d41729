//! [`ClientError`]: every way a client call can fail.
//!
//! Separate because both halves of the client end here: connecting and
//! writing fail with an I/O error, reading with a GOAWAY, an ERROR reply,
//! a timeout or a protocol violation, and the caller sees one type. TLS
//! adds its files, its handshake and its session.

use std::io;
use std::time::Duration;

use super::TlsFailure;
use crate::frame::{GoAway, GoAwayCode};
use crate::tls::TlsError;

/// Why a client call failed.
///
/// With [`ClientOptions::retries`](super::ClientOptions::retries) above 0,
/// a GOAWAY 1, 3 or 6 (and, for idempotent requests, a lost connection) is
/// returned only once the attempts have run out; with retries off, at once.
///
/// A quiet client whose server drains gets GOAWAY 1:
///
/// ```
/// use wharf::{Client, ClientError, ClientOptions, Config, Echo, GoAwayCode, Server};
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Echo::default())?;
/// let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
/// assert_eq!(client.request(b"hello")?, b"hello");
///
/// server.handle().shutdown();
/// let e = client.recv().unwrap_err();
/// assert_eq!(e.goaway_code(), Some(GoAwayCode::Shutdown.as_u16()));
/// assert!(matches!(e, ClientError::GoAway { code: 1, .. }));
/// assert_eq!(e.to_string(), "GOAWAY 1 SHUTDOWN: server is shutting down");
/// server.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The server ended the connection with GOAWAY. Its promise depends on
    /// the code: after 1 (SHUTDOWN), 3 (BUSY) and 6 (LIMITED) no request
    /// after the last reply was started, so those may be sent again (see
    /// [`GoAwayCode::retryable`]; after 6 not before
    /// [`ClientError::retry_after`]); 2, 4 and 5 say what the client did
    /// wrong.
    #[error("GOAWAY {code} {}: {reason}", code_name(*.code))]
    GoAway {
        /// The GOAWAY code (see [`GoAwayCode`]).
        code: u16,
        /// The server's reason text.
        reason: String,
    },
    /// The server answered this request with ERROR; the connection is still usable.
    #[error("ERROR {0}")]
    Server(String),
    /// No reply arrived within the read timeout.
    #[error("no reply within {}", crate::human::duration(*.0))]
    Timeout(Duration),
    /// The server closed the connection without a GOAWAY (or reset it).
    /// Requests not answered may have run: they are resent only with
    /// [`ClientOptions::idempotent`](super::ClientOptions::idempotent).
    #[error("connection closed by the server")]
    Closed,
    /// The server sent something that is not valid protocol; or a request
    /// that cannot be sent in this framing (a line-framing request with a
    /// newline, a line-framing PING with a payload, a payload too long for a
    /// frame) was refused before anything was written, and the connection
    /// is still usable.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The TLS handshake failed (or, after it, the server refused the
    /// client's certificate, or the session broke): why, in words.
    #[error("TLS handshake with {addr} failed: {failure}")]
    Tls {
        /// The server's address.
        addr: String,
        /// Why.
        failure: TlsFailure,
    },
    /// A TLS file given in [`ClientTls`](super::ClientTls) could not be
    /// read or used; the error names it. Nothing was connected.
    #[error("{0}")]
    TlsFile(TlsError),
    /// [`ClientTls::server_name`](super::ClientTls::server_name) is not a
    /// DNS name or an IP address.
    #[error("TLS server name \"{}\": not a DNS name or an IP address", .0.escape_default())]
    TlsServerName(String),
    /// TLS over a Unix socket was asked for without
    /// [`ClientTls::server_name`](super::ClientTls::server_name): a path
    /// names no host to verify the server's certificate for. Nothing was
    /// connected.
    #[error("TLS to {addr} needs a server name to verify the certificate for (a Unix socket path names no host)")]
    TlsNeedsServerName {
        /// The address, `unix:PATH`.
        addr: String,
    },
    /// Any other I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn code_name(code: u16) -> &'static str {
    GoAwayCode::from_u16(code).map_or("UNKNOWN", GoAwayCode::name)
}

impl ClientError {
    /// The GOAWAY code, if this is a GOAWAY; compare with
    /// [`GoAwayCode::as_u16`].
    pub fn goaway_code(&self) -> Option<u16> {
        match self {
            ClientError::GoAway { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long the server asked the client to wait before connecting
    /// again: the `retry after N ms` hint of a GOAWAY 6 (LIMITED), when
    /// this is one and its reason carries the hint.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wharf::ClientError;
    ///
    /// let limited = ClientError::GoAway { code: 6, reason: "retry after 250 ms: rate".into() };
    /// assert_eq!(limited.retry_after(), Some(Duration::from_millis(250)));
    /// assert_eq!(ClientError::Closed.retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::GoAway { code, reason } => GoAway {
                code: *code,
                reason: reason.clone(),
            }
            .retry_after(),
            _ => None,
        }
    }

    /// Whether the server promised that no request after its last reply
    /// started: a GOAWAY whose code is [retryable](GoAwayCode::retryable)
    /// (1, 3 or 6).
    pub fn goaway_retryable(&self) -> bool {
        self.goaway_code()
            .and_then(GoAwayCode::from_u16)
            .is_some_and(GoAwayCode::retryable)
    }
}
