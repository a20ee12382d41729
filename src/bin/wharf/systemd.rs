//! systemd integration: socket activation, and the notification protocol
//! (`READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`,
//! `EXTEND_TIMEOUT_USEC=`).
//!
//! Everything systemd passes in the environment (`LISTEN_PID`,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, `NOTIFY_SOCKET`, `WATCHDOG_USEC`,
//! `WATCHDOG_PID`) is read once, by [`Activation::take`] and
//! [`Notifier::take`], before the process starts any thread, and removed,
//! so no child inherits it. The socket-activation variables are parsed
//! here, so that a `LISTEN_FDS` counting descriptors that are not open is
//! a warning rather than a failure; the `sd-notify` crate parses the
//! watchdog variables and formats the messages; sending is done here, to a
//! pathname or an abstract (`@name`) socket, from one unbound datagram
//! socket.
//!
//! The periodic messages come from the main thread ([`supervise`]), which
//! otherwise only waits for the server to finish: no thread is added.

use std::env;
use std::io;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{debug, info, warn};
use sd_notify::NotifyState;
use wharf::{human, Liveness, Monitor, Server, ALIVE_TICK};

/// The first descriptor passed by socket activation.
const LISTEN_FDS_START: RawFd = 3;

/// A listening socket passed by socket activation.
#[derive(Debug)]
pub struct Activation {
    /// Descriptor 3, not yet checked (the server checks that it is a
    /// listening TCP socket).
    pub listener: TcpListener,
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`).
    pub name: String,
    /// `LISTEN_FDS`: how many descriptors were said to be passed.
    pub count: u32,
    /// Further descriptors passed, which wharf does not serve.
    pub ignored: Vec<(RawFd, String)>,
    /// Further descriptors that `LISTEN_FDS` counts but that are not open,
    /// as ranges: ignored too.
    pub missing: Vec<RangeInclusive<RawFd>>,
}

impl Activation {
    /// Takes the sockets passed for this process (`LISTEN_PID` is this
    /// process and `LISTEN_FDS` at least 1), and removes the variables.
    /// Must run before any thread is started.
    ///
    /// Descriptor 3 must be open (whether it is a listening TCP socket is
    /// checked by the server). Descriptors 4 and up are only set
    /// close-on-exec and listed in `ignored`, or in `missing` if they are not
    /// open: a `LISTEN_FDS` larger than what was passed is not fatal.
    pub fn take() -> anyhow::Result<Option<Activation>> {
        let pid = env::var("LISTEN_PID").ok();
        let count = env::var("LISTEN_FDS").ok();
        let names = env::var("LISTEN_FDNAMES").ok();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // Called from `serve::run` before it starts any thread, so
            // nothing reads the environment while it is changed.
            env::remove_var(var);
        }
        // As sd_listen_fds(3): not for this process unless LISTEN_PID names
        // it, and a malformed variable is an error.
        let Some(pid) = pid else {
            return Ok(None);
        };
        let pid: u32 = pid
            .parse()
            .map_err(|_| anyhow::anyhow!("socket activation: invalid LISTEN_PID {pid:?}"))?;
        if pid != std::process::id() {
            return Ok(None);
        }
        let Some(count) = count else {
            return Ok(None);
        };
        let count: u32 = count
            .parse()
            .map_err(|_| anyhow::anyhow!("socket activation: invalid LISTEN_FDS {count:?}"))?;
        if count == 0 {
            return Ok(None);
        }
        let names: Vec<&str> = names
            .as_deref()
            .map_or(Vec::new(), |n| n.split(':').collect());
        let name = |fd: RawFd| {
            let i = usize::try_from(fd - LISTEN_FDS_START).unwrap_or(usize::MAX);
            names.get(i).copied().unwrap_or("unknown").to_owned()
        };
        set_cloexec(LISTEN_FDS_START).map_err(|e| match e.raw_os_error() {
            Some(libc::EBADF) => {
                anyhow::anyhow!("socket activation: descriptor 3 is not open (LISTEN_FDS={count})")
            }
            _ => anyhow::Error::new(e).context("socket activation: descriptor 3"),
        })?;
        // SAFETY: descriptor 3 is open (set close-on-exec just above), and
        // LISTEN_PID and LISTEN_FDS say that it was passed to this process;
        // nothing else in the process owns it.
        let listener = unsafe { TcpListener::from_raw_fd(LISTEN_FDS_START) };

        let end = i64::from(LISTEN_FDS_START) + i64::from(count);
        let end = RawFd::try_from(end).unwrap_or(RawFd::MAX);
        // No descriptor at or above the hard limit can be open: no need to
        // look at each of a huge LISTEN_FDS.
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(RawFd::MAX, |(_, hard)| {
            RawFd::try_from(hard).unwrap_or(RawFd::MAX)
        });
        let first = LISTEN_FDS_START + 1;
        let scanned = end.min(limit).max(first);
        let mut ignored = Vec::new();
        let mut missing: Vec<RangeInclusive<RawFd>> = Vec::new();
        for fd in first..scanned {
            if set_cloexec(fd).is_ok() {
                ignored.push((fd, name(fd)));
            } else {
                add_to_ranges(&mut missing, fd..=fd);
            }
        }
        if scanned < end {
            add_to_ranges(&mut missing, scanned..=end - 1);
        }
        Ok(Some(Activation {
            listener,
            name: name(LISTEN_FDS_START),
            count,
            ignored,
            missing,
        }))
    }
}

/// Sets close-on-exec on `fd`, so that no child inherits it; fails (EBADF)
/// if it is not open.
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) with F_GETFD/F_SETFD only reads and sets the flags of
    // a descriptor number; on one that is not open it fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Appends `range` to `ranges` (ascending), merged with the last one when
/// they touch.
fn add_to_ranges(ranges: &mut Vec<RangeInclusive<RawFd>>, range: RangeInclusive<RawFd>) {
    match ranges.last_mut() {
        Some(last) if last.end().saturating_add(1) >= *range.start() => {
            *last = *last.start()..=*range.end().max(last.end());
        }
        _ => ranges.push(range),
    }
}

/// Descriptor ranges as an operator reads them: `4`, `4-6`, `4, 7-9`.
pub fn describe_ranges(ranges: &[RangeInclusive<RawFd>]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where to send notifications, and the watchdog interval if one is asked
/// for.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `WATCHDOG_USEC`, if set for this process.
    pub watchdog: Option<Duration>,
    failed: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and
    /// removes them. `None` without `NOTIFY_SOCKET`. Must run before any
    /// thread is started.
    pub fn take() -> anyhow::Result<Option<Notifier>> {
        let path = env::var_os("NOTIFY_SOCKET");
        env::remove_var("NOTIFY_SOCKET");
        // SAFETY: as in `Activation::take`: no thread runs yet.
        let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let addr = notify_addr(&path)
            .with_context(|| format!("bad NOTIFY_SOCKET {}", path.to_string_lossy()))?;
        let socket = UnixDatagram::unbound().context("cannot create the notification socket")?;
        Ok(Some(Notifier {
            socket,
            addr,
            watchdog: watchdog.filter(|w| !w.is_zero()),
            failed: AtomicBool::new(false),
        }))
    }

    /// Sends one message with these states. A failure is logged as a
    /// warning the first time, at debug level after that.
    pub fn send(&self, states: &[NotifyState<'_>]) {
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            if self.failed.swap(true, Ordering::Relaxed) {
                debug!("cannot notify systemd: {e}");
            } else {
                warn!("cannot notify systemd ({e}); will keep trying");
            }
        }
    }
}

/// `NOTIFY_SOCKET` is a path, or an abstract name written `@name`.
fn notify_addr(path: &std::ffi::OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    match path.as_bytes() {
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        _ => SocketAddr::from_pathname(path),
    }
}

/// How much longer than the stop can legitimately take the
/// `EXTEND_TIMEOUT_USEC` asks for: room for the forced close and the exit.
pub const EXTEND_MARGIN: Duration = Duration::from_secs(5);

/// How often `STATUS=` is sent without `--stats-interval`.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// While stopping, how often `EXTEND_TIMEOUT_USEC=` is renewed.
const EXTEND_EVERY: Duration = Duration::from_secs(1);

/// `EXTEND_TIMEOUT_USEC=` for a stop that may still take `remaining`.
pub fn extend(remaining: Duration) -> NotifyState<'static> {
    extend_usec(remaining + EXTEND_MARGIN)
}

fn extend_usec(extension: Duration) -> NotifyState<'static> {
    NotifyState::ExtendTimeoutUsec(u32::try_from(extension.as_micros()).unwrap_or(u32::MAX))
}

/// When a stop may legitimately be over: the end of `--grace` counted from
/// the drain, and never later than `--drain-delay` + `--grace` from the
/// stop. Both instants are when the supervisor noticed them, that is a
/// little after they happened, so this is never too early.
fn stop_deadline(
    stopping_since: Instant,
    draining_since: Option<Instant>,
    timing: Timing,
) -> Instant {
    let end = stopping_since + timing.drain_delay + timing.grace;
    draining_since.map_or(end, |drain| end.min(drain + timing.grace))
}

/// The `EXTEND_TIMEOUT_USEC=` to send at `now` for a stop due to be over by
/// `deadline`: what is left of it plus [`EXTEND_MARGIN`], so that systemd
/// waits until `deadline + EXTEND_MARGIN` and no longer. `None` once the
/// deadline has passed: a stop still running then is wedged, and systemd's
/// `TimeoutStopSec=` (extended at most to that point) must be free to end it.
fn extension(now: Instant, deadline: Instant) -> Option<Duration> {
    (now < deadline).then(|| deadline - now + EXTEND_MARGIN)
}

/// What one watchdog check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watchdog {
    /// Send `WATCHDOG=1`.
    Feed,
    /// Withhold it: the reaper has not turned since the last check.
    ReaperStuck,
    /// Withhold it: the acceptor has not turned since the last check, and
    /// the drain has not started.
    AcceptorStuck,
}

/// Whether the threads whose life the watchdog vouches for have turned
/// between two checks: the reaper always (it stops only when the drain is
/// over), the acceptor until the drain starts (then it stops on purpose).
fn watchdog(last: Liveness, now: Liveness, draining: bool) -> Watchdog {
    if now.reaper <= last.reaper {
        Watchdog::ReaperStuck
    } else if now.acceptor <= last.acceptor && !draining {
        Watchdog::AcceptorStuck
    } else {
        Watchdog::Feed
    }
}

/// The `STATUS=` text: the state and the main counters.
pub fn status(monitor: &Monitor) -> Option<String> {
    let state = if monitor.is_draining() {
        "draining"
    } else if monitor.is_stopping() {
        "stopping (drain delay)"
    } else {
        "serving"
    };
    Some(format!("{state}: {}", monitor.status_line()?))
}

/// The settings that shape the periodic messages.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `--stats-interval`, if set.
    pub stats_interval: Option<Duration>,
    pub drain_delay: Duration,
    pub grace: Duration,
}

/// Runs on the main thread until the server has finished stopping: sends
/// `STATUS=` every stats interval (10 s without one), `WATCHDOG=1` every
/// half watchdog interval while the reaper and (until the drain) the
/// acceptor are seen turning, and, once stopping, `EXTEND_TIMEOUT_USEC=`
/// every second with the time the stop may still take, until that time has
/// passed (see [`extension`]).
pub fn supervise(server: &Server, notifier: &Notifier, timing: Timing) {
    let monitor = server.monitor();
    let status_every = timing.stats_interval.unwrap_or(STATUS_EVERY);
    let watchdog_every = notifier.watchdog.map(|w| w / 2);
    if let Some(w) = notifier.watchdog {
        if w < 4 * ALIVE_TICK {
            warn!(
                "systemd watchdog interval {} is short: the acceptor and the reaper prove \
                 they are alive only every {}, so WATCHDOG=1 may be withheld; use \
                 WatchdogSec=1s or more",
                human::duration(w),
                human::duration(ALIVE_TICK)
            );
        }
    }
    let started = Instant::now();
    let mut next_status = started + status_every;
    let mut next_watchdog = watchdog_every.map(|every| started + every);
    let mut last = monitor.liveness();
    let mut stopping_since: Option<Instant> = None;
    let mut draining_since: Option<Instant> = None;
    let mut next_extend = started;
    let mut overdue = false;
    loop {
        let now = Instant::now();
        let mut next = next_status;
        if let Some(at) = next_watchdog {
            next = next.min(at);
        }
        if stopping_since.is_some() {
            next = next.min(next_extend);
        }
        // Wakes at the next due message, and at least every second so a
        // stop is noticed soon enough to extend the timeout.
        let wait = next.saturating_duration_since(now).min(EXTEND_EVERY);
        if server.wait_timeout(wait) {
            return;
        }
        let now = Instant::now();
        if monitor.is_stopping() {
            let since = *stopping_since.get_or_insert(now);
            if monitor.is_draining() {
                draining_since.get_or_insert(now);
            }
            if now >= next_extend {
                let deadline = stop_deadline(since, draining_since, timing);
                match extension(now, deadline) {
                    Some(extension) => notifier.send(&[extend_usec(extension)]),
                    None if !overdue => {
                        overdue = true;
                        info!(
                            "the stop has had its --drain-delay + --grace; systemd's stop \
                             timeout is no longer extended, and ends within {}",
                            human::duration(EXTEND_MARGIN)
                        );
                    }
                    None => {}
                }
                next_extend = now + EXTEND_EVERY;
            }
        }
        if now >= next_status {
            if let Some(text) = status(&monitor) {
                notifier.send(&[NotifyState::Status(&text)]);
            }
            next_status = now + status_every;
        }
        if let (Some(at), Some(every)) = (next_watchdog, watchdog_every) {
            if now >= at {
                let live = monitor.liveness();
                let draining = monitor.is_draining();
                match watchdog(last, live, draining) {
                    Watchdog::Feed => notifier.send(&[NotifyState::Watchdog]),
                    // The reaper stops once the drain is over, just before the exit.
                    Watchdog::ReaperStuck if draining => {
                        debug!("watchdog: the reaper has stopped; WATCHDOG=1 withheld")
                    }
                    stuck => warn!(
                        "watchdog: the {} has not turned since the last check; WATCHDOG=1 \
                         withheld",
                        if stuck == Watchdog::ReaperStuck {
                            "reaper"
                        } else {
                            "acceptor"
                        }
                    ),
                }
                last = live;
                next_watchdog = Some(now + every);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn timing(drain_delay: Duration, grace: Duration) -> Timing {
        Timing {
            stats_interval: None,
            drain_delay,
            grace,
        }
    }

    fn usec(state: &NotifyState<'_>) -> u32 {
        match state {
            NotifyState::ExtendTimeoutUsec(usec) => *usec,
            other => panic!("not EXTEND_TIMEOUT_USEC: {other}"),
        }
    }

    #[test]
    fn the_stop_deadline_counts_grace_from_the_drain_and_never_past_delay_plus_grace() {
        let t0 = Instant::now();
        let timing = timing(2 * SEC, 10 * SEC);
        // During the drain delay: delay + grace from the stop.
        assert_eq!(stop_deadline(t0, None, timing), t0 + 12 * SEC);
        // The drain started early (a forced stop, or noticed at once).
        assert_eq!(stop_deadline(t0, Some(t0 + SEC), timing), t0 + 11 * SEC);
        // Noticed late: the drain cannot have started after the delay.
        assert_eq!(stop_deadline(t0, Some(t0 + 3 * SEC), timing), t0 + 12 * SEC);
        // No delay.
        let timing = self::timing(Duration::ZERO, 10 * SEC);
        assert_eq!(stop_deadline(t0, Some(t0), timing), t0 + 10 * SEC);
    }

    #[test]
    fn the_extension_covers_what_is_left_plus_the_margin_and_stops_at_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + 10 * SEC;
        assert_eq!(extension(t0, deadline), Some(10 * SEC + EXTEND_MARGIN));
        assert_eq!(extension(t0 + 9 * SEC, deadline), Some(SEC + EXTEND_MARGIN));
        // Every renewal asks systemd to wait until the same point, no later.
        for at in [
            t0,
            t0 + 3 * SEC,
            t0 + 9 * SEC,
            deadline - Duration::from_millis(1),
        ] {
            assert_eq!(
                at + extension(at, deadline).unwrap(),
                deadline + EXTEND_MARGIN
            );
        }
        // From the deadline on, a stop still running is wedged: nothing more,
        // however long it goes on (renewing even EXTEND_MARGIN alone every
        // second would keep a wedged stop from ever being killed).
        for late in [0, 1, 5, 6, 60, 3600] {
            assert_eq!(
                extension(deadline + late * SEC, deadline),
                None,
                "{late} s late"
            );
        }
    }

    #[test]
    fn extend_timeout_usec_is_in_microseconds_and_saturates() {
        assert_eq!(usec(&extend(10 * SEC)), 15_000_000);
        assert_eq!(usec(&extend_usec(Duration::from_millis(1500))), 1_500_000);
        // u32 microseconds end at about 71 minutes.
        assert_eq!(usec(&extend(Duration::from_secs(24 * 3600))), u32::MAX);
    }

    #[test]
    fn missing_descriptors_are_listed_as_ranges() {
        let mut ranges = Vec::new();
        for fd in [4, 5, 6, 9, 11, 12] {
            add_to_ranges(&mut ranges, fd..=fd);
        }
        add_to_ranges(&mut ranges, 13..=1000);
        assert_eq!(ranges, vec![4..=6, 9..=9, 11..=1000]);
        assert_eq!(describe_ranges(&ranges), "4-6, 9, 11-1000");
        assert_eq!(describe_ranges(&[]), "");
    }

    fn live(acceptor: u64, reaper: u64) -> Liveness {
        Liveness { acceptor, reaper }
    }

    #[test]
    fn the_watchdog_is_fed_only_while_the_threads_it_vouches_for_turn() {
        let last = live(10, 20);
        // Both turning: fed, before and during the drain.
        assert_eq!(watchdog(last, live(12, 22), false), Watchdog::Feed);
        assert_eq!(watchdog(last, live(12, 22), true), Watchdog::Feed);
        // A stuck acceptor before the drain: withheld.
        assert_eq!(watchdog(last, live(10, 22), false), Watchdog::AcceptorStuck);
        // The acceptor stops on purpose once the drain starts: the reaper
        // alone counts.
        assert_eq!(watchdog(last, live(10, 22), true), Watchdog::Feed);
        // A stuck reaper: withheld, draining or not.
        assert_eq!(watchdog(last, live(12, 20), false), Watchdog::ReaperStuck);
        assert_eq!(watchdog(last, live(10, 20), true), Watchdog::ReaperStuck);
        // Both stuck: the reaper is named.
        assert_eq!(watchdog(last, live(10, 20), false), Watchdog::ReaperStuck);
    }
}
