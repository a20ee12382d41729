//! Overload in the log at the default level: connections turned away with
//! GOAWAY 3 (BUSY) or, over a per-address limit, GOAWAY 6 (LIMITED),
//! counted by reason and reported at warn level in at
//! most about one line a second per reason, e.g.
//!
//! ```text
//! turned away 287 connections with BUSY in the last 1.0 s: max connections reached (10000)
//! ```
//!
//! A line per connection would flood the log exactly when the server is
//! busiest, so each reason has a [`Throttle`]: a line at once, then at
//! most one a second with everything pending. The reaper calls
//! [`TurnedAway::report_due`] on each turn, so a burst that has stopped is
//! still reported within about 1.25 s, and the drain calls
//! [`TurnedAway::report_all`] once every thread that turns connections away
//! has stopped, so the lines' counts add up to the exit summary's
//! `rejected_*` counts.
//!
//! Each connection is also in the access log at debug level (see `access`).

use log::warn;

use crate::config::Config;
use crate::frame::GoAwayCode;
use crate::human;
use crate::observe::throttle::{Due, Throttle};

/// Why a connection was turned away by a limit: the `rejected_*` counts of
/// the summary. The server-wide limits send GOAWAY 3 (BUSY), the
/// per-address ones GOAWAY 6 (LIMITED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// `--max-connections` clients were connected.
    MaxConnections = 0,
    /// `--queue` new connections were already waiting for a worker (with
    /// `--queue 0`: no worker was idle).
    QueueFull = 1,
    /// It waited in line for a worker past its heartbeat deadline.
    QueueDeadline = 2,
    /// `--max-connections-per-address` connections from its address were
    /// open.
    PerAddressConnections = 3,
    /// Its address was over `--connect-rate-per-address`.
    PerAddressRate = 4,
}

impl Busy {
    const ALL: [Busy; 5] = [
        Busy::MaxConnections,
        Busy::QueueFull,
        Busy::QueueDeadline,
        Busy::PerAddressConnections,
        Busy::PerAddressRate,
    ];

    /// The code a connection turned away for this reason is sent.
    pub(crate) fn code(self) -> GoAwayCode {
        match self {
            Busy::PerAddressConnections | Busy::PerAddressRate => GoAwayCode::Limited,
            _ => GoAwayCode::Busy,
        }
    }

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
            Busy::PerAddressConnections => format!(
                "max connections per address reached ({})",
                config.per_address.max_connections.unwrap_or(0)
            ),
            Busy::PerAddressRate => match config.per_address.connect_rate {
                Some(rate) => format!(
                    "over the connect rate per address ({rate}, burst {})",
                    config.per_address.burst().unwrap_or(1)
                ),
                None => "over the connect rate per address".to_owned(),
            },
        }
    }
}

/// Turn-aways not yet reported, by reason.
#[derive(Debug)]
pub(crate) struct TurnedAway {
    reasons: [Throttle; Busy::ALL.len()],
}

impl TurnedAway {
    pub(crate) fn new() -> Self {
        TurnedAway {
            reasons: std::array::from_fn(|_| Throttle::new()),
        }
    }

    /// Counts one connection turned away at `now_ms`, and writes the line
    /// for its reason if one is due.
    pub(crate) fn record(&self, why: Busy, now_ms: u64, config: &Config) {
        if let Some(due) = self.reasons[why as usize].record(now_ms) {
            write(due, why, config);
        }
    }

    /// Writes the lines that are due: for the reaper's periodic turn, so a
    /// burst that has stopped is still reported.
    pub(crate) fn report_due(&self, now_ms: u64, config: &Config) {
        for why in Busy::ALL {
            if let Some(due) = self.reasons[why as usize].due(now_ms, false) {
                write(due, why, config);
            }
        }
    }

    /// Writes a line for everything still pending, due or not: at the end
    /// of the drain, before the summary.
    pub(crate) fn report_all(&self, now_ms: u64, config: &Config) {
        for why in Busy::ALL {
            if let Some(due) = self.reasons[why as usize].due(now_ms, true) {
                write(due, why, config);
            }
        }
    }
}

fn write((count, span_ms): Due, why: Busy, config: &Config) {
    warn!(
        "{}",
        line(count, span_ms, why.code(), &why.describe(config))
    );
}

/// `turned away 287 connections with BUSY in the last 1.0 s: <reason>`
/// (`LIMITED` for a per-address limit); no time span for connections
/// turned away within the same millisecond.
fn line(count: u64, span_ms: u64, code: GoAwayCode, reason: &str) -> String {
    let name = code.name();
    let connections = if count == 1 {
        "connection"
    } else {
        "connections"
    };
    if span_ms == 0 {
        format!("turned away {count} {connections} with {name}: {reason}")
    } else {
        let span = human::duration(std::time::Duration::from_millis(span_ms));
        format!("turned away {count} {connections} with {name} in the last {span}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_words() {
        assert_eq!(
            line(
                287,
                1000,
                GoAwayCode::Busy,
                "max connections reached (10000)"
            ),
            "turned away 287 connections with BUSY in the last 1.0 s: max connections \
             reached (10000)"
        );
        assert_eq!(
            line(1, 0, GoAwayCode::Busy, "no idle worker (queue 0)"),
            "turned away 1 connection with BUSY: no idle worker (queue 0)"
        );
        assert_eq!(
            line(
                3,
                0,
                GoAwayCode::Limited,
                "max connections per address reached (2)"
            ),
            "turned away 3 connections with LIMITED: max connections per address reached (2)"
        );
    }
}
