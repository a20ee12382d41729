//! The access log: at debug level, one line when a connection opens and one
//! when it closes, so that `--log-level debug` answers "who connected, how
//! long did they wait, how much did they ask, how did it end":
//!
//! ```text
//! conn 12 from 127.0.0.1:40312: opened, waited 35 us in line for a worker
//! conn 12 from 127.0.0.1:40312: closed after 1.2 s, 4 requests: closed by the client
//! conn 13 from 127.0.0.1:40318: opened, turned away after 21 us, never served
//! conn 13 from 127.0.0.1:40318: closed after 2.0 ms, 0 requests: GOAWAY 3 BUSY: max connections reached (2)
//! ```
//!
//! The open line is written when a worker first takes the connection, with
//! the time since the accept (its wait in line); a connection that ends
//! before any worker took it (turned away at accept, past its deadline in
//! line, or in line when the drain started) gets it when it ends. The close
//! line is written when the socket closes (after the closer's linger, for a
//! GOAWAY), with the time since the accept, the requests answered, and how
//! it ended, as recorded by whoever decided it (the first to decide wins:
//! a GOAWAY whose write then fails is still reported as that GOAWAY).
//!
//! At info level and above none of this costs anything beyond one branch
//! per connection event: a connection carries an [`Access`] record only if
//! debug was enabled when it was accepted, and every function here returns
//! at once without one. Per-frame detail is at trace level (see `worker`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use log::{debug, log_enabled, Level};

use crate::config::Config;
use crate::frame::{self, GoAwayCode};
use crate::human;
use crate::observe::turned_away::Busy;
use crate::service::{ConnInfo, Peer};
use crate::tls::TlsInfo;

/// Why the server sends a GOAWAY, in more detail than its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// GOAWAY 1: the drain.
    Shutdown,
    /// GOAWAY 2: no complete frame within the heartbeat timeout.
    HeartbeatTimeout,
    /// GOAWAY 3, or 6 for a per-address limit (see `turned_away`).
    Busy(Busy),
    /// GOAWAY 3: the server could not keep the connection (the line was
    /// full, or the poller could not watch it), which should not happen.
    Trouble,
    /// GOAWAY 4: a malformed frame.
    ProtocolError,
    /// GOAWAY 5: a frame longer than `--max-frame`.
    FrameTooLarge,
}

impl Why {
    /// Why, in words, for the access log.
    fn describe(self, config: &Config) -> String {
        match self {
            Why::Shutdown => "the server is draining".to_owned(),
            Why::HeartbeatTimeout => format!(
                "no complete frame within the heartbeat timeout ({})",
                human::duration(config.heartbeat_timeout)
            ),
            Why::Busy(busy) => busy.describe(config),
            Why::Trouble => "the server could not keep it".to_owned(),
            Why::ProtocolError => "malformed frame".to_owned(),
            Why::FrameTooLarge => format!("frame larger than {} bytes", config.max_frame),
        }
    }

    /// The code sent on the wire.
    pub(crate) fn code(self) -> GoAwayCode {
        match self {
            Why::Shutdown => GoAwayCode::Shutdown,
            Why::HeartbeatTimeout => GoAwayCode::HeartbeatTimeout,
            Why::Busy(busy) => busy.code(),
            Why::Trouble => GoAwayCode::Busy,
            Why::ProtocolError => GoAwayCode::ProtocolError,
            Why::FrameTooLarge => GoAwayCode::FrameTooLarge,
        }
    }

