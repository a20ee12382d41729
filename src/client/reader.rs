//! The reading half of a [`Client`]: bytes from the socket become frames,
//! and frames become [`Reply`]s, matched by position to what was sent.
//!
//! Separate from the writing half because the two may run on different
//! threads: one thread calls [`Client::recv`] while a `RequestSender` or the
//! heartbeat thread writes. Reading needs only the queue of owed replies,
//! never the writer's lock, so a reader never waits behind a blocked
//! `write`.
//!
//! A client whose framing does not match the server's is told so: in
//! length framing a reply header that reads as text is a line from a
//! `--framing line` server, and in line framing a reply that starts with a
//! NUL byte and holds a whole length-framed GOAWAY is that GOAWAY, from a
//! `--framing length` server. Neither waits for more bytes to decide.

use std::io::{self, BufRead, ErrorKind, Read};

use super::writer::Pending;
use super::{Client, ClientError, TlsFailure};
use crate::frame::{self, looks_like_text, Decoded, Framing, GoAway};

/// The most of a text reply quoted in the framing hint.
const QUOTE_MAX: usize = 60;

/// The largest length-framed GOAWAY a line client recognises (a server's
/// reasons are about a hundred bytes).
const GOAWAY_MAX: u32 = 4096;

/// A reply, in the position of the request it answers, as
/// [`Client::recv`] returns it.
///
/// The n-th reply answers the n-th request sent (DATA or PING, whoever sent
/// it), so a caller that pipelines knows which request each reply belongs
/// to by counting. A GOAWAY is not a reply: it ends the connection and
/// comes back as [`ClientError::GoAway`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The response to a DATA request.
    Data(Vec<u8>),
    /// The answer to a PING sent with [`Client::send_ping`].
    Pong(Vec<u8>),
    /// The request failed: the service returned an error or panicked, or a
    /// PING's payload was longer than the server answers (64 bytes). The
    /// message is the server's; the connection is still usable.
    Error(String),
}

