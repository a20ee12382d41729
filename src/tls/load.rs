//! Reading a TLS set from its files into a rustls `ServerConfig`, all or
//! nothing: the first file that cannot be read or used fails the whole set,
//! with an error that names it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::settings::{ClientAuth, TlsSettings, TlsVersion};

/// The ALPN protocol a TLS listener speaks.
pub(crate) const ALPN: &[u8] = b"wharf";

/// A TLS file that could not be read or used; the server does not start
/// (or, on a reload, goes on with the set it had).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {}: {cause}", path.display())]
pub struct TlsError {
    /// Which file it is: "TLS certificate", "TLS private key", ...
    pub what: &'static str,
    /// Its path.
    pub path: PathBuf,
    /// What was wrong with it.
    pub cause: String,
}

impl TlsError {
    pub(crate) fn new(what: &'static str, path: &Path, cause: impl Into<String>) -> Self {
        TlsError {
            what,
            path: path.to_path_buf(),
            cause: cause.into(),
        }
    }
}

const CERT: &str = "TLS certificate";
const KEY: &str = "TLS private key";
const CLIENT_CA: &str = "TLS client CA bundle";
const CRL: &str = "TLS revocation list";

/// A set of TLS files, loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) config: Arc<ServerConfig>,
    /// The serving certificate's subject, for the log.
    pub(crate) subject: String,
    /// Its validity, in Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// When each of the set's files was last modified, now.
pub(crate) fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    settings
        .files()
        .iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

/// Loads every file of `settings` into a server configuration.
pub(crate) fn load(settings: &TlsSettings) -> Result<Loaded, TlsError> {
    let chain = certificates(&settings.cert)?;
    let key = private_key(&settings.key)?;
    let (subject, not_before, not_after) = leaf_facts(&chain[0], &settings.cert)?;

    let mut crypto = provider::default_provider();
    // rustls follows the client's order of key exchange groups; offering
    // P-384 would let a client that prefers it make every handshake several
    // times as expensive as X25519.
    crypto.kx_groups = vec![provider::kx_group::X25519, provider::kx_group::SECP256R1];
    let crypto = Arc::new(crypto);
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&crypto))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::new(CERT, &settings.cert, e.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = roots(ca)?;
            let mut crls = Vec::new();
            for path in &settings.crls {
                crls.extend(revocation_lists(path)?);
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto)
                .with_crls(crls);
            if settings.client_auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| {
                let path = settings.crls.first().map_or(ca.as_path(), PathBuf::as_path);
                let what = if settings.crls.is_empty() {
                    CLIENT_CA
                } else {
                    CRL
                };
                TlsError::new(what, path, e.to_string())
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::new(
            KEY,
            &settings.key,
            format!("does not match the certificate {}", settings.cert.display()),
        ),
        e => TlsError::new(KEY, &settings.key, format!("cannot be used: {e}")),
    })?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        subject,
        not_before,
        not_after,
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(what, path, format!("cannot read it: {e}")))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(CERT, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(CERT, path, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::new(CERT, path, "no PEM certificate in it"));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(KEY, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::new(
            KEY,
            path,
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
        ),
        e => TlsError::new(KEY, path, format!("not valid PEM: {e}")),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read(CLIENT_CA, path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| TlsError::new(CLIENT_CA, path, format!("not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            TlsError::new(CLIENT_CA, path, format!("not a usable CA certificate: {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::new(CLIENT_CA, path, "no PEM certificate in it"));
    }
    Ok(roots)
}

fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = read(CRL, path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(CRL, path, format!("not valid PEM: {e}")))?;
    if crls.is_empty() {
        return Err(TlsError::new(
            CRL,
            path,
            "no PEM revocation list (X509 CRL) in it",
        ));
    }
    Ok(crls)
}

/// The serving certificate's subject and validity (Unix seconds).
fn leaf_facts(der: &CertificateDer<'_>, path: &Path) -> Result<(String, i64, i64), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::new(CERT, path, format!("not a valid X.509 certificate: {e}")))?;
    let validity = cert.validity();
    Ok((
        cert.subject().to_string(),
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}
