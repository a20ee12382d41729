//! The wire format: frames in, frames out, for both framings.
//!
//! Length framing (the default) puts every message in a frame of
//! `len: u32 big-endian | kind: u8 | payload: len - 1 bytes`, where `len`
//! counts the kind byte plus the payload and must lie in `1..=max_frame`.
//! Line framing is for humans with `nc`: every `\n`-terminated line is a
//! request (a trailing `\r` is dropped), the line `PING` is a heartbeat, and
//! every reply is one line.
//!
//! Decoding works on a borrowed buffer and never copies: it returns the frame
//! (pointing into the buffer) and how many bytes it used, or `None` when the
//! buffer holds only part of a frame. The decoder rejects an oversized length
//! frame from its header alone, so a caller that grows its buffer only to the
//! size the decoder asks for never holds more than `max_frame` bytes of one
//! frame. Nothing here allocates; encoders append to a caller-owned `Vec`.

use std::fmt;

/// Bytes in a length frame's header: the `u32` length and the kind byte.
pub const HEADER_LEN: usize = 5;

/// The largest PING payload a server answers with PONG.
pub const MAX_PING_PAYLOAD: usize = 64;

/// A request or reply: DATA.
pub const DATA: u8 = 0x01;
/// A heartbeat from a client.
pub const PING: u8 = 0x02;
/// The answer to a PING.
pub const PONG: u8 = 0x03;
/// The last frame before the server closes the connection.
pub const GOAWAY: u8 = 0x04;
/// The request in this position failed; the connection stays usable.
pub const ERROR: u8 = 0x05;

/// The wire format of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Binary frames: `u32` length, kind byte, payload.
    #[default]
    Length,
    /// One request or reply per `\n`-terminated line.
    Line,
}

/// Why the server sends GOAWAY; the `u16` at the start of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum GoAwayCode {
    /// The server is draining after a shutdown request.
    Shutdown = 1,
    /// No complete frame arrived before the heartbeat deadline.
    HeartbeatTimeout = 2,
    /// The connection could not be served: the queue was full, or it
    /// waited in the queue past its heartbeat deadline.
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

/// One decoded frame, borrowing its payload from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The kind byte (`DATA`, `PING`, ...); unknown kinds are passed through.
    pub kind: u8,
    /// The payload: for line framing, the line without its terminator.
    pub payload: &'a [u8],
}

/// A byte stream that can never become a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length frame announced `len = 0`.
    #[error("frame length 0")]
    EmptyFrame,
    /// A length frame announced more than `max_frame` bytes, or a line grew
    /// past `max_frame` bytes without a newline.
    #[error("frame of {len} bytes exceeds max-frame {max}")]
    TooLarge {
        /// The announced length, or for line framing the bytes seen so far.
        len: u64,
        /// The configured limit.
        max: u32,
    },
}

impl DecodeError {
    /// The GOAWAY code that reports this error to the peer.
    pub fn goaway_code(self) -> GoAwayCode {
        match self {
            DecodeError::EmptyFrame => GoAwayCode::ProtocolError,
            DecodeError::TooLarge { .. } => GoAwayCode::FrameTooLarge,
        }
    }
}

/// What the decoder found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame that used `used` bytes of the buffer.
    Frame {
        /// The frame.
        frame: Frame<'a>,
        /// Bytes consumed, header and terminator included.
        used: usize,
    },
    /// Only part of a frame is buffered; the whole frame needs `need` bytes
    /// (for line framing, a lower bound: at least one more byte).
    Partial {
        /// Total bytes the frame occupies once complete (a lower bound for lines).
        need: usize,
    },
}

