//! The two peers wharf is measured against, shared by the `compare` and
//! `many` benchmarks: a plain thread-per-connection server on `std` and a
//! tokio server, both speaking wharf's length framing with the echo
//! service's replies (DATA echoes, PING gets PONG, anything else ERROR).
//! They live only in the benchmarks, which include this file with a
//! `#[path]` attribute.
//!
//! Each also speaks TLS ([`StdServer::start_tls`], [`TokioServer::start_tls`]):
//! the thread per connection with a rustls `StreamOwned` (each thread
//! blocks on its one connection), and tokio with tokio-rustls. Both serve
//! [`tls_config`]: what a wharf server offers, from the same files (the
//! same aws-lc-rs provider, key exchange X25519 then P-256, TLS 1.3 and
//! 1.2, ALPN `wharf`, rustls' defaults otherwise), so that a comparison
//! measures the servers and not their TLS settings.

use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use wharf::frame::{DATA, ERROR, HEADER_LEN, PING, PONG};

/// Largest frame (kind byte plus payload) the peers accept, as wharf's default.
const MAX_FRAME: usize = 1024 * 1024;
/// Read buffer of the peers.
const READ_BUF: usize = 64 * 1024;
/// Write buffer of the peers: a 64 KiB response plus its header goes out in
/// one write.
const WRITE_BUF: usize = 128 * 1024;

// ---------------------------------------------------------------------------
// The shared protocol logic of both peers.

/// The reply to one frame: DATA echoes, PING gets PONG, anything else ERROR.
fn reply(kind: u8, payload: &[u8]) -> (u8, &[u8]) {
    match kind {
        DATA => (DATA, payload),
        PING => (PONG, payload),
        _ => (ERROR, b"unexpected frame kind"),
    }
}

fn header(kind: u8, payload_len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(payload_len + 1).expect("frame fits in u32");
    let [a, b, c, d] = len.to_be_bytes();
    [a, b, c, d, kind]
}

/// The frame length announced by a header, if it is acceptable.
fn frame_len(header: &[u8; HEADER_LEN]) -> io::Result<usize> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(ErrorKind::InvalidData, "bad frame length"));
    }
    Ok(len)
}

/// Whether `buffered` starts with a whole frame, i.e. another reply will be
/// produced without reading the socket, so the writer need not flush yet.
fn whole_frame_buffered(buffered: &[u8]) -> bool {
    match buffered.get(..4) {
        Some(h) => {
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            buffered.len() >= 4 + len
        }
        None => false,
    }
}

/// The TLS configuration both peers serve `cert` and `key` (PEM) with: a
/// wharf server's own choices (see the module's text).
pub fn tls_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::other(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| io::Error::other(format!("{}: {e}", key.display())))?;
    let mut crypto = provider::default_provider();
    crypto.kx_groups = vec![provider::kx_group::X25519, provider::kx_group::SECP256R1];
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"wharf".to_vec()];
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------
// The thread-per-connection std server.

/// A thread-per-connection server: one acceptor thread, and one thread per
/// connection for as long as it is open.
pub struct StdServer {
    /// The address it listens on, with the real port.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl StdServer {
    /// Listens on 127.0.0.1:0; `delay` is slept before each DATA reply.
    pub fn start(delay: Duration) -> io::Result<StdServer> {
        StdServer::launch(delay, None)
    }

    /// As [`StdServer::start`], speaking TLS with `config`: each
    /// connection's thread makes the handshake, then serves it.
    #[allow(dead_code)] // `many` starts it only when asked to.
    pub fn start_tls(delay: Duration, config: Arc<ServerConfig>) -> io::Result<StdServer> {
        StdServer::launch(delay, Some(config))
    }

    fn launch(delay: Duration, tls: Option<Arc<ServerConfig>>) -> io::Result<StdServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::Builder::new()
            .name("std-acceptor".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || std_accept_loop(&listener, &stop, delay, tls.as_ref())
            })?;
        Ok(StdServer {
            addr,
            stop,
            acceptor,
        })
    }

    /// Stops accepting, ends the connections still open and joins every
    /// thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept(); it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let conns = self.acceptor.join().unwrap_or_default();
        for (stream, thread) in conns {
            // The clients have closed already; this only ends a straggler.
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

/// Accepts until the stop flag is set; returns the connections still open.
fn std_accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    delay: Duration,
    tls: Option<&Arc<ServerConfig>>,
) -> Vec<(TcpStream, JoinHandle<()>)> {
    let mut conns: Vec<(TcpStream, JoinHandle<()>)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let tls = tls.cloned();
        let spawned = std::thread::Builder::new()
            .name("std-conn".into())
            .spawn(move || {
                let _ = match tls {
                    None => std_serve(stream, delay),
                    Some(config) => std_serve_tls(stream, delay, config),
                };
            });
        if let Ok(thread) = spawned {
            conns.retain(|(_, t)| !t.is_finished());
            conns.push((handle, thread));
        }
    }
    conns
}

