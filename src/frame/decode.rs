//! Decoding: finding the next frame at the front of a read buffer.
//!
//! Kept apart from the encoders because this is the half that faces
//! untrusted input: every announced length and every line is checked
//! against `max_frame` here, before the caller buffers any more of it, and
//! this is the code the fuzz target (`fuzz/fuzz_targets/decoder.rs`) drives.
//! It borrows from the caller's buffer and never copies.

use super::{Frame, Framing, GoAwayCode, DATA, HEADER_LEN, PING};

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
}
