//! The drain: what happens between a shutdown request and the exit.
//!
//! A coordinator thread waits for [`crate::ShutdownHandle::shutdown`]
//! (logging the counters every `--stats-interval` meanwhile). With a drain
//! delay ([`crate::Config::drain_delay`]) the server is then *stopping*:
//! it still accepts and serves, and only reports not-ready, until the delay
//! is over (or [`crate::ShutdownHandle::force`] cuts it short). Then the
//! drain:
//!
//! 1. the acceptor stops (the drain switch woke it) and closes its
//!    descriptor of the listening socket; a listener the server bound
//!    itself is already shut down, so new connections are refused, while an
//!    inherited one stays open for its holder, and new connections wait in
//!    its backlog for the next instance;
//! 2. every connection in line or resting is sent GOAWAY 1 and closed at
//!    once, and the drain's event goes in line, so that every worker exits
//!    once it lets go of its connection;
//! 3. each connection being served finishes the request in progress, sends
//!    its response, then GOAWAY 1, and closes;
//! 4. once the last worker is done, the threads are joined and
//!    [`crate::Server::join`] returns the [`Report`].
//!
//! If the work is not done within the grace period, or
//! [`crate::ShutdownHandle::force`] is called, every remaining connection is
//! closed at once and the report says `forced`: those that no worker holds
//! get GOAWAY 1 first, but not one whose request is inside the service,
//! since that request may have run and GOAWAY 1 promises it did not. Only work still running (a
//! request in its service, replies being written) makes a drain forced: when
//! the grace period ends, the workers left get [`SETTLE`] to finish closing
//! quiet connections with GOAWAY 1 (or to step past a reply they have just
//! written), so `--grace 0` with nothing in progress exits cleanly. A
//! worker stuck inside a service call cannot be interrupted; it is left to
//! finish on its own and is not waited for.

use std::net::Shutdown as How;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use crate::engine::closer::send_goaway_nonblocking;
use crate::engine::conn::{ACTIVE, BUSY, CLOSING, FORCED, QUEUED, RESTING};
use crate::engine::shared::Shared;
use crate::engine::shutdown::Listening;
use crate::frame::GoAwayCode;
use crate::human;
use crate::observe::access::{Ending, Why};
use crate::observe::stats::{Report, Snapshot};

/// How long a forced drain waits for workers blocked in I/O to notice.
const FORCED_SETTLE: Duration = Duration::from_millis(200);

/// How long, after the grace period, the workers left may take before the
/// drain counts as forced: long enough to close a quiet connection with
/// GOAWAY 1 or step past a reply just written, far shorter than any real work.
pub(crate) const SETTLE: Duration = Duration::from_millis(50);

/// The server's threads, for joining.
pub(crate) struct Threads {
    pub(crate) acceptor: JoinHandle<()>,
    pub(crate) workers: Vec<JoinHandle<()>>,
    pub(crate) reaper: JoinHandle<()>,
    pub(crate) closer: JoinHandle<()>,
    /// The TLS files' check, when there is one (it stops at the drain).
    pub(crate) tls: Option<JoinHandle<()>>,
}

/// What the coordinator needs to run the drain.
pub(crate) struct Drain {
    pub(crate) shared: Arc<Shared>,
    pub(crate) workers_done: Receiver<()>,
    pub(crate) reaper_stop: Sender<()>,
    pub(crate) threads: Threads,
}

