//! A blocking client for the wharf protocol, in either framing.
//!
//! Requests may be pipelined: [`Client::send`] queues a request, and
//! [`Client::recv`] returns the replies in the order the requests were sent.
//! The client keeps a queue of what it is waiting for, so every reply is
//! matched to its request by position (the protocol's guarantee), which also
//! disambiguates line framing, where an echoed `PONG` line looks like a PONG.
//!
//! An optional background heartbeat ([`Client::start_heartbeat`]) sends a
//! PING whenever the connection has been quiet for the given interval; its
//! PONGs are recognised by position and swallowed. A GOAWAY from the server
//! surfaces as [`ClientError::GoAway`] with its code and reason.
//!
//! ```
//! use wharf::{Client, ClientOptions, Config, Echo, Reply, Server};
//!
//! let config = Config { workers: 2, ..Config::default() };
//! let server = Server::start("127.0.0.1:0", config, Echo::default())?;
//! let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
//!
//! // One request, one reply.
//! assert_eq!(client.request(b"hello")?, b"hello");
//!
//! // Pipelined: three requests and a PING in one write, the replies in
//! // their order.
//! for word in ["one", "two", "three"] {
//!     client.send(word.as_bytes())?;
//! }
//! client.send_ping(b"done?")?;
//! client.flush()?;
//! assert_eq!(client.recv()?, Reply::Data(b"one".to_vec()));
//! assert_eq!(client.recv()?, Reply::Data(b"two".to_vec()));
//! assert_eq!(client.recv()?, Reply::Data(b"three".to_vec()));
//! assert_eq!(client.recv()?, Reply::Pong(b"done?".to_vec()));
//! assert_eq!(client.outstanding(), 0);
//!
//! drop(client);
//! server.handle().shutdown();
//! server.join();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Retries
//!
//! Off by default. With [`ClientOptions::retries`] above 0 the client uses
//! the server's promise (docs/protocol.md, "Retrying safely"): after GOAWAY 1
//! (SHUTDOWN), GOAWAY 3 (BUSY) or GOAWAY 6 (LIMITED: the client's address
//! was over a per-address limit), no request after the last reply was
//! started. [`Client::recv`] then reconnects to the same address and
//! resends exactly the requests that were not answered, in order (pipelined
//! ones included; heartbeat PINGs are dropped, not resent), and goes on
//! returning replies in order as if nothing had happened; a request that
//! was answered is never sent twice. The payload of every unanswered
//! request is kept for that, next to the queue of owed replies. Up to
//! `retries` reconnects are tried in a row, counting each GOAWAY 1, 3 or 6
//! and each failed reconnect; a reply starts the count again. Before each,
//! the client sleeps a time drawn uniformly from `[b/2, b]`, where `b`
//! starts at [`ClientOptions::retry_backoff`] (100 ms) and doubles up to
//! [`ClientOptions::retry_backoff_max`] (2 s); after a GOAWAY 6 it sleeps
//! at least the `retry after N ms` its reason starts with
//! ([`ClientError::retry_after`]), since the server would turn it away
//! again before then. When the attempts run out, `recv` returns the last
//! failure.
//!
//! ## Unix sockets
//!
//! [`Client::connect_unix`] reaches a server's Unix stream listener
//! (`unix:PATH`), and [`Client::connect_to`] takes an address as `wharf
//! client --connect` does: `unix:PATH` or `host:port`. Everything else is
//! the same over either kind of socket, retries and TLS included (TLS
//! there needs [`ClientTls::server_name`], since a path names no host).
//! [`Client::server_addr`] says where the client is connected.
//!
//! A connection lost without a GOAWAY ([`ClientError::Closed`]) is not
//! retried, since the server may have run the unanswered requests, unless
//! the caller declares them safe to run twice with
//! [`ClientOptions::idempotent`]. GOAWAY 2, 4 and 5 are never retried, and
//! neither is the first connect. [`Client::on_reconnect`] reports each
//! reconnect as it starts; [`Client::reconnects`] and [`Client::resent`]
//! count them.
//!
//! Here a server with room for one client turns a second one away with
//! GOAWAY 3 until the first leaves (which it does, for the example, just
//! before the first reconnect); the second client's request is resent,
//! answered, and run once:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use wharf::{Client, ClientOptions, Config, Echo, Server};
//!
//! let config = Config { workers: 2, max_connections: 1, ..Config::default() };
//! let server = Server::start("127.0.0.1:0", config, Echo::default())?;
//! let addr = server.local_addr();
//!
//! // Answered, so it holds the server's one place.
//! let mut first = Client::connect(addr, ClientOptions::default())?;
//! assert_eq!(first.request(b"first")?, b"first");
//!
//! let options = ClientOptions {
//!     retries: 10,
//!     retry_backoff: Duration::from_millis(10),
//!     retry_backoff_max: Duration::from_millis(100),
//!     ..ClientOptions::default()
//! };
//! let mut second = Client::connect(addr, options)?;
//! let lines = Arc::new(Mutex::new(Vec::new()));
//! let mut first = Some(first);
//! second.on_reconnect({
//!     let lines = Arc::clone(&lines);
//!     move |reconnect| {
//!         lines.lock().unwrap().push(reconnect.to_string());
//!         drop(first.take()); // makes room
//!     }
//! });
//! assert_eq!(second.request(b"second")?, b"second");
//! assert!(second.reconnects() >= 1);
//! assert_eq!(
//!     lines.lock().unwrap()[0],
//!     "reconnecting after GOAWAY 3 BUSY (attempt 1 of 10), 1 request(s) to resend"
//! );
//!
//! drop(second);
//! server.handle().shutdown();
//! let report = server.join();
//! assert!(report.rejected_max_connections >= 1);
//! // "first" and "second" once each: a request turned away never ran.
//! assert_eq!(report.data_requests, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This file holds [`Client`]'s connecting and sending calls;
//! [`ClientOptions`] is in `options` and [`RequestSender`] in `sender`. The
//! writing half (the lock every writer shares, the queue of owed replies,
//! the heartbeat thread) is in `writer`; the reading half ([`Client::recv`]
//! and [`Reply`]) in `reader`; the reconnect and resend in `retry`; the
//! failures in `error`; the address and socket of either kind (TCP or
//! Unix, [`ServerAddr`]) in `socket`. TLS ([`ClientOptions::tls`]) is in `tls` (what to
//! trust, read once), `handshake` (each connection's), `transport` (the
//! two halves sharing one session) and `failure` (why a handshake failed,
//! in words). Everything public is re-exported here, so every item is used
//! as `wharf::client::Item`.

