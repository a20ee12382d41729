//! Everything an operator can tune, as plain data with production defaults.
//!
//! The command line maps one-to-one onto [`Config`]; embedders fill it with
//! struct-update syntax: `Config { workers: 4, ..Config::default() }`.
//! [`Config::validate`] turns impossible settings into a typed error and
//! lowers a reap interval that could not keep the heartbeat promise.

use std::time::Duration;

use crate::frame::Framing;
use crate::Error;

/// What the acceptor does when the queue to the workers is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Send the new connection GOAWAY 3 (BUSY) and close it at once, so
    /// memory stays bounded however many clients arrive.
    #[default]
    Reject,
    /// Stop accepting until a slot frees; the kernel backlog holds or
    /// refuses the excess.
    Block,
}

/// Server settings. See the README's flags table for the operator's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Fixed size of the worker pool; each worker serves one connection at a time.
    pub workers: usize,
    /// Capacity of the queue between acceptor and workers; 0 hands a
    /// connection over only to an idle worker.
    pub queue: usize,
    /// What to do with a new connection when the queue is full.
    pub overload: Overload,
    /// A connection that neither sends a complete frame nor receives a
    /// response for this long is closed with GOAWAY 2.
    pub heartbeat_timeout: Duration,
    /// How often the reaper scans for missed deadlines; never more than a
    /// quarter of `heartbeat_timeout` (see [`Config::validate`]).
    pub reap_interval: Duration,
    /// A client that does not take its responses for this long is dropped.
    pub write_timeout: Duration,
    /// Largest accepted frame (kind byte plus payload), or line.
    pub max_frame: u32,
    /// Wire format.
    pub framing: Framing,
    /// Longest drain after a shutdown request before connections are
    /// closed by force.
    pub grace: Duration,
    /// Length of the kernel's queue of connections not yet accepted.
    pub backlog: u32,
    /// Log the counters at info level this often; `None` (the default) never.
    pub stats_interval: Option<Duration>,
}

/// The largest `max_frame` accepted: one frame is buffered whole, per worker.
pub const MAX_FRAME_LIMIT: u32 = 1 << 30;

/// The largest queue accepted: the queue's slots are allocated up front.
pub const MAX_QUEUE: usize = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 64,
            overload: Overload::Reject,
            heartbeat_timeout: Duration::from_secs(30),
            reap_interval: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            max_frame: 1024 * 1024,
            framing: Framing::Length,
            grace: Duration::from_secs(10),
            backlog: 1024,
            stats_interval: None,
        }
    }
}

impl Config {
    /// Checks the settings and returns them ready to run, with the reap
    /// interval lowered to `heartbeat_timeout / 4` if it was larger. The
    /// second value is a warning for the operator when that happened.
    pub fn validate(mut self) -> Result<(Config, Option<String>), Error> {
        let invalid = |what: &str| Err(Error::InvalidConfig(what.to_owned()));
        if self.workers == 0 {
            return invalid("workers must be at least 1");
        }
        if self.queue > MAX_QUEUE {
            return invalid("queue must be at most 1048576");
        }
        if self.max_frame == 0 || self.max_frame > MAX_FRAME_LIMIT {
            return invalid("max-frame must be between 1 and 1073741824 bytes");
        }
        if self.heartbeat_timeout.is_zero() {
            return invalid("heartbeat-timeout must be greater than 0");
        }
        if self.write_timeout.is_zero() {
            return invalid("write-timeout must be greater than 0");
        }
        if self.reap_interval.is_zero() {
            return invalid("reap-interval must be greater than 0");
        }
        let mut warning = None;
        let ceiling = self.heartbeat_timeout / 4;
        if self.reap_interval > ceiling {
            warning = Some(format!(
                "reap-interval {:?} is more than heartbeat-timeout / 4; lowered to {:?}",
                self.reap_interval, ceiling
            ));
            self.reap_interval = ceiling.max(Duration::from_millis(1));
        }
        Ok((self, warning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_interval_is_lowered_to_a_quarter_of_the_heartbeat() {
        let config = Config {
            heartbeat_timeout: Duration::from_secs(2),
            reap_interval: Duration::from_secs(1),
            ..Config::default()
        };
        let (config, warning) = config.validate().unwrap();
        assert_eq!(config.reap_interval, Duration::from_millis(500));
        assert!(warning.unwrap().contains("lowered"));
        let (_, warning) = config.validate().unwrap();
        assert!(warning.is_none());
    }

    #[test]
    fn impossible_settings_are_errors() {
        for bad in [
            Config {
                workers: 0,
                ..Config::default()
            },
            Config {
                max_frame: 0,
                ..Config::default()
            },
            Config {
                heartbeat_timeout: Duration::ZERO,
                ..Config::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidConfig(_))));
        }
    }
}