impl Client {
    /// Receives the next reply, in request order. Heartbeat PONGs are
    /// swallowed. A GOAWAY is returned as [`ClientError::GoAway`].
    ///
    /// With [`ClientOptions::retries`](super::ClientOptions::retries) above
    /// 0, a GOAWAY 1, 3 or 6 (or, with `idempotent`, a connection lost
    /// without GOAWAY) is not returned: this call sleeps its backoff (after
    /// GOAWAY 6, at least the server's hint), reconnects,
    /// resends the unanswered requests in order and reads on, so the caller
    /// sees every reply once, in order, across the reconnect. Only when the
    /// attempts run out is the last failure returned.
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        loop {
            let (kind, payload) = match self.read_frame() {
                Ok(frame) => frame,
                Err(e) => {
                    self.recover(e)?;
                    continue;
                }
            };
            if kind == frame::GOAWAY {
                let goaway = GoAway::parse(self.options.framing, &payload)
                    .ok_or_else(|| ClientError::Protocol("malformed GOAWAY payload".into()));
                let failure = match goaway {
                    Ok(goaway) => ClientError::GoAway {
                        code: goaway.code,
                        reason: goaway.reason,
                    },
                    Err(e) => e,
                };
                self.recover(failure)?;
                continue;
            }
            let owing = self.owed.lock().pop_front().ok_or_else(|| {
                ClientError::Protocol(format!("unsolicited frame of kind 0x{kind:02x}"))
            })?;
            // A reply (a heartbeat's PONG too) shows the connection works:
            // the count of attempts in a row starts again.
            self.retry.attempt = 0;
            let expected = owing.pending;
            let reply = match (expected, kind) {
                (_, frame::ERROR) => Reply::Error(String::from_utf8_lossy(&payload).into_owned()),
                (Pending::Heartbeat, _) => continue,
                (Pending::Ping, frame::PONG) => Reply::Pong(payload),
                (Pending::Data, frame::DATA) => Reply::Data(payload),
                (Pending::Ping, frame::DATA)
                    if self.options.framing == Framing::Line && payload == b"PONG" =>
                {
                    Reply::Pong(Vec::new())
                }
                (expected, kind) => {
                    return Err(ClientError::Protocol(format!(
                        "expected a reply to {expected:?}, got a frame of kind 0x{kind:02x}"
                    )))
                }
            };
            return Ok(reply);
        }
    }

    /// The GOAWAY the server sent before closing, if it is waiting to be
    /// read; otherwise `e`. Replies still buffered before it are dropped:
    /// the connection is gone either way.
    pub(super) fn goaway_or(&mut self, e: io::Error) -> ClientError {
        for _ in 0..1024 {
            match self.read_frame() {
                Ok((frame::GOAWAY, payload)) => {
                    if let Some(goaway) = GoAway::parse(self.options.framing, &payload) {
                        return ClientError::GoAway {
                            code: goaway.code,
                            reason: goaway.reason,
                        };
                    }
                    break;
                }
                Ok(_) => continue,
                Err(tls @ ClientError::Tls { .. }) => return tls,
                Err(_) => break,
            }
        }
        ClientError::Io(e)
    }

    fn read_frame(&mut self) -> Result<(u8, Vec<u8>), ClientError> {
        let framing = self.options.framing;
        let result = match framing {
            Framing::Length => self.read_length_frame(),
            Framing::Line => self.read_line_frame(),
        };
        result.map_err(|e| match e.kind() {
            _ if e.get_ref().is_some_and(|inner| inner.is::<TlsFailure>()) => ClientError::Tls {
                addr: self.peer.to_string(),
                failure: tls_failure(e),
            },
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                ClientError::Timeout(self.options.read_timeout.unwrap_or_default())
            }
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => ClientError::Closed,
            ErrorKind::InvalidData => ClientError::Protocol(e.to_string()),
            _ => ClientError::Io(e),
        })
    }

    fn read_length_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; frame::HEADER_LEN];
        self.reader.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        // A line from a `--framing line` server: its first four bytes make
        // a length of at least 151 MB, and no reply kind is text. Reported
        // now rather than after waiting for that many bytes.
        let text_length = looks_like_text(&header[..4]);
        if text_length && (len > self.options.max_frame || looks_like_text(&header[4..])) {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "the reply looks like text (\"{}\"): is the server using --framing line?",
                    self.quote_line(&header).escape_ascii()
                ),
            ));
        }
        if len == 0 || len > self.options.max_frame {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("reply frame length {len} out of range"),
            ));
        }
        // Grows with the bytes that really arrive: a length field alone
        // never makes the client allocate up to `max_frame`.
        let want = u64::from(len - 1);
        let mut payload = Vec::with_capacity((len as usize - 1).min(64 * 1024));
        (&mut self.reader).take(want).read_to_end(&mut payload)?;
        if payload.len() as u64 != want {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        Ok((header[4], payload))
    }

    /// The start of a text reply for the framing hint: `head` (already
    /// read) and what is buffered after it, up to the end of the line and at
    /// most [`QUOTE_MAX`] bytes. Never waits for more.
    fn quote_line(&self, head: &[u8]) -> Vec<u8> {
        let mut quote: Vec<u8> = head
            .iter()
            .chain(self.reader.buffer())
            .copied()
            .take(QUOTE_MAX)
            .collect();
        if let Some(end) = quote.iter().position(|&b| b == b'\n') {
            quote.truncate(end);
        }
        if quote.last() == Some(&b'\r') {
            quote.pop();
        }
        quote
    }

    fn read_line_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        self.read_buf.clear();
        let limit = u64::from(self.options.max_frame) + 2;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.read_buf);
        // No text reply starts with a NUL byte; a length frame of a
        // `--framing length` server does.
        if self.read_buf.first() == Some(&0) {
            if let Some(goaway) = self.length_framed_goaway() {
                return Ok(goaway);
            }
        }
        read?;
        if self.read_buf.last() != Some(&b'\n') {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "reply line cut short",
            ));
        }
        let mut line = &self.read_buf[..self.read_buf.len() - 1];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > self.options.max_frame as usize {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "reply line too long",
            ));
        }
        // ERROR and GOAWAY are spelled as a leading word. A `PONG` line is
        // returned as DATA: only its position tells a PONG from an echo.
        let (kind, payload) = if let Some(rest) = line.strip_prefix(b"ERROR ") {
            (frame::ERROR, rest)
        } else if let Some(rest) = line.strip_prefix(b"GOAWAY ") {
            (frame::GOAWAY, rest)
        } else {
            (frame::DATA, line)
        };
        Ok((kind, payload.to_vec()))
    }

    /// In line framing, the length-framed GOAWAY a `--framing length`
    /// server sends before it closes (most likely because it read this
    /// client's first line as a length header), if the bytes read so far
    /// and those buffered hold one whole. It is returned as the line
    /// `GOAWAY <code> <reason>` would be, so the caller reports the
    /// server's code and reason; a hint about the framing is added unless
    /// the server's reason already gives one. Never waits for more bytes.
    fn length_framed_goaway(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut bytes = self.read_buf.clone();
        bytes.extend_from_slice(self.reader.buffer());
        let Ok(Decoded::Frame { frame, used }) = Framing::Length.decode(&bytes, 0, GOAWAY_MAX)
        else {
            return None;
        };
        if frame.kind != frame::GOAWAY {
            return None;
        }
        let goaway = GoAway::parse(Framing::Length, frame.payload)?;
        let mut reason = goaway.reason;
        if !reason.contains("--framing") {
            reason.push_str("; it came as a length frame: is the server using --framing length?");
        }
        // The frame's bytes past the line already read are consumed.
        self.reader
            .consume(used.saturating_sub(self.read_buf.len()));
        Some((
            frame::GOAWAY,
            format!("{} {reason}", goaway.code).into_bytes(),
        ))
    }
}

/// The [`TlsFailure`] an I/O error from the TLS reading half carries.
fn tls_failure(e: io::Error) -> TlsFailure {
    match e.into_inner().map(|inner| inner.downcast::<TlsFailure>()) {
        Some(Ok(failure)) => *failure,
        Some(Err(other)) => TlsFailure::Other(other.to_string()),
        None => TlsFailure::Other("TLS failure".into()),
    }
}
