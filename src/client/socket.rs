//! Where a client connects ([`ServerAddr`]: a TCP address or a Unix
//! socket's path) and the socket it connects with (`Socket`, either kind).
//!
//! Separate so that the rest of the client (the halves, the TLS handshake,
//! the reconnect) deals with one socket type and one address type, and the
//! differences between TCP and Unix sockets (no Nagle to turn off, no
//! connect timeout in the standard library for a Unix socket) live here.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The address a [`Client`](super::Client) is connected to, and the one
/// its reconnects go to: a TCP address, or the path of a Unix stream
/// socket (a server's `--bind unix:PATH` listener).
///
/// Its `Display` is the form `wharf client --connect` takes:
/// `127.0.0.1:7878`, `[::1]:7878` or `unix:/run/wharf.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerAddr {
    /// A TCP address (already resolved).
    Tcp(SocketAddr),
    /// The path of a Unix stream socket.
    Unix(PathBuf),
}

impl ServerAddr {
    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ServerAddr::Tcp(addr) => Some(*addr),
            ServerAddr::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for ServerAddr {
    fn from(addr: SocketAddr) -> Self {
        ServerAddr::Tcp(addr)
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp(addr) => write!(f, "{addr}"),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How long a connect to a Unix socket whose backlog is full waits before
/// trying again.
const FULL_BACKLOG_PAUSE: Duration = Duration::from_millis(5);

/// Connects to the Unix socket at `path` within `timeout`. A listener
/// whose backlog is full answers a non-blocking connect with `EAGAIN`
/// rather than making it wait; that is tried again until `timeout`, so a
/// busy server delays the connect the way a TCP backlog would, and never
/// past the timeout.
pub(super) fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let addr = socket2::SockAddr::unix(path)?;
    let deadline = Instant::now() + timeout;
    loop {
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        match socket.connect(&addr) {
            Ok(()) => {
                socket.set_nonblocking(false)?;
                return Ok(UnixStream::from(std::os::fd::OwnedFd::from(socket)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "the listener's backlog stayed full",
                    ));
                }
                std::thread::sleep(FULL_BACKLOG_PAUSE.min(deadline - now));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A connected socket of either kind.
#[derive(Debug)]
pub(super) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Turns off Nagle's algorithm (TCP only: a Unix socket has none).
    pub(super) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_nodelay(true),
            Socket::Unix(_) => Ok(()),
        }
    }

    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    pub(super) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(timeout),
            Socket::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    pub(super) fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        })
    }

    pub(super) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).read(buf),
            Socket::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).write(buf),
            Socket::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
