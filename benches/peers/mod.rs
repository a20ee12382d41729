//! The two peers wharf is measured against, shared by the `compare` and
//! `many` benchmarks: a plain thread-per-connection server on `std` and a
//! tokio server, both speaking wharf's length framing with the echo
//! service's replies (DATA echoes, PING gets PONG, anything else ERROR).
//! They live only in the benchmarks, which include this file with a
//! `#[path]` attribute.

use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::Builder::new()
            .name("std-acceptor".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || std_accept_loop(&listener, &stop, delay)
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
        let spawned = std::thread::Builder::new()
            .name("std-conn".into())
            .spawn(move || {
                let _ = std_serve(stream, delay);
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
                        Ok((stream, _)) => {
                            tokio::spawn(async move {
                                let _ = tokio_serve(stream, delay).await;
                            });
                        }
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
