//! Starting every thread of a server, in an order that lets an early
//! failure wind down what has started: closer, reaper, the whole worker
//! pool, the acceptor, the metrics endpoint, and the drain's coordinator.
//! Then the listening line, and from then on the thread count is fixed.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use log::info;
use parking_lot::Mutex;

use super::listen::{fit_descriptors, listen, METRICS_BACKLOG};
use super::Server;
use crate::config::Config;
use crate::engine::acceptor;
use crate::engine::budget::Budget;
use crate::engine::closer;
use crate::engine::conn::Clock;
use crate::engine::drain::{Drain, Threads};
use crate::engine::limits::Limits;
use crate::engine::line::Line;
use crate::engine::pool;
use crate::engine::reaper;
use crate::engine::registry::Registry;
use crate::engine::shared::Shared;
use crate::engine::shutdown::{Listening, Shutdown, ShutdownHandle};
use crate::error::Error;
use crate::frame::Framing;
use crate::observe::alive::Alive;
use crate::observe::stats::Stats;
use crate::observe::turned_away::TurnedAway;
use crate::service::Service;
use crate::watch::metrics;
use crate::watch::monitor::Monitor;

/// Starts everything; `timed`: record the latency histograms.
pub(super) fn launch<S: Service>(
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
        Shutdown::new(&listener, listening, !config.drain_delay.is_zero()).map_err(|source| {
            Error::Setup {
                what: "the acceptor's wake-up eventfd",
                source,
            }
        })?,
    );
    let alive = Arc::new(Alive::default());
    let (closer, closing) = closer::channel(Arc::clone(&registry), config.framing, max_lingering);
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
