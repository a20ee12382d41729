//! The periodic messages, sent from the main thread ([`supervise`]), which
//! otherwise only waits for the server to finish: no thread is added.
//! `STATUS=` on a timer, `WATCHDOG=1` while the [`watchdog`] check passes,
//! and, once stopping, `EXTEND_TIMEOUT_USEC=` until the stop's deadline
//! ([`stop_deadline`]) has passed.

use std::time::{Duration, Instant};

use log::{debug, info, warn};
use sd_notify::NotifyState;
use wharf::{human, Monitor, Server, ALIVE_TICK};

use super::notify::Notifier;
use super::stop_timeout::{extend_usec, extension, EXTEND_MARGIN};
use super::watchdog::{watchdog, Watchdog};

/// How often `STATUS=` is sent without `--stats-interval`.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// While stopping, how often `EXTEND_TIMEOUT_USEC=` is renewed.
const EXTEND_EVERY: Duration = Duration::from_secs(1);

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
}
