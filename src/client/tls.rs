//! TLS for a client: what the caller chooses ([`ClientTls`]), the rustls
//! configuration made from it once per [`Client`](super::Client), and the
//! handshake, run to its end on the blocking socket before the connection
//! is split between the reading and the writing half (see `stream`).
//!
//! Separate from the stream because these run once per connection (the
//! configuration once per client), while the stream is on the path of
//! every read and write.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::failure::{classify, TlsFailure};
use super::ClientError;
use crate::tls::TlsError;

/// The ALPN protocol a wharf server speaks over TLS.
const ALPN: &[u8] = b"wharf";

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
    config: Arc<ClientConfig>,
    /// `None`: the address connected to.
    name: Option<ServerName<'static>>,
    /// Whether a client certificate is presented when asked for.
    presents_cert: bool,
}

impl Connector {
    /// Reads the files of `tls` and makes the configuration; a file that
    /// cannot be read or used is an error that names it.
    pub(super) fn new(tls: &ClientTls) -> Result<Connector, ClientError> {
        let name = match &tls.server_name {
            None => None,
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                ClientError::TlsSetup(format!(
                    "TLS server name \"{}\": not a DNS name or an IP address",
                    name.escape_default()
                ))
            })?),
        };
        let roots = match &tls.ca {
            Some(path) => roots(path)?,
            None => system_roots(),
        };
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_protocol_versions(&versions)
            .map_err(|e| ClientError::TlsSetup(format!("TLS: {e}")))?
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
                return Err(setup(TlsError::new(KEY, key, "given without its certificate")))
            }
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Connector {
            config: Arc::new(config),
            name,
            presents_cert: tls.cert.is_some(),
        })
    }

    /// Whether a client certificate is presented when asked for.
    pub(super) fn presents_cert(&self) -> bool {
        self.presents_cert
    }

    /// Runs the handshake on `tcp` (connected to `peer`) to its end, every
    /// read and write within what is left of `timeout`. A failure says why
    /// in words ([`ClientError::Tls`]), after sending the alert that tells
    /// the server, if it can go.
    pub(super) fn handshake(
        &self,
        tcp: &TcpStream,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<ClientConnection, ClientError> {
        let fail = |failure| ClientError::Tls {
            addr: peer.to_string(),
            failure,
        };
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(peer.ip().into()));
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| fail(TlsFailure::Other(e.to_string())))?;
        let deadline = Instant::now() + timeout;
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
        };
        let mut socket = tcp;
        while conn.is_handshaking() || conn.wants_write() {
            let Some(wait) = left() else {
                return Err(fail(TlsFailure::TimedOut(timeout)));
            };
            let reading = !conn.wants_write();
            let step = if reading {
                tcp.set_read_timeout(Some(wait))
                    .and_then(|()| conn.read_tls(&mut socket))
            } else {
                tcp.set_write_timeout(Some(wait))
                    .and_then(|()| conn.write_tls(&mut socket))
            };
            let ended = match step {
                Ok(0) => reading,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The server may have said why before it closed.
                    let said = explain(&mut conn, tcp, self.presents_cert);
                    return Err(fail(said.unwrap_or_else(|| io_failure(&e, timeout))));
                }
            };
            if let Err(e) = conn.process_new_packets() {
                last_gasp(&mut conn, tcp);
                return Err(fail(classify(&e, self.presents_cert)));
            }
            if ended && conn.is_handshaking() {
                return Err(fail(TlsFailure::Closed));
            }
        }
        tcp.set_write_timeout(None)?;
        Ok(conn)
    }
}

/// A TLS failure that is not a handshake's: a file, or a name.
fn setup(e: TlsError) -> ClientError {
    ClientError::TlsSetup(e.to_string())
}

/// What an I/O failure during the handshake means.
fn io_failure(e: &io::Error, timeout: Duration) -> TlsFailure {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => TlsFailure::TimedOut(timeout),
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => TlsFailure::Closed,
        _ => TlsFailure::Other(e.to_string()),
    }
}

/// After a failed write or read, what the server sent before it closed,
/// if that was an alert (a refusal says why before the close).
fn explain(conn: &mut ClientConnection, tcp: &TcpStream, presents_cert: bool) -> Option<TlsFailure> {
    tcp.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    let mut socket = tcp;
    for _ in 0..8 {
        match conn.read_tls(&mut socket) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    return Some(classify(&e, presents_cert));
                }
            }
        }
    }
    None
}

/// Sends the alert rustls has queued to say why the handshake failed, if
/// the socket takes it.
fn last_gasp(conn: &mut ClientConnection, tcp: &TcpStream) {
    let mut socket = tcp;
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(100)));
    while conn.wants_write() {
        if conn.write_tls(&mut socket).is_err() {
            break;
        }
    }
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
            setup(TlsError::new(CA, path, format!("not a usable CA certificate: {e}")))
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