    /// The reason a worker's GOAWAY `code` stands for.
    pub(crate) fn from_code(code: GoAwayCode) -> Why {
        match code {
            GoAwayCode::Shutdown => Why::Shutdown,
            GoAwayCode::HeartbeatTimeout => Why::HeartbeatTimeout,
            GoAwayCode::Busy => Why::Trouble,
            // A worker's GOAWAY 6 is recorded with its limit (see `pool`).
            GoAwayCode::Limited => Why::Busy(Busy::PerAddressConnections),
            GoAwayCode::ProtocolError => Why::ProtocolError,
            GoAwayCode::FrameTooLarge => Why::FrameTooLarge,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The client closed its side; every complete request was answered.
    PeerClosed,
    /// The server sent a GOAWAY and closed.
    GoAway(Why),
    /// The client did not read its replies within `--write-timeout`.
    WriteTimeout,
    /// The client reset the connection, or it broke.
    Reset,
    /// Another I/O error (logged at warn level with the error).
    Failed,
    /// Closed by force at the end of the drain.
    Forced,
    /// Closed after a panic in a worker (logged at error level).
    Panicked,
    /// A TLS connection closed before its handshake completed, without a
    /// word (no handshake for a connection turned away, no GOAWAY before
    /// the keys are agreed), for this reason.
    Unshaken(Why),
    /// Its TLS handshake failed (logged at warn, throttled).
    TlsRefused,
    /// Its TLS handshake did not complete within the handshake timeout.
    HandshakeTimeout,
    /// From a balancer in `--proxy-from`, it did not start with a valid
    /// PROXY header within the handshake timeout: closed without a word.
    BadHeader,
}

/// Every ending, for storing one in an atomic byte (its index plus one).
const ENDINGS: [Ending; 26] = [
    Ending::PeerClosed,
    Ending::GoAway(Why::Shutdown),
    Ending::GoAway(Why::HeartbeatTimeout),
    Ending::GoAway(Why::Busy(Busy::MaxConnections)),
    Ending::GoAway(Why::Busy(Busy::QueueFull)),
    Ending::GoAway(Why::Busy(Busy::QueueDeadline)),
    Ending::GoAway(Why::Busy(Busy::PerAddressConnections)),
    Ending::GoAway(Why::Busy(Busy::PerAddressRate)),
    Ending::Unshaken(Why::Busy(Busy::PerAddressConnections)),
    Ending::Unshaken(Why::Busy(Busy::PerAddressRate)),
    Ending::GoAway(Why::Trouble),
    Ending::GoAway(Why::ProtocolError),
    Ending::GoAway(Why::FrameTooLarge),
    Ending::WriteTimeout,
    Ending::Reset,
    Ending::Failed,
    Ending::Forced,
    Ending::Panicked,
    Ending::Unshaken(Why::Shutdown),
    Ending::Unshaken(Why::Busy(Busy::MaxConnections)),
    Ending::Unshaken(Why::Busy(Busy::QueueFull)),
    Ending::Unshaken(Why::Busy(Busy::QueueDeadline)),
    Ending::Unshaken(Why::Trouble),
    Ending::TlsRefused,
    Ending::HandshakeTimeout,
    Ending::BadHeader,
];

/// No ending recorded yet.
const UNDECIDED: u8 = 0;

impl Ending {
    fn encode(self) -> u8 {
        ENDINGS
            .iter()
            .position(|&e| e == self)
            .map_or(UNDECIDED, |i| i as u8 + 1)
    }

    fn decode(byte: u8) -> Option<Ending> {
        ENDINGS.get(usize::from(byte).checked_sub(1)?).copied()
    }

    /// How it ended, in words.
    fn describe(self, config: &Config) -> String {
        match self {
            Ending::PeerClosed => "closed by the client".to_owned(),
            Ending::GoAway(why) => format!("GOAWAY {}: {}", why.code(), why.describe(config)),
            Ending::Unshaken(why) => format!(
                "closed before its TLS handshake, without a word: {}",
                why.describe(config)
            ),
            Ending::TlsRefused => "its TLS handshake failed".to_owned(),
            Ending::HandshakeTimeout => format!(
                "no completed TLS handshake within the handshake timeout ({})",
                human::duration(config.handshake_timeout)
            ),
            Ending::BadHeader => format!(
                "no valid PROXY header (malformed, or none within the handshake timeout of {}), \
                 closed without a word",
                human::duration(config.handshake_timeout)
            ),
            Ending::WriteTimeout => format!(
                "dropped, did not read its replies within the write timeout ({})",
                human::duration(config.write_timeout)
            ),
            Ending::Reset => "connection lost (reset or broken by the client)".to_owned(),
            Ending::Failed => "connection failed (I/O error)".to_owned(),
            Ending::Forced => "closed by force at the end of the drain".to_owned(),
            Ending::Panicked => "closed after a worker panicked".to_owned(),
        }
    }
}

/// What the access log keeps about one connection, only while debug is on.
#[derive(Debug)]
pub(crate) struct Access {
    accepted: Instant,
    /// The open line has been written.
    opened: AtomicBool,
    /// An [`Ending`], encoded; [`UNDECIDED`] until someone decides it.
    ending: AtomicU8,
    /// Requests answered, as of the worker's last turn (a connection that
    /// ends resting carries its count in its travel state instead).
    requests: AtomicU64,
}

impl Access {
    /// A record for a connection accepted now, if debug is enabled.
    pub(crate) fn start() -> Option<Access> {
        log_enabled!(Level::Debug).then(|| Access {
            accepted: Instant::now(),
            opened: AtomicBool::new(false),
            ending: AtomicU8::new(UNDECIDED),
            requests: AtomicU64::new(0),
        })
    }
}

/// `conn 12 from 127.0.0.1:40312`, the prefix of every line about one
/// connection.
pub(crate) struct Who<'a> {
    id: u64,
    peer: &'a Peer,
    via: Option<&'a Peer>,
}

impl<'a> Who<'a> {
    pub(crate) fn new(id: u64, peer: &'a Peer, via: Option<&'a Peer>) -> Self {
        Who { id, peer, via }
    }

