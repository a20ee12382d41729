//! TLS for the benchmark: what every client connection of a TLS run uses
//! ([`ClientTls`]), and the throwaway certificate an in-process run serves
//! ([`Throwaway`]).
//!
//! The clients offer what a wharf server accepts, and no more: ALPN
//! `wharf`, TLS 1.3 or 1.2, key exchange X25519 then P-256, with the
//! aws-lc-rs provider the server uses. Session resumption is off, so every
//! connection makes a full handshake: a churn run measures handshakes, not
//! ticket lookups.
//!
//! The throwaway certificate is made for the run (a CA and a server
//! certificate for 127.0.0.1, ECDSA P-256, see [`crate::tls::dev_certs`]),
//! written to a new directory only its owner can enter (the server's
//! [`TlsSettings`] take paths), and removed with it when the run is over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::error::BenchError;
use crate::tls::TlsSettings;

/// The client side of a TLS run: one configuration for every connection,
/// and the name the server's certificate must carry.
#[derive(Debug, Clone)]
pub(super) struct ClientTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl ClientTls {
    /// Trusting the certificate authorities in `ca_pem` (`from` names where
    /// they came from, for the error), verifying `name`.
    pub(super) fn new(
        ca_pem: &[u8],
        from: &str,
        name: ServerName<'static>,
    ) -> Result<ClientTls, BenchError> {
        let invalid = |why: String| BenchError::Invalid(format!("tls-ca {from}: {why}"));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| invalid(format!("not valid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("no PEM certificate in it".into()));
        }
        let mut crypto = provider::default_provider();
        crypto.kx_groups = vec![provider::kx_group::X25519, provider::kx_group::SECP256R1];
        let mut config = ClientConfig::builder_with_provider(Arc::new(crypto))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| BenchError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![crate::tls::load::ALPN.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(ClientTls {
            config: Arc::new(config),
            name,
        })
    }

    /// Reads the CA bundle at `path`.
    pub(super) fn from_file(
        path: &std::path::Path,
        name: ServerName<'static>,
    ) -> Result<Self, BenchError> {
        let from = path.display().to_string();
        let pem = std::fs::read(path)
            .map_err(|e| BenchError::Invalid(format!("tls-ca {from}: cannot read it: {e}")))?;
        ClientTls::new(&pem, &from, name)
    }

    /// A new session for one connection. Plaintext written to it before
    /// its handshake completes waits inside it, and goes right after.
    pub(super) fn session(&self) -> Result<Box<ClientConnection>, rustls::Error> {
        let mut session = ClientConnection::new(Arc::clone(&self.config), self.name.clone())?;
        // The driver's own output buffer bounds what is written.
        session.set_buffer_limit(None);
        Ok(Box::new(session))
    }
}

/// The name to verify: `name` if given, else the IP address connected to.
pub(super) fn server_name(
    name: Option<&str>,
    addr: std::net::SocketAddr,
) -> Result<ServerName<'static>, BenchError> {
    match name {
        Some(name) => ServerName::try_from(name.to_owned()).map_err(|_| {
            BenchError::Invalid(format!(
                "tls-server-name {name:?} is neither a DNS name nor an IP address"
            ))
        }),
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    }
}

/// A certificate made for one run, in a directory of its own that is
/// removed on drop.
#[derive(Debug)]
pub(super) struct Throwaway {
    dir: PathBuf,
    /// The CA that signed it, in PEM: what the clients trust.
    pub(super) ca_pem: String,
}

impl Throwaway {
    /// A CA and a server certificate for 127.0.0.1 and ::1 (and `names`),
    /// written to a new private directory under the temporary directory.
    pub(super) fn new(names: &[String]) -> Result<Throwaway, BenchError> {
        use std::os::unix::fs::DirBuilderExt;
        let fail = |e: std::io::Error| {
            BenchError::Tls(format!("cannot write the throwaway certificate: {e}"))
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("wharf-bench-tls-{}-{nanos}", std::process::id()));
        // Created here, new and private: never a directory someone else
        // made ready for us.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(fail)?;
        let written = crate::tls::write_dev_certs(&dir, names)
            .and_then(|_| std::fs::read_to_string(dir.join("ca.pem")));
        match written {
            Ok(ca_pem) => Ok(Throwaway { dir, ca_pem }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(fail(e))
            }
        }
    }

    /// Server settings serving the certificate. The files never change, so
    /// there is no check for changes (and no thread for it).
    pub(super) fn settings(&self) -> TlsSettings {
        let mut settings =
            TlsSettings::new(self.dir.join("server.pem"), self.dir.join("server.key"));
        settings.reload_interval = std::time::Duration::ZERO;
        settings
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
