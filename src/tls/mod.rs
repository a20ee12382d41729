//! TLS: the certificate set a server serves with, how it is loaded and
//! reloaded, and who a client is.
//!
//! A TLS listener's connections are served by the same engine as plain
//! ones: the handshake is work a worker does, and a connection waiting for
//! its client's next handshake bytes rests like a quiet one (see
//! `engine::tls`). This module is what that needs from files:
//!
//! - [`TlsSettings`]: the paths and choices an operator gives (`--tls-cert`,
//!   `--tls-key`, `--tls-min-version`, `--tls-client-ca`,
//!   `--tls-client-auth`, `--tls-crl`, `--tls-reload-interval`);
//! - `load`: reading them into a rustls `ServerConfig`, all or nothing, with
//!   an error that names the file and the cause;
//! - `reload`: the set in force, replaced whole by a successful reload (on
//!   SIGHUP, or when a file changes), kept on a failed one;
//! - [`ClientIdentity`]: what a verified client certificate says, given to
//!   the service with the connection.
//!
//! The crypto provider is aws-lc-rs, and key exchange offers X25519 and
//! P-256 only: rustls follows the client's order of groups, and a client
//! that prefers P-384 would make every handshake several times as
//! expensive (measured: 1,200 against 176 us of server CPU).

mod dev;
mod identity;
pub(crate) mod load;
pub(crate) mod reload;
mod settings;

pub use dev::{dev_certs, write_dev_certs, DevCerts};
pub use identity::ClientIdentity;
pub use load::TlsError;
pub use settings::{ClientAuth, TlsSettings, TlsVersion};

/// What a completed TLS handshake established, given to the service with
/// the connection ([`crate::ConnInfo::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The version agreed.
    pub version: TlsVersion,
    /// The client's verified certificate, with mutual TLS (`None` without a
    /// client CA, or when an optional certificate was not presented).
    pub client: Option<ClientIdentity>,
}

impl TlsVersion {
    /// `tls1.2` or `tls1.3`, as log lines spell it.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "tls1.2",
            TlsVersion::V1_3 => "tls1.3",
        }
    }
}