mod error;
mod failure;
mod handshake;
mod options;
mod reader;
mod retry;
mod sender;
mod socket;
mod tls;
mod transport;
mod writer;

use std::io::{self, BufReader, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::frame::{self, Framing};

pub use error::ClientError;
pub use failure::TlsFailure;
pub use options::{ClientOptions, RETRY_BACKOFF, RETRY_BACKOFF_MAX};
pub use reader::Reply;
pub use retry::Reconnect;
use retry::RetryState;
pub use sender::RequestSender;
pub use socket::ServerAddr;
use socket::Socket;
pub use tls::ClientTls;
use tls::Connector;
use transport::ReadHalf;
use writer::{check_request, heartbeat, Link, Owed, Pending, Writer};

/// A blocking protocol client: one connection, its replies received in
/// request order on the thread that owns it.
///
/// Every call that waits for a reply ([`recv`](Client::recv),
/// [`request`](Client::request), [`ping`](Client::ping)) takes `&mut self`,
/// so one thread receives; requests may also be sent from other threads
/// through a [`RequestSender`]. Whatever sends, the client records each
/// request as owed in the order it is written, which is how every reply
/// finds its request. Dropping the client stops its heartbeat thread, if
/// any, and closes the connection once no [`RequestSender`] holds it.
///
/// See the [module documentation](self) for an example with pipelining,
/// and for retries.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    peer: ServerAddr,
    reader: BufReader<ReadHalf>,
    /// The TLS configuration, read once, for every (re)connect.
    tls: Option<Arc<Connector>>,
    owed: Owed,
    writer: Arc<Mutex<Writer>>,
    read_buf: Vec<u8>,
    heartbeat: Option<(Sender<()>, std::thread::JoinHandle<()>)>,
    retry: RetryState,
}

