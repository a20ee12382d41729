//! Starting a server: binding, sizing the limits, and starting every thread.
//!
//! [`Server::start`] binds the listener (or [`Server::from_listener`] takes
//! one already bound, for socket activation), starts every thread (closer,
//! reaper, the whole worker pool, acceptor, the metrics endpoint if
//! configured, and the drain coordinator), logs `listening on <addr>` and
//! returns. From then on the thread count is fixed, whatever the number of
//! clients. Stopping is the drain's business (see `drain`).

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::config::Config;
use crate::engine::line::WorkerStates;
use crate::engine::shutdown::ShutdownHandle;
use crate::error::Error;
use crate::observe::stats::{Report, Stats};
use crate::service::Service;
use crate::watch::monitor::Monitor;

mod launch;
mod listen;
mod reloads;
pub(crate) mod unix;

pub use crate::address::Address;
pub use reloads::TlsHandle;

use launch::checked;
use listen::{check_listening, check_migrate_req, listen, resolve};

/// A running server. Stop it with [`Server::handle`] and wait for it with
/// [`Server::join`]; dropping it without joining starts a drain (at once,
/// without the drain delay) and does not wait for it.
///
/// Every thread it will ever have is running when [`start`](Server::start)
/// returns: the acceptor, the reaper, the closer, the whole worker pool,
/// the metrics endpoint if configured, and a coordinator that runs the
/// drain. None is added or replaced while it runs, whatever the clients do.
/// The crate page has an example of the whole life: start, one request,
/// shutdown, join.
#[derive(Debug)]
pub struct Server {
    local_addrs: Vec<(Address, Security)>,
    metrics_addr: Option<SocketAddr>,
    config: Box<Config>,
    handle: ShutdownHandle,
    monitor: Monitor,
    tls: Option<TlsHandle>,
    coordinator: Option<JoinHandle<Report>>,
    /// Disconnects when the coordinator has returned the report.
    finished: Receiver<()>,
}

/// A listening socket already bound, for [`Server::from_listener`], and who
/// else holds it: that decides what the drain does to it.
///
/// With [`Inherited`](Listener::Inherited), connections that arrive after
/// one server's drain wait in the socket's backlog and are served by the
/// next server given the same socket, as under systemd's socket
/// activation. Here a second descriptor of the socket stands in for
/// systemd's:
///
/// ```
/// use std::net::TcpListener;
/// use wharf::{Client, ClientOptions, Config, Echo, Listener, Server};
///
/// let socket = TcpListener::bind("127.0.0.1:0")?;
/// let addr = socket.local_addr()?;
/// let config = Config { workers: 2, ..Config::default() };
///
/// let old = Server::from_listener(
///     Listener::Inherited(socket.try_clone()?.into()),
///     config.clone(),
///     Echo::default(),
/// )?;
/// old.handle().shutdown();
/// old.join();
///
/// // Between the two servers: the socket still listens, so the kernel
/// // accepts this connection into its backlog, and the request waits.
/// let mut client = Client::connect(addr, ClientOptions::default())?;
/// client.send(b"sent between two servers")?;
/// client.flush()?;
///
/// let new = Server::from_listener(Listener::Inherited(socket.into()), config, Echo::default())?;
/// assert_eq!(client.recv()?, wharf::Reply::Data(b"sent between two servers".to_vec()));
///
/// drop(client);
/// new.handle().shutdown();
/// new.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum Listener {
    /// The server's alone: the drain shuts it down, so new connections are
    /// refused at once (what [`Server::start`] does with the socket it
    /// binds). A Unix socket's file is not removed: the server removes only
    /// the files it made itself (see [`Server::start_all`]).
    Own(ListenSocket),
    /// Shared with a holder that outlives this server, such as systemd's
    /// socket unit (socket activation): the drain only stops accepting and
    /// closes this server's descriptor. The socket stays open, and
    /// connections that arrive meanwhile wait in its backlog for the next
    /// instance.
    Inherited(ListenSocket),
}

/// A listening stream socket already bound: TCP (IPv4 or IPv6) or Unix.
#[derive(Debug)]
pub enum ListenSocket {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream socket listener; its clients are known by their
    /// credentials ([`crate::Peer::Unix`]).
    Unix(UnixListener),
}

