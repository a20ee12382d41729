//! What an operator chooses for a server's TLS listeners.

use std::path::PathBuf;
use std::time::Duration;

/// The oldest TLS version a server accepts (`--tls-min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// Whether a client must present a certificate (`--tls-client-auth`), when
/// [`TlsSettings::client_ca`] is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A client without a valid certificate fails the handshake.
    #[default]
    Required,
    /// A client may present none; one that is presented must verify.
    Optional,
}

/// The files and choices of a server's TLS listeners. Every path is read
/// at start and again on each reload (see [`crate::ShutdownHandle`]'s
/// sibling, the server's reload call, and [`TlsSettings::reload_interval`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate: PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
    /// The oldest TLS version accepted.
    pub min_version: TlsVersion,
    /// PEM bundle of the certificate authorities a client certificate must
    /// chain to; with it set, the server asks for a client certificate
    /// (mutual TLS). `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required or optional (only with
    /// [`TlsSettings::client_ca`]).
    pub client_auth: ClientAuth,
    /// PEM certificate revocation lists checked against client
    /// certificates (only with [`TlsSettings::client_ca`]).
    pub crls: Vec<PathBuf>,
    /// How often the files are checked for changes, and reloaded if any
    /// changed; zero turns the check off (a reload on demand still works).
    pub reload_interval: Duration,
}

impl TlsSettings {
    /// Settings serving `cert` with `key`, with every other choice at its
    /// default: TLS 1.2 and 1.3, no client certificates, a check for
    /// changed files every 30 s.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsSettings {
            cert: cert.into(),
            key: key.into(),
            min_version: TlsVersion::default(),
            client_ca: None,
            client_auth: ClientAuth::default(),
            crls: Vec::new(),
            reload_interval: Duration::from_secs(30),
        }
    }

    /// Every file the set is made of, in the order they are read.
    pub(crate) fn files(&self) -> Vec<&std::path::Path> {
        let mut files = vec![self.cert.as_path(), self.key.as_path()];
        if let Some(ca) = &self.client_ca {
            files.push(ca);
            files.extend(self.crls.iter().map(PathBuf::as_path));
        }
        files
    }
}
