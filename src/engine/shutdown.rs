//! Shutdown as one explicit object threaded through every thread.
//!
//! Stopping has three one-way switches, thrown in this order:
//!
//! 1. **stop** ([`ShutdownHandle::shutdown`], the binary's first
//!    SIGINT/SIGTERM): the server is *stopping*. It reports not-ready
//!    ([`ShutdownHandle::is_stopping`]) but, for [`crate::Config::drain_delay`],
//!    keeps accepting and serving, for load balancers that still send new
//!    connections for a moment after a stop. With no delay (the default)
//!    the drain starts at once, inside the same call.
//! 2. **drain**: the drain starts (the coordinator throws it once the delay
//!    is over). A flag that workers read between requests (a plain load on
//!    x86, no shared writes) is set; the acceptor is woken through an
//!    eventfd, so it stops accepting at once without the listening socket
//!    being touched; a listener the server owns is also shut down, so the
//!    kernel refuses new connections at once (see [`Listening`]); and a
//!    channel that no one ever sends on is disconnected. Every thread that
//!    waits (the acceptor for room, the reaper between scans, the
//!    coordinator) waits on that channel too, so it wakes the moment the
//!    drain starts instead of at its next timer tick.
//! 3. **force** ([`ShutdownHandle::force`], a second signal, or the grace
//!    period over): the remaining connections are closed now. It throws the
//!    first two as well, so a force during the delay stops at once.
//!
//! Signals stay out of the library: the binary turns SIGINT/SIGTERM into
//! calls on the same handle that tests and embedders use.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rustix::event::{eventfd, EventfdFlags};

use crate::engine::socket_file::SocketFile;

/// A switch that wakes every waiter when thrown: the sender is dropped and
/// the receiver, which never gets a message, reports disconnection.
#[derive(Debug)]
struct Switch {
    on: AtomicBool,
    tx: Mutex<Option<Sender<()>>>,
    rx: Receiver<()>,
}

impl Switch {
    fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Switch {
            on: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
            rx,
        }
    }

    /// Throws the switch; true only for the call that threw it.
    fn throw(&self) -> bool {
        let first = !self.on.swap(true, Ordering::SeqCst);
        drop(self.tx.lock().take());
        first
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }
}

/// What the drain does to the listening socket, which depends on who else
/// holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listening {
    /// Bound by this server, or handed over for good: the drain shuts it
    /// down, so the kernel refuses new connections at once.
    Own,
    /// Shared with a holder that outlives this server (socket activation):
    /// the drain only stops accepting, and the acceptor closes this
    /// server's descriptor when it exits. The socket stays open for the
    /// holder, and connections that arrive meanwhile wait in its backlog for
    /// the next instance.
    Inherited,
}

/// The server-wide shutdown state.
#[derive(Debug)]
pub(crate) struct Shutdown {
    stop: Switch,
    drain: Switch,
    force: Switch,
    /// The listeners the server bound itself (or was handed for good),
    /// which the drain shuts down; taken (and so released) by the drain.
    own_listeners: Mutex<Vec<Arc<socket2::Socket>>>,
    /// The Unix socket files the server made, removed by the drain once
    /// their listeners stop accepting.
    socket_files: Mutex<Vec<SocketFile>>,
    /// Written by the drain to wake the acceptor, which polls it together
    /// with the listener.
    waker: OwnedFd,
    /// Whether a stop waits for the drain delay (run by the coordinator)
    /// before it drains.
    delayed: bool,
    listening: Listening,
}