impl From<TcpListener> for ListenSocket {
    fn from(listener: TcpListener) -> Self {
        ListenSocket::Tcp(listener)
    }
}

impl From<UnixListener> for ListenSocket {
    fn from(listener: UnixListener) -> Self {
        ListenSocket::Unix(listener)
    }
}

impl From<ListenSocket> for socket2::Socket {
    fn from(listener: ListenSocket) -> Self {
        match listener {
            ListenSocket::Tcp(l) => l.into(),
            ListenSocket::Unix(l) => l.into(),
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// wharf's framing over plain TCP.
    #[default]
    Plain,
    /// wharf's framing inside TLS, with the certificate set of
    /// [`Config::tls`].
    Tls,
}

/// An address to listen on, and what the listener speaks, for
/// [`Server::start_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The address: TCP (port 0 picks a free port; IPv4 or IPv6), or a
    /// Unix socket's path.
    pub addr: Address,
    /// Plain or TLS.
    pub security: Security,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; IPv4 or IPv6), starts the
    /// worker pool and begins accepting plain connections.
    ///
    /// `config` is validated first; a reap interval above a quarter of the
    /// heartbeat timeout is lowered, and `max_connections` is lowered to
    /// what the descriptor limit allows, each with a warning in the log.
    /// With [`Config::reuse_port`] the socket gets `SO_REUSEPORT`, and a
    /// warning is logged unless `net.ipv4.tcp_migrate_req` is 1.
    pub fn start<A, S>(addr: A, config: Config, service: S) -> Result<Server, Error>
    where
        A: ToSocketAddrs,
        S: Service,
    {
        let addr = resolve(addr)?;
        Server::start_all(
            &[Bind {
                addr: Address::Tcp(addr),
                security: Security::Plain,
            }],
            config,
            service,
        )
    }

    /// Binds every address of `binds`, in order, and serves them all with
    /// one pool, one set of limits and one drain: plain listeners beside
    /// TLS ones (which need [`Config::tls`]), TCP beside Unix. Otherwise as
    /// [`Server::start`]; the server logs one `listening on` line per
    /// listener, in order.
    ///
    /// A Unix socket's file gets the mode [`Config::unix_mode`] before the
    /// server accepts on it. A stale socket file at the path (nobody
    /// accepts on it) is replaced; a live one, or a file that is not a
    /// socket, fails the start ([`Error::Listen`]) and is left as it was.
    /// The server removes the files it made when it stops.
    pub fn start_all<S: Service>(
        binds: &[Bind],
        config: Config,
        service: S,
    ) -> Result<Server, Error> {
        let config = checked(config)?;
        if config.reuse_port {
            check_migrate_req();
        }
        let mut listeners = Vec::with_capacity(binds.len());
        let mut files = Vec::new();
        let remove_all = |files: &[crate::engine::socket_file::SocketFile]| {
            files.iter().for_each(|f| f.remove())
        };
        for bind in binds {
            let socket = match &bind.addr {
                Address::Tcp(addr) => listen(*addr, config.backlog, config.reuse_port),
                Address::Unix(path) => unix::listen(path, config.backlog, config.unix_mode)
                    .map(|(socket, file)| {
                        files.push(file);
                        socket
                    })
                    .map_err(|source| Error::Listen {
                        addr: bind.addr.clone(),
                        source,
                    }),
            };
            match socket {
                Ok(socket) => listeners.push((launch::Socket::Own(socket), bind.security)),
                Err(e) => {
                    remove_all(&files);
                    return Err(e);
                }
            }
        }
        let timed = config.metrics.is_some();
        launch::launch(listeners, files, config, service, timed)
    }

    /// [`Server::start`] on `127.0.0.1:0`, recording the queue-wait and
    /// service-time histograms whether or not [`Config::metrics`] is set,
    /// so that the in-process benchmark can read them (see [`Probe`])
    /// without an HTTP endpoint. Servers started otherwise record them only
    /// with the endpoint on, as documented.
    pub(crate) fn start_timed<S: Service>(
        config: Config,
        security: Security,
        service: S,
    ) -> Result<Server, Error> {
        let config = checked(config)?;
        let addr = resolve("127.0.0.1:0")?;
        let listener = listen(addr, config.backlog, config.reuse_port)?;
        launch::launch(
            vec![(launch::Socket::Own(listener), security)],
            Vec::new(),
            config,
            service,
            true,
        )
    }

