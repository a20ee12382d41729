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
//! (pointing into the buffer) and how many bytes it used, or
//! [`Decoded::Partial`] with the size the frame needs when the buffer holds
//! only part of it. The decoder rejects an oversized length
//! frame from its header alone, so a caller that grows its buffer only to the
//! size the decoder asks for never holds more than `max_frame` bytes of one
//! frame. Nothing here allocates; encoders append to a caller-owned `Vec`.
//!
//! This file holds the frame kinds, [`Frame`], and [`Framing`] with its
//! encoders. Decoding, the half that faces untrusted bytes, is in `decode`;
//! the GOAWAY codes and payload parsing are in `goaway`. Both are
//! re-exported here, so every item is used as `wharf::frame::Item`.

mod decode;
mod goaway;

pub use decode::{DecodeError, Decoded};
pub(crate) use goaway::limited_reason;
pub use goaway::{GoAway, GoAwayCode};

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

/// Whether `bytes` read as text: printable ASCII, or the whitespace of a
/// line (`\t`, `\n`, `\r`). A length header that does is almost certainly
/// the start of a line sent to (or by) a peer that uses the other framing:
/// no valid frame of 16 MiB or less has a printable first byte.
pub(crate) fn looks_like_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r'))
}

/// The wire format of a connection. Client and server must agree on it:
/// nothing on the wire says which one is in use.
///
/// The encoders append to a caller's buffer, so several frames can go out
/// in one write; the decoder reads the frame at the front of a buffer and
/// says how many bytes it used. With them a client of another shape (an
/// event loop, say) speaks the protocol without [`crate::Client`]:
///
/// ```
/// use wharf::frame::{Decoded, Frame, Framing, GoAway, GoAwayCode, DATA, GOAWAY, HEADER_LEN};
///
/// let mut wire = Vec::new();
/// Framing::Length.encode_data(b"hello", &mut wire);
/// assert_eq!(wire, b"\x00\x00\x00\x06\x01hello"); // len 6 = kind + 5 bytes
///
/// // Part of a frame: the decoder says how many bytes the whole needs.
/// assert_eq!(Framing::Length.decode(&wire[..3], 0, 1024)?, Decoded::Partial { need: HEADER_LEN });
/// assert_eq!(Framing::Length.decode(&wire[..7], 0, 1024)?, Decoded::Partial { need: 10 });
/// // The whole of it, borrowed from the buffer.
/// let Decoded::Frame { frame, used } = Framing::Length.decode(&wire, 0, 1024)? else {
///     unreachable!("the frame is whole");
/// };
/// assert_eq!((frame, used), (Frame { kind: DATA, payload: b"hello" }, 10));
///
/// // The same in line framing: one line per frame, kinds spelled as words.
/// let mut lines = Vec::new();
/// Framing::Line.encode_data(b"hello", &mut lines);
/// Framing::Line.encode_goaway(GoAwayCode::Shutdown, "server is shutting down", &mut lines);
/// assert_eq!(lines, b"hello\nGOAWAY 1 server is shutting down\n");
///
/// // A GOAWAY's payload names its code and reason, in either framing.
/// let mut goaway = Vec::new();
/// Framing::Length.encode_goaway(GoAwayCode::Busy, "try later", &mut goaway);
/// let Decoded::Frame { frame, .. } = Framing::Length.decode(&goaway, 0, 1024)? else {
///     unreachable!("the frame is whole");
/// };
/// assert_eq!(frame.kind, GOAWAY);
/// let parsed = GoAway::parse(Framing::Length, frame.payload).unwrap();
/// assert_eq!((parsed.code, parsed.reason.as_str()), (3, "try later"));
/// assert_eq!(GoAwayCode::from_u16(parsed.code), Some(GoAwayCode::Busy));
/// # Ok::<(), wharf::frame::DecodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Binary frames: `u32` length, kind byte, payload.
    #[default]
    Length,
    /// One request or reply per `\n`-terminated line.
    Line,
}

/// One decoded frame, borrowing its payload from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The kind byte (`DATA`, `PING`, ...); unknown kinds are passed through.
    pub kind: u8,
    /// The payload: for line framing, the line without its terminator.
    pub payload: &'a [u8],
}

impl Framing {
    /// Appends a DATA frame carrying `payload`.
    ///
    /// For line framing the payload becomes one line; the caller is
    /// responsible for it holding no `\n`. Panics as [`Framing::encode`]
    /// does, on a payload too long for a length frame.
    pub fn encode_data(self, payload: &[u8], out: &mut Vec<u8>) {
        self.encode(DATA, payload, out);
    }

    /// Appends a frame of any kind. Line framing spells kinds as words:
    /// `PING`, `PONG`, `ERROR <msg>`, `GOAWAY <payload>`; DATA is the bare line.
    /// In line framing a `\n` in the payload of any kind but DATA becomes a
    /// space, so the frame stays one line.
    ///
    /// # Panics
    ///
    /// In length framing, if the payload is 4 GiB or more: its length,
    /// plus the kind byte, must fit in the `u32` header.
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
