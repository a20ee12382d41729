//! Starting a server: binding, sizing the limits, and starting every thread.
//!
//! [`Server::start`] binds the listener, starts every thread (closer,
//! reaper, the whole worker pool, poller, acceptor, the metrics endpoint if
//! configured, and the drain coordinator), logs `listening on <addr>` and
//! returns. From then on the thread count is fixed, whatever the number of
//! clients. Stopping is the drain's business (see `drain`).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;

use log::{info, warn};
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use crate::budget::Budget;
use crate::closer;
use crate::config::Config;
use crate::conn::Clock;
use crate::drain::{Drain, Threads};
use crate::error::Error;
use crate::frame::Framing;
use crate::limits::Limits;
use crate::poller::Poller;
use crate::queue::Line;
use crate::registry::Registry;
use crate::service::Service;
use crate::shared::Shared;
use crate::shutdown::{Shutdown, ShutdownHandle};
use crate::stats::{Report, Stats};
use crate::{acceptor, metrics, poller, pool, reaper, wake};

/// Descriptors kept free for everything but client connections (the
/// listener, the poller, standard streams, log files), at most a quarter
/// of the limit.
const RESERVED_DESCRIPTORS: u64 = 64;

/// A running server. Stop it with [`Server::handle`] and wait for it with
/// [`Server::join`]; dropping it without joining starts a drain and does not
/// wait for it.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    config: Config,
    handle: ShutdownHandle,
    coordinator: Option<JoinHandle<Report>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; IPv4 or IPv6), starts the
    /// worker pool and begins accepting connections.
    ///
    /// `config` is validated first; a reap interval above a quarter of the
    /// heartbeat timeout is lowered, and `max_connections` is lowered to
    /// what the descriptor limit allows, each with a warning in the log.
    pub fn start<A, S>(addr: A, config: Config, service: S) -> Result<Server, Error>
    where
        A: ToSocketAddrs,
        S: Service,
    {
        let (config, warning) = config.validate()?;
        if let Some(warning) = warning {
            warn!("{warning}");
        }
        let (config, max_lingering) = fit_descriptors(config);
        if config.stay_on_quiet {
            wake::install().map_err(|source| Error::Setup {
                what: "the worker wake-up signal handler",
                source,
            })?;
        }
        let addr = resolve(addr)?;
        let listener = Arc::new(listen(addr, config.backlog)?);
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;
        let (metrics_listener, metrics_addr) = metrics::bind(config.metrics)?;

        let poller = Arc::new(Poller::new().map_err(|source| Error::Setup {
            what: "the readiness poller",
            source,
        })?);
        let registry = Arc::new(Registry::new());
        let shutdown = Arc::new(Shutdown::new(Arc::clone(&listener)));
        let (closer, closing) =
            closer::channel(Arc::clone(&registry), config.framing, max_lingering);
        let on_room = {
            let poller = Arc::clone(&poller);
            Box::new(move || poller.notify())
        };
        let shared = Arc::new(Shared {
            service: Arc::new(service),
            registry: Arc::clone(&registry),
            line: Line::new(
                config.max_connections,
                config.workers,
                config.metrics.is_some(),
            ),
            limits: Limits::new(config.max_connections, config.queue),
            budget: Arc::new(Budget::new(config.max_buffered, on_room)),
            poller,
            held: Mutex::new(VecDeque::new()),
            shutdown: Arc::clone(&shutdown),
            stats: Arc::new(Stats::new(config.workers)),
            clock: Clock::new(),
            closer,
            config: config.clone(),
        });
        let handle = ShutdownHandle {
            shared: Arc::clone(&shutdown),
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
        let started = (|| {
            let poller_thread = spawn("poller", {
                let shared = Arc::clone(&shared);
                move || poller::run(shared)
            })?;
            let acceptor_thread = spawn("acceptor", {
                let shared = Arc::clone(&shared);
                move || acceptor::run(listener, shared)
            })?;
            Ok::<_, Error>((poller_thread, acceptor_thread))
        })();
        let (poller_thread, acceptor_thread) = match started {
            Ok(threads) => threads,
            Err(e) => {
                handle.shutdown();
                shared.poller.notify();
                shared.line.close();
                return Err(e);
            }
        };

        // Stopped by the coordinator once the drain is over (see `metrics`).
        let metrics = match metrics::start(metrics_listener, &shared) {
            Ok(metrics) => metrics,
            Err(e) => {
                handle.shutdown();
                shared.poller.notify();
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
                poller: poller_thread,
                workers,
                reaper: reaper_thread,
                closer: closer_thread,
            },
        };
        let coordinator = match spawn("shutdown", move || {
            let report = drain.run();
            if let Some(metrics) = metrics {
                metrics.stop();
            }
            report
        }) {
            Ok(thread) => thread,
            Err(e) => {
                handle.shutdown();
                return Err(e);
            }
        };
        if let Some(metrics_addr) = metrics_addr {
            info!("metrics on {metrics_addr} (/metrics, /ready, /live)");
        }
        info!(
            "listening on {local_addr} ({} workers, queue {}, max-connections {}, {} framing)",
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
            coordinator: Some(coordinator),
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

    /// A handle that starts the drain from any thread.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Waits until the server has been shut down and drained (or forced),
    /// and returns what it did.
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

impl Drop for Server {
    fn drop(&mut self) {
        if self.coordinator.is_some() {
            self.handle.shutdown();
        }
    }
}

/// Lowers `max_connections` to what the soft descriptor limit allows, with
/// a warning, and returns how many connections the closer may keep
/// lingering (their descriptors count too: a connection turned away at
/// accept has no place under `max_connections`).
fn fit_descriptors(mut config: Config) -> (Config, usize) {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return (config, closer::MAX_LINGERING);
    };
    // The closer holds at most this many lingering sockets, and as many
    // more waiting for it.
    let lingering = (soft / 8).min(closer::MAX_LINGERING as u64);
    let reserved = (soft / 4).min(RESERVED_DESCRIPTORS);
    let allowed = soft.saturating_sub(reserved + 2 * lingering).max(1);
    if config.max_connections as u64 > allowed {
        warn!(
            "max-connections {} is more than the descriptor limit ({soft}) allows; lowered to \
             {allowed} (raise the limit, e.g. LimitNOFILE= in a systemd unit, to allow more)",
            config.max_connections
        );
        config.max_connections = allowed as usize;
    }
    (config, lingering as usize)
}

fn resolve<A: ToSocketAddrs>(addr: A) -> Result<SocketAddr, Error> {
    let mut addrs = addr
        .to_socket_addrs()
        .map_err(|e| Error::Resolve(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| Error::Resolve("no address".to_owned()))
}

/// A listening socket with `SO_REUSEADDR` (a restart does not wait for old
/// connections in TIME_WAIT) and the configured backlog.
fn listen(addr: SocketAddr, backlog: u32) -> Result<TcpListener, Error> {
    let setup = || -> std::io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Ok(socket.into())
    };
    setup().map_err(|source| Error::Listen { addr, source })
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