    /// The connection a service was told about.
    pub(crate) fn of(info: &'a ConnInfo) -> Self {
        Who::new(info.id, &info.peer, info.via.as_ref())
    }
}

/// `conn 12 from 203.0.113.7:52000`, and behind a balancer that sent a
/// PROXY header, ` via 10.0.0.2:41000`.
impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {} from {}", self.id, self.peer)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        Ok(())
    }
}

impl Access {
    /// A worker has taken the connection from the line: the open line, the
    /// first time.
    pub(crate) fn served(&self, who: Who<'_>) {
        if !self.opened.swap(true, Ordering::Relaxed) {
            debug!(
                "{who}: opened, waited {} in line for a worker",
                human::duration(self.accepted.elapsed())
            );
        }
    }

    /// Records how the connection ended, unless that was decided already.
    /// A connection no worker has taken gets its open line now.
    pub(crate) fn ended(&self, who: Who<'_>, ending: Ending) {
        let _ = self.ending.compare_exchange(
            UNDECIDED,
            ending.encode(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if !self.opened.swap(true, Ordering::Relaxed) {
            debug!(
                "{who}: opened, turned away after {}, never served",
                human::duration(self.accepted.elapsed())
            );
        }
    }

    /// Its TLS handshake completed: the version and, with a client
    /// certificate, its common name.
    pub(crate) fn tls(&self, who: Who<'_>, info: &TlsInfo) {
        match info.client.as_ref().and_then(|c| c.common_name.as_deref()) {
            Some(cn) => debug!("{who}: {}, cn={cn}", info.version.name()),
            None => debug!("{who}: {}", info.version.name()),
        }
    }

    /// The requests answered so far, from the worker that ends the
    /// connection.
    pub(crate) fn answered(&self, requests: u64) {
        self.requests.fetch_max(requests, Ordering::Relaxed);
    }

    /// The connection has left the registry, and its socket closes: the
    /// close line. `carried` is the count in its travel state, for a
    /// connection that ends resting or in line.
    pub(crate) fn closed(&self, who: Who<'_>, carried: u64, config: &Config) {
        let requests = carried.max(self.requests.load(Ordering::Relaxed));
        let how = Ending::decode(self.ending.load(Ordering::Relaxed))
            .map_or_else(|| "closed".to_owned(), |e| e.describe(config));
        debug!(
            "{who}: closed after {}, {requests} {}: {how}",
            human::duration(self.accepted.elapsed()),
            if requests == 1 { "request" } else { "requests" }
        );
    }
}

/// A frame kind's name, for trace lines.
pub(crate) fn kind_name(kind: u8) -> &'static str {
    match kind {
        frame::DATA => "DATA",
        frame::PING => "PING",
        frame::PONG => "PONG",
        frame::GOAWAY => "GOAWAY",
        frame::ERROR => "ERROR",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_ending_survives_the_atomic_byte() {
        for ending in ENDINGS {
            assert_eq!(Ending::decode(ending.encode()), Some(ending));
        }
        assert_eq!(Ending::decode(UNDECIDED), None);
        assert_eq!(Ending::decode(200), None);
    }

    #[test]
    fn endings_in_words() {
        let config = Config {
            max_connections: 2,
            heartbeat_timeout: Duration::from_secs(30),
            ..Config::default()
        };
        let busy = Ending::GoAway(Why::Busy(Busy::MaxConnections)).describe(&config);
        assert_eq!(busy, "GOAWAY 3 BUSY: max connections reached (2)");
        let reaped = Ending::GoAway(Why::HeartbeatTimeout).describe(&config);
        assert_eq!(
            reaped,
            "GOAWAY 2 HEARTBEAT_TIMEOUT: no complete frame within the heartbeat timeout (30 s)"
        );
    }
}