impl Framing {
    /// Decodes the frame at the front of `buf`.
    ///
    /// `buf` must start at a frame boundary. For line framing, `scanned`
    /// says how many bytes at the front of `buf` are already known to hold no
    /// newline, so a long line dribbled in small reads is scanned only once.
    pub fn decode(
        self,
        buf: &[u8],
        scanned: usize,
        max_frame: u32,
    ) -> Result<Decoded<'_>, DecodeError> {
        match self {
            Framing::Length => decode_length(buf, max_frame),
            Framing::Line => decode_line(buf, scanned, max_frame),
        }
    }

    /// Appends a DATA frame carrying `payload`.
    ///
    /// For line framing the payload becomes one line; the caller is
    /// responsible for it holding no `\n`.
    pub fn encode_data(self, payload: &[u8], out: &mut Vec<u8>) {
        self.encode(DATA, payload, out);
    }

    /// Appends a frame of any kind. Line framing spells kinds as words:
    /// `PING`, `PONG`, `ERROR <msg>`, `GOAWAY <payload>`; DATA is the bare line.
    pub fn encode(self, kind: u8, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::Length => {
                let len = u32::try_from(payload.len() + 1).expect("frame payload fits in u32");
                out.extend_from_slice(&len.to_be_bytes());
                out.push(kind);
                out.extend_from_slice(payload);
            }
            Framing::Line => {
                let word: &[u8] = match kind {
                    DATA => b"",
                    PING => b"PING",
                    PONG => b"PONG",
                    GOAWAY => b"GOAWAY",
                    ERROR => b"ERROR",
                    _ => b"UNKNOWN",
                };
                out.extend_from_slice(word);
                if word.is_empty() {
                    out.extend_from_slice(payload);
                } else {
                    if !payload.is_empty() {
                        out.push(b' ');
                    }
                    // A message must stay on its line.
                    out.extend(payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
                }
                out.push(b'\n');
            }
        }
    }

    /// Appends an ERROR reply with a human-readable message.
    pub fn encode_error(self, message: &str, out: &mut Vec<u8>) {
        self.encode(ERROR, message.as_bytes(), out);
    }

    /// Appends a GOAWAY: `code` then `reason`, as `GOAWAY <code> <reason>` in
    /// line framing.
    pub fn encode_goaway(self, code: GoAwayCode, reason: &str, out: &mut Vec<u8>) {
        match self {
            Framing::Length => {
                let len = u32::try_from(3 + reason.len()).expect("GOAWAY reason fits in u32");
                out.extend_from_slice(&len.to_be_bytes());
                out.push(GOAWAY);
                out.extend_from_slice(&code.as_u16().to_be_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            Framing::Line => {
                let text = format!("{} {reason}", code.as_u16());
                self.encode(GOAWAY, text.as_bytes(), out);
            }
        }
    }
}

fn decode_length(buf: &[u8], max_frame: u32) -> Result<Decoded<'_>, DecodeError> {
    let Some(header) = buf.get(..4) else {
        return Ok(Decoded::Partial { need: HEADER_LEN });
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    if len > max_frame {
        return Err(DecodeError::TooLarge {
            len: u64::from(len),
            max: max_frame,
        });
    }
    let total = 4 + len as usize;
    match buf.get(..total) {
        Some(whole) => Ok(Decoded::Frame {
            frame: Frame {
                kind: whole[4],
                payload: &whole[HEADER_LEN..],
            },
            used: total,
        }),
        None => Ok(Decoded::Partial { need: total }),
    }
}

fn decode_line(buf: &[u8], scanned: usize, max_frame: u32) -> Result<Decoded<'_>, DecodeError> {
    let from = scanned.min(buf.len());
    match memchr::memchr(b'\n', &buf[from..]) {
        Some(i) => {
            let end = from + i;
            let mut line = &buf[..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > max_frame as usize {
                return Err(line_too_long(line.len(), max_frame));
            }
            let frame = if line == b"PING" {
                Frame {
                    kind: PING,
                    payload: &[],
                }
            } else {
                Frame {
                    kind: DATA,
                    payload: line,
                }
            };
            Ok(Decoded::Frame {
                frame,
                used: end + 1,
            })
        }
        None => {
            // A line of exactly `max_frame` bytes may still be followed by
            // "\r\n", so one byte of slack is allowed for a trailing '\r'.
            let max = max_frame as usize;
            let pending = buf.len();
            if pending > max + 1 || (pending == max + 1 && buf[max] != b'\r') {
                return Err(line_too_long(pending, max_frame));
            }
            Ok(Decoded::Partial { need: pending + 1 })
        }
    }
}

fn line_too_long(len: usize, max: u32) -> DecodeError {
    DecodeError::TooLarge {
        len: len as u64,
        max,
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

    fn frame(buf: &[u8], max: u32) -> (u8, Vec<u8>, usize) {
        match Framing::Length.decode(buf, 0, max).unwrap() {
            Decoded::Frame { frame, used } => (frame.kind, frame.payload.to_vec(), used),
            Decoded::Partial { need } => panic!("partial, need {need}"),
        }
    }

    #[test]
    fn length_frame_round_trip() {
        let mut out = Vec::new();
        Framing::Length.encode_data(b"hello", &mut out);
        assert_eq!(out, b"\x00\x00\x00\x06\x01hello");
        assert_eq!(frame(&out, 16), (DATA, b"hello".to_vec(), 10));
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let header = 17u32.to_be_bytes();
        assert_eq!(
            Framing::Length.decode(&header, 0, 16),
            Err(DecodeError::TooLarge { len: 17, max: 16 })
        );
        assert_eq!(
            Framing::Length.decode(&[0, 0, 0, 0], 0, 16),
            Err(DecodeError::EmptyFrame)
        );
    }

    #[test]
    fn partial_length_frame_says_how_much_it_needs() {
        assert_eq!(
            Framing::Length.decode(&[0, 0], 0, 16),
            Ok(Decoded::Partial { need: 5 })
        );
        assert_eq!(
            Framing::Length.decode(&[0, 0, 0, 3, 1, b'a'], 0, 16),
            Ok(Decoded::Partial { need: 7 })
        );
    }

    #[test]
    fn line_framing_strips_cr_and_knows_ping() {
        let d = Framing::Line.decode(b"hi\r\nPING\n", 0, 16).unwrap();
        assert_eq!(
            d,
            Decoded::Frame {
                frame: Frame {
                    kind: DATA,
                    payload: b"hi"
                },
                used: 4
            }
        );
        let d = Framing::Line.decode(b"PING\n", 0, 16).unwrap();
        assert!(matches!(
            d,
            Decoded::Frame {
                frame: Frame { kind: PING, .. },
                used: 5
            }
        ));
    }

    #[test]
    fn line_longer_than_max_frame_is_rejected_before_its_newline() {
        assert!(Framing::Line.decode(b"abcd", 0, 4).is_ok());
        assert!(Framing::Line.decode(b"abcd\r", 0, 4).is_ok());
        assert!(Framing::Line.decode(b"abcd\r\n", 0, 4).is_ok());
        assert!(Framing::Line.decode(b"abcde", 0, 4).is_err());
        assert!(Framing::Line.decode(b"abcde\n", 0, 4).is_err());
    }

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
