//! Everything an operator can tune, as plain data with production defaults.
//!
//! The command line maps one-to-one onto [`Config`]; embedders fill it with
//! struct-update syntax: `Config { workers: 4, ..Config::default() }`.
//! [`Config::validate`] turns impossible settings into a typed error and
//! lowers a reap interval that could not keep the heartbeat promise.

pub use crate::limit_settings::{ParseRateError, PerAddressSettings, Rate, RateUnit};
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Error;
use crate::frame::{Framing, HEADER_LEN};
use crate::human;
use crate::tls::TlsSettings;

/// What the acceptor does when a limit is reached: `--max-connections`
/// clients connected, or `--queue` new connections already waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Send the new connection GOAWAY 3 (BUSY) and close it at once, so
    /// memory stays bounded however many clients arrive.
    #[default]
    Reject,
    /// Stop accepting until there is room; the kernel backlog holds or
    /// refuses the excess.
    Block,
}

/// Server settings. See the flags table of docs/operating.md for the operator's view.
///
/// Plain data: nothing is checked until [`Server::start`](crate::Server::start)
/// (or [`Server::from_listener`](crate::Server::from_listener)) runs
/// [`Config::validate`], and nothing can be changed on a running server.
/// [`Server::config`](crate::Server::config) shows the settings in force,
/// after validation and after `max_connections` is fitted to the
/// descriptor limit. The defaults suit production; `workers` defaults to
/// one per CPU, which suits CPU-bound services, while one that waits on I/O
/// needs more (Little's law: see docs/sizing.md, and [`crate::bench`] to
/// measure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Fixed size of the worker pool: how many connections are worked on at
    /// once (answering a request, writing replies, running the service).
    pub workers: usize,
    /// How many *new* connections may wait for a worker at once; 0 hands a
    /// new connection over only to an idle worker. Open connections with
    /// work are never turned away for this.
    pub queue: usize,
    /// How many clients may be connected at once. Lowered at start (with a
    /// warning) to what the process's descriptor limit allows.
    pub max_connections: usize,
    /// Total bytes of unfinished frames held for connections that have
    /// nothing to answer; see `docs/design.md`, "Memory".
    pub max_buffered: usize,
    /// What to do with a new connection when a limit is reached.
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
    /// Longest drain before connections are closed by force, counted from
    /// the start of the drain (after any `drain_delay`).
    pub grace: Duration,
    /// How long a stop request ([`crate::ShutdownHandle::shutdown`], the
    /// binary's first SIGINT/SIGTERM) keeps the server accepting and serving
    /// before the drain starts, while it already reports that it is stopping
    /// ([`crate::ShutdownHandle::is_stopping`]). For load balancers that keep
    /// sending new connections for a moment after a stop. Default 0: the
    /// drain starts at once.
    pub drain_delay: Duration,
    /// Set `SO_REUSEPORT` on the listener the server binds, so that a new
    /// instance can bind the same address while this one still runs (see
    /// docs/operating.md, "Restarts without losing a request"). The data listener
    /// handed to [`crate::Server::from_listener`] is left as it is; the
    /// metrics listener ([`Config::metrics`]) gets it too, so the two
    /// instances can share that address as well.
    pub reuse_port: bool,
    /// Length of the kernel's queue of connections not yet accepted.
    pub backlog: u32,
    /// Log the counters at info level this often; `None` (the default) never.
    pub stats_interval: Option<Duration>,
    /// Serve Prometheus metrics and the `/ready` and `/live` probes over
    /// HTTP on this address (port 0 picks a free port; see
    /// [`crate::Server::metrics_addr`]); `None` (the default) serves none.
    /// The endpoint runs on one thread of its own and never touches the
    /// data path's locks; see "Metrics and probes" in docs/operating.md. Only with
    /// it on are the latency histograms recorded, which costs two clock
    /// reads per DATA request and per hand-off.
    pub metrics: Option<SocketAddr>,
    /// The certificate set of the TLS listeners, and how clients are
    /// verified; required when any listener speaks TLS (see
    /// [`crate::tls`]).
    pub tls: Option<TlsSettings>,
    /// The longest a TLS connection may take from its accept to a completed
    /// handshake, and a connection from a balancer in `proxy_from` to send
    /// its PROXY header (both, when both apply); until then this is its only
    /// deadline (the heartbeat starts once they are done). Past it, the
    /// connection is closed without the server sending anything.
    pub handshake_timeout: Duration,
    /// The permissions of the socket files of Unix listeners the server
    /// binds (`--unix-mode`, default `0o660`: the owner and its group may
    /// connect), set before the server accepts on them.
    pub unix_mode: u32,
    /// The load balancers whose connections start with a PROXY protocol
    /// header naming the client (`--proxy-from`): from them a complete
    /// header must come first, within `handshake_timeout`; from any other
    /// peer the first bytes are the protocol itself. `None` (the default):
    /// no peer sends one.
    pub proxy_from: Option<crate::proxy::ProxyFrom>,
    /// The per-address limits (`--max-connections-per-address`,
    /// `--connect-rate-per-address`, `--connect-burst`), both off by
    /// default. A client address is an IPv4 address, an IPv6 /64 or a Unix
    /// uid; behind a balancer in `proxy_from`, the client its header names.
    /// A connection over either is sent GOAWAY 6 (LIMITED) with a retry
    /// hint, or on a TLS listener closed without a handshake.
    pub per_address: PerAddressSettings,
}

