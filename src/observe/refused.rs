//! TLS handshakes that failed, in the log at warn level: at most about one
//! line a second per cause (see `throttle`), with the count and the last
//! client's error, e.g.
//!
//! ```text
//! TLS handshakes failed: 14 in the last 1.0 s: a client certificate missing or not trusted (last: conn 88 from 10.1.2.3:5521: invalid peer certificate: UnknownIssuer)
//! ```
//!
//! A scanner or a misconfigured client fleet can fail thousands of
//! handshakes a second; one line each would flood the log. Each failure is
//! also in the access log at debug level.

use parking_lot::Mutex;

use crate::observe::throttle::{Due, Throttle};

/// What went wrong, broadly: an operator's next step differs for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// No common TLS version, cipher suite, key exchange or ALPN protocol.
    Incompatible = 0,
    /// A client certificate missing, not trusted, expired or revoked.
    ClientCertificate = 1,
    /// Not a TLS hello, or a malformed or misbehaving handshake.
    Malformed = 2,
    /// Anything else.
    Other = 3,
}

impl Cause {
    const ALL: [Cause; 4] = [
        Cause::Incompatible,
        Cause::ClientCertificate,
        Cause::Malformed,
        Cause::Other,
    ];

    /// The cause of a failed handshake.
    pub(crate) fn of(e: &rustls::Error) -> Cause {
        use rustls::Error as E;
        match e {
            E::PeerIncompatible(_) | E::NoApplicationProtocol => Cause::Incompatible,
            E::NoCertificatesPresented
            | E::InvalidCertificate(_)
            | E::InvalidCertRevocationList(_) => Cause::ClientCertificate,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError => Cause::Malformed,
            _ => Cause::Other,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Cause::Incompatible => "no common TLS version, cipher suite or ALPN protocol",
            Cause::ClientCertificate => "a client certificate missing or not trusted",
            Cause::Malformed => "not TLS, or a malformed handshake",
            Cause::Other => "other errors",
        }
    }
}

/// Failed handshakes not yet reported, by cause, with the last error of each.
#[derive(Debug)]
pub(crate) struct Refused {
    causes: [Throttle; 4],
    last: Mutex<[String; 4]>,
}

impl Refused {
    pub(crate) fn new() -> Self {
        Refused {
            causes: [
                Throttle::new(),
                Throttle::new(),
                Throttle::new(),
                Throttle::new(),
            ],
            last: Mutex::new(Default::default()),
        }
    }

    /// Counts one failed handshake at `now_ms` (`detail`: who and what), and
    /// writes the line for its cause if one is due.
    pub(crate) fn record(&self, cause: Cause, detail: String, now_ms: u64) {
        self.last.lock()[cause as usize] = detail;
        if let Some(due) = self.causes[cause as usize].record(now_ms) {
            self.write(due, cause);
        }
    }

    /// Writes the lines that are due (`always`: everything pending).
    pub(crate) fn report(&self, now_ms: u64, always: bool) {
        for cause in Cause::ALL {
            if let Some(due) = self.causes[cause as usize].due(now_ms, always) {
                self.write(due, cause);
            }
        }
    }

    fn write(&self, (count, span_ms): Due, cause: Cause) {
        let last = self.last.lock()[cause as usize].clone();
        let span = if span_ms == 0 {
            String::new()
        } else {
            format!(
                " in the last {}",
                crate::human::duration(std::time::Duration::from_millis(span_ms))
            )
        };
        log::warn!(
            "TLS handshakes failed: {count}{span}: {} (last: {last})",
            cause.describe()
        );
    }
}
