//! TLS for a client: what the caller chooses ([`ClientTls`]) and the
//! rustls configuration made from it ([`Connector`]), once per
//! [`Client`](super::Client): the files are read when the client connects,
//! and every reconnect uses what was read then.
//!
//! Separate from the handshake (`handshake`) and the connection's halves
//! (`transport`) because this is about files and trust, read once, with
//! errors that name the file, while those run on every connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::ClientError;
use crate::tls::load::ALPN;
use crate::tls::TlsError;

const CA: &str = "TLS CA bundle";
const CERT: &str = "TLS client certificate";
const KEY: &str = "TLS client private key";

/// How a client speaks TLS: whom it trusts, which name it verifies, and
/// which certificate, if any, it presents (mutual TLS).
///
/// The server's certificate is always verified: there is no way to skip
/// it. Plain data; [`ClientTls::default()`] trusts the system's CAs and
/// verifies the IP address connected to. Set it as
/// [`ClientOptions::tls`](super::ClientOptions::tls); the files are read
/// once, when the client connects, and reconnects use what was read then.
///
/// ```
/// use wharf::client::ClientTls;
/// use wharf::tls::{write_dev_certs, TlsSettings};
/// use wharf::{Bind, Client, ClientOptions, Config, Echo, Security, Server};
///
/// let dir = std::env::temp_dir().join(format!("wharf-doc-client-tls-{}", std::process::id()));
/// write_dev_certs(&dir, &["localhost".to_owned()])?;
/// let config = Config {
///     workers: 2,
///     tls: Some(TlsSettings::new(dir.join("server.pem"), dir.join("server.key"))),
///     ..Config::default()
/// };
/// let bind = Bind { addr: "127.0.0.1:0".parse()?, security: Security::Tls };
/// let server = Server::start_all(&[bind], config, Echo::default())?;
///
/// let options = ClientOptions {
///     tls: Some(ClientTls {
///         // Trust the development CA rather than the system's CAs, and
///         // verify the certificate's DNS name rather than 127.0.0.1.
///         ca: Some(dir.join("ca.pem")),
///         server_name: Some("localhost".to_owned()),
///         ..ClientTls::default()
///     }),
///     ..ClientOptions::default()
/// };
/// let mut client = Client::connect(server.local_addr(), options)?;
/// assert_eq!(client.request(b"hello")?, b"hello");
///
/// drop(client);
/// server.handle().shutdown();
/// server.join();
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM bundle of the certificate authorities the server's certificate
    /// must chain to; `None` trusts the operating system's CAs.
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry (a DNS name, or an IP
    /// address written as one); `None` verifies the IP address connected
    /// to, which a certificate names as an IP address SAN. Set it when
    /// connecting by name, since the client only sees resolved addresses.
    pub server_name: Option<String>,
    /// PEM certificate chain to present to a server that asks for one
    /// (mutual TLS), the client's own certificate first; needs
    /// [`key`](ClientTls::key).
    pub cert: Option<PathBuf>,
    /// PEM private key of [`cert`](ClientTls::cert): PKCS#8, PKCS#1 or
    /// SEC1.
    pub key: Option<PathBuf>,
}

/// A client's TLS, ready to connect with: the rustls configuration, made
/// once per client, and the name to verify.
#[derive(Debug)]
pub(super) struct Connector {
    pub(super) config: Arc<ClientConfig>,
    /// `None`: the address connected to.
    pub(super) name: Option<ServerName<'static>>,
    /// Whether a client certificate is presented when asked for.
    pub(super) presents_cert: bool,
}

impl Connector {
    /// The connector for `options.tls`, if it asks for TLS.
    pub(super) fn for_options(
        options: &super::ClientOptions,
    ) -> Result<Option<Arc<Connector>>, ClientError> {
        options
            .tls
            .as_ref()
            .map(|tls| Connector::new(tls).map(Arc::new))
            .transpose()
    }

    /// Reads the files of `tls` and makes the configuration; a file that
    /// cannot be read or used is an error that names it.
    pub(super) fn new(tls: &ClientTls) -> Result<Connector, ClientError> {
        let name = match &tls.server_name {
            None => None,
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| ClientError::TlsServerName(name.clone()))?,
            ),
        };
        let roots = match &tls.ca {
            Some(path) => roots(path)?,
            None => system_roots(),
        };
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_protocol_versions(&versions)
            .map_err(|e| ClientError::Io(std::io::Error::other(e)))?
            .with_root_certificates(roots);
        let mut config = match (&tls.cert, &tls.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                let key_der = private_key(key)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => setup(TlsError::new(
                            KEY,
                            key,
                            format!("does not match the certificate {}", cert.display()),
                        )),
                        e => setup(TlsError::new(KEY, key, format!("cannot be used: {e}"))),
                    })?
            }
            (Some(cert), None) => {
                return Err(setup(TlsError::new(CERT, cert, "given without its key")))
            }
            (None, Some(key)) => {
                return Err(setup(TlsError::new(
                    KEY,
                    key,
                    "given without its certificate",
                )))
            }
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Connector {
            config: Arc::new(config),
            name,
            presents_cert: tls.cert.is_some(),
        })
    }
}

/// A TLS file that cannot be used.
fn setup(e: TlsError) -> ClientError {
    ClientError::TlsFile(e)
}

/// The system's trusted CAs. Any that cannot be read or parsed is left out
/// (and logged): with none at all, every server's certificate is untrusted,
/// which the handshake reports.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::debug!("wharf client: system CA certificates: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    log::debug!("wharf client: trusting {added} system CA certificate(s) ({ignored} unusable)");
    roots
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| setup(TlsError::new(what, path, format!("cannot read it: {e}"))))
}

fn roots(path: &Path) -> Result<RootCertStore, ClientError> {
    let pem = read(CA, path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| setup(TlsError::new(CA, path, format!("not valid PEM: {e}"))))?;
        roots.add(cert).map_err(|e| {
            setup(TlsError::new(
                CA,
                path,
                format!("not a usable CA certificate: {e}"),
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(setup(TlsError::new(CA, path, "no PEM certificate in it")));
    }
    Ok(roots)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = read(CERT, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(TlsError::new(CERT, path, format!("not valid PEM: {e}"))))?;
    if chain.is_empty() {
        return Err(setup(TlsError::new(CERT, path, "no PEM certificate in it")));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    let pem = read(KEY, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => setup(TlsError::new(
            KEY,
            path,
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
        )),
        e => setup(TlsError::new(KEY, path, format!("not valid PEM: {e}"))),
    })
}
