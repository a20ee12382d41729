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

/// Maps one request to one response. One value serves every connection:
/// the workers share it, so what it holds for all clients needs its own
/// synchronisation (hence `Sync`), and what it holds for one client belongs
/// in its [`Session`](Service::Session).
///
/// What the server promises a service:
///
/// - Each DATA request is passed to [`call`](Service::call) at most once,
///   and its reply (the response, or ERROR) goes out in the request's
///   place: replies leave in request order, pipelined or not.
/// - The calls of one connection come one at a time, in the order its
///   requests arrived, each with that connection's session; calls of
///   different connections run at the same time on different workers.
/// - PINGs, malformed frames, heartbeat deadlines and the drain never reach
///   the service; it sees only DATA payloads.
/// - When a call returns `Err` or panics, what it appended is discarded and
///   the client gets ERROR in its place; the connection stays open.
///
/// What a service owes the server: a call holds its worker until it
/// returns. It may block (on a database, say), but a pool of `workers`
/// threads runs at most that many calls at once, and a drain waits for a
/// call in progress only up to [`Config::grace`](crate::Config::grace)
/// before it closes that connection by force. In line framing a response
/// must not contain `\n`: one that does is answered with ERROR instead.
///
/// Closures `Fn(&[u8], &mut Response<'_>) -> Result<(), ServiceError>`
/// implement it with no session, so a stateless service needs no type of
/// its own. This one upper-cases ASCII and refuses empty requests:
///
/// ```
/// use wharf::{Client, ClientError, ClientOptions, Config, Response, Server, ServiceError};
///
/// let upper = |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
///     if request.is_empty() {
///         return Err("empty request".into());
///     }
///     response.extend_from_slice(&request.to_ascii_uppercase());
///     Ok(())
/// };
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, upper)?;
///
/// let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
/// assert_eq!(client.request(b"hello")?, b"HELLO");
/// // An `Err` reaches the client as ERROR; the connection stays usable.
/// match client.request(b"") {
///     Err(ClientError::Server(message)) => assert_eq!(message, "empty request"),
///     other => panic!("expected ERROR, got {other:?}"),
/// }
/// assert_eq!(client.request(b"wharf")?, b"WHARF");
///
/// drop(client);
/// server.handle().shutdown();
/// let report = server.join();
/// assert_eq!(report.data_requests, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A service with state per client names it as its `Session`. Here each
/// connection numbers its own requests, whichever worker serves them:
///
/// ```
/// use wharf::{Client, ClientOptions, Config, ConnInfo, Response, Server, Service, ServiceError};
///
/// /// Numbers each request of a connection: "1 hello", "2 world", ...
/// struct Count;
///
/// impl Service for Count {
///     type Session = u64;
///
///     fn open(&self, _conn: &ConnInfo) -> u64 {
///         0
///     }
///
///     fn call(&self, seen: &mut u64, request: &[u8], response: &mut Response<'_>)
///         -> Result<(), ServiceError>
///     {
///         *seen += 1;
///         response.extend_from_slice(format!("{seen} ").as_bytes());
///         response.extend_from_slice(request);
///         Ok(())
///     }
/// }
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Count)?;
/// let addr = server.local_addr();
///
/// let mut alice = Client::connect(addr, ClientOptions::default())?;
/// let mut bob = Client::connect(addr, ClientOptions::default())?;
/// assert_eq!(alice.request(b"hello")?, b"1 hello");
/// assert_eq!(alice.request(b"world")?, b"2 world");
/// // Another connection, another session.
/// assert_eq!(bob.request(b"hello")?, b"1 hello");
/// assert_eq!(alice.request(b"again")?, b"3 again");
///
/// drop((alice, bob));
/// server.handle().shutdown();
/// server.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Service: Send + Sync + 'static {
    /// What the service keeps for one connection; `()` for none.
    ///
    /// Made by [`open`](Service::open), lent to each
    /// [`call`](Service::call) of that connection as `&mut` (only one call
    /// of a connection runs at a time, so it needs no lock), and dropped
    /// when the connection closes, on whichever server thread lets go of it
    /// last. It is `Send` because the connection may be served by a
    /// different worker from one request to the next. A panic in its `Drop`
    /// is caught and logged.
    type Session: Send + 'static;

    /// Creates the session of a connection, on the worker that serves its
    /// first DATA request, just before that request's call. A connection
    /// that never sends a DATA request (only PINGs, or nothing) never opens
    /// a session. If `open` panics, that request gets ERROR and the
    /// connection's next request tries again.
    ///
    /// `conn` says which connection it is; a session that needs that later
    /// keeps a copy ([`ConnInfo`] is `Copy`).
    fn open(&self, conn: &ConnInfo) -> Self::Session;

    /// Answers `request` (one DATA payload; in line framing, the line
    /// without its `\n` or `\r\n`) by appending to `response`, or fails
    /// with a message that the client receives as an ERROR frame.
    ///
    /// On `Err`, or a panic, whatever was appended is discarded. The
    /// session stays as the call left it, even after a panic, and is
    /// passed to the connection's next call.
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

