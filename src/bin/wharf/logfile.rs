//! `--log-file` that SIGHUP can reopen, for log rotation.
//!
//! logrotate (without `copytruncate`) renames the file and then signals the
//! process; a process that keeps writing to its open descriptor writes to
//! the renamed file for ever. So the logger does not own the file: it
//! writes through a [`LogWriter`], which reaches the current file behind a
//! mutex, and [`LogFile::reopen`] opens the path again (created if missing,
//! appended to) and swaps the new file in. A line is never split between
//! the two files: simplelog's `WriteLogger` writes a record while holding
//! its own lock, and the swap waits for the write in progress.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// The log file's path and the file currently open at it.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

/// What the logger writes to: whichever file is current.
#[derive(Debug)]
pub struct LogWriter(Arc<Mutex<File>>);

impl LogFile {
    /// Opens `path` for appending (creating it), and returns the handle to
    /// reopen it and the writer for the logger.
    pub fn open(path: &Path) -> io::Result<(LogFile, LogWriter)> {
        let file = Arc::new(Mutex::new(append(path)?));
        let writer = LogWriter(Arc::clone(&file));
        Ok((
            LogFile {
                path: path.to_owned(),
                file,
            },
            writer,
        ))
    }

    /// Opens the path again and writes there from now on. On failure the
    /// old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let file = append(&self.path)?;
        *self.file.lock() = file;
        Ok(())
    }

    /// The path given with `--log-file`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_writes_to_the_new_file_at_the_path() {
        let dir = std::env::temp_dir().join(format!("wharf-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wharf.log");
        let (file, mut writer) = LogFile::open(&path).unwrap();
        writer.write_all(b"before\n").unwrap();
        let rotated = dir.join("wharf.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        writer.write_all(b"still old\n").unwrap();
        file.reopen().unwrap();
        writer.write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
