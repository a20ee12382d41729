//! Helpers of the Unix-socket tests (`unix_*.rs`, and the Unix part of
//! `systemd_activation.rs`): a directory of its own for each test's socket
//! files, a client speaking wharf's length framing over a `UnixStream`,
//! plain or inside TLS, and reading the listening lines of a log.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use wharf::frame::DATA;
use wharf::Framing;

use super::tls::ClientSetup;
use super::READ_TIMEOUT;

/// A fresh directory under the temp dir for one test's socket files,
/// removed with everything in it when dropped.
pub struct SocketDir {
    pub dir: PathBuf,
}

impl SocketDir {
    pub fn new(tag: &str) -> SocketDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // Short: a socket's path must fit in 108 bytes.
        let dir = std::env::temp_dir().join(format!(
            "wharf-{tag}-{}-{nanos:x}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a socket directory");
        SocketDir { dir }
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `unix:PATH`, as `--bind` takes it.
pub fn bind_arg(path: &Path) -> String {
    format!("unix:{}", path.to_str().expect("UTF-8 temp path"))
}

/// The permission bits of the file at `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The addresses of the `listening on` lines of `log`, in order.
pub fn listening_addrs(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split("listening on ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A client speaking wharf's length framing over a Unix socket.
pub struct UnixClient {
    pub stream: UnixStream,
}

impl UnixClient {
    pub fn connect(path: &Path) -> UnixClient {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        UnixClient { stream }
    }

    /// Sends a DATA request and checks its echo.
    pub fn echo(&mut self, payload: &[u8]) {
        echo_over(&mut self.stream, payload);
    }
}

/// Sends a DATA request over `stream` and checks its echo.
fn echo_over(stream: &mut impl ReadWrite, payload: &[u8]) {
    let mut frame = Vec::new();
    Framing::Length.encode(DATA, payload, &mut frame);
    stream.write_all(&frame).expect("send");
    stream.flush().expect("flush");
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).expect("a reply header");
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut got = vec![0; len - 1];
    stream.read_exact(&mut got).expect("a reply payload");
    assert_eq!((header[4], got.as_slice()), (DATA, payload), "the echo");
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A TLS client over a Unix socket, speaking wharf's length framing; it
/// checks the server's certificate for `localhost`, as `ClientSetup` does
/// over TCP.
pub struct TlsUnixClient(pub StreamOwned<ClientConnection, UnixStream>);

impl TlsUnixClient {
    /// Connects and completes the handshake.
    pub fn connect(setup: &ClientSetup, path: &Path) -> io::Result<TlsUnixClient> {
        let sock = UnixStream::connect(path)?;
        sock.set_read_timeout(Some(READ_TIMEOUT))?;
        let conn =
            ClientConnection::new(setup.config(), ServerName::try_from("localhost").unwrap())
                .map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsUnixClient(stream))
    }

    /// Sends a DATA request and checks its echo.
    pub fn echo(&mut self, payload: &[u8]) {
        echo_over(&mut self.0, payload);
    }
}