/// Who a connection is, as [`Service::open`] is told. The server fixes it
/// at accept and never changes it; a session that needs it for later calls
/// keeps a copy.
///
/// A service that answers each request with who is asking:
///
/// ```
/// use std::net::TcpStream;
/// use wharf::{Client, ClientOptions, Config, ConnInfo, Response, Server, Service, ServiceError};
///
/// struct Who;
///
/// impl Service for Who {
///     // Kept whole: it is all this service needs to know.
///     type Session = ConnInfo;
///
///     fn open(&self, conn: &ConnInfo) -> ConnInfo {
///         *conn
///     }
///
///     fn call(&self, conn: &mut ConnInfo, _request: &[u8], response: &mut Response<'_>)
///         -> Result<(), ServiceError>
///     {
///         response.extend_from_slice(format!("conn {} from {}", conn.id, conn.peer).as_bytes());
///         Ok(())
///     }
/// }
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Who)?;
///
/// for id in 1..=2 {
///     // A socket of our own, to know the address the server sees.
///     let stream = TcpStream::connect(server.local_addr())?;
///     let me = stream.local_addr()?;
///     let mut client = Client::from_stream(stream, ClientOptions::default())?;
///     let reply = client.request(b"who am I?")?;
///     assert_eq!(reply, format!("conn {id} from {me}").into_bytes());
/// }
///
/// server.handle().shutdown();
/// server.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// Unique for the life of the server, in order of acceptance from 1.
    /// Connections turned away (GOAWAY 3, or during the drain) take a
    /// number too. The server's log lines about a connection name it the
    /// same way: `conn 12 from 127.0.0.1:40312`.
    pub id: u64,
    /// The client's address, as the server's socket sees it: behind a TCP
    /// proxy or load balancer, the proxy's address.
    pub peer: SocketAddr,
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

/// A failed request: its message is sent to the client as an ERROR frame,
/// in the request's place, and the connection stays open for the next
/// request. The message is for the client (the server does not log it);
/// in line framing it travels as `ERROR <message>` on one line, so any `\n`
/// in it becomes a space.
///
/// `From<&str>` and `From<String>` let `?` and `.into()` make one, which
/// keeps a service's error handling short:
///
/// ```
/// use wharf::{Response, ServiceError};
///
/// /// Doubles a decimal number.
/// fn double(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
///     let text = std::str::from_utf8(request).map_err(|_| "request is not UTF-8")?;
///     let n: u64 = text.parse().map_err(|e| format!("{text:?} is not a number: {e}"))?;
///     let doubled = n.checked_mul(2).ok_or("too large to double")?;
///     response.extend_from_slice(doubled.to_string().as_bytes());
///     Ok(())
/// }
///
/// // A service can be called directly, without a server (in a unit test,
/// // say), with a `Response` over a buffer of one's own.
/// let mut out = Vec::new();
/// double(b"21", &mut Response::new(&mut out))?;
/// assert_eq!(out, b"42");
/// let e = double(b"x", &mut Response::new(&mut out)).unwrap_err();
/// assert_eq!(e.to_string(), "\"x\" is not a number: invalid digit found in string");
/// # Ok::<(), ServiceError>(())
/// ```
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
///
/// The view starts where the response starts: whatever the buffer held
/// before (earlier replies on their way out) can be neither read nor
/// changed through it, and [`clear`](Response::clear) discards only what
/// this response wrote. It implements [`std::io::Write`], so `write!` and
/// anything that writes to a writer (a serializer, say) can fill it.
///
/// ```
/// use std::io::Write;
/// use wharf::Response;
///
/// let mut buf = b"earlier replies".to_vec();
/// let mut response = Response::new(&mut buf);
/// write!(response, "{} + {} = {}", 1, 2, 1 + 2)?;
/// assert_eq!(response.as_slice(), b"1 + 2 = 3");
/// response.clear();
/// assert!(response.is_empty());
/// assert_eq!(buf, b"earlier replies");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Response<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Response<'a> {
    /// A response that appends to `buf` after its current contents. The
    /// server makes one per DATA request; this is for calling a service
    /// directly, in a unit test for example.
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

    /// Discards what this response has written so far (and nothing the
    /// buffer held before it), to start the response again.
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
/// It is what `wharf serve` runs and what the benchmark ([`crate::bench`])
/// loads: a service whose cost is known, so what is measured is the
/// server. `delay` sleeps before answering (simulated I/O-bound work, which
/// leaves the CPU free); `spin` busy-loops for that much wall-clock time
/// (simulated CPU-bound work). Both default to zero, which answers at once.
///
/// ```
/// use std::time::{Duration, Instant};
/// use wharf::{Client, ClientOptions, Config, Echo, Server};
///
/// // Each request holds its worker for 20 ms, as a slow backend would.
/// let echo = Echo { delay: Duration::from_millis(20), ..Echo::default() };
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, echo)?;
///
/// let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
/// let start = Instant::now();
/// assert_eq!(client.request(b"ping?")?, b"ping?");
/// assert!(start.elapsed() >= Duration::from_millis(20));
///
/// drop(client);
/// server.handle().shutdown();
/// server.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
