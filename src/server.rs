//! Starting a server, and the drain that stops it.
//!
//! [`Server::start`] binds the listener, starts every thread (closer, reaper,
//! the whole worker pool, acceptor, and a coordinator that waits for the
//! shutdown trigger), logs `listening on <addr>` and returns. From then on
//! the thread count is fixed, whatever the number of clients.
//!
//! The coordinator runs the drain when [`ShutdownHandle::shutdown`] is
//! called:
//!
//! 1. the listener is closed at once (new connections are refused);
//! 2. connections still in the queue are sent GOAWAY 1 and closed;
//! 3. workers blocked reading an idle client are woken; every connection
//!    being served finishes the request in progress, sends its response,
//!    then GOAWAY 1, and closes;
//! 4. once the last worker is done, the threads are joined and
//!    [`Server::join`] returns the [`Report`].
//!
//! If the workers are not done within the grace period, or
//! [`ShutdownHandle::force`] is called, every remaining connection is closed
//! at once (a GOAWAY 1 is sent to those whose service is still running) and
//! the report says `forced`. A worker stuck inside a service call cannot be
//! interrupted; it is left to finish on its own and is not waited for.

use std::net::{Shutdown as How, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};
use log::{info, warn};
use socket2::{Domain, Protocol, Socket, Type};

use crate::closer::{self, send_goaway_nonblocking};
use crate::connection::Shared;
use crate::frame::GoAwayCode;
use crate::registry::{Clock, Conn, Registry, ACTIVE, BUSY, FORCED, QUEUED};
use crate::shutdown::{Shutdown, ShutdownHandle};
use crate::stats::{Report, Snapshot, Stats};
use crate::{acceptor, pool, reaper, Config, Error, Service};

/// How long a forced drain waits for workers blocked in I/O to notice.
const FORCED_SETTLE: Duration = Duration::from_millis(200);

/// A running server. Stop it with [`Server::handle`] and wait for it with
/// [`Server::join`]; dropping it without joining starts a drain and does not
/// wait for it.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    config: Config,
    handle: ShutdownHandle,
    coordinator: Option<JoinHandle<Report>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; IPv4 or IPv6), starts the
    /// worker pool and begins accepting connections.
    ///
    /// `config` is validated first; a reap interval above a quarter of the
    /// heartbeat timeout is lowered with a warning in the log.
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
        let listener = Arc::new(listen(addr, config.backlog)?);
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;

        let registry = Arc::new(Registry::default());
        let shutdown = Arc::new(Shutdown::new(Arc::clone(&listener)));
        let (closer, closing) = closer::channel(Arc::clone(&registry), config.framing);
        let shared = Arc::new(Shared {
            config: config.clone(),
            service: Arc::new(service),
            registry: Arc::clone(&registry),
            shutdown: Arc::clone(&shutdown),
            stats: Arc::new(Stats::new(config.workers)),
            clock: Clock::new(),
            closer,
            idle_workers: AtomicUsize::new(0),
            expired_in_queue: AtomicUsize::new(0),
        });
        let handle = ShutdownHandle {
            shared: Arc::clone(&shutdown),
        };

        // From here on, an early return drops every channel end we hold, and
        // the threads already started wind down by themselves.
        let closer_thread = spawn("closer", {
            let (registry, shutdown) = (Arc::clone(&registry), Arc::clone(&shutdown));
            let framing = config.framing;
            move || closer::run(closing, registry, framing, shutdown)
        })?;
        let (reaper_stop, reaper_stopped) = crossbeam_channel::bounded::<()>(0);
        let reaper_thread = spawn("reaper", {
            let shared = Arc::clone(&shared);
            move || reaper::run(shared, reaper_stopped)
        })?;
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(config.queue);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let workers = pool::spawn(&shared, &queue_rx, &done_tx)?;
        drop(done_tx);
        let acceptor_thread = spawn("acceptor", {
            let shared = Arc::clone(&shared);
            let queue_front = queue_rx.clone();
            move || acceptor::run(listener, queue_tx, queue_front, shared)
        })?;

        let drain = Drain {
            shared,
            queue: queue_rx,
            workers_done: done_rx,
            reaper_stop,
            threads: Threads {
                acceptor: acceptor_thread,
                workers,
                reaper: reaper_thread,
                closer: closer_thread,
            },
        };
        let coordinator = match spawn("shutdown", move || drain.run()) {
            Ok(thread) => thread,
            Err(e) => {
                handle.shutdown();
                return Err(e);
            }
        };
        info!(
            "listening on {local_addr} ({} workers, queue {}, {:?} framing)",
            config.workers, config.queue, config.framing
        );
        Ok(Server {
            local_addr,
            config,
            handle,
            coordinator: Some(coordinator),
        })
    }

    /// The address the server is bound to, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The settings in force (after validation).
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

