//! What the server does with a request: the [`Service`] abstraction, the
//! per-connection [`Service::Session`], and the built-in [`Echo`] service.
//!
//! A service sees one DATA request at a time (request bytes in) and appends
//! its response to a [`Response`] (bytes out), or fails with a
//! [`ServiceError`] whose message the client receives as an ERROR frame.
//! Framing, heartbeats, pipelining and shutdown are the server's business;
//! a service only maps bytes to bytes. It runs on a worker thread and may
//! block (the pool is sized for that), but while it runs the connection is
//! marked busy and is never reaped.
//!
//! A connection is not tied to one worker: between requests it may rest in
//! the poller and come back on another worker. What a service keeps per
//! client (a session, an authenticated user, a counter) therefore lives in
//! its [`Service::Session`], which travels with the connection: created by
//! [`Service::open`] before the connection's first request, handed to every
//! call on it whichever worker serves it, and dropped when it closes.
//! Stateless services use `()`, which costs nothing.
//!
//! A panic inside a service is caught by the worker: the client gets ERROR,
//! the panic is logged, and the worker goes on serving.

use std::any::Any;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::tls::TlsInfo;

/// Maps one request to one response. Shared by all workers.
///
/// Closures `Fn(&[u8], &mut Response<'_>) -> Result<(), ServiceError>`
/// implement it with no session, so a small service needs no type of its own:
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
///
/// A service with state per client names it as its `Session`:
///
/// ```
/// use wharf::{ConnInfo, Response, Service, ServiceError};
///
/// /// Numbers each request of a connection: "1 hello", "2 world", ...
/// struct Count;
///
/// impl Service for Count {
///     type Session = u64;
///     fn open(&self, _conn: &ConnInfo) -> u64 {
///         0
///     }
///     fn call(&self, seen: &mut u64, request: &[u8], response: &mut Response<'_>)
///         -> Result<(), ServiceError>
///     {
///         *seen += 1;
///         response.extend_from_slice(format!("{seen} ").as_bytes());
///         response.extend_from_slice(request);
///         Ok(())
///     }
/// }
/// ```
pub trait Service: Send + Sync + 'static {
    /// What the service keeps for one connection; `()` for none.
    type Session: Send + 'static;

    /// Creates the session of a new connection, on the worker that serves
    /// its first request, before that request. If it panics, that request
    /// gets ERROR and the next request tries again.
    fn open(&self, conn: &ConnInfo) -> Self::Session;

    /// Answers `request` by appending to `response`, or fails with a message
    /// that the client receives as an ERROR frame.
    fn call(
        &self,
        session: &mut Self::Session,
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError>;
}

impl<F> Service for F
where
    F: Fn(&[u8], &mut Response<'_>) -> Result<(), ServiceError> + Send + Sync + 'static,
{
    type Session = ();

    fn open(&self, _conn: &ConnInfo) {}

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        self(request, response)
    }
}

/// Who a connection is, for [`Service::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Unique for the life of the server, in order of acceptance from 1.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// On a TLS listener, what the completed handshake established: the
    /// version and, with mutual TLS, the client's verified identity. `None`
    /// on a plain listener. (A service is opened only after the handshake.)
    pub tls: Option<TlsInfo>,
}

/// A service with its session type erased, as the workers hold it: the
/// session travels as `Box<dyn Any + Send>` (no allocation for `()`), and
/// each call is one type check away from the typed [`Service::call`].
pub(crate) trait ErasedService: Send + Sync + 'static {
    fn open_session(&self, conn: &ConnInfo) -> Box<dyn Any + Send>;
    fn call_with(
        &self,
        session: &mut (dyn Any + Send),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError>;
}

impl<S: Service> ErasedService for S {
    fn open_session(&self, conn: &ConnInfo) -> Box<dyn Any + Send> {
        Box::new(Service::open(self, conn))
    }

    fn call_with(
        &self,
        session: &mut (dyn Any + Send),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        match session.downcast_mut::<S::Session>() {
            Some(session) => Service::call(self, session, request, response),
            // Sessions are only ever made by `open_session` above.
            None => Err(ServiceError(
                "internal error: session of another type".into(),
            )),
        }
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
    type Session = ();

    fn open(&self, _conn: &ConnInfo) {}

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
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
        Echo::default()
            .call(&mut (), b"abc", &mut response)
            .unwrap();
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
        echo.call(&mut (), b"x", &mut Response::new(&mut buf))
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert_eq!(buf, b"x");
    }
}