    /// Serves a listening socket (TCP or Unix) that is already bound, with plain
    /// connections, such as one inherited from systemd (socket activation):
    /// `Listener::Inherited` for a socket that others hold too, which the
    /// drain leaves open. The socket's own backlog stays as it is
    /// (`Config::backlog` and `Config::reuse_port` apply only to a socket
    /// the server binds). It is set non-blocking (the acceptor polls it),
    /// which other descriptors of the same socket see too; see [`Listener`]
    /// for an example.
    ///
    /// Fails with [`Error::InvalidListener`] if the socket is not a
    /// listening IPv4, IPv6 or Unix stream socket.
    pub fn from_listener<S: Service>(
        listener: Listener,
        config: Config,
        service: S,
    ) -> Result<Server, Error> {
        Server::from_listeners(vec![(listener, Security::Plain)], config, service)
    }

    /// Serves several listening sockets already bound, each plain or TLS,
    /// with one pool (see [`Server::from_listener`] and
    /// [`Server::start_all`]).
    pub fn from_listeners<S: Service>(
        listeners: Vec<(Listener, Security)>,
        config: Config,
        service: S,
    ) -> Result<Server, Error> {
        let config = checked(config)?;
        let mut sockets = Vec::with_capacity(listeners.len());
        for (listener, security) in listeners {
            let socket = match listener {
                Listener::Own(socket) => launch::Socket::Own(socket.into()),
                Listener::Inherited(socket) => launch::Socket::Inherited(socket.into()),
            };
            let (launch::Socket::Own(s) | launch::Socket::Inherited(s)) = &socket;
            check_listening(s)?;
            sockets.push((socket, security));
        }
        let timed = config.metrics.is_some();
        launch::launch(sockets, Vec::new(), config, service, timed)
    }

    /// The address of the first TCP listener, with the real port
    /// (`0.0.0.0:0` for a server with Unix listeners only: see
    /// [`Server::local_addrs`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs
            .iter()
            .find_map(|(addr, _)| addr.tcp())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Every listener's address (TCP with the real port, or a Unix
    /// socket's path) and what it speaks, in the order given.
    pub fn local_addrs(&self) -> &[(Address, Security)] {
        &self.local_addrs
    }

    /// Reloads the TLS set on demand (`None` without TLS listeners).
    pub fn tls(&self) -> Option<TlsHandle> {
        self.tls.clone()
    }

    /// The address of the metrics endpoint, with the real port, when
    /// [`Config::metrics`] is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The settings in force (after validation and fitting to the
    /// descriptor limit).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the in-process benchmark reads while the server runs; `None`
    /// once it has finished stopping.
    pub(crate) fn probe(&self) -> Option<Probe> {
        let shared = self.monitor.shared.upgrade()?;
        Some(Probe {
            stats: Arc::clone(&shared.stats),
            workers: shared.line.worker_states(),
        })
    }

    /// A handle that stops the server from any thread.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// A read-only view of the running server (counters, stopping state,
    /// liveness of the acceptor and reaper), for supervisors.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Waits up to `timeout` for the server to finish stopping; true if it
    /// has (then [`Server::join`] returns at once). Lets a supervising
    /// thread do periodic work while it waits.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        matches!(
            self.finished.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// Waits until the server has been shut down and drained (or forced),
    /// and returns what it did. Joining does not stop the server: call
    /// [`ShutdownHandle::shutdown`] first, from this thread or another, or
    /// this waits for ever. When it returns, every connection is closed and
    /// the server's threads have ended, except, after a forced drain
    /// ([`Report::forced`]), a worker still inside a service call: that
    /// cannot be interrupted, and finishes on its own.
    pub fn join(mut self) -> Report {
        match self.coordinator.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            // The coordinator does not panic; if it ever did, say so.
            _ => Report {
                forced: true,
                ..Report::default()
            },
        }
    }
}

/// The server's own counters and histograms, and its workers' states, as
/// the metrics endpoint reads them (without holding the server's state).
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) stats: Arc<Stats>,
    pub(crate) workers: WorkerStates,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.coordinator.is_some() {
            // Nobody will wait for a drain delay to be over.
            self.handle.shared.drain();
        }
    }
}