struct Threads {
    acceptor: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    reaper: JoinHandle<()>,
    closer: JoinHandle<()>,
}

/// What the coordinator needs to run the drain.
struct Drain {
    shared: Arc<Shared>,
    queue: Receiver<Arc<Conn>>,
    workers_done: Receiver<()>,
    reaper_stop: Sender<()>,
    threads: Threads,
}

impl Drain {
    fn run(self) -> Report {
        let Drain {
            shared,
            queue,
            workers_done,
            reaper_stop,
            threads,
        } = self;
        let shutdown = &shared.shutdown;
        // Disconnects (never receives) when the drain is triggered; until
        // then, log the counters every stats interval if asked to.
        match shared.config.stats_interval {
            Some(every) => {
                while let Err(RecvTimeoutError::Timeout) = shutdown.drained().recv_timeout(every) {
                    info!("stats: {}", snapshot(&shared));
                }
            }
            None => {
                let _ = shutdown.drained().recv();
            }
        }
        let started = Instant::now();
        info!("shutdown: draining; listener closed, new connections are refused");

        // Wake workers blocked reading an idle client; BUSY ones see the
        // flag after their request. The flag is already set, so a worker
        // that takes a connection after this scan sees it.
        for conn in shared.registry.snapshot() {
            if matches!(conn.state(), ACTIVE | BUSY) {
                conn.shutdown(How::Read);
            }
        }
        let _ = threads.acceptor.join();
        let mut queued = 0;
        for conn in queue.try_iter() {
            if shared.closer.turn_away(conn, GoAwayCode::Shutdown) {
                queued += 1;
            }
        }
        drop(queue);
        info!(
            "shutdown: {queued} queued connection(s) sent GOAWAY 1; waiting up to {:?} for {} \
             connection(s) in service",
            shared.config.grace,
            shared.registry.census().1
        );

        let deadline = started + shared.config.grace;
        let finished = select! {
            recv(workers_done) -> _ => true,
            recv(shutdown.forced()) -> _ => false,
            recv(crossbeam_channel::at(deadline)) -> _ => false,
        };
        let mut workers_exited = finished;
        if !finished {
            if shutdown.is_forced() {
                info!("shutdown: forced before the drain finished");
            } else {
                info!(
                    "shutdown: grace period of {:?} expired",
                    shared.config.grace
                );
            }
            shutdown.force();
            let closed = force_close(&shared);
            info!("shutdown: closed {closed} remaining connection(s) by force");
            // Workers blocked in I/O fail at once; one stuck inside its
            // service cannot be interrupted and is not waited for.
            workers_exited = matches!(
                workers_done.recv_timeout(FORCED_SETTLE),
                Err(RecvTimeoutError::Disconnected)
            );
        }
        drop(reaper_stop);
        let _ = threads.reaper.join();
        let stats = Arc::clone(&shared.stats);
        if !workers_exited {
            let stuck = threads.workers.iter().filter(|w| !w.is_finished()).count();
            warn!("shutdown: {stuck} worker(s) still inside the service; not waiting for them");
            return stats.report(true);
        }
        for worker in threads.workers {
            let _ = worker.join();
        }
        // The workers and the acceptor are gone; dropping the last handle on
        // the shared state lets the closer finish its lingering and exit.
        drop(shared);
        let _ = threads.closer.join();
        info!("shutdown: done in {:?}", started.elapsed());
        stats.report(!finished)
    }
}

/// The counters and the live connections right now.
fn snapshot(shared: &Shared) -> Snapshot {
    let (queued, active) = shared.registry.census();
    Snapshot {
        report: shared.stats.report(false),
        active,
        queued,
    }
}

/// Closes every registered connection now. A connection whose service is
/// running gets GOAWAY 1 first: its worker cannot be writing, and once the
/// state is FORCED it never will. Returns how many were closed.
fn force_close(shared: &Shared) -> usize {
    let framing = shared.config.framing;
    let mut closed = 0;
    for conn in shared.registry.snapshot() {
        let state = conn.state();
        if matches!(state, BUSY | QUEUED) && conn.transition(state, FORCED) {
            send_goaway_nonblocking(&conn, framing, GoAwayCode::Shutdown);
        } else {
            let _ = conn.transition(ACTIVE, FORCED);
        }
        conn.shutdown(How::Both);
        shared.registry.remove(&conn);
        closed += 1;
    }
    closed
}
