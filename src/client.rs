//! A blocking client for the wharf protocol, in either framing.
//!
//! Requests may be pipelined: [`Client::send`] queues a request, and
//! [`Client::recv`] returns the replies in the order the requests were sent.
//! The client keeps a queue of what it is waiting for, so every reply is
//! matched to its request by position (the protocol's guarantee), which also
//! disambiguates line framing, where an echoed `PONG` line looks like a PONG.
//!
//! An optional background heartbeat ([`Client::start_heartbeat`]) sends a
//! PING whenever the connection has been quiet for the given interval; its
//! PONGs are recognised by position and swallowed. A GOAWAY from the server
//! surfaces as [`ClientError::GoAway`] with its code and reason.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::frame::{self, Framing, GoAway, GoAwayCode};

/// How to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Wire format; must match the server's.
    pub framing: Framing,
    /// Longest wait for the TCP connection to be established.
    pub connect_timeout: Duration,
    /// Longest wait for a reply before [`ClientError::Timeout`]; `None` waits forever.
    pub read_timeout: Option<Duration>,
    /// Largest reply accepted.
    pub max_frame: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            framing: Framing::Length,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Some(Duration::from_secs(30)),
            max_frame: 1 << 30,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The server ended the connection with GOAWAY.
    #[error("GOAWAY {code} {}: {reason}", code_name(*.code))]
    GoAway {
        /// The GOAWAY code (see [`GoAwayCode`]).
        code: u16,
        /// The server's reason text.
        reason: String,
    },
    /// The server answered this request with ERROR; the connection is still usable.
    #[error("ERROR {0}")]
    Server(String),
    /// No reply arrived within the read timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection without a GOAWAY.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent something that is not valid protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Any other I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn code_name(code: u16) -> &'static str {
    GoAwayCode::from_u16(code).map_or("UNKNOWN", GoAwayCode::name)
}

impl ClientError {
    /// The GOAWAY code, if this is a GOAWAY.
    pub fn goaway_code(&self) -> Option<u16> {
        match self {
            ClientError::GoAway { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A reply, in the position of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The response to a DATA request.
    Data(Vec<u8>),
    /// The answer to a PING sent with [`Client::send_ping`].
    Pong(Vec<u8>),
    /// The request failed; the connection is still usable.
    Error(String),
}

/// What a sent frame is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Data,
    Ping,
    /// A PING sent by the background heartbeat: its PONG is swallowed.
    Heartbeat,
}

/// The replies owed, in request order. Its own lock, held only for a push
/// or a pop, so a reader never waits for a writer blocked in `write`.
type Owed = Arc<Mutex<VecDeque<Pending>>>;

/// The writing half. Writers (the caller, a `RequestSender`, the heartbeat
/// thread) take this lock to encode, record what they owe and write, so the
/// order of frames on the wire and in `owed` is the same.
#[derive(Debug)]
struct Writer {
    stream: TcpStream,
    buf: Vec<u8>,
    owed: Owed,
    last_write: Instant,
    /// The sending side is shut down: nothing more is sent, not even a PING.
    write_shut: bool,
}

impl Writer {
    fn queue(&mut self, framing: Framing, kind: u8, payload: &[u8], pending: Pending) {
        framing.encode(kind, payload, &mut self.buf);
        self.owed.lock().push_back(pending);
    }

    /// Flushes, then shuts down the sending side.
    fn shutdown(&mut self) -> io::Result<()> {
        self.flush()?;
        self.write_shut = true;
        self.stream.shutdown(std::net::Shutdown::Write)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let result = self.stream.write_all(&self.buf);
            self.buf.clear();
            self.last_write = Instant::now();
            result?;
        }
        Ok(())
    }
}

/// A blocking protocol client.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    peer: SocketAddr,
    reader: BufReader<TcpStream>,
    owed: Owed,
    writer: Arc<Mutex<Writer>>,
    read_buf: Vec<u8>,
    heartbeat: Option<(Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Client {
    /// Connects to `addr` (each resolved address in turn) within the
    /// connect timeout.
    pub fn connect<A: ToSocketAddrs>(
        addr: A,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Connect {
                addr: "(unresolved)".into(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(ErrorKind::InvalidInput, "no address to connect to");
        let mut tried = String::from("(none)");
        for addr in addrs {
            tried = addr.to_string();
            match TcpStream::connect_timeout(&addr, options.connect_timeout) {
                Ok(stream) => return Client::from_stream(stream, options),
                Err(e) => last = e,
            }
        }
        Err(ClientError::Connect {
            addr: tried,
            source: last,
        })
    }

    /// Wraps an already connected socket.
    pub fn from_stream(stream: TcpStream, options: ClientOptions) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(options.read_timeout)?;
        let peer = stream.peer_addr()?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        let owed = Owed::default();
        Ok(Client {
            options,
            peer,
            reader,
            owed: Arc::clone(&owed),
            writer: Arc::new(Mutex::new(Writer {
                stream,
                buf: Vec::with_capacity(16 * 1024),
                owed,
                last_write: Instant::now(),
                write_shut: false,
            })),
            read_buf: Vec::new(),
            heartbeat: None,
        })
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one DATA request and waits for its response. An ERROR reply
    /// becomes [`ClientError::Server`].
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.send(payload)?;
        self.flush()?;
        loop {
            match self.recv()? {
                Reply::Data(data) => return Ok(data),
                Reply::Error(message) => return Err(ClientError::Server(message)),
                Reply::Pong(_) => continue,
            }
        }
    }

    /// Queues a DATA request without waiting; call [`Client::flush`] to send
    /// queued requests and [`Client::recv`] for their replies, in order.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        check_request(self.options.framing, payload)?;
        self.writer
            .lock()
            .queue(self.options.framing, frame::DATA, payload, Pending::Data);
        Ok(())
    }

    /// Queues a PING whose PONG [`Client::recv`] returns as [`Reply::Pong`].
    /// In line framing a PING is the bare line `PING`, so the payload must
    /// be empty there.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        if self.options.framing == Framing::Line && !payload.is_empty() {
            return Err(ClientError::Protocol(
                "a line-framing PING carries no payload".into(),
            ));
        }
        self.writer
            .lock()
            .queue(self.options.framing, frame::PING, payload, Pending::Ping);
        Ok(())
    }

