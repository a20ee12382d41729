//! Starting a server: binding, sizing the limits, and starting every thread.
//!
//! [`Server::start`] binds the listener (or [`Server::from_listener`] takes
//! one already bound, for socket activation), starts every thread (closer,
//! reaper, the whole worker pool, acceptor, the metrics endpoint if
//! configured, and the drain coordinator), logs `listening on <addr>` and
//! returns. From then on the thread count is fixed, whatever the number of
//! clients. Stopping is the drain's business (see `drain`).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};
use parking_lot::Mutex;

use crate::config::Config;
use crate::engine::acceptor;
use crate::engine::budget::Budget;
use crate::engine::closer;
use crate::engine::conn::Clock;
use crate::engine::drain::{Drain, Threads};
use crate::engine::limits::Limits;
use crate::engine::line::{Line, WorkerStates};
use crate::engine::pool;
use crate::engine::reaper;
use crate::engine::registry::Registry;
use crate::engine::shared::Shared;
use crate::engine::shutdown::{Listening, Shutdown, ShutdownHandle};
use crate::error::Error;
use crate::frame::Framing;
use crate::observe::alive::Alive;
use crate::observe::stats::{Report, Stats};
use crate::observe::turned_away::TurnedAway;
use crate::service::Service;
use crate::watch::metrics;
use crate::watch::monitor::Monitor;

mod listen;

