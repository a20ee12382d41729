//! [`ClientError`]: every way a client call can fail.
//!
//! Separate because both halves of the client end here: connecting and
//! writing fail with an I/O error, reading with a GOAWAY, an ERROR reply,
//! a timeout or a protocol violation, and the caller sees one type.

use std::io;
use std::time::Duration;

use crate::frame::GoAwayCode;

/// Why a client call failed.
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
    /// The server ended the connection with GOAWAY.
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
    /// The server closed the connection without a GOAWAY.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent something that is not valid protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Any other I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn code_name(code: u16) -> &'static str {
    GoAwayCode::from_u16(code).map_or("UNKNOWN", GoAwayCode::name)
}

impl ClientError {
    /// The GOAWAY code, if this is a GOAWAY.
    pub fn goaway_code(&self) -> Option<u16> {
        match self {
            ClientError::GoAway { code, .. } => Some(*code),
            _ => None,
        }
    }
}