    /// Writes every queued request to the socket.
    /// A write that fails because the server has closed (for example after
    /// GOAWAY 3 on a full queue) reports the GOAWAY, if one is waiting to be
    /// read, rather than the bare I/O error.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let result = self.writer.lock().flush();
        result.map_err(|e| self.goaway_or(e))
    }

    /// The GOAWAY the server sent before closing, if it is waiting to be
    /// read; otherwise `e`. Replies still buffered before it are dropped:
    /// the connection is gone either way.
    fn goaway_or(&mut self, e: io::Error) -> ClientError {
        for _ in 0..1024 {
            match self.read_frame() {
                Ok((frame::GOAWAY, payload)) => {
                    if let Some(goaway) = GoAway::parse(self.options.framing, &payload) {
                        return ClientError::GoAway {
                            code: goaway.code,
                            reason: goaway.reason,
                        };
                    }
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        ClientError::Io(e)
    }

    /// A handle that sends requests from another thread while this one
    /// receives the replies.
    pub fn sender(&self) -> RequestSender {
        RequestSender {
            writer: Arc::clone(&self.writer),
            framing: self.options.framing,
        }
    }

    /// Requests sent or queued whose replies have not been received yet
    /// (background heartbeats included).
    pub fn outstanding(&self) -> usize {
        self.owed.lock().len()
    }

    /// Sends a PING and returns the round-trip time to its PONG.
    pub fn ping(&mut self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.send_ping(b"")?;
        self.flush()?;
        loop {
            match self.recv()? {
                Reply::Pong(_) => return Ok(start.elapsed()),
                Reply::Error(message) => return Err(ClientError::Server(message)),
                Reply::Data(_) => continue,
            }
        }
    }

    /// Receives the next reply, in request order. Heartbeat PONGs are
    /// swallowed. A GOAWAY is returned as [`ClientError::GoAway`].
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        loop {
            let (kind, payload) = self.read_frame()?;
            if kind == frame::GOAWAY {
                let goaway = GoAway::parse(self.options.framing, &payload)
                    .ok_or_else(|| ClientError::Protocol("malformed GOAWAY payload".into()))?;
                return Err(ClientError::GoAway {
                    code: goaway.code,
                    reason: goaway.reason,
                });
            }
            let expected = self.owed.lock().pop_front().ok_or_else(|| {
                ClientError::Protocol(format!("unsolicited frame of kind 0x{kind:02x}"))
            })?;
            let reply = match (expected, kind) {
                (_, frame::ERROR) => Reply::Error(String::from_utf8_lossy(&payload).into_owned()),
                (Pending::Heartbeat, _) => continue,
                (Pending::Ping, frame::PONG) => Reply::Pong(payload),
                (Pending::Data, frame::DATA) => Reply::Data(payload),
                (Pending::Ping, frame::DATA)
                    if self.options.framing == Framing::Line && payload == b"PONG" =>
                {
                    Reply::Pong(Vec::new())
                }
                (expected, kind) => {
                    return Err(ClientError::Protocol(format!(
                        "expected a reply to {expected:?}, got a frame of kind 0x{kind:02x}"
                    )))
                }
            };
            return Ok(reply);
        }
    }

    /// Sends a PING whenever nothing has been written for `every`, so an idle
    /// connection is not reaped. Use about a third of the server's heartbeat
    /// timeout. Stops when the client is dropped.
    pub fn start_heartbeat(&mut self, every: Duration) -> Result<(), ClientError> {
        if self.heartbeat.is_some() {
            return Ok(());
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let writer = Arc::clone(&self.writer);
        let framing = self.options.framing;
        let thread = std::thread::Builder::new()
            .name("wharf-client-heartbeat".into())
            .spawn(move || heartbeat(writer, framing, every, stopped))?;
        self.heartbeat = Some((stop, thread));
        Ok(())
    }

    /// Shuts down the sending side: the server answers what it has, then closes.
    pub fn shutdown_write(&mut self) -> Result<(), ClientError> {
        self.stop_heartbeat();
        Ok(self.writer.lock().shutdown()?)
    }

    fn stop_heartbeat(&mut self) {
        if let Some((stop, thread)) = self.heartbeat.take() {
            drop(stop);
            let _ = thread.join();
        }
    }

    fn read_frame(&mut self) -> Result<(u8, Vec<u8>), ClientError> {
        let framing = self.options.framing;
        let result = match framing {
            Framing::Length => self.read_length_frame(),
            Framing::Line => self.read_line_frame(),
        };
        result.map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                ClientError::Timeout(self.options.read_timeout.unwrap_or_default())
            }
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => ClientError::Closed,
            _ => ClientError::Io(e),
        })
    }

    fn read_length_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; frame::HEADER_LEN];
        self.reader.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len == 0 || len > self.options.max_frame {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("reply frame length {len} out of range"),
            ));
        }
        let mut payload = vec![0; len as usize - 1];
        self.reader.read_exact(&mut payload)?;
        Ok((header[4], payload))
    }

    fn read_line_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        self.read_buf.clear();
        let limit = u64::from(self.options.max_frame) + 2;
        (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.read_buf)?;
        if self.read_buf.last() != Some(&b'\n') {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "reply line cut short",
            ));
        }
        let mut line = &self.read_buf[..self.read_buf.len() - 1];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > self.options.max_frame as usize {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "reply line too long",
            ));
        }
        // ERROR and GOAWAY are spelled as a leading word. A `PONG` line is
        // returned as DATA: only its position tells a PONG from an echo.
        let (kind, payload) = if let Some(rest) = line.strip_prefix(b"ERROR ") {
            (frame::ERROR, rest)
        } else if let Some(rest) = line.strip_prefix(b"GOAWAY ") {
            (frame::GOAWAY, rest)
        } else {
            (frame::DATA, line)
        };
        Ok((kind, payload.to_vec()))
    }
}