/// The largest `max_frame` accepted: one frame is buffered whole, per worker.
pub const MAX_FRAME_LIMIT: u32 = 1 << 30;

/// The largest queue accepted.
pub const MAX_QUEUE: usize = 1 << 20;

/// The largest pool accepted: each worker is a thread with its own buffers,
/// and far more threads than this exhaust the process's memory mappings.
pub const MAX_WORKERS: usize = 4096;

/// The longest duration accepted for any setting: long enough for any use,
/// short enough that no deadline computed from it can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most connections accepted: the line to the workers has room for
/// every connection at once, allocated up front.
pub const MAX_CONNECTIONS: usize = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 64,
            max_connections: 10_000,
            max_buffered: 64 << 20,
            overload: Overload::Reject,
            heartbeat_timeout: Duration::from_secs(30),
            reap_interval: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            max_frame: 1024 * 1024,
            framing: Framing::Length,
            grace: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            reuse_port: false,
            backlog: 1024,
            stats_interval: None,
            metrics: None,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            unix_mode: 0o660,
            proxy_from: None,
            per_address: PerAddressSettings::default(),
        }
    }
}

impl Config {
    /// Checks the settings and returns them ready to run, with the reap
    /// interval lowered to `heartbeat_timeout / 4` if it was larger. The
    /// second value is a warning for the operator when that happened.
    ///
    /// A server runs this itself when it starts; calling it earlier checks
    /// settings where they are read (a command line, a file), before
    /// anything is bound.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wharf::{Config, Error};
    ///
    /// let config = Config {
    ///     heartbeat_timeout: Duration::from_secs(2),
    ///     ..Config::default()
    /// };
    /// let (config, warning) = config.validate()?;
    /// assert_eq!(config.reap_interval, Duration::from_millis(500));
    /// assert!(warning.unwrap().contains("lowered"));
    ///
    /// let impossible = Config { workers: 0, ..Config::default() };
    /// assert!(matches!(impossible.validate(), Err(Error::InvalidConfig(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn validate(mut self) -> Result<(Config, Option<String>), Error> {
        let invalid = |what: String| Err(Error::InvalidConfig(what));
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return invalid(format!("workers must be between 1 and {MAX_WORKERS}"));
        }
        if self.queue > MAX_QUEUE {
            return invalid(format!("queue must be at most {MAX_QUEUE}"));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return invalid(format!(
                "max-connections must be between 1 and {MAX_CONNECTIONS}"
            ));
        }
        if self.max_frame == 0 || self.max_frame > MAX_FRAME_LIMIT {
            return invalid(format!(
                "max-frame must be between 1 and {MAX_FRAME_LIMIT} bytes"
            ));
        }
        // A frame is assembled within the budget unless a worker has work,
        // so a budget smaller than one frame could never complete it.
        let frame = self.max_frame as usize + HEADER_LEN;
        if self.max_buffered < frame {
            return invalid(format!(
                "max-buffered ({} bytes) must be at least one whole frame (max-frame + {HEADER_LEN} = \
                 {frame} bytes)",
                self.max_buffered
            ));
        }
        if self.heartbeat_timeout.is_zero() {
            return invalid("heartbeat-timeout must be greater than 0".into());
        }
        if let Err(what) = self.per_address.validate() {
            return invalid(what);
        }
        if self.unix_mode > 0o7777 {
            return invalid(format!(
                "unix mode {:o} is not a file mode (at most 7777 in octal)",
                self.unix_mode
            ));
        }
        if self.handshake_timeout.is_zero() {
            return invalid("handshake-timeout must be greater than 0".into());
        }
        if self.write_timeout.is_zero() {
            return invalid("write-timeout must be greater than 0".into());
        }
        if self.reap_interval.is_zero() {
            return invalid("reap-interval must be greater than 0".into());
        }
        let durations = [
            ("heartbeat-timeout", Some(self.heartbeat_timeout)),
            ("reap-interval", Some(self.reap_interval)),
            ("write-timeout", Some(self.write_timeout)),
            ("grace", Some(self.grace)),
            ("drain-delay", Some(self.drain_delay)),
            ("stats-interval", self.stats_interval),
            ("handshake-timeout", Some(self.handshake_timeout)),
            (
                "tls-reload-interval",
                self.tls.as_ref().map(|t| t.reload_interval),
            ),
        ];
        for (name, value) in durations {
            if value.is_some_and(|d| d > MAX_DURATION) {
                return invalid(format!("{name} must be at most 365 days"));
            }
        }
        let mut warning = None;
        let ceiling = self.heartbeat_timeout / 4;
        if self.reap_interval > ceiling {
            warning = Some(format!(
                "reap-interval {} is more than heartbeat-timeout / 4 ({}); lowered to that",
                human::duration(self.reap_interval),
                human::duration(ceiling)
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
                workers: MAX_WORKERS + 1,
                ..Config::default()
            },
            Config {
                max_connections: 0,
                ..Config::default()
            },
            Config {
                max_frame: 0,
                ..Config::default()
            },
            Config {
                max_buffered: 1024,
                ..Config::default()
            },
            Config {
                heartbeat_timeout: Duration::ZERO,
                ..Config::default()
            },
            Config {
                grace: Duration::from_secs(400 * 24 * 3600),
                ..Config::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidConfig(_))));
        }
    }

    #[test]
    fn a_budget_of_exactly_one_frame_is_enough() {
        let config = Config {
            max_frame: 1000,
            max_buffered: 1000 + HEADER_LEN,
            ..Config::default()
        };
        assert!(config.validate().is_ok());
    }
}