use listen::{
    check_listening_tcp, check_migrate_req, fit_descriptors, listen, resolve, METRICS_BACKLOG,
};

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
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    config: Config,
    handle: ShutdownHandle,
    monitor: Monitor,
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
///     Listener::Inherited(socket.try_clone()?),
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
/// let new = Server::from_listener(Listener::Inherited(socket), config, Echo::default())?;
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
    /// binds).
    Own(TcpListener),
    /// Shared with a holder that outlives this server, such as systemd's
    /// socket unit (socket activation): the drain only stops accepting and
    /// closes this server's descriptor. The socket stays open, and
    /// connections that arrive meanwhile wait in its backlog for the next
    /// instance.
    Inherited(TcpListener),
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; IPv4 or IPv6), starts the
    /// worker pool and begins accepting connections.
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
        let (config, warning) = config.validate()?;
        if let Some(warning) = warning {
            warn!("{warning}");
        }
        let addr = resolve(addr)?;
        if config.reuse_port {
            check_migrate_req();
        }
        let listener = listen(addr, config.backlog, config.reuse_port)?;
        let timed = config.metrics.is_some();
        Server::launch(listener, Listening::Own, config, service, timed)
    }

    /// [`Server::start`] on `127.0.0.1:0`, recording the queue-wait and
    /// service-time histograms whether or not [`Config::metrics`] is set,
    /// so that the in-process benchmark can read them (see [`Probe`])
    /// without an HTTP endpoint. Servers started otherwise record them only
    /// with the endpoint on, as documented.
    pub(crate) fn start_timed<S: Service>(config: Config, service: S) -> Result<Server, Error> {
        let (config, warning) = config.validate()?;
        if let Some(warning) = warning {
            warn!("{warning}");
        }
        let addr = resolve("127.0.0.1:0")?;
        let listener = listen(addr, config.backlog, config.reuse_port)?;
        Server::launch(listener, Listening::Own, config, service, true)
    }

    /// Serves a listening TCP socket that is already bound, such as one
    /// inherited from systemd (socket activation): [`Listener::Inherited`]
    /// for a socket that others hold too, which the drain leaves open (see
    /// [`Listener`] for an example). The socket's own backlog stays as it
    /// is ([`Config::backlog`] and [`Config::reuse_port`] apply only to a
    /// socket the server binds). It is set non-blocking (the acceptor polls
    /// it), which other descriptors of the same socket see too.
    ///
    /// Fails with [`Error::InvalidListener`] if the socket is not a
    /// listening IPv4 or IPv6 stream socket.
    pub fn from_listener<S: Service>(
        listener: Listener,
        config: Config,
        service: S,
    ) -> Result<Server, Error> {
        let (config, warning) = config.validate()?;
        if let Some(warning) = warning {
            warn!("{warning}");
        }
        let (listener, listening) = match listener {
            Listener::Own(listener) => (listener, Listening::Own),
            Listener::Inherited(listener) => (listener, Listening::Inherited),
        };
        check_listening_tcp(&listener)?;
        let timed = config.metrics.is_some();
        Server::launch(listener, listening, config, service, timed)
    }

    /// Starts everything; `timed`: record the latency histograms.
    fn launch<S: Service>(
        listener: TcpListener,
        listening: Listening,
        config: Config,
        service: S,
        timed: bool,
    ) -> Result<Server, Error> {
        let (config, max_lingering) = fit_descriptors(config);
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::InvalidListener(format!("cannot read its address: {e}")))?;
        // The acceptor waits for it in poll(2), with the drain's eventfd.
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Listen {
                addr: local_addr,
                source,
            })?;
        let listener = Arc::new(listener);
        // With --reuse-port the metrics address is shared too, so a new
        // instance can start on the same one while the old one drains.
        let mut metrics_addr = None;
        let metrics_listener = match config.metrics {
            Some(addr) => {
                let listener = listen(addr, METRICS_BACKLOG, config.reuse_port)?;
                let real = listener.local_addr();
                metrics_addr = Some(real.map_err(|source| Error::Listen { addr, source })?);
                Some(listener)
            }
            None => None,
        };

        let line = Line::new(config.workers, timed).map_err(|source| Error::Setup {
            what: "the line to the workers (epoll)",
            source,
        })?;
        let registry = Arc::new(Registry::new(config.clone()));
        let shutdown = Arc::new(
            Shutdown::new(&listener, listening, !config.drain_delay.is_zero()).map_err(
                |source| Error::Setup {
                    what: "the acceptor's wake-up eventfd",
                    source,
                },
            )?,
        );
        let alive = Arc::new(Alive::default());
        let (closer, closing) =
            closer::channel(Arc::clone(&registry), config.framing, max_lingering);
        let on_room = line.room_notifier();
        let shared = Arc::new(Shared {
            service: Arc::new(service),
            registry: Arc::clone(&registry),
            line,
            timed,
            limits: Limits::new(config.max_connections, config.queue),
            budget: Arc::new(Budget::new(config.max_buffered, on_room)),
            held: Mutex::new(VecDeque::new()),
            shutdown: Arc::clone(&shutdown),
            stats: Arc::new(Stats::new(config.workers)),
            turned_away: TurnedAway::new(),
            clock: Clock::new(),
            closer,
            config: config.clone(),
            alive: Arc::clone(&alive),
        });
        let handle = ShutdownHandle {
            shared: Arc::clone(&shutdown),
        };
        let monitor = Monitor {
            shared: Arc::downgrade(&shared),
            shutdown: Arc::clone(&shutdown),
            alive,
        };

        // From here on, an early return drops every channel end we hold, and
        // the threads already started wind down by themselves.
        let closer_thread = spawn("closer", {
            let shutdown = Arc::clone(&shutdown);
            let framing = config.framing;
            move || closer::run(closing, registry, framing, shutdown, max_lingering)
        })?;
        let (reaper_stop, reaper_stopped) = crossbeam_channel::bounded::<()>(0);
        let reaper_thread = spawn("reaper", {
            let shared = Arc::clone(&shared);
            move || reaper::run(shared, reaper_stopped)
        })?;
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let workers = match pool::spawn(&shared, &done_tx) {
            Ok(workers) => workers,
            Err(e) => {
                shared.line.close();
                return Err(e);
            }
        };
        drop(done_tx);
        let acceptor_thread = match spawn("acceptor", {
            let shared = Arc::clone(&shared);
            move || acceptor::run(listener, shared)
        }) {
            Ok(thread) => thread,
            Err(e) => {
                shutdown.drain();
                shared.line.close();
                return Err(e);
            }
        };

        // Stopped by the coordinator once the drain is over (see `metrics`).
        let metrics = match metrics::start(metrics_listener, &shared) {
            Ok(metrics) => metrics,
            Err(e) => {
                handle.shutdown();
                shared.line.close();
                return Err(e);
            }
        };
        let drain = Drain {
            shared,
            workers_done: done_rx,
            reaper_stop,
            threads: Threads {
                acceptor: acceptor_thread,
                workers,
                reaper: reaper_thread,
                closer: closer_thread,
            },
        };
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let coordinator = match spawn("shutdown", move || {
            let report = drain.run();
            if let Some(metrics) = metrics {
                metrics.stop();
            }
            drop(finished_tx);
            report
        }) {
            Ok(thread) => thread,
            Err(e) => {
                shutdown.drain();
                return Err(e);
            }
        };
        if let Some(metrics_addr) = metrics_addr {
            info!("metrics on {metrics_addr} (/metrics, /ready, /live)");
        }
        info!(
            "listening on {local_addr} ({}, {}{} workers, queue {}, max-connections {}, {} framing)",
            crate::build_info::Identity,
            match listening {
                Listening::Own => "",
                Listening::Inherited => "inherited socket, ",
            },
            config.workers,
            config.queue,
            config.max_connections,
            match config.framing {
                Framing::Length => "length",
                Framing::Line => "line",
            }
        );
        Ok(Server {
            local_addr,
            metrics_addr,
            config,
            handle,
            monitor,
            coordinator: Some(coordinator),
            finished,
        })
    }

    /// The address the server is bound to, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

fn spawn<T, F>(name: &'static str, f: F) -> Result<JoinHandle<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("wharf-{name}"))
        .spawn(f)
        .map_err(|source| Error::Spawn { what: name, source })
}
