//! Helpers of the `wharf client --tls` tests (`client_tls_*.rs`): a set of
//! certificates made by the test (a CA, a server certificate for localhost
//! and 127.0.0.1, client certificates on demand), a wharf server with a TLS
//! listener serving them, and a one-connection rustls server for what a
//! wharf server cannot be made to do (TLS 1.2 only, another ALPN).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use wharf::tls::{ClientAuth, TlsSettings, TlsVersion};
use wharf::{Config, ConnInfo, Server};

use super::pki::{client_params, recorder, Ca, Dir};
use super::tls::start_tls;

/// A CA, a server certificate it signed (written as `ca.pem`,
/// `server.pem`, `server.key`) and the directory they are in.
pub struct Pki {
    pub dir: Dir,
    pub ca: Ca,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = Dir::new(tag);
        let ca = Ca::new("wharf client test CA");
        std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
        ca.server("localhost").write(&dir, "server");
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    /// The CA file as a string argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Server settings: this CA's server certificate, and with
    /// `client_auth`, client certificates checked against this CA.
    pub fn settings(&self, client_auth: Option<ClientAuth>, min: TlsVersion) -> TlsSettings {
        TlsSettings {
            client_ca: client_auth.map(|_| self.path("ca.pem")),
            client_auth: client_auth.unwrap_or_default(),
            min_version: min,
            ..TlsSettings::new(self.path("server.pem"), self.path("server.key"))
        }
    }

    /// Issues a client certificate with common name `cn` by `ca` (this
    /// one, or another) and writes it as `CN.pem` and `CN.key`.
    pub fn client(&self, ca: &Ca, cn: &str) -> (String, String) {
        let (cert, key) = ca
            .issue(client_params(cn, Vec::new(), 7))
            .write(&self.dir, cn);
        (cert.display().to_string(), key.display().to_string())
    }
}

/// A wharf server with a plain and a TLS listener, recording each
/// connection it opens; returns it, the TLS listener's address and the
/// connections.
pub fn serve(settings: TlsSettings) -> (Server, SocketAddr, Receiver<ConnInfo>) {
    let (service, opened) = recorder();
    let config = Config {
        tls: Some(settings),
        ..super::config()
    };
    let (server, addr) = start_tls(config, service);
    (server, addr, opened)
}

/// The common arguments of a TLS client trusting `pki`'s CA.
pub fn tls_args(pki: &Pki, addr: SocketAddr) -> Vec<String> {
    vec![
        "--connect".into(),
        addr.to_string(),
        "--tls".into(),
        "--tls-ca".into(),
        pki.arg("ca.pem"),
        "--connect-timeout".into(),
        "10s".into(),
    ]
}

/// A rustls server configuration serving `pki`'s server certificate with
/// `versions` and `alpn`, requiring a client certificate from its CA when
/// `mutual`.
pub fn rustls_server(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[u8],
    mutual: bool,
) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let builder = ServerConfig::builder_with_protocol_versions(versions);
    let builder = if mutual {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.cert.der().clone()).unwrap();
        builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap(),
        )
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A server for one connection on 127.0.0.1:0 that runs the handshake
/// with `config` and then echoes what it reads until the client closes;
/// joining it gives the handshake's error, if it failed.
pub fn one_connection(
    config: Arc<ServerConfig>,
) -> (SocketAddr, JoinHandle<Option<rustls::Error>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let error = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .cloned();
                // The alert that says why, if it is still queued.
                let _ = conn.write_tls(&mut tcp);
                return error;
            }
        }
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        None
    });
    (addr, thread)
}
