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
    /// The client's address was over a per-address limit (connections at
    /// once, or new connections per second). The reason starts with
    /// `retry after N ms` (see [`GoAway::retry_after`]): the time until that
    /// address would be let in again.
    Limited = 6,
}

impl GoAwayCode {
    /// Every code, in numeric order.
    pub const ALL: [GoAwayCode; 6] = [
        GoAwayCode::Shutdown,
        GoAwayCode::HeartbeatTimeout,
        GoAwayCode::Busy,
        GoAwayCode::ProtocolError,
        GoAwayCode::FrameTooLarge,
        GoAwayCode::Limited,
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
            GoAwayCode::Limited => "LIMITED",
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
            GoAwayCode::Limited => "retry after 0 ms: per-address limit",
        }
    }

    /// Whether a client may send its unanswered requests again after this
    /// code: the server promises that none of them started.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            GoAwayCode::Shutdown | GoAwayCode::Busy | GoAwayCode::Limited
        )
    }
}

/// The reason of a GOAWAY 6 (LIMITED): `retry after N ms: ` and what was
/// over its limit, N being the milliseconds (rounded up) until the client's
/// address would be let in again.
pub(crate) fn limited_reason(retry_after: std::time::Duration, what: &str) -> String {
    let ms = retry_after.as_nanos().div_ceil(1_000_000);
    format!("retry after {ms} ms: {what}")
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

    /// The hint of a GOAWAY 6 (LIMITED): how long to wait before the
    /// client's address is let in again, from a reason that starts with
    /// `retry after N ms`. `None` for any other code or reason.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        if self.code != GoAwayCode::Limited.as_u16() {
            return None;
        }
        let rest = self.reason.strip_prefix("retry after ")?;
        let (ms, rest) = rest.split_once(' ')?;
        if !rest.starts_with("ms") {
            return None;
        }
        ms.parse().ok().map(std::time::Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Decoded;

    /// Encodes a GOAWAY in `framing`, decodes the frame and parses it back.
    fn round_trip(framing: Framing, code: GoAwayCode, reason: &str) -> GoAway {
        let mut out = Vec::new();
        framing.encode_goaway(code, reason, &mut out);
        let Decoded::Frame { frame, .. } = framing.decode(&out, 0, 64).unwrap() else {
            panic!("partial")
        };
        let payload = match framing {
            Framing::Length => frame.payload,
            Framing::Line => frame.payload.strip_prefix(b"GOAWAY ").unwrap(),
        };
        GoAway::parse(framing, payload).unwrap()
    }

    #[test]
    fn goaway_round_trips_in_both_framings() {
        for framing in [Framing::Length, Framing::Line] {
            let goaway = round_trip(framing, GoAwayCode::Busy, "full");
            assert_eq!(goaway.code, 3);
            assert_eq!(goaway.reason, "full");
        }
    }

    #[test]
    fn a_limited_goaway_carries_its_retry_hint_in_both_framings() {
        let reason = limited_reason(std::time::Duration::from_micros(1_500), "rate");
        assert_eq!(reason, "retry after 2 ms: rate");
        for framing in [Framing::Length, Framing::Line] {
            let goaway = round_trip(framing, GoAwayCode::Limited, &reason);
            assert_eq!(goaway.code, 6);
            assert_eq!(
                goaway.retry_after(),
                Some(std::time::Duration::from_millis(2))
            );
        }
        let busy = GoAway {
            code: 3,
            reason: "retry after 5 ms".into(),
        };
        assert_eq!(busy.retry_after(), None, "only GOAWAY 6 carries a hint");
    }
}
