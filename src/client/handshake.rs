//! A client's TLS handshake, run to its end on the blocking socket before
//! the connection is split between its reading and writing halves, and the
//! short wait after it that catches a TLS 1.3 refusal of the client's
//! certificate.
//!
//! Separate from the configuration (`tls`) because it runs on every
//! connection, reconnects included, and from the halves (`transport`)
//! because it is the one place that reads and writes the socket from a
//! single thread with the session all to itself.
//!
//! Why the wait: in TLS 1.3 the client's side of the handshake is over
//! once it has sent its certificate and Finished; the server verifies the
//! certificate after that, and a refusal arrives as an alert the client
//! would otherwise see only on its first read, as if a request had failed.
//! So when the server asked for a certificate, the client reads until the
//! server's first record after the handshake (its session tickets, sent
//! once the client is accepted) or an alert, within a second.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ProtocolVersion, SignatureScheme};

use super::failure::{classify, Facts, TlsFailure};
use super::socket::{ServerAddr, Socket};
use super::tls::Connector;
use super::transport::TlsShared;
use super::ClientError;

/// The longest wait after a TLS 1.3 handshake for the server's verdict on
/// the client's certificate.
const VERDICT_WAIT: Duration = Duration::from_secs(1);

/// The configured certificate resolver, noting whether the server asked
/// for a certificate (rustls asks the resolver only then).
#[derive(Debug)]
struct Asked {
    inner: Arc<dyn ResolvesClientCert>,
    asked: AtomicBool,
}

impl ResolvesClientCert for Asked {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

impl Connector {
    /// Runs the handshake on `sock` (connected to `peer`) to its end, every
    /// read and write within what is left of `timeout`, then waits for the
    /// server's verdict on a client certificate if it asked for one. A
    /// failure says why ([`ClientError::Tls`]), after sending the alert
    /// that tells the server, if it can go. The socket's timeouts are left
    /// unset.
    pub(super) fn handshake(
        &self,
        sock: &Socket,
        peer: &ServerAddr,
        timeout: Duration,
    ) -> Result<Arc<TlsShared>, ClientError> {
        let fail = |failure| ClientError::Tls {
            addr: peer.to_string(),
            failure,
        };
        let asked = Arc::new(Asked {
            inner: Arc::clone(&self.config.client_auth_cert_resolver),
            asked: AtomicBool::new(false),
        });
        let mut config = (*self.config).clone();
        config.client_auth_cert_resolver = Arc::clone(&asked) as Arc<dyn ResolvesClientCert>;
        let name = match (&self.name, peer) {
            (Some(name), _) => name.clone(),
            (None, ServerAddr::Tcp(addr)) => ServerName::IpAddress(addr.ip().into()),
            (None, ServerAddr::Unix(_)) => {
                return Err(ClientError::TlsNeedsServerName {
                    addr: peer.to_string(),
                })
            }
        };
        let mut conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| fail(TlsFailure::Other(e.to_string())))?;
        let facts = || Facts {
            asked: asked.asked.load(Ordering::Relaxed),
            presents: self.presents_cert,
        };
        let deadline = Instant::now() + timeout;
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
        };
        let mut socket = sock;
        while conn.is_handshaking() || conn.wants_write() {
            let Some(wait) = left() else {
                return Err(fail(TlsFailure::TimedOut(timeout)));
            };
            let reading = !conn.wants_write();
            let step = if reading {
                sock.set_read_timeout(Some(wait))
                    .and_then(|()| conn.read_tls(&mut socket))
            } else {
                sock.set_write_timeout(Some(wait))
                    .and_then(|()| conn.write_tls(&mut socket))
            };
            let ended = match step {
                Ok(0) => reading,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The server may have said why before it closed.
                    let said = explain(&mut conn, sock, facts());
                    return Err(fail(said.unwrap_or_else(|| io_failure(&e, timeout))));
                }
            };
            if let Err(e) = conn.process_new_packets() {
                last_gasp(&mut conn, sock);
                return Err(fail(classify(&e, facts())));
            }
            if ended && conn.is_handshaking() {
                return Err(fail(TlsFailure::Closed));
            }
        }
        if facts().asked && conn.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
            let wait = left().map_or(Duration::ZERO, |left| left.min(VERDICT_WAIT));
            if let Some(failure) = verdict(&mut conn, sock, wait, facts()) {
                return Err(fail(failure));
            }
        }
        sock.set_write_timeout(None)?;
        sock.set_read_timeout(None)?;
        Ok(TlsShared::new(conn, facts()))
    }
}

/// The server's verdict on the client's certificate after a TLS 1.3
/// handshake: reads until its first record (accepted: `None`), an alert
/// (refused: why), the socket's end, or `wait`. Data that arrives stays in
/// the session for the reading half.
fn verdict(
    conn: &mut ClientConnection,
    sock: &Socket,
    wait: Duration,
    facts: Facts,
) -> Option<TlsFailure> {
    if wait.is_zero() || sock.set_read_timeout(Some(wait)).is_err() {
        return None;
    }
    let mut socket = sock;
    loop {
        let read = conn.read_tls(&mut socket);
        if let Err(e) = conn.process_new_packets() {
            last_gasp(conn, sock);
            return Some(classify(&e, facts));
        }
        match read {
            Ok(0) => return Some(TlsFailure::ClientCertRejected("the server closed".into())),
            Ok(_) => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Nothing within the wait: the first read reports a refusal.
            Err(_) => return None,
        }
    }
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
fn explain(conn: &mut ClientConnection, sock: &Socket, facts: Facts) -> Option<TlsFailure> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let mut socket = sock;
    for _ in 0..8 {
        match conn.read_tls(&mut socket) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    return Some(classify(&e, facts));
                }
            }
        }
    }
    None
}

/// Sends the alert rustls has queued to say why the handshake failed, if
/// the socket takes it.
fn last_gasp(conn: &mut ClientConnection, sock: &Socket) {
    let mut socket = sock;
    let _ = sock.set_write_timeout(Some(Duration::from_millis(100)));
    while conn.wants_write() {
        if conn.write_tls(&mut socket).is_err() {
            break;
        }
    }
}