impl Shutdown {
    pub(crate) fn new(
        own_listeners: Vec<Arc<socket2::Socket>>,
        socket_files: Vec<SocketFile>,
        listening: Listening,
        delayed: bool,
    ) -> io::Result<Self> {
        let waker = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Shutdown {
            stop: Switch::new(),
            drain: Switch::new(),
            force: Switch::new(),
            own_listeners: Mutex::new(own_listeners),
            socket_files: Mutex::new(socket_files),
            waker,
            delayed,
            listening,
        })
    }

    /// A stop is requested: the drain starts now if there is no drain
    /// delay, else the coordinator starts it when the delay is over.
    pub(crate) fn stop(&self) {
        if self.stop.throw() && !self.delayed {
            self.drain();
        }
    }

    /// Starts the drain: stop accepting and let every waiter know.
    pub(crate) fn drain(&self) {
        self.stop.throw();
        if self.drain.throw() {
            // Shutting a listening socket down makes the kernel refuse new
            // connections at once (and, with SO_REUSEPORT and
            // net.ipv4.tcp_migrate_req = 1, hands the ones it had queued to
            // another listener of the group). An inherited one is left alone.
            for listener in std::mem::take(&mut *self.own_listeners.lock()) {
                let _ = listener.shutdown(std::net::Shutdown::Read);
            }
            // Nobody can connect through a path that is gone.
            for file in std::mem::take(&mut *self.socket_files.lock()) {
                file.remove();
            }
            // Wakes the acceptor, wherever it waits for the listener.
            let _ = rustix::io::write(&self.waker, &1u64.to_ne_bytes());
        }
    }

    /// Gives up on a graceful drain.
    pub(crate) fn force(&self) {
        self.drain();
        self.force.throw();
    }

    /// Whether a stop was requested: true from the first signal on, during
    /// the drain delay as well as the drain. What a readiness probe reports.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.is_on()
    }

    /// Whether the drain has started (not during the drain delay). SeqCst
    /// pairs with the state change a worker makes when it takes a
    /// connection (see `pool`).
    pub(crate) fn is_draining(&self) -> bool {
        self.drain.is_on()
    }

    /// Whether connections are being closed by force.
    pub(crate) fn is_forced(&self) -> bool {
        self.force.is_on()
    }

    /// Disconnects when a stop is requested.
    pub(crate) fn stopped(&self) -> &Receiver<()> {
        &self.stop.rx
    }

    /// Disconnects when the drain starts; use in `select!` or `recv_timeout`.
    pub(crate) fn drained(&self) -> &Receiver<()> {
        &self.drain.rx
    }

    /// Disconnects when the drain is forced.
    pub(crate) fn forced(&self) -> &Receiver<()> {
        &self.force.rx
    }

    /// What the drain does to the listening socket.
    pub(crate) fn listening(&self) -> Listening {
        self.listening
    }

    /// The eventfd that becomes readable when the drain starts.
    pub(crate) fn waker(&self) -> BorrowedFd<'_> {
        self.waker.as_fd()
    }
}

/// Stops a server from any thread: what SIGINT/SIGTERM do in the binary,
/// and what tests and embedders call directly. Cheap to clone.
///
/// Each call throws a one-way switch: a stop cannot be undone, and calling
/// again, or after the server has stopped, does nothing. The handle only
/// asks; [`crate::Server::join`] is what waits for the drain to be over.
///
/// ```
/// use std::thread;
/// use wharf::{Config, Echo, Server};
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Echo::default())?;
/// let handle = server.handle();
/// assert!(!handle.is_stopping());
///
/// // From another thread, as a signal handler's would.
/// let stopper = thread::spawn(move || {
///     handle.shutdown();
///     handle
/// });
/// let report = server.join();
/// assert!(!report.forced);
/// let handle = stopper.join().unwrap();
/// assert!(handle.is_stopping() && handle.is_draining());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) shared: Arc<Shutdown>,
}

impl ShutdownHandle {
    /// Stops the server gracefully. With [`crate::Config::drain_delay`] at
    /// zero (the default) the drain starts at once: the server stops
    /// accepting (a listener it bound is closed, so new connections are
    /// refused), queued and quiet connections get GOAWAY 1, and each
    /// connection being served finishes its request in progress, then gets
    /// GOAWAY 1. With a drain delay, the server is stopping from now on
    /// ([`ShutdownHandle::is_stopping`]) but keeps accepting and serving for
    /// the delay, then drains; the grace period counts from the start of the
    /// drain. Calling it again does nothing. [`crate::Server::join`] waits
    /// for the drain to finish.
    pub fn shutdown(&self) {
        self.shared.stop();
    }

    /// Closes every remaining connection now instead of waiting for the
    /// drain delay or the grace period to run out; starts the drain first if
    /// it has not started. A connection with no request inside the service
    /// gets GOAWAY 1 (its unanswered requests never started); one whose
    /// request is inside the service is closed without it, since that
    /// request may have run. The [`Report`](crate::Report) then says
    /// `forced` if work was still running.
    pub fn force(&self) {
        self.shared.force();
    }

    /// The same fact as [`ShutdownHandle::is_stopping`], under its first
    /// name; kept so programs written against it still build.
    #[deprecated(note = "use `is_stopping`, the name `Monitor` shares")]
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_stopping()
    }

    /// Whether the server is stopping: true from the first stop request,
    /// during the drain delay and the drain. A readiness probe answers
    /// not-ready from then on.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    /// Whether the drain has started: the server no longer accepts
    /// connections. False during the drain delay.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }
}
