//! One HTTP/1.1 request head, read within bounds, and one response.
//!
//! The head is parsed by `httparse`, which checks the request line and
//! header syntax and allocates nothing; it is tried again after each read,
//! so garbage (a TLS handshake, a line of binary) gets 400 as soon as it
//! arrives rather than at the time limit. The limits are this module's:
//! the whole head within [`HEAD_TIMEOUT`] of the accept (each read may only
//! wait for what is left), at most [`MAX_HEAD`] bytes (the buffer is that
//! big and no bigger) and [`MAX_HEADERS`] header lines. A body is never
//! read: every response says `Connection: close` and the connection is
//! closed after it.
//!
//! Closing a socket with unread input makes the kernel send a reset, which
//! can destroy the response on its way (a client that sent a body, or more
//! garbage than was read). So [`finish`] shuts the write side down and
//! reads what is left for a moment first, as the data path's closer does,
//! within a much smaller bound.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::engine::writer::write_within;

/// Largest request head accepted (request line and headers).
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// The whole request head must arrive within this long after the accept.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole response must be taken within this long.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most header lines accepted; more is 431.
const MAX_HEADERS: usize = 64;

/// How long [`finish`] reads leftover input before closing, at most.
const LINGER: Duration = Duration::from_millis(100);

/// How many leftover bytes [`finish`] reads before closing, at most.
const LINGER_BYTES: usize = 64 * 1024;

/// Content type of the probes' and the errors' short bodies.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// The statuses the endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeaderFieldsTooLarge,
    Unavailable,
}

impl Status {
    pub(crate) fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::HeaderFieldsTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }

    /// A one-line body saying why, for the error statuses.
    pub(crate) fn body(self) -> &'static [u8] {
        match self {
            Status::Ok => b"ok\n",
            Status::BadRequest => b"malformed request head\n",
            Status::NotFound => b"not found: try /metrics, /ready or /live\n",
            Status::MethodNotAllowed => b"only GET and HEAD are allowed\n",
            Status::RequestTimeout => b"request head not received within 5 s\n",
            Status::HeaderFieldsTooLarge => b"request head larger than 16 KiB\n",
            Status::Unavailable => b"unavailable\n",
        }
    }
}

/// The request method, as far as the endpoint cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Other,
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: Method,
    target: String,
}

impl Request {
    /// The request target without its query string.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Reads one request head into `buf` (which is [`MAX_HEAD`] long).
/// `Ok(None)`: the client closed or reset before sending anything (or the
/// socket failed), and gets no answer. `Err`: the status to answer with.
pub(crate) fn read_head(stream: &TcpStream, buf: &mut [u8]) -> Result<Option<Request>, Status> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut filled = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Status::RequestTimeout);
        }
        if stream.set_read_timeout(Some(left)).is_err() {
            return Ok(None);
        }
        match (&*stream).read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            // Closed (or half-closed) in the middle of a head.
            Ok(0) => return Err(Status::BadRequest),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Status::RequestTimeout)
            }
            Err(_) => return Ok(None),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = match request.method {
                    Some("GET") => Method::Get,
                    Some("HEAD") => Method::Head,
                    _ => Method::Other,
                };
                let target = request.path.unwrap_or_default().to_owned();
                return Ok(Some(Request { method, target }));
            }
            Ok(httparse::Status::Partial) if filled == buf.len() => {
                return Err(Status::HeaderFieldsTooLarge)
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(Status::HeaderFieldsTooLarge),
            Err(_) => return Err(Status::BadRequest),
        }
    }
}

/// Writes one response (only its head if `head_only`, with the length the
/// body would have), within [`WRITE_TIMEOUT`]. A client that does not take
/// it is given up on; there is nobody to tell.
pub(crate) fn respond(
    stream: &TcpStream,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    headers: &[(&str, &str)],
) {
    let mut out = Vec::with_capacity(256 + if head_only { 0 } else { body.len() });
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        status.code(),
        status.reason(),
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok() {
        let _ = write_within(&socket2::SockRef::from(stream), &out, WRITE_TIMEOUT);
    }
}

/// Ends the connection after a response: shuts the write side down (the
/// client sees the end of the response), then reads and discards leftover
/// input until the client closes, or [`LINGER`] or [`LINGER_BYTES`] runs
/// out, so that closing does not reset the response away.
pub(crate) fn finish(stream: &TcpStream, buf: &mut [u8]) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(buf) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
