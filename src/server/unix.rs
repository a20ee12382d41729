//! Unix-socket listeners: binding one at a path without ever clobbering a
//! file that is not ours, and removing it when the server stops.
//!
//! The rules (contract §6), as Redis, memcached and pgbouncer apply them:
//! a socket file nobody accepts on (a stale one, left by a server that
//! crashed) is replaced; one a live server accepts on is "address in use";
//! any other kind of file is an error and is left as it was. The socket
//! gets its mode (`--unix-mode`) before it listens, so no client can
//! connect through looser permissions in between. Abstract socket names are
//! never used: they have no file, so no permissions (CVE-2020-15257).

use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use log::info;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::engine::socket_file::SocketFile;

/// Binds a Unix stream socket at `path` with permissions `mode`, listening
/// with `backlog`. A stale socket file is replaced; a live one, or a file
/// that is not a socket, is an error.
pub(crate) fn listen(path: &Path, backlog: u32, mode: u32) -> io::Result<(Socket, SocketFile)> {
    clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // Bound but not yet listening: a client that connects now is refused,
    // so nobody gets in before the mode is set.
    let file = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| SocketFile::made(path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })?;
    if let Err(e) = socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX)) {
        file.remove();
        return Err(e);
    }
    Ok((socket, file))
}

/// Makes room at `path`: nothing there, or a stale socket (removed).
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way (left as it is)",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            ErrorKind::AddrInUse,
            "address in use: a live server accepts on this socket",
        )),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)?;
            info!(
                "removed a stale socket file at {} (nobody accepted on it)",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wharf-unix-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_socket_gets_its_mode_and_its_file_goes_when_it_is_removed() {
        let dir = dir();
        let path = dir.join("w.sock");
        let (_socket, file) = listen(&path, 8, 0o600).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        UnixStream::connect(&path).unwrap();
        file.remove();
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_and_other_files_are_not() {
        let dir = dir();
        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        assert!(stale.exists(), "a closed listener leaves its file behind");
        let (_socket, _file) = listen(&stale, 8, 0o660).unwrap();

        let live = dir.join("live.sock");
        let _holder = UnixListener::bind(&live).unwrap();
        let e = listen(&live, 8, 0o660).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse);

        let plain = dir.join("file.txt");
        std::fs::write(&plain, "keep me").unwrap();
        assert!(listen(&plain, 8, 0o660).is_err());
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_replaced_by_a_successor_is_not_removed() {
        let dir = dir();
        let path = dir.join("w.sock");
        let (socket, file) = listen(&path, 8, 0o660).unwrap();
        drop(socket);
        std::fs::remove_file(&path).unwrap();
        let _successor = UnixListener::bind(&path).unwrap();
        file.remove();
        assert!(path.exists(), "the successor's socket stays");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
