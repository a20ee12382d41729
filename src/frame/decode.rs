//! Decoding: finding the next frame at the front of a read buffer.
//!
//! Kept apart from the encoders because this is the half that faces
//! untrusted input: every announced length and every line is checked
//! against `max_frame` here, before the caller buffers any more of it, and
//! this is the code the fuzz target (`fuzz/fuzz_targets/decoder.rs`) drives.
//! It borrows from the caller's buffer and never copies.
//!
//! An oversized length frame keeps its four header bytes, so the error can
//! say when they read as text: that is what a line-mode client (`nc`, or
//! `wharf client --framing line`) sends to a length-framing server, and the
//! log line and the GOAWAY reason then say so.

use std::fmt;

use super::{looks_like_text, Frame, Framing, GoAwayCode, DATA, HEADER_LEN, PING};

/// A byte stream that can never become a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length frame announced `len = 0`.
    #[error("frame length 0")]
    EmptyFrame,
    /// A length frame announced more than `max_frame` bytes, or a line grew
    /// past `max_frame` bytes without a newline. When the length header
    /// reads as text, the message says the peer is probably sending lines.
    #[error("frame of {len} bytes exceeds max-frame {max}{}", TextHint(*.header))]
    TooLarge {
        /// The announced length, or for line framing the bytes seen so far.
        len: u64,
        /// The configured limit.
        max: u32,
        /// The length header as received (length framing only; `None` for
        /// an overlong line).
        header: Option<[u8; 4]>,
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

    /// The length header of an oversized frame when all four bytes are
    /// printable ASCII or line whitespace (`\t`, `\n`, `\r`): the peer is
    /// most likely sending text lines, not length frames.
    pub fn text_header(self) -> Option<[u8; 4]> {
        match self {
            DecodeError::TooLarge {
                header: Some(header),
                ..
            } if looks_like_text(&header) => Some(header),
            _ => None,
        }
    }

    /// The reason text of the GOAWAY that reports this error: the code's
    /// usual reason, plus the framing hint when the header reads as text
    /// (about 100 bytes: it fits any frame a client accepts).
    pub fn goaway_reason(self) -> String {
        let reason = self.goaway_code().reason();
        format!("{reason}{}", TextHint(self.text_header()))
    }
}

/// `; the header looks like text ("hell"): is the client using --framing
/// line?` when the header reads as text; nothing otherwise. The header is
/// shown ASCII-escaped, so `\r\n` stays on the line.
struct TextHint(Option<[u8; 4]>);

impl fmt::Display for TextHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(header) if looks_like_text(&header) => write!(
                f,
                "; the header looks like text (\"{}\"): is the client using --framing line?",
                header.escape_ascii()
            ),
            _ => Ok(()),
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
    /// newline, so a long line dribbled in small reads is scanned only once;
    /// 0 is always correct. `max_frame` bounds the frame (kind byte plus
    /// payload, or the line without its terminator): a length header that
    /// announces more is an error at once, before its payload arrives, and
    /// so is a line that grows past it without a newline.
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
            header: Some([header[0], header[1], header[2], header[3]]),
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
        header: None,
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
            Err(DecodeError::TooLarge {
                len: 17,
                max: 16,
                header: Some(header)
            })
        );
        assert_eq!(
            Framing::Length.decode(&[0, 0, 0, 0], 0, 16),
            Err(DecodeError::EmptyFrame)
        );
    }

    #[test]
    fn a_text_header_is_named_in_the_error_and_the_goaway_reason() {
        // What `nc` sends: "hello\n" read as a length header is "hell".
        let e = Framing::Length.decode(b"hello\n", 0, 1 << 20).unwrap_err();
        assert_eq!(e.text_header(), Some(*b"hell"));
        assert_eq!(
            e.to_string(),
            "frame of 1751477356 bytes exceeds max-frame 1048576; the header looks like \
             text (\"hell\"): is the client using --framing line?"
        );
        assert_eq!(e.goaway_code(), GoAwayCode::FrameTooLarge);
        assert_eq!(
            e.goaway_reason(),
            "frame larger than max-frame; the header looks like text (\"hell\"): \
             is the client using --framing line?"
        );
        // Line whitespace counts as text, and is shown escaped.
        let e = Framing::Length.decode(b"a\r\n\tb", 0, 1 << 20).unwrap_err();
        assert_eq!(e.text_header(), Some(*b"a\r\n\t"));
        assert!(e.to_string().contains(r#"("a\r\n\t")"#), "{e}");
    }

    #[test]
    fn a_binary_header_gets_no_hint() {
        for header in [
            [0xff, 0xff, 0xff, 0xff],
            [0x7f, b'a', b'b', b'c'],
            [b'a', 0, 0, 0],
        ] {
            let e = Framing::Length.decode(&header, 0, 16).unwrap_err();
            assert_eq!(e.text_header(), None, "{header:?}");
            assert!(!e.to_string().contains("text"), "{e}");
            assert_eq!(e.goaway_reason(), "frame larger than max-frame");
        }
        // An overlong line has no header to judge.
        let e = Framing::Line.decode(b"hello", 0, 4).unwrap_err();
        assert_eq!(e.text_header(), None);
        assert_eq!(e.goaway_reason(), "frame larger than max-frame");
        assert_eq!(DecodeError::EmptyFrame.goaway_reason(), "malformed frame");
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
}
