//! A Unix socket file the server made, which the drain removes when the
//! server stops listening on it, unless another file has taken its place
//! (a successor that bound the same path meanwhile keeps its socket).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use log::warn;

/// A socket file this server made: removed when the server stops, if the
/// file at the path is still the one it made (a successor may have
/// replaced it meanwhile).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// When its inode last changed (its mode was set), to the nanosecond:
    /// a file system may give a successor's file the same inode number.
    changed: (i64, i64),
}

impl SocketFile {
    /// The socket file just bound at `path`.
    pub(crate) fn made(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Removes the file, unless another has taken its place.
    pub(crate) fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta)
                if (meta.dev(), meta.ino(), (meta.ctime(), meta.ctime_nsec()))
                    == (self.dev, self.ino, self.changed) =>
            {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("cannot remove the socket file {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}