/// Sends requests on a [`Client`]'s connection from another thread; the
/// replies arrive through [`Client::recv`], in order.
#[derive(Debug, Clone)]
pub struct RequestSender {
    writer: Arc<Mutex<Writer>>,
    framing: Framing,
}

impl RequestSender {
    /// Sends one DATA request at once.
    pub fn request(&self, payload: &[u8]) -> Result<(), ClientError> {
        check_request(self.framing, payload)?;
        let mut writer = self.writer.lock();
        writer.queue(self.framing, frame::DATA, payload, Pending::Data);
        Ok(writer.flush()?)
    }

    /// Shuts down the sending side: the server answers every request it
    /// has, then closes the connection.
    /// The background heartbeat, if any, stops sending too.
    pub fn shutdown_write(&self) -> Result<(), ClientError> {
        Ok(self.writer.lock().shutdown()?)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

/// A line-framing request is one line: it cannot hold a newline.
fn check_request(framing: Framing, payload: &[u8]) -> Result<(), ClientError> {
    if framing == Framing::Line && payload.contains(&b'\n') {
        return Err(ClientError::Protocol(
            "a line-framing request cannot contain a newline".into(),
        ));
    }
    Ok(())
}

fn heartbeat(writer: Arc<Mutex<Writer>>, framing: Framing, every: Duration, stop: Receiver<()>) {
    let mut wait = every;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        let mut w = writer.lock();
        if w.write_shut {
            return;
        }
        let quiet = w.last_write.elapsed();
        if quiet >= every {
            w.queue(framing, frame::PING, b"", Pending::Heartbeat);
            if w.flush().is_err() {
                // Never sent: no PONG is owed.
                w.owed.lock().pop_back();
                return;
            }
            wait = every;
        } else {
            wait = every - quiet;
        }
    }
}
