//! GOAWAY: why a server closes a connection, and parsing the GOAWAY
//! payload back into a code and a reason.
//!
//! Separate from the framing because it is vocabulary both ends share: the
//! server picks a code (and its reason text) when it turns a connection
//! away or a decode fails, and the client parses the payload to report why
//! it was closed.

use std::fmt;

use super::Framing;

/// Why the server sends GOAWAY; the `u16` at the start of its payload.
///
/// The code tells a client what it may do next. After
/// [`Shutdown`](GoAwayCode::Shutdown) and [`Busy`](GoAwayCode::Busy) no
/// request after the last reply was started, so the unanswered ones may be
/// sent again, later or elsewhere (the rule [`crate::Client`] follows with
/// retries on). The others say what the client did wrong, and sending the
/// same again would meet the same end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum GoAwayCode {
    /// The server is draining after a shutdown request.
    Shutdown = 1,
    /// No complete frame arrived before the heartbeat deadline.
    HeartbeatTimeout = 2,
    /// The connection could not be served: `--max-connections` clients
    /// were connected, `--queue` new connections already waited, or it
    /// waited in line for a worker past its heartbeat deadline.
    Busy = 3,
    /// The byte stream was malformed (for example a frame of length 0).
    ProtocolError = 4,
    /// A frame (or line) was longer than `max_frame`.
    FrameTooLarge = 5,
}

impl GoAwayCode {
    /// Every code, in numeric order.
    pub const ALL: [GoAwayCode; 5] = [
        GoAwayCode::Shutdown,
        GoAwayCode::HeartbeatTimeout,
        GoAwayCode::Busy,
        GoAwayCode::ProtocolError,
        GoAwayCode::FrameTooLarge,
    ];

    /// The code as sent on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire value, if it is one of ours.
    pub fn from_u16(code: u16) -> Option<GoAwayCode> {
        GoAwayCode::ALL.into_iter().find(|c| c.as_u16() == code)
    }

    /// The protocol's upper-case name, e.g. `HEARTBEAT_TIMEOUT`.
    pub fn name(self) -> &'static str {
        match self {
            GoAwayCode::Shutdown => "SHUTDOWN",
            GoAwayCode::HeartbeatTimeout => "HEARTBEAT_TIMEOUT",
            GoAwayCode::Busy => "BUSY",
            GoAwayCode::ProtocolError => "PROTOCOL_ERROR",
            GoAwayCode::FrameTooLarge => "FRAME_TOO_LARGE",
        }
    }

    /// The reason text the server sends with this code.
    pub fn reason(self) -> &'static str {
        match self {
            GoAwayCode::Shutdown => "server is shutting down",
            GoAwayCode::HeartbeatTimeout => "no complete frame within the heartbeat timeout",
            GoAwayCode::Busy => "server busy, try again later",
            GoAwayCode::ProtocolError => "malformed frame",
            GoAwayCode::FrameTooLarge => "frame larger than max-frame",
        }
    }
}

impl fmt::Display for GoAwayCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.as_u16(), self.name())
    }
}

/// A decoded GOAWAY payload: the code and the reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// The numeric code (see [`GoAwayCode`]); unknown codes are kept as is.
    pub code: u16,
    /// The reason text (lossily decoded as UTF-8).
    pub reason: String,
}

impl GoAway {
    /// Parses a GOAWAY payload as the framing carries it: `u16` + reason for
    /// length framing, `<code> <reason>` for line framing.
    pub fn parse(framing: Framing, payload: &[u8]) -> Option<GoAway> {
        match framing {
            Framing::Length => {
                let (code, reason) = payload.split_first_chunk::<2>()?;
                Some(GoAway {
                    code: u16::from_be_bytes(*code),
                    reason: String::from_utf8_lossy(reason).into_owned(),
                })
            }
            Framing::Line => {
                let text = String::from_utf8_lossy(payload);
                let (code, reason) = text.split_once(' ').unwrap_or((&text, ""));
                Some(GoAway {
                    code: code.parse().ok()?,
                    reason: reason.to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Decoded;

    #[test]
    fn goaway_round_trips_in_both_framings() {
        for framing in [Framing::Length, Framing::Line] {
            let mut out = Vec::new();
            framing.encode_goaway(GoAwayCode::Busy, "full", &mut out);
            let Decoded::Frame { frame, .. } = framing.decode(&out, 0, 64).unwrap() else {
                panic!("partial")
            };
            let payload = match framing {
                Framing::Length => frame.payload,
                Framing::Line => frame.payload.strip_prefix(b"GOAWAY ").unwrap(),
            };
            let goaway = GoAway::parse(framing, payload).unwrap();
            assert_eq!(goaway.code, 3);
            assert_eq!(goaway.reason, "full");
        }
    }
}
