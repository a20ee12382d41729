//! The three servers compared, started fresh for each point in this
//! process ([`Running`]), and the certificate of the TLS scenarios
//! ([`Certs`]): one made for the run, which wharf serves through its own
//! TLS settings and the peers through [`peers::tls_config`], so all three
//! serve the same certificate with the same rustls choices.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::peers::{tls_config, StdServer, TokioServer};
use wharf::tls::TlsSettings;
use wharf::{Bind, Config, Echo, Security, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Wharf,
    Std,
    Tokio,
}

pub(crate) const KINDS: [Kind; 3] = [Kind::Wharf, Kind::Std, Kind::Tokio];

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Wharf => "wharf",
            Kind::Std => "std",
            Kind::Tokio => "tokio",
        }
    }
}

pub(crate) enum Running {
    Wharf(Server),
    Std(StdServer),
    Tokio(TokioServer),
}

/// The certificate of the TLS scenarios, made for the run in a directory
/// of its own (removed on drop), and the peers' configuration serving it.
pub(crate) struct Certs {
    made: Made,
    peers: Arc<rustls::ServerConfig>,
}

/// A directory made for the run, removed on drop.
struct Made(PathBuf);

impl Certs {
    pub(crate) fn new() -> Result<Certs, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("wharf-compare-certs-{}", std::process::id()));
        // New and private: never a directory someone else made ready.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        // Removed on every way out from here.
        let made = Made(dir);
        wharf::tls::write_dev_certs(&made.0, &["localhost".to_owned()])
            .map_err(|e| format!("cannot write the certificates: {e}"))?;
        let peers = tls_config(&made.0.join("server.pem"), &made.0.join("server.key"))
            .map_err(|e| format!("the peers' TLS configuration: {e}"))?;
        Ok(Certs { made, peers })
    }

    /// The CA bundle the clients trust.
    pub(crate) fn ca(&self) -> PathBuf {
        self.made.0.join("ca.pem")
    }

    /// wharf's settings for the certificate: what an operator gets with
    /// `--tls-cert` and `--tls-key`.
    fn settings(&self) -> TlsSettings {
        TlsSettings::new(
            self.made.0.join("server.pem"),
            self.made.0.join("server.key"),
        )
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Running {
    pub(crate) fn start(
        kind: Kind,
        delay: Duration,
        workers: usize,
        tls: Option<&Certs>,
    ) -> Result<Running, String> {
        let started = match kind {
            Kind::Wharf => {
                let config = Config {
                    workers,
                    queue: 64,
                    tls: tls.map(Certs::settings),
                    ..Config::default()
                };
                let echo = Echo {
                    delay,
                    ..Echo::default()
                };
                let security = if tls.is_some() {
                    Security::Tls
                } else {
                    Security::Plain
                };
                let bind = Bind {
                    addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into(),
                    security,
                };
                Server::start_all(&[bind], config, echo)
                    .map(Running::Wharf)
                    .map_err(|e| e.to_string())
            }
            Kind::Std => match tls {
                None => StdServer::start(delay),
                Some(certs) => StdServer::start_tls(delay, Arc::clone(&certs.peers)),
            }
            .map(Running::Std)
            .map_err(|e| e.to_string()),
            Kind::Tokio => match tls {
                None => TokioServer::start(delay),
                Some(certs) => TokioServer::start_tls(delay, Arc::clone(&certs.peers)),
            }
            .map(Running::Tokio)
            .map_err(|e| e.to_string()),
        };
        started.map_err(|e| format!("cannot start the {} server: {e}", kind.name()))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Running::Wharf(server) => server.local_addr(),
            Running::Std(server) => server.addr,
            Running::Tokio(server) => server.addr,
        }
    }

    pub(crate) fn stop(self) {
        match self {
            Running::Wharf(server) => {
                server.handle().shutdown();
                server.join();
            }
            Running::Std(server) => server.stop(),
            Running::Tokio(server) => server.stop(),
        }
    }
}
