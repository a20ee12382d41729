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
//! the epoll set and come back on another worker. What a service keeps per
//! client (a session, an authenticated user, a counter) therefore lives in
//! its [`Service::Session`], which travels with the connection: created by
//! [`Service::open`] before the connection's first request, handed to every
//! call on it whichever worker serves it, and dropped when it closes.
//! Stateless services use `()`, which costs nothing.
//!
//! A panic inside a service is caught by the worker: the client gets ERROR,
//! the panic is logged, and the worker goes on serving.

use crate::tls::TlsInfo;

mod echo;
mod erased;
mod peer;
mod response;

pub use echo::Echo;
pub(crate) use erased::ErasedService;
pub use peer::{Credentials, Peer};
pub use response::{Response, ServiceError};

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
///         conn.clone()
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Unique for the life of the server, in order of acceptance from 1.
    /// Connections turned away (GOAWAY 3, or during the drain) take a
    /// number too. The server's log lines about a connection name it the
    /// same way: `conn 12 from 127.0.0.1:40312`.
    pub id: u64,
    /// Who the client is: its address, or a Unix-socket client's
    /// credentials. Behind a load balancer that sends a PROXY protocol
    /// header (and is listed in [`Config::proxy_from`](crate::Config::proxy_from)),
    /// the client the header names; behind any other proxy, the proxy.
    pub peer: Peer,
    /// The load balancer the connection came through, when its PROXY
    /// header named the client in [`peer`](ConnInfo::peer); `None`
    /// otherwise (the socket's peer is the client).
    pub via: Option<Peer>,
    /// On a TLS listener, what the completed handshake established: the
    /// version and, with mutual TLS, the client's verified identity. `None`
    /// on a plain listener. (A service is opened only after the handshake.)
    pub tls: Option<TlsInfo>,
}
