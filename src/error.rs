//! The library's error type: what can stop a server from starting.
//!
//! The operating system's reason is the error's `source()`, not part of
//! its message, so a report that prints the chain names it once.
//!
//! Once running, the server never fails as a whole: a client's I/O error
//! ends that connection only, and accept errors are logged and backed off.

use std::io;

/// Why a server could not start: what [`Server::start`](crate::Server::start)
/// and [`Server::from_listener`](crate::Server::from_listener) return. When
/// they fail there is nothing to stop: any thread already started winds
/// down by itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The listen address did not resolve to anything.
    #[error("cannot resolve listen address {0}")]
    Resolve(String),
    /// The listening socket could not be set up (address in use,
    /// permission denied, ...).
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address that was asked for.
        addr: crate::address::Address,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The metrics endpoint's socket ([`Config::metrics`](crate::Config::metrics),
    /// `--metrics`) could not be set up: named apart from the data
    /// listeners, whose address may be the same.
    #[error("cannot listen on {addr} (--metrics)")]
    ListenMetrics {
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A listening socket handed to [`crate::Server::from_listener`] is not
    /// a listening IPv4, IPv6 or Unix stream socket.
    #[error("unusable listening socket: {0}")]
    InvalidListener(String),
    /// Something the server needs from the operating system could not be
    /// set up (the epoll set, the eventfd that wakes the acceptor).
    #[error("cannot set up {what}")]
    Setup {
        /// What could not be set up.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A TLS file could not be read or used (the error names the file).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A server thread could not be started.
    #[error("cannot start {what} thread")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
}
