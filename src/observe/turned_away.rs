//! Overload in the log at the default level: connections turned away with
//! GOAWAY 3 (BUSY), counted by reason and reported at warn level in at
//! most about one line a second per reason, e.g.
//!
//! ```text
//! turned away 287 connections with BUSY in the last 1.0 s: max connections reached (10000)
//! ```
//!
//! A line per connection would flood the log exactly when the server is
//! busiest, so each turn-away only adds to its reason's pending count (one
//! atomic add) and looks at the time (one atomic load): the thread that
//! turns one away when a second has passed since that reason's last line
//! writes the next line, with everything pending. The first turn-away after
//! a quiet second is reported at once, so the start of trouble is never
//! delayed.
//!
//! A burst that stops leaves a count pending with nobody left to report
//! it: the reaper, which turns at least every quarter second whatever the
//! load, calls [`TurnedAway::report_due`], so the line comes at most about
//! 1.25 s after the previous one. The drain calls [`TurnedAway::report_all`]
//! once every thread that turns connections away has stopped, so the lines'
//! counts add up to the exit summary's `rejected_*` counts.
//!
//! Each connection is also in the access log at debug level (see `access`).

use std::sync::atomic::{AtomicU64, Ordering};

use log::warn;

use crate::config::Config;
use crate::human;

/// Why a connection was turned away with GOAWAY 3: the three
/// `rejected_*` counts of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// `--max-connections` clients were connected.
    MaxConnections = 0,
    /// `--queue` new connections were already waiting for a worker (with
    /// `--queue 0`: no worker was idle).
    QueueFull = 1,
    /// It waited in line for a worker past its heartbeat deadline.
    QueueDeadline = 2,
}

impl Busy {
    const ALL: [Busy; 3] = [Busy::MaxConnections, Busy::QueueFull, Busy::QueueDeadline];

    /// The reason in words, with the setting that decided it.
    pub(crate) fn describe(self, config: &Config) -> String {
        match self {
            Busy::MaxConnections => {
                format!("max connections reached ({})", config.max_connections)
            }
            Busy::QueueFull if config.queue == 0 => "no idle worker (queue 0)".to_owned(),
            Busy::QueueFull => format!(
                "queue full ({} new connections already waiting for a worker)",
                config.queue
            ),
            Busy::QueueDeadline => format!(
                "waited in line for a worker past the heartbeat timeout ({})",
                human::duration(config.heartbeat_timeout)
            ),
        }
    }
}

/// Least time between two lines for the same reason.
const EVERY_MS: u64 = 1000;

/// No line yet.
const NEVER: u64 = u64::MAX;

/// Turn-aways not yet reported, by reason.
#[derive(Debug)]
pub(crate) struct TurnedAway {
    reasons: [Pending; 3],
}

#[derive(Debug)]
struct Pending {
    /// Turned away since the last line.
    count: AtomicU64,
    /// When the first of those was (server clock, ms).
    since_ms: AtomicU64,
    /// When the last line was written, or [`NEVER`].
    last_line_ms: AtomicU64,
}

impl TurnedAway {
    pub(crate) fn new() -> Self {
        let pending = || Pending {
            count: AtomicU64::new(0),
            since_ms: AtomicU64::new(0),
            last_line_ms: AtomicU64::new(NEVER),
        };
        TurnedAway {
            reasons: [pending(), pending(), pending()],
        }
    }

    /// Counts one connection turned away at `now_ms`, and writes the line
    /// for its reason if one is due.
    pub(crate) fn record(&self, why: Busy, now_ms: u64, config: &Config) {
        let pending = &self.reasons[why as usize];
        if pending.count.fetch_add(1, Ordering::Relaxed) == 0 {
            pending.since_ms.store(now_ms, Ordering::Relaxed);
        }
        self.report(why, now_ms, false, config);
    }

    /// Writes the lines that are due: for the reaper's periodic turn, so a
    /// burst that has stopped is still reported.
    pub(crate) fn report_due(&self, now_ms: u64, config: &Config) {
        for why in Busy::ALL {
            self.report(why, now_ms, false, config);
        }
    }

    /// Writes a line for everything still pending, due or not: at the end
    /// of the drain, before the summary.
    pub(crate) fn report_all(&self, now_ms: u64, config: &Config) {
        for why in Busy::ALL {
            self.report(why, now_ms, true, config);
        }
    }

    fn report(&self, why: Busy, now_ms: u64, always: bool, config: &Config) {
        let pending = &self.reasons[why as usize];
        let last = pending.last_line_ms.load(Ordering::Relaxed);
        if !always && last != NEVER && now_ms < last.saturating_add(EVERY_MS) {
            return;
        }
        if pending.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        // One thread writes the line; the others' counts go into it or the
        // next one.
        if pending
            .last_line_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let count = pending.count.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        let since = pending.since_ms.load(Ordering::Relaxed);
        warn!(
            "{}",
            line(count, now_ms.saturating_sub(since), &why.describe(config))
        );
    }
}

/// `turned away 287 connections with BUSY in the last 1.0 s: <reason>`; no
/// time span for connections turned away within the same millisecond.
fn line(count: u64, span_ms: u64, reason: &str) -> String {
    let connections = if count == 1 {
        "connection"
    } else {
        "connections"
    };
    if span_ms == 0 {
        format!("turned away {count} {connections} with BUSY: {reason}")
    } else {
        let span = human::duration(std::time::Duration::from_millis(span_ms));
        format!("turned away {count} {connections} with BUSY in the last {span}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_words() {
        assert_eq!(
            line(287, 1000, "max connections reached (10000)"),
            "turned away 287 connections with BUSY in the last 1.0 s: max connections \
             reached (10000)"
        );
        assert_eq!(
            line(1, 0, "no idle worker (queue 0)"),
            "turned away 1 connection with BUSY: no idle worker (queue 0)"
        );
    }

    #[test]
    fn at_most_one_line_a_second_and_nothing_lost() {
        let config = Config::default();
        let turned_away = TurnedAway::new();
        let pending = |why: Busy| {
            turned_away.reasons[why as usize]
                .count
                .load(Ordering::Relaxed)
        };
        // The first is reported at once.
        turned_away.record(Busy::QueueFull, 5_000, &config);
        assert_eq!(pending(Busy::QueueFull), 0);
        // Then they wait for the second to pass...
        for ms in 5_001..5_999 {
            turned_away.record(Busy::QueueFull, ms, &config);
        }
        assert_eq!(pending(Busy::QueueFull), 998);
        turned_away.report_due(5_999, &config);
        assert_eq!(pending(Busy::QueueFull), 998);
        // ... and a periodic turn reports them when it has, with no new one.
        turned_away.report_due(6_000, &config);
        assert_eq!(pending(Busy::QueueFull), 0);
        // Each reason has its own second.
        turned_away.record(Busy::MaxConnections, 6_001, &config);
        assert_eq!(pending(Busy::MaxConnections), 0);
        turned_away.record(Busy::QueueFull, 6_002, &config);
        assert_eq!(pending(Busy::QueueFull), 1);
        turned_away.report_all(6_003, &config);
        assert_eq!(pending(Busy::QueueFull), 0);
    }
}