impl Client {
    /// Connects to `addr` (each resolved address in turn) within the
    /// connect timeout, then, with [`ClientOptions::tls`], runs the TLS
    /// handshake within it too. This first connect is not retried;
    /// reconnects (with [`ClientOptions::retries`]) go to the address
    /// connected here. For a Unix socket use [`Client::connect_unix`], or
    /// [`Client::connect_to`] with `unix:PATH`.
    pub fn connect<A: ToSocketAddrs>(
        addr: A,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let tls = Connector::for_options(&options)?;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Connect {
                addr: "(unresolved)".into(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(ErrorKind::InvalidInput, "no address to connect to");
        let mut tried = String::from("(none)");
        for addr in addrs {
            tried = addr.to_string();
            match TcpStream::connect_timeout(&addr, options.connect_timeout) {
                Ok(stream) => {
                    return Client::from_parts(Socket::Tcp(stream), addr.into(), options, tls)
                }
                Err(e) => last = e,
            }
        }
        Err(ClientError::Connect {
            addr: tried,
            source: last,
        })
    }

    /// Connects to the Unix stream socket at `path` (a server's
    /// `unix:PATH` listener) within the connect timeout; otherwise like
    /// [`Client::connect`], reconnects going to the same path.
    ///
    /// With [`ClientOptions::tls`], [`ClientTls::server_name`] must be
    /// set: a path names no host to verify the server's certificate for,
    /// so without it this fails with [`ClientError::TlsNeedsServerName`]
    /// before connecting.
    ///
    /// ```
    /// use wharf::{Client, ClientOptions};
    ///
    /// let dir = std::env::temp_dir().join(format!("wharf-doc-client-unix-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("wharf.sock");
    /// let listener = std::os::unix::net::UnixListener::bind(&path)?;
    /// let server = std::thread::spawn(move || -> std::io::Result<()> {
    ///     // A one-request stand-in for a server's `unix:` listener.
    ///     use std::io::{Read, Write};
    ///     let (mut conn, _) = listener.accept()?;
    ///     let mut frame = [0u8; 4 + 1 + 5];
    ///     conn.read_exact(&mut frame)?;
    ///     conn.write_all(&frame)
    /// });
    /// let mut client = Client::connect_unix(&path, ClientOptions::default())?;
    /// assert_eq!(client.request(b"hello")?, b"hello");
    /// assert_eq!(client.server_addr().to_string(), format!("unix:{}", path.display()));
    /// server.join().unwrap()?;
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_unix<P: AsRef<Path>>(
        path: P,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let peer = ServerAddr::Unix(path.as_ref().to_path_buf());
        if options
            .tls
            .as_ref()
            .is_some_and(|t| t.server_name.is_none())
        {
            return Err(ClientError::TlsNeedsServerName {
                addr: peer.to_string(),
            });
        }
        let tls = Connector::for_options(&options)?;
        let stream =
            socket::connect_unix(path.as_ref(), options.connect_timeout).map_err(|source| {
                ClientError::Connect {
                    addr: peer.to_string(),
                    source,
                }
            })?;
        Client::from_parts(Socket::Unix(stream), peer, options, tls)
    }

    /// Connects to an address written as `wharf client --connect` takes
    /// it: `unix:PATH` for a Unix socket ([`Client::connect_unix`]),
    /// anything else as `host:port`, resolved now ([`Client::connect`]).
    pub fn connect_to(addr: &str, options: ClientOptions) -> Result<Client, ClientError> {
        match addr.strip_prefix("unix:") {
            Some(path) => Client::connect_unix(path, options),
            None => Client::connect(addr, options),
        }
    }

    /// Wraps an already connected socket (running the TLS handshake on it
    /// with [`ClientOptions::tls`]). Reconnects, if any, go to its peer
    /// address.
    pub fn from_stream(stream: TcpStream, options: ClientOptions) -> Result<Client, ClientError> {
        let tls = Connector::for_options(&options)?;
        let peer = stream.peer_addr()?.into();
        Client::from_parts(Socket::Tcp(stream), peer, options, tls)
    }

    /// Wraps an already connected Unix socket, like
    /// [`Client::from_stream`]. Reconnects, if any, go to its peer's path;
    /// a peer without one (a socket pair) cannot be reconnected to, so
    /// there a reconnect fails like a refused connect.
    pub fn from_unix_stream(
        stream: UnixStream,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let tls = Connector::for_options(&options)?;
        let path = stream.peer_addr()?.as_pathname().map(Path::to_path_buf);
        let peer = ServerAddr::Unix(path.unwrap_or_default());
        Client::from_parts(Socket::Unix(stream), peer, options, tls)
    }

    fn from_parts(
        stream: Socket,
        peer: ServerAddr,
        options: ClientOptions,
        tls: Option<Arc<Connector>>,
    ) -> Result<Client, ClientError> {
        let (stream, reader) = transport::split(stream, &peer, tls.as_deref(), &options)?;
        let reader = BufReader::with_capacity(64 * 1024, reader);
        let owed = Owed::default();
        let retrying = options.retries > 0;
        Ok(Client {
            options,
            peer,
            reader,
            tls,
            owed: Arc::clone(&owed),
            writer: Arc::new(Mutex::new(Writer {
                stream,
                buf: Vec::with_capacity(16 * 1024),
                owed,
                last_write: Instant::now(),
                write_shut: false,
                retrying,
                link: Link::Up,
            })),
            read_buf: Vec::new(),
            heartbeat: None,
            retry: RetryState::new(),
        })
    }

    /// The server's TCP address (the same after a reconnect); `None` for
    /// a client connected to a Unix socket (see [`Client::server_addr`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.tcp()
    }

    /// The server's address, TCP or Unix (the same after a reconnect).
    pub fn server_addr(&self) -> &ServerAddr {
        &self.peer
    }

    /// Sends one DATA request and waits for its response. An ERROR reply
    /// becomes [`ClientError::Server`]. With retries on, a GOAWAY 1, 3 or 6
    /// before the response is handled inside (see [`Client::recv`]).
    ///
    /// Meant for a client with nothing outstanding: it returns the next
    /// DATA (or ERROR) reply, which answers the earliest request still
    /// owed, and skips PONGs.
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.send(payload)?;
        self.flush()?;
        loop {
            match self.recv()? {
                Reply::Data(data) => return Ok(data),
                Reply::Error(message) => return Err(ClientError::Server(message)),
                Reply::Pong(_) => continue,
            }
        }
    }

