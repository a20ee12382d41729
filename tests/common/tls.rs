//! TLS for tests: certificates made for the test, written to a directory of
//! its own, and a rustls client over a real socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use wharf::tls::{write_dev_certs, TlsSettings};
use wharf::{Bind, Config, Security, Server, Service};

use super::{bare_serve_command, spawn_wharf_command, Wharf};

/// A directory of development certificates, removed when dropped.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// A CA, a server certificate for localhost (and 127.0.0.1, ::1) and a
    /// client certificate, in a new directory.
    pub fn new() -> Certs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wharf-test-certs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        write_dev_certs(&dir, &["localhost".to_owned()]).expect("dev certs");
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Server settings serving `server.pem`.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings::new(self.path("server.pem"), self.path("server.key"))
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a server with one plain and one TLS listener on 127.0.0.1:0;
/// returns it and the TLS listener's address.
pub fn start_tls<S: Service>(config: Config, service: S) -> (Server, SocketAddr) {
    let localhost: wharf::Address = "127.0.0.1:0".parse().unwrap();
    let server = Server::start_all(
        &[
            Bind {
                addr: localhost.clone(),
                security: Security::Plain,
            },
            Bind {
                addr: localhost,
                security: Security::Tls,
            },
        ],
        config,
        service,
    )
    .expect("server starts");
    let tls = server.local_addrs()[1].0.tcp().expect("a TCP listener");
    (server, tls)
}

/// How a test client connects.
pub struct ClientSetup {
    pub ca: PathBuf,
    pub alpn: Vec<Vec<u8>>,
    pub identity: Option<(PathBuf, PathBuf)>,
    pub versions: &'static [&'static rustls::SupportedProtocolVersion],
}

impl ClientSetup {
    /// Trusting `certs`' CA, offering ALPN `wharf`, TLS 1.2 and 1.3, no
    /// client certificate.
    pub fn new(certs: &Certs) -> ClientSetup {
        ClientSetup {
            ca: certs.path("ca.pem"),
            alpn: vec![b"wharf".to_vec()],
            identity: None,
            versions: rustls::ALL_VERSIONS,
        }
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("ca") {
            roots.add(cert.expect("ca cert")).expect("a CA");
        }
        let builder = ClientConfig::builder_with_protocol_versions(self.versions)
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .expect("client identity"),
        };
        config.alpn_protocols = self.alpn.clone();
        Arc::new(config)
    }

    /// Connects and completes the handshake.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream> {
        self.handshake(TcpStream::connect(addr)?)
    }

    /// Completes the handshake over a connection already open.
    pub fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream> {
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let conn = ClientConnection::new(self.config(), ServerName::try_from("localhost").unwrap())
            .map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsStream(stream))
    }
}

/// A TLS client connection, speaking wharf's length framing.
pub struct TlsStream(pub StreamOwned<ClientConnection, TcpStream>);

impl TlsStream {
    pub fn send(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::new();
        wharf::Framing::Length.encode(kind, payload, &mut frame);
        self.0.write_all(&frame)?;
        self.0.flush()
    }

    /// One frame, or `None` at the end (close_notify or the socket's end).
    pub fn recv(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0u8; 5];
        match self.0.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut payload = vec![0; len - 1];
        self.0.read_exact(&mut payload)?;
        Ok(Some((header[4], payload)))
    }

    /// Sends a DATA request and checks its echo.
    pub fn echo(&mut self, payload: &[u8]) {
        self.send(wharf::frame::DATA, payload).expect("send");
        let (kind, got) = self.recv().expect("recv").expect("a reply");
        assert_eq!((kind, got.as_slice()), (wharf::frame::DATA, payload));
    }

    /// Whether the server's close_notify has arrived (after a `recv` saw
    /// the end).
    pub fn closed_cleanly(&mut self) -> bool {
        matches!(self.0.conn.process_new_packets(), Ok(s) if s.peer_has_closed())
    }
}

/// A client that speaks TLS 1.2 only.
pub const TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
/// A client that speaks TLS 1.3 only.
pub const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl ClientSetup {
    /// The first flight this client would send: its ClientHello record.
    pub fn client_hello(&self) -> Vec<u8> {
        let mut conn =
            ClientConnection::new(self.config(), ServerName::try_from("localhost").unwrap())
                .expect("a client session");
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello).expect("the ClientHello");
        }
        hello
    }

    /// Connects expecting the server to refuse the handshake, and returns
    /// the TLS error the client saw: during the handshake, or on its first
    /// read (TLS 1.3 reports a refused client certificate only after the
    /// client has finished its side). The client sends no request first.
    pub fn refused(&self, addr: SocketAddr) -> rustls::Error {
        let error = match self.connect(addr) {
            Err(e) => e,
            Ok(mut stream) => match stream.recv() {
                Err(e) => e,
                Ok(got) => panic!("the server served a client it should refuse: read {got:?}"),
            },
        };
        rustls_error(&error)
            .unwrap_or_else(|| panic!("expected a TLS error (an alert), got {error:?}"))
    }
}

/// The TLS error inside an I/O error from a rustls stream, if it is one.
pub fn rustls_error(e: &io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

impl TlsStream {
    /// The server's certificate as the client received it (leaf).
    pub fn peer_certificate(&self) -> Vec<u8> {
        self.0
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server's certificate")
            .to_vec()
    }
}

/// Reads `stream` until the server closes it; returns how many bytes came
/// before. A reset counts as the close (the server may close with unread
/// input), but only with nothing received. Fails the test on a timeout.
pub fn bytes_until_closed(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("waiting for the server to close ({total} bytes so far): {e}"),
        }
    }
}

/// Starts the `wharf` binary with one TLS listener on 127.0.0.1:0 serving
/// `cert` and `key`, and no plain one (so its only listening line, hence
/// `Wharf::addr`, is the TLS listener's), plus `args`.
pub fn spawn_tls_wharf(cert: &Path, key: &Path, args: &[&str]) -> Wharf {
    let mut command = bare_serve_command();
    command
        .args(["--tls-bind", "127.0.0.1:0", "--tls-cert"])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(args);
    spawn_wharf_command(command)
}
