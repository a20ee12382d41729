//! The two halves of a client's connection, plain or TLS: [`ReadHalf`],
//! which the thread in [`Client::recv`](super::Client::recv) reads, and
//! [`WriteHalf`], which every writer reaches through the writer's lock.
//!
//! Separate because TLS cannot be split the way a socket can. One rustls
//! session holds both directions' state, so it is shared behind a lock
//! ([`TlsShared`]) and no socket I/O is ever done while holding it: the
//! reader waits for ciphertext on the socket *outside* the lock, then takes
//! it to decrypt; a writer takes it to encrypt, then writes the records to
//! the socket under a separate send lock, which keeps records in the order
//! they were sealed. So a reader blocked on a quiet socket never stalls a
//! writer, and a writer blocked on a full socket never stalls the reader
//! (no `StreamOwned` across threads, no `complete_io` on both directions:
//! rustls#2556).

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::ClientConnection;

use super::failure::{classify, Facts};
use super::socket::{ServerAddr, Socket};
use super::tls::Connector;
use super::{ClientError, ClientOptions};

/// The most plaintext sealed per turn of the session's lock.
const SEAL_CHUNK: usize = 64 * 1024;

/// The most ciphertext read from the socket at once: a whole record.
const CIPHER_READ: usize = 16 * 1024 + 256;

/// Sets up a connected socket as the client wants it and splits it into
/// its writing and reading halves, after the TLS handshake if `tls`.
pub(super) fn split(
    stream: Socket,
    peer: &ServerAddr,
    tls: Option<&Connector>,
    options: &ClientOptions,
) -> Result<(WriteHalf, ReadHalf), ClientError> {
    stream.set_nodelay()?;
    let shared = match tls {
        Some(tls) => Some(tls.handshake(&stream, peer, options.connect_timeout)?),
        None => None,
    };
    stream.set_read_timeout(options.read_timeout)?;
    let reader = stream.try_clone()?;
    Ok(match shared {
        None => (WriteHalf::Plain(stream), ReadHalf::Plain(reader)),
        Some(shared) => (
            WriteHalf::Tls {
                sock: stream,
                shared: Arc::clone(&shared),
            },
            ReadHalf::tls(reader, shared),
        ),
    })
}

/// A TLS session shared by a connection's two halves.
#[derive(Debug)]
pub(super) struct TlsShared {
    conn: Mutex<ClientConnection>,
    /// Held while sealed records are written to the socket, so records
    /// reach it in the order they were sealed.
    send: Mutex<()>,
    facts: Facts,
}

impl TlsShared {
    pub(super) fn new(conn: ClientConnection, facts: Facts) -> Arc<TlsShared> {
        Arc::new(TlsShared {
            conn: Mutex::new(conn),
            send: Mutex::new(()),
            facts,
        })
    }

    /// Seals whatever the session has queued (an alert, a key update) and
    /// writes it; the caller holds the send lock.
    fn write_queued(&self, sock: &Socket) -> io::Result<()> {
        let mut records = Vec::new();
        {
            let mut conn = self.conn.lock();
            while conn.wants_write() {
                conn.write_tls(&mut records)?;
            }
        }
        (&*sock).write_all(&records)
    }
}

/// The reading half of a connection.
#[derive(Debug)]
pub(super) enum ReadHalf {
    Plain(Socket),
    Tls {
        sock: Socket,
        shared: Arc<TlsShared>,
        /// Ciphertext read from the socket and not yet taken by the session.
        held: Vec<u8>,
        used: usize,
    },
}

impl ReadHalf {
    pub(super) fn tls(sock: Socket, shared: Arc<TlsShared>) -> ReadHalf {
        ReadHalf::Tls {
            sock,
            shared,
            held: Vec::new(),
            used: 0,
        }
    }

    /// The socket, to shut it down.
    pub(super) fn socket(&self) -> &Socket {
        match self {
            ReadHalf::Plain(sock) | ReadHalf::Tls { sock, .. } => sock,
        }
    }
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(sock) => sock.read(buf),
            ReadHalf::Tls {
                sock,
                shared,
                held,
                used,
            } => read_tls(sock, shared, held, used, buf),
        }
    }
}

/// Plaintext from the session, reading ciphertext from the socket (outside
/// the session's lock) while it has none.
fn read_tls(
    sock: &Socket,
    shared: &TlsShared,
    held: &mut Vec<u8>,
    used: &mut usize,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        let queued = {
            let mut conn = shared.conn.lock();
            while *used < held.len() && conn.wants_read() {
                *used += conn.read_tls(&mut &held[*used..])?;
                if let Err(e) = conn.process_new_packets() {
                    drop(conn);
                    // The alert that says why goes out if it can.
                    if let Some(_sending) = shared.send.try_lock() {
                        let _ = shared.write_queued(sock);
                    }
                    return Err(tls_error(&e, shared.facts));
                }
            }
            match conn.reader().read(buf) {
                // Plaintext, or 0 after the server's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The socket ended without close_notify.
                Err(e) => return Err(e),
            }
            conn.wants_write()
        };
        // A key update to answer: sent now unless a writer is sending, in
        // which case its write carries it.
        if queued {
            if let Some(_sending) = shared.send.try_lock() {
                shared.write_queued(sock)?;
            }
        }
        if *used < held.len() {
            continue;
        }
        held.resize(CIPHER_READ, 0);
        *used = 0;
        let n = (&*sock).read(held).inspect_err(|_| held.clear())?;
        held.truncate(n);
        if n == 0 {
            // The socket's end: the session decides whether it was a clean
            // close (after close_notify) or a cut.
            shared.conn.lock().read_tls(&mut io::empty())?;
        }
    }
}

/// A TLS error while reading, as an I/O error carrying the [`TlsFailure`]
/// (the reading half turns it back into [`ClientError::Tls`]).
///
/// [`TlsFailure`]: super::TlsFailure
/// [`ClientError::Tls`]: super::ClientError::Tls
fn tls_error(e: &rustls::Error, facts: Facts) -> io::Error {
    io::Error::other(classify(e, facts))
}

/// The writing half of a connection.
#[derive(Debug)]
pub(super) enum WriteHalf {
    Plain(Socket),
    Tls {
        sock: Socket,
        shared: Arc<TlsShared>,
    },
}

impl WriteHalf {
    /// Writes all of `bytes` (sealed, with TLS).
    pub(super) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (sock, shared) = match self {
            WriteHalf::Plain(sock) => return sock.write_all(bytes),
            WriteHalf::Tls { sock, shared } => (sock, shared),
        };
        let _sending = shared.send.lock();
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            records.clear();
            {
                let mut conn = shared.conn.lock();
                let n = conn.writer().write(&rest[..rest.len().min(SEAL_CHUNK)])?;
                rest = &rest[n..];
                while conn.wants_write() {
                    conn.write_tls(&mut records)?;
                }
            }
            if records.is_empty() {
                return Err(ErrorKind::WriteZero.into());
            }
            sock.write_all(&records)?;
        }
        Ok(())
    }

    /// Ends the sending side: close_notify first, with TLS, then the
    /// socket's write shutdown. The server answers what it has, then closes.
    pub(super) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(sock) => sock.shutdown(Shutdown::Write),
            WriteHalf::Tls { sock, shared } => {
                let _sending = shared.send.lock();
                shared.conn.lock().send_close_notify();
                shared.write_queued(sock)?;
                sock.shutdown(Shutdown::Write)
            }
        }
    }
}
