//! Starting every thread of a server, in an order that lets an early
//! failure wind down what has started: closer, reaper, the whole worker
//! pool, the acceptor, the TLS reload check, the metrics endpoint, and the
//! drain's coordinator. Then the listening lines, and from then on the
//! thread count is fixed.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use log::{info, warn};
use parking_lot::Mutex;

use super::listen::{fit_descriptors, listen, METRICS_BACKLOG};
use super::{Address, Security, Server};
use crate::config::Config;
use crate::engine::acceptor::{self, Listen};
use crate::engine::budget::Budget;
use crate::engine::closer;
use crate::engine::conn::Clock;
use crate::engine::drain::{Drain, Threads};
use crate::engine::limits::Limits;
use crate::engine::line::Line;
use crate::engine::per_address::PerAddress;
use crate::engine::pool;
use crate::engine::reaper;
use crate::engine::registry::Registry;
use crate::engine::shared::Shared;
use crate::engine::shutdown::{Listening, Shutdown, ShutdownHandle};
use crate::engine::socket_file::SocketFile;
use crate::error::Error;
use crate::frame::Framing;
use crate::observe::alive::Alive;
use crate::observe::refused::Refused;
use crate::observe::stats::Stats;
use crate::observe::turned_away::TurnedAway;
use crate::server::reloads::{self as reload, TlsHandle};
use crate::service::Service;
use crate::tls::reload::Tls;
use crate::watch::metrics;
use crate::watch::monitor::Monitor;

/// A listening socket handed to [`launch`], and who else holds it (see
/// [`super::Listener`]).
pub(super) enum Socket {
    Own(socket2::Socket),
    Inherited(socket2::Socket),
}

/// A listener ready to serve.
struct Bound {
    listener: Arc<socket2::Socket>,
    addr: Address,
    inherited: bool,
    security: Security,
}

