//! The epoll instance that every idle worker waits on: the kernel's ready
//! list is the line of connections with work (see `line`).
//!
//! Every connection's socket is registered once, at accept, in *oneshot*
//! mode and keyed by its registry key. Arming it asks for exactly one event:
//!
//! - **admit** (a new connection) and **put back** (sent back by the batch
//!   budget) arm it for writability as well as input. A socket with room in
//!   its send buffer is writable at once, so the kernel appends it to the
//!   tail of its ready list straight away: it takes its place in line.
//! - **rest** (a quiet connection) arms it for input only: it joins the
//!   line when its next bytes arrive, or its client closes.
//!
//! Oneshot keeps a connection in one place: after its event is delivered
//! the socket is disarmed until a worker arms it again, and arming makes the
//! kernel check readiness afresh, so bytes that arrived while a worker held
//! it are not missed. Workers wait in `epoll_wait` for one event each; the
//! kernel wakes one waiter per event (the most recent one first), so the
//! thread that is woken is the thread that serves.
//!
//! Two eventfds share the set. *room* (oneshot too) wakes one worker to let
//! held connections back in when `--max-buffered` room frees (see `resting`).
//! *drain* is level-triggered and never read: once written, every `epoll_wait`
//! returns it, so every worker, idle now or later, sees that the server is
//! draining.
//!
//! epoll comes from `rustix`, which wraps the three system calls and nothing
//! else. (The `polling` crate re-arms its own timer and notifier around every
//! wait; `mio` has no oneshot mode.) A socket leaves the set when it closes.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

/// The key of the room eventfd; registry keys never reach it (their slot
/// half is below 2^32 - 1).
pub(crate) const ROOM_KEY: u64 = u64::MAX;
/// The key of the drain eventfd.
pub(crate) const DRAIN_KEY: u64 = u64::MAX - 1;

/// What a connection is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arm {
    /// Ready at once: its place in line (new, or put back).
    Line,
    /// Ready when bytes arrive or the client closes.
    Rest,
}

/// The epoll instance and its two eventfds.
pub(crate) struct Epoll {
    epoll: OwnedFd,
    room: OwnedFd,
    drain: OwnedFd,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        let room = eventfd(0, flags)?;
        let drain = eventfd(0, flags)?;
        let room_flags = EventFlags::IN | EventFlags::ONESHOT;
        epoll::add(&epoll, &room, EventData::new_u64(ROOM_KEY), room_flags)?;
        epoll::add(
            &epoll,
            &drain,
            EventData::new_u64(DRAIN_KEY),
            EventFlags::IN,
        )?;
        Ok(Epoll { epoll, room, drain })
    }

    /// Arms `socket` (registry key `key`) for one event; registers it the
    /// first time.
    pub(crate) fn arm(&self, socket: impl AsFd, key: usize, how: Arm) -> io::Result<()> {
        let data = EventData::new_u64(key as u64);
        let mut flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ONESHOT;
        if how == Arm::Line {
            flags |= EventFlags::OUT;
        }
        match epoll::modify(&self.epoll, &socket, data, flags) {
            Err(Errno::NOENT) => epoll::add(&self.epoll, &socket, data, flags),
            result => result,
        }
        .map_err(io::Error::from)
    }

    /// Registers a new socket, armed to take its place in line.
    pub(crate) fn add(&self, socket: impl AsFd, key: usize) -> io::Result<()> {
        let data = EventData::new_u64(key as u64);
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ONESHOT;
        epoll::add(&self.epoll, &socket, data, flags).map_err(io::Error::from)
    }

    /// Waits up to `timeout` (`None`: for ever) for one event; its key.
    /// `None` if the time passed first.
    pub(crate) fn wait_one(&self, timeout: Option<Duration>) -> io::Result<Option<u64>> {
        let timeout = timeout.map(|t| {
            Timespec::try_from(t).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let mut event = [MaybeUninit::<Event>::uninit()];
        loop {
            match epoll::wait(&self.epoll, &mut event, timeout.as_ref()) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
                Ok((got, _)) => return Ok(got.first().map(|e| e.data.u64())),
            }
        }
    }

    /// Whether events wait in the set, not yet taken by a worker (a look,
    /// with `poll(2)` on the epoll descriptor: nothing is taken).
    pub(crate) fn has_ready(&self) -> bool {
        let mut fds = [PollFd::new(&self.epoll, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// Wakes one worker to let held connections back in.
    pub(crate) fn notify_room(&self) {
        let _ = rustix::io::write(&self.room, &1u64.to_ne_bytes());
    }

    /// Clears the room event and arms it again, before the held connections
    /// are looked at: a notification after this wakes a worker again.
    pub(crate) fn rearm_room(&self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.room, &mut count);
        let flags = EventFlags::IN | EventFlags::ONESHOT;
        let _ = epoll::modify(&self.epoll, &self.room, EventData::new_u64(ROOM_KEY), flags);
    }

    /// Tells every worker, waiting now or later, that the server drains.
    pub(crate) fn drain(&self) {
        let _ = rustix::io::write(&self.drain, &1u64.to_ne_bytes());
    }
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll").finish_non_exhaustive()
    }
}