/// Serves one connection until the client closes it (or on an I/O error).
fn std_serve(stream: TcpStream, delay: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(READ_BUF, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(WRITE_BUF, stream);
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        match reader.read_exact(&mut head) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return writer.flush(),
            other => other?,
        }
        let len = frame_len(&head)?;
        payload.resize(len - 1, 0);
        reader.read_exact(&mut payload)?;
        let kind = head[4];
        if kind == DATA && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let (reply_kind, body) = reply(kind, &payload);
        writer.write_all(&header(reply_kind, body.len()))?;
        writer.write_all(body)?;
        if !whole_frame_buffered(reader.buffer()) {
            writer.flush()?;
        }
    }
}

/// Serves one TLS connection until the client closes it (or on an I/O or
/// TLS error): the handshake on the first read, then as [`std_serve`],
/// each batch of replies written as one buffer (so as few records and
/// system calls as the plain server's writes).
fn std_serve_tls(stream: TcpStream, delay: Duration, config: Arc<ServerConfig>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let session = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut reader = BufReader::with_capacity(READ_BUF, rustls::StreamOwned::new(session, stream));
    let mut out = Vec::new();
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        match reader.read_exact(&mut head) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let len = frame_len(&head)?;
        payload.resize(len - 1, 0);
        reader.read_exact(&mut payload)?;
        let kind = head[4];
        if kind == DATA && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let (reply_kind, body) = reply(kind, &payload);
        out.extend_from_slice(&header(reply_kind, body.len()));
        out.extend_from_slice(body);
        if !whole_frame_buffered(reader.buffer()) || out.len() >= WRITE_BUF {
            reader.get_mut().write_all(&out)?;
            out.clear();
        }
    }
}

// ---------------------------------------------------------------------------
// The tokio server.

/// A tokio server: the multi-threaded runtime (one worker thread per core)
/// and one task per connection.
pub struct TokioServer {
    /// The address it listens on, with the real port.
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl TokioServer {
    /// Listens on 127.0.0.1:0; `delay` is slept (asynchronously) before
    /// each DATA reply.
    pub fn start(delay: Duration) -> io::Result<TokioServer> {
        TokioServer::launch(delay, None)
    }

    /// As [`TokioServer::start`], speaking TLS with `config` through
    /// tokio-rustls: each connection's task makes the handshake, then
    /// serves it.
    #[allow(dead_code)] // `many` starts it only when asked to.
    pub fn start_tls(delay: Duration, config: Arc<ServerConfig>) -> io::Result<TokioServer> {
        TokioServer::launch(delay, Some(tokio_rustls::TlsAcceptor::from(config)))
    }

    fn launch(delay: Duration, tls: Option<tokio_rustls::TlsAcceptor>) -> io::Result<TokioServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tokio-peer")
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => match &tls {
                            None => {
                                tokio::spawn(async move {
                                    let _ = tokio_serve(stream, delay).await;
                                });
                            }
                            Some(acceptor) => {
                                let acceptor = acceptor.clone();
                                tokio::spawn(async move {
                                    if stream.set_nodelay(true).is_err() {
                                        return;
                                    }
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        let _ = tokio_serve_tls(stream, delay).await;
                                    }
                                });
                            }
                        },
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                }
            }
        });
        Ok(TokioServer {
            addr,
            runtime,
            stop,
        })
    }

    /// Stops accepting and shuts the runtime down, dropping every remaining
    /// task.
    pub fn stop(self) {
        let _ = self.stop.send(());
        // Drops every remaining task (the clients have closed already).
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Serves one connection until the client closes it (or on an I/O error).
async fn tokio_serve(mut stream: tokio::net::TcpStream, delay: Duration) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    stream.set_nodelay(true)?;
    let (read_half, write_half) = stream.split();
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUF, read_half);
    let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUF, write_half);
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        match reader.read_exact(&mut head).await {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return writer.flush().await,
            other => other?,
        };
        let len = frame_len(&head)?;
        payload.resize(len - 1, 0);
        reader.read_exact(&mut payload).await?;
        let kind = head[4];
        if kind == DATA && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (reply_kind, body) = reply(kind, &payload);
        writer.write_all(&header(reply_kind, body.len())).await?;
        writer.write_all(body).await?;
        if !whole_frame_buffered(reader.buffer()) {
            writer.flush().await?;
        }
    }
}

/// Serves one TLS connection (its handshake done) as [`tokio_serve`] does a
/// plain one: the same buffers, over the whole stream (a TLS stream has no
/// halves to split).
async fn tokio_serve_tls<S>(stream: S, delay: Duration) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::io::BufReader::with_capacity(
        READ_BUF,
        tokio::io::BufWriter::with_capacity(WRITE_BUF, stream),
    );
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        match stream.read_exact(&mut head).await {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return stream.flush().await,
            other => other?,
        };
        let len = frame_len(&head)?;
        payload.resize(len - 1, 0);
        stream.read_exact(&mut payload).await?;
        let kind = head[4];
        if kind == DATA && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (reply_kind, body) = reply(kind, &payload);
        stream.write_all(&header(reply_kind, body.len())).await?;
        stream.write_all(body).await?;
        if !whole_frame_buffered(stream.buffer()) {
            stream.flush().await?;
        }
    }
}
