//! What the server does with a request: the [`Service`] abstraction and the
//! built-in [`Echo`] service.
//!
//! A service sees one DATA request at a time (request bytes in) and appends
//! its response to a [`Response`] (bytes out), or fails with a
//! [`ServiceError`] whose message the client receives as an ERROR frame.
//! Framing, heartbeats, pipelining and shutdown are the server's business;
//! a service only maps bytes to bytes. It runs on a worker thread and may
//! block (the pool is sized for that), but while it runs the connection is
//! marked busy and is never reaped.
//!
//! A panic inside a service is caught by the worker: the client gets ERROR,
//! the panic is logged, and the worker goes on serving.

use std::time::{Duration, Instant};

/// Maps one request to one response. Shared by all workers.
///
/// Closures `Fn(&[u8], &mut Response<'_>) -> Result<(), ServiceError>`
/// implement it, so a small service needs no type of its own:
///
/// ```
/// use wharf::{Response, ServiceError};
/// let upper = |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
///     response.extend_from_slice(&request.to_ascii_uppercase());
///     Ok(())
/// };
/// # fn is_service<S: wharf::Service>(_: &S) {}
/// # is_service(&upper);
/// ```
pub trait Service: Send + Sync + 'static {
    /// Answers `request` by appending to `response`, or fails with a message
    /// that the client receives as an ERROR frame.
    fn call(&self, request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError>;
}

impl<F> Service for F
where
    F: Fn(&[u8], &mut Response<'_>) -> Result<(), ServiceError> + Send + Sync + 'static,
{
    fn call(&self, request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
        self(request, response)
    }
}

/// A failed request: its message is sent to the client as an ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

impl From<&str> for ServiceError {
    fn from(message: &str) -> Self {
        ServiceError(message.to_owned())
    }
}

impl From<String> for ServiceError {
    fn from(message: String) -> Self {
        ServiceError(message)
    }
}

/// Where a service writes its response: an append-only view of the worker's
/// output buffer, so a response goes to the socket without an extra copy.
#[derive(Debug)]
pub struct Response<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Response<'a> {
    /// A response that appends to `buf` after its current contents.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        Response { buf, start }
    }

    /// Appends bytes to the response.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The response written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Discards what has been written so far.
    pub fn clear(&mut self) {
        self.buf.truncate(self.start);
    }
}

impl std::io::Write for Response<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The built-in service: answers every request with the same bytes.
///
/// `delay` sleeps before answering (simulated I/O-bound work, which leaves
/// the CPU free); `spin` busy-loops for that much wall-clock time (simulated
/// CPU-bound work). Both default to zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Echo {
    /// Sleep this long before each response.
    pub delay: Duration,
    /// Busy-loop this long before each response.
    pub spin: Duration,
}

impl Service for Echo {
    fn call(&self, request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if !self.spin.is_zero() {
            let start = Instant::now();
            while start.elapsed() < self.spin {
                std::hint::spin_loop();
            }
        }
        response.extend_from_slice(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_appends_after_existing_bytes() {
        let mut buf = b"earlier".to_vec();
        let mut response = Response::new(&mut buf);
        Echo::default().call(b"abc", &mut response).unwrap();
        assert_eq!(response.as_slice(), b"abc");
        response.clear();
        assert!(response.is_empty());
        assert_eq!(buf, b"earlier");
    }

    #[test]
    fn spin_takes_at_least_its_duration() {
        let echo = Echo {
            spin: Duration::from_millis(5),
            ..Echo::default()
        };
        let start = Instant::now();
        let mut buf = Vec::new();
        echo.call(b"x", &mut Response::new(&mut buf)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert_eq!(buf, b"x");
    }
}