impl Drain {
    pub(crate) fn run(self) -> Report {
        let Drain {
            shared,
            workers_done,
            reaper_stop,
            threads,
        } = self;
        let shutdown = &shared.shutdown;
        // Until a stop is requested, log the counters every stats interval
        // if asked to.
        wait_logging_stats(&shared, shutdown.stopped(), None);
        // Without a drain delay the stop has already started the drain (or
        // is about to, on the thread that asked for it): nothing to wait for.
        let delay = shared.config.drain_delay;
        if !delay.is_zero() && !shutdown.is_draining() {
            info!(
                "shutdown: stopping; still accepting and serving for the drain delay of {}, \
                 then draining",
                human::duration(delay)
            );
            // Cut short by force() (which drains), or a drop of the server.
            wait_logging_stats(&shared, shutdown.drained(), Some(Instant::now() + delay));
        }
        shutdown.drain();
        let started = Instant::now();
        match shutdown.listening() {
            Listening::Own => {
                info!("shutdown: draining; listener closed, new connections are refused")
            }
            Listening::Inherited => info!(
                "shutdown: draining; stopped accepting; the inherited listening socket stays \
                 open, and new connections wait in its backlog for the next instance"
            ),
        }
        let _ = threads.acceptor.join();

        // The flag is set: a worker that lets go of a connection after this
        // scan sees it and closes the connection itself. Every connection
        // open now is counted once: quiet (closed here, or held by a worker
        // with no request in the service, which closes it with GOAWAY 1 at
        // once), or held by a worker whose request is in the service.
        let (mut quiet, mut held) = (0, 0);
        for conn in shared.registry.snapshot() {
            let closed = match conn.state() {
                QUEUED => shared.closer.turn_away(&conn, Why::Shutdown),
                RESTING => shared.closer.close_resting(&conn, Why::Shutdown),
                _ => false,
            };
            match conn.state() {
                _ if closed => quiet += 1,
                BUSY => held += 1,
                // Already on its way out before the drain (a reaped one).
                CLOSING | FORCED => {}
                _ => quiet += 1,
            }
        }
        shared.line.close();
        info!(
            "shutdown: {quiet} quiet connection(s) sent GOAWAY 1; waiting up to {} for {held} \
             connection(s) with a request in the service",
            human::duration(shared.config.grace),
        );

        let deadline = started + shared.config.grace;
        // A force (a second signal) always makes the stop forced, even when
        // the workers happen to be done already (as during a drain delay).
        let mut finished = select! {
            recv(workers_done) -> _ => true,
            recv(shutdown.forced()) -> _ => false,
            recv(crossbeam_channel::at(deadline)) -> _ => false,
        } && !shutdown.is_forced();
        if !finished && !shutdown.is_forced() {
            finished = settle(&shared, &workers_done);
        }
        let mut workers_exited = finished;
        if !finished {
            if shutdown.is_forced() {
                info!("shutdown: forced before the drain finished");
            } else {
                info!(
                    "shutdown: grace period of {} expired",
                    human::duration(shared.config.grace)
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
        if let Some(tls) = threads.tls {
            let _ = tls.join();
        }
        // The acceptor, the reaper and the workers (unless stuck in the
        // service) are done turning connections away: report the rest, so
        // the warn lines add up to the summary.
        shared
            .turned_away
            .report_all(shared.clock.now_ms(), &shared.config);
        shared.refused.report(shared.clock.now_ms(), true);
        if !workers_exited {
            let stuck = threads.workers.iter().filter(|w| !w.is_finished()).count();
            warn!("shutdown: {stuck} worker(s) still inside the service; not waiting for them");
            return shared.stats.report(!finished);
        }
        for worker in threads.workers {
            let _ = worker.join();
        }
        // Anything a worker put back in line or to rest while the scan ran.
        for conn in shared.registry.snapshot() {
            match conn.state() {
                QUEUED => {
                    shared.closer.turn_away(&conn, Why::Shutdown);
                }
                RESTING => {
                    shared.closer.close_resting(&conn, Why::Shutdown);
                }
                _ => {}
            }
        }
        // The workers and the acceptor are gone; dropping the last
        // handle on the shared state lets the closer finish its lingering
        // and exit.
        let report = shared.stats.report(!finished);
        drop(shared);
        let _ = threads.closer.join();
        info!("shutdown: done in {}", human::duration(started.elapsed()));
        report
    }
}

/// The grace period is over and workers are left. If no work is running,
/// they are only closing quiet connections with GOAWAY 1: give them
/// [`SETTLE`] to finish. A worker that has just taken a connection from the
/// line counts as working for the moment it takes to see the drain, so look
/// again for that long rather than once. True if every worker finished.
fn settle(shared: &Shared, workers_done: &Receiver<()>) -> bool {
    let end = Instant::now() + SETTLE;
    while shared.line.busy() > 0 {
        if Instant::now() >= end {
            return false;
        }
        if let Err(RecvTimeoutError::Disconnected) =
            workers_done.recv_timeout(Duration::from_millis(1))
        {
            return true;
        }
    }
    matches!(
        workers_done.recv_deadline(end),
        Err(RecvTimeoutError::Disconnected)
    )
}

/// Waits until `until` disconnects or `deadline` passes, logging the
/// counters every `--stats-interval` meanwhile if that is set.
fn wait_logging_stats(shared: &Shared, until: &Receiver<()>, deadline: Option<Instant>) {
    let never = crossbeam_channel::never();
    let end = deadline.map_or(never, crossbeam_channel::at);
    loop {
        let tick = shared
            .config
            .stats_interval
            .map_or(crossbeam_channel::never(), crossbeam_channel::after);
        select! {
            recv(until) -> _ => return,
            recv(end) -> _ => return,
            recv(tick) -> _ => info!("stats: {}", snapshot(shared)),
        }
    }
}

/// The counters and where the connections are right now.
pub(crate) fn snapshot(shared: &Shared) -> Snapshot {
    let census = shared.registry.census();
    Snapshot {
        report: shared.stats.report(false),
        open: shared.limits.open(),
        active: census.active,
        queued: census.queued,
        resting: census.resting,
        busy_workers: shared.line.busy(),
        buffered: shared.budget.used(),
    }
}

/// Closes every registered connection now. One that no worker holds gets
/// GOAWAY 1 first (nobody else writes to it, and once it is FORCED nobody
/// ever will); one whose request is inside the service gets none, since
/// GOAWAY 1 would promise that the request never started; one a worker is
/// reading or writing is only shut down. Returns how many were closed.
fn force_close(shared: &Shared) -> usize {
    let framing = shared.config.framing;
    let mut closed = 0;
    for conn in shared.registry.snapshot() {
        let state = conn.state();
        conn.log_ended(Ending::Forced);
        if matches!(state, QUEUED | RESTING) && conn.transition(state, FORCED) {
            let code = GoAwayCode::Shutdown;
            send_goaway_nonblocking(&conn, framing, code, code.reason());
        } else if !conn.transition(BUSY, FORCED) {
            let _ = conn.transition(ACTIVE, FORCED);
        }
        conn.shutdown(How::Both);
        shared.registry.remove(&conn);
        closed += 1;
    }
    closed
}
