//! Shutdown as one explicit object threaded through every thread.
//!
//! A drain is a one-way switch: [`ShutdownHandle::shutdown`] sets a flag
//! that workers read between requests (a plain load on x86, no shared
//! writes), closes
//! the listener so new connections are refused at once, and disconnects a
//! channel that no one ever sends on. Every thread that waits (the acceptor
//! in `accept` or on a full queue, the reaper between scans, the server's
//! join waiting for the trigger) waits on that channel too, so it wakes the
//! moment the drain starts instead of at its next timer tick.
//! [`ShutdownHandle::force`] is the second switch: the grace period is over
//! (or a second signal arrived) and the remaining connections are closed now.
//!
//! Signals stay out of the library: the binary turns SIGINT/SIGTERM into
//! calls on the same handle that tests and embedders use.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

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
}

/// The server-wide shutdown state.
#[derive(Debug)]
pub(crate) struct Shutdown {
    drain: Switch,
    force: Switch,
    listener: Arc<TcpListener>,
}

impl Shutdown {
    pub(crate) fn new(listener: Arc<TcpListener>) -> Self {
        Shutdown {
            drain: Switch::new(),
            force: Switch::new(),
            listener,
        }
    }

    /// Starts the drain: stop accepting and let every waiter know.
    pub(crate) fn drain(&self) {
        if self.drain.throw() {
            // Shutting a listening socket down wakes a thread blocked in
            // accept() and makes the kernel refuse new connections at once.
            let _ = socket2::SockRef::from(&*self.listener).shutdown(std::net::Shutdown::Read);
        }
    }

    /// Gives up on a graceful drain.
    pub(crate) fn force(&self) {
        self.drain();
        self.force.throw();
    }

    /// Whether a drain has started. SeqCst pairs with the state change a
    /// worker makes when it takes a connection (see `pool`).
    pub(crate) fn is_draining(&self) -> bool {
        self.drain.on.load(Ordering::SeqCst)
    }

    /// Whether the server has stopped being ready for new connections:
    /// what `/ready` reports (503 from this moment). Today that is the
    /// moment the drain starts; a drain delay would start it earlier, while
    /// the server still accepts. Readers that mean "not ready" call this,
    /// not [`Shutdown::is_draining`].
    pub(crate) fn is_stopping(&self) -> bool {
        self.is_draining()
    }

    /// Whether connections are being closed by force.
    pub(crate) fn is_forced(&self) -> bool {
        self.force.on.load(Ordering::SeqCst)
    }

    /// Disconnects when the drain starts; use in `select!` or `recv_timeout`.
    pub(crate) fn drained(&self) -> &Receiver<()> {
        &self.drain.rx
    }

    /// Disconnects when the drain is forced.
    pub(crate) fn forced(&self) -> &Receiver<()> {
        &self.force.rx
    }
}

/// Triggers a server's drain from any thread: what SIGINT/SIGTERM do in the
/// binary, and what tests and embedders call directly. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) shared: Arc<Shutdown>,
}

impl ShutdownHandle {
    /// Starts a graceful drain: the listener closes at once, queued
    /// connections get GOAWAY 1, and each connection being served finishes
    /// its request in progress, then gets GOAWAY 1. Calling it again does
    /// nothing. [`crate::Server::join`] waits for the drain to finish.
    pub fn shutdown(&self) {
        self.shared.drain();
    }

    /// Closes every remaining connection now (GOAWAY 1 where it can be
    /// sent) instead of waiting for the grace period to run out.
    pub fn force(&self) {
        self.shared.force();
    }

    /// Whether a drain has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_draining()
    }
}