/// Starts everything; `timed`: record the latency histograms. `files`:
/// the Unix socket files the server made, removed when it stops (or now,
/// if it cannot start).
pub(super) fn launch<S: Service>(
    listeners: Vec<(Socket, Security)>,
    files: Vec<SocketFile>,
    config: Config,
    service: S,
    timed: bool,
) -> Result<Server, Error> {
    // Until the drain owns them, the socket files go if the start fails.
    let files = Files(files);
    let (config, max_lingering) = fit_descriptors(config);
    let bound = listeners
        .into_iter()
        .map(|(listener, security)| prepare(listener, security))
        .collect::<Result<Vec<_>, _>>()?;
    if bound.is_empty() {
        return Err(Error::InvalidConfig("no listener to serve".into()));
    }
    let wants_tls = bound.iter().any(|b| b.security == Security::Tls);
    let tls = match (&config.tls, wants_tls) {
        (Some(settings), true) => Some(Arc::new(Tls::load(settings.clone())?)),
        (None, true) => {
            return Err(Error::InvalidConfig(
                "a TLS listener needs a certificate and key (Config::tls)".into(),
            ))
        }
        (_, false) => None,
    };
    // With --reuse-port the metrics address is shared too, so a new
    // instance can start on the same one while the old one drains.
    let mut metrics_addr = None;
    let metrics_listener = match config.metrics {
        Some(addr) => {
            let metrics_error = |source| Error::ListenMetrics { addr, source };
            let listener: TcpListener = listen(addr, METRICS_BACKLOG, config.reuse_port)
                .map_err(|e| match e {
                    Error::Listen { source, .. } => metrics_error(source),
                    other => other,
                })?
                .into();
            metrics_addr = Some(listener.local_addr().map_err(metrics_error)?);
            Some(listener)
        }
        None => None,
    };

    let line = Line::new(config.workers, timed).map_err(|source| Error::Setup {
        what: "the line to the workers (epoll)",
        source,
    })?;
    let registry = Arc::new(Registry::new(config.clone()));
    let listening = if bound.iter().all(|b| b.inherited) {
        Listening::Inherited
    } else {
        Listening::Own
    };
    let own: Vec<Arc<socket2::Socket>> = bound
        .iter()
        .filter(|b| !b.inherited)
        .map(|b| Arc::clone(&b.listener))
        .collect();
    let shutdown = Arc::new(
        Shutdown::new(own, files.take(), listening, !config.drain_delay.is_zero()).map_err(
            |source| Error::Setup {
                what: "the acceptor's wake-up eventfd",
                source,
            },
        )?,
    );
    let alive = Arc::new(Alive::default());
    let (closer, closing) = closer::channel(Arc::clone(&registry), config.framing, max_lingering);
    let on_room = line.room_notifier();
    let stats = Arc::new(Stats::new(config.workers));
    if let Some(tls) = &tls {
        let loaded = tls.current();
        stats.tls_expiry.store(loaded.not_after, Ordering::Relaxed);
        reload::warn_if_not_valid_now(&loaded, &tls.settings().cert);
    }
    let shared = Arc::new(Shared {
        service: Arc::new(service),
        registry: Arc::clone(&registry),
        line,
        timed,
        limits: Limits::new(config.max_connections, config.queue),
        per_address: Arc::new(PerAddress::new(&config.per_address, config.max_connections)),
        budget: Arc::new(Budget::new(config.max_buffered, on_room)),
        held: Mutex::new(VecDeque::new()),
        shutdown: Arc::clone(&shutdown),
        stats: Arc::clone(&stats),
        turned_away: TurnedAway::new(),
        tls: tls.clone(),
        refused: Refused::new(),
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
    let local_addrs: Vec<(Address, Security)> =
        bound.iter().map(|b| (b.addr.clone(), b.security)).collect();
    let inherited: Vec<bool> = bound.iter().map(|b| b.inherited).collect();
    let listens = bound
        .into_iter()
        .map(|b| Listen {
            listener: b.listener,
            tls: b.security == Security::Tls,
        })
        .collect();
    let acceptor_thread = match spawn("acceptor", {
        let shared = Arc::clone(&shared);
        move || acceptor::run(listens, shared)
    }) {
        Ok(thread) => thread,
        Err(e) => {
            shutdown.drain();
            shared.line.close();
            return Err(e);
        }
    };
    // Checks the TLS files for changes, until the drain.
    let tls_thread = match &tls {
        Some(tls) if !tls.settings().reload_interval.is_zero() => {
            let (tls, stats, stop) = (
                Arc::clone(tls),
                Arc::clone(&stats),
                shutdown.drained().clone(),
            );
            match spawn("tls", move || reload::run(tls, stats, stop)) {
                Ok(thread) => Some(thread),
                Err(e) => {
                    shutdown.drain();
                    shared.line.close();
                    return Err(e);
                }
            }
        }
        _ => None,
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
            tls: tls_thread,
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
    for ((addr, security), inherited) in local_addrs.iter().zip(inherited) {
        info!(
            "listening on {addr} ({}{}, {}{} workers, queue {}, max-connections {}, {} framing)",
            match security {
                Security::Plain => "",
                Security::Tls => "tls, ",
            },
            crate::build_info::Identity,
            if inherited { "inherited socket, " } else { "" },
            config.workers,
            config.queue,
            config.max_connections,
            match config.framing {
                Framing::Length => "length",
                Framing::Line => "line",
            }
        );
    }
    Ok(Server {
        local_addrs,
        metrics_addr,
        config: Box::new(config),
        handle,
        monitor,
        tls: tls.map(|tls| TlsHandle { tls, stats }),
        coordinator: Some(coordinator),
        finished,
    })
}

/// The Unix socket files a server made, removed if it cannot start; the
/// drain takes them once it can (see `shutdown`).
struct Files(Vec<SocketFile>);

impl Files {
    fn take(mut self) -> Vec<SocketFile> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.0.iter().for_each(SocketFile::remove);
    }
}

/// Reads a listener's address and makes it non-blocking: the acceptor waits
/// for it in poll(2), with the drain's eventfd.
fn prepare(listener: Socket, security: Security) -> Result<Bound, Error> {
    let (listener, inherited) = match listener {
        Socket::Own(listener) => (listener, false),
        Socket::Inherited(listener) => (listener, true),
    };
    let local = listener
        .local_addr()
        .map_err(|e| Error::InvalidListener(format!("cannot read its address: {e}")))?;
    let addr = match (local.as_socket(), local.as_pathname()) {
        (Some(addr), _) => Address::Tcp(addr),
        (None, Some(path)) => Address::Unix(path.to_owned()),
        (None, None) => {
            return Err(Error::InvalidListener(
                "an unnamed or abstract Unix socket (only sockets with a path are served)".into(),
            ))
        }
    };
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Listen {
            addr: addr.clone(),
            source,
        })?;
    Ok(Bound {
        listener: Arc::new(listener),
        addr,
        inherited,
        security,
    })
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

/// Validates `config`, logging the warning it may carry.
pub(super) fn checked(config: Config) -> Result<Config, Error> {
    let (config, warning) = config.validate()?;
    if let Some(warning) = warning {
        warn!("{warning}");
    }
    Ok(config)
}
