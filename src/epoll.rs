//! The epoll instance where resting connections are registered, and the
//! eventfd that wakes the poller thread (see `poller` for what it does with
//! them). Kept apart from the thread so that what every thread shares
//! (`shared`) can hold it without reaching up to the poller's loop.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};

use crate::conn::Conn;

/// The key of the poller's own wake-up event; registry keys never reach it
/// (their slot half is below 2^32 - 1).
pub(crate) const WAKE_KEY: u64 = u64::MAX;

/// An epoll instance for resting connections, and an eventfd to wake its
/// thread.
pub(crate) struct Epoll {
    epoll: OwnedFd,
    waker: OwnedFd,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let waker = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &waker, EventData::new_u64(WAKE_KEY), EventFlags::IN)?;
        Ok(Epoll { epoll, waker })
    }

    /// Wakes the poller thread (the drain starts, or budget room freed).
    pub(crate) fn notify(&self) {
        let _ = rustix::io::write(&self.waker, &1u64.to_ne_bytes());
    }

    /// Asks for one readiness event for `conn`: registers its socket the
    /// first time, re-arms it after that. Only the thread that holds the
    /// connection (its worker, or this thread for a held one) arms it; the
    /// `registered` mark only saves a failed call, the kernel has the last
    /// word.
    pub(crate) fn arm(&self, conn: &Conn) -> io::Result<()> {
        use rustix::io::Errno;
        let data = EventData::new_u64(conn.key as u64);
        let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ONESHOT;
        let (add, modify) = (
            || epoll::add(&self.epoll, &conn.stream, data, flags),
            || epoll::modify(&self.epoll, &conn.stream, data, flags),
        );
        let result = if conn.registered.swap(true, Ordering::SeqCst) {
            modify().or_else(|e| if e == Errno::NOENT { add() } else { Err(e) })
        } else {
            add().or_else(|e| if e == Errno::EXIST { modify() } else { Err(e) })
        };
        result.map_err(io::Error::from)
    }

    /// Waits for events; `events` is refilled.
    pub(crate) fn wait(&self, events: &mut Vec<Event>) -> io::Result<()> {
        events.clear();
        loop {
            match epoll::wait(&self.epoll, spare_capacity(events), None) {
                Err(rustix::io::Errno::INTR) => continue,
                result => return result.map(drop).map_err(io::Error::from),
            }
        }
    }

    /// Clears the wake-up event.
    pub(crate) fn clear_wake(&self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.waker, &mut count);
    }
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll").finish_non_exhaustive()
    }
}