    /// Queues a DATA request without waiting; call [`Client::flush`] to send
    /// queued requests and [`Client::recv`] for their replies, in order.
    /// With retries on, the payload is also kept until its reply arrives,
    /// to be resent after a reconnect.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        check_request(self.options.framing, payload)?;
        self.writer
            .lock()
            .queue(self.options.framing, frame::DATA, payload, Pending::Data);
        Ok(())
    }

    /// Queues a PING whose PONG [`Client::recv`] returns as [`Reply::Pong`].
    /// In line framing a PING is the bare line `PING`, so the payload must
    /// be empty there.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        if self.options.framing == Framing::Line && !payload.is_empty() {
            return Err(ClientError::Protocol(
                "a line-framing PING carries no payload".into(),
            ));
        }
        self.writer
            .lock()
            .queue(self.options.framing, frame::PING, payload, Pending::Ping);
        Ok(())
    }

    /// Writes every queued request to the socket.
    /// A write that fails because the server has closed (for example after
    /// GOAWAY 3 on a full queue) reports the GOAWAY, if one is waiting to be
    /// read, rather than the bare I/O error.
    ///
    /// With retries on, a failed write is not an error here: the requests
    /// stay owed, and [`Client::recv`] reads the server's GOAWAY, reconnects
    /// and resends them (or returns why it could not). After `recv` has
    /// returned a failure that ended the connection, `flush` fails.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let result = self.writer.lock().flush();
        if self.options.retries > 0 {
            return Ok(result?);
        }
        result.map_err(|e| self.goaway_or(e))
    }

    /// A handle that sends requests from another thread while this one
    /// receives the replies.
    pub fn sender(&self) -> RequestSender {
        RequestSender {
            writer: Arc::clone(&self.writer),
            framing: self.options.framing,
        }
    }

    /// Requests sent or queued whose replies have not been received yet
    /// (background heartbeats included). After a reconnect this counts the
    /// requests being resent.
    pub fn outstanding(&self) -> usize {
        self.owed.lock().len()
    }

    /// Sends a PING and returns the round-trip time to its PONG. If a
    /// reconnect happened meanwhile, the time is measured from the resend
    /// on the new connection.
    pub fn ping(&mut self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.send_ping(b"")?;
        self.flush()?;
        loop {
            match self.recv()? {
                Reply::Pong(_) => {
                    let since = match self.retry.reconnected_at {
                        Some(at) if at > start => at,
                        _ => start,
                    };
                    return Ok(since.elapsed());
                }
                Reply::Error(message) => return Err(ClientError::Server(message)),
                Reply::Data(_) => continue,
            }
        }
    }

    /// Sends a PING whenever nothing has been written for `every`, so an idle
    /// connection is not reaped. Use about a third of the server's heartbeat
    /// timeout. Stops when the client is dropped. It goes on across
    /// reconnects; its PINGs are never resent.
    pub fn start_heartbeat(&mut self, every: Duration) -> Result<(), ClientError> {
        if self.heartbeat.is_some() {
            return Ok(());
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let writer = Arc::clone(&self.writer);
        let framing = self.options.framing;
        let thread = std::thread::Builder::new()
            .name("wharf-client-heartbeat".into())
            .spawn(move || heartbeat(writer, framing, every, stopped))?;
        self.heartbeat = Some((stop, thread));
        Ok(())
    }

    /// Shuts down the sending side: the server answers what it has, then closes.
    /// After a reconnect the new connection is shut down the same way once
    /// the unanswered requests are resent.
    pub fn shutdown_write(&mut self) -> Result<(), ClientError> {
        self.stop_heartbeat();
        Ok(self.writer.lock().shutdown()?)
    }

    fn stop_heartbeat(&mut self) {
        if let Some((stop, thread)) = self.heartbeat.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}
