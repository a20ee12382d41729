//! Socket activation: the listening socket systemd passes as descriptor 3
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`).
//!
//! The variables are parsed here, not by a crate, so that a `LISTEN_FDS`
//! counting descriptors that are not open is a warning rather than a
//! failure: those are listed as ranges ([`describe_ranges`]) for the log.

use std::env;
use std::io;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::os::fd::{FromRawFd, RawFd};

/// The first descriptor passed by socket activation.
const LISTEN_FDS_START: RawFd = 3;

/// A listening socket passed by socket activation.
#[derive(Debug)]
pub struct Activation {
    /// Descriptor 3, not yet checked (the server checks that it is a
    /// listening TCP socket).
    pub listener: TcpListener,
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`).
    pub name: String,
    /// `LISTEN_FDS`: how many descriptors were said to be passed.
    pub count: u32,
    /// Further descriptors passed, which wharf does not serve.
    pub ignored: Vec<(RawFd, String)>,
    /// Further descriptors that `LISTEN_FDS` counts but that are not open,
    /// as ranges: ignored too.
    pub missing: Vec<RangeInclusive<RawFd>>,
}

impl Activation {
    /// Takes the sockets passed for this process (`LISTEN_PID` is this
    /// process and `LISTEN_FDS` at least 1), and removes the variables.
    /// Must run before any thread is started.
    ///
    /// Descriptor 3 must be open (whether it is a listening TCP socket is
    /// checked by the server). Descriptors 4 and up are only set
    /// close-on-exec and listed in `ignored`, or in `missing` if they are not
    /// open: a `LISTEN_FDS` larger than what was passed is not fatal.
    pub fn take() -> anyhow::Result<Option<Activation>> {
        let pid = env::var("LISTEN_PID").ok();
        let count = env::var("LISTEN_FDS").ok();
        let names = env::var("LISTEN_FDNAMES").ok();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // Called from `serve::run` before it starts any thread, so
            // nothing reads the environment while it is changed.
            env::remove_var(var);
        }
        // As sd_listen_fds(3): not for this process unless LISTEN_PID names
        // it, and a malformed variable is an error.
        let Some(pid) = pid else {
            return Ok(None);
        };
        let pid: u32 = pid
            .parse()
            .map_err(|_| anyhow::anyhow!("socket activation: invalid LISTEN_PID {pid:?}"))?;
        if pid != std::process::id() {
            return Ok(None);
        }
        let Some(count) = count else {
            return Ok(None);
        };
        let count: u32 = count
            .parse()
            .map_err(|_| anyhow::anyhow!("socket activation: invalid LISTEN_FDS {count:?}"))?;
        if count == 0 {
            return Ok(None);
        }
        let names: Vec<&str> = names
            .as_deref()
            .map_or(Vec::new(), |n| n.split(':').collect());
        let name = |fd: RawFd| {
            let i = usize::try_from(fd - LISTEN_FDS_START).unwrap_or(usize::MAX);
            names.get(i).copied().unwrap_or("unknown").to_owned()
        };
        set_cloexec(LISTEN_FDS_START).map_err(|e| match e.raw_os_error() {
            Some(libc::EBADF) => {
                anyhow::anyhow!("socket activation: descriptor 3 is not open (LISTEN_FDS={count})")
            }
            _ => anyhow::Error::new(e).context("socket activation: descriptor 3"),
        })?;
        // SAFETY: descriptor 3 is open (set close-on-exec just above), and
        // LISTEN_PID and LISTEN_FDS say that it was passed to this process;
        // nothing else in the process owns it.
        let listener = unsafe { TcpListener::from_raw_fd(LISTEN_FDS_START) };

        let end = i64::from(LISTEN_FDS_START) + i64::from(count);
        let end = RawFd::try_from(end).unwrap_or(RawFd::MAX);
        // No descriptor at or above the hard limit can be open: no need to
        // look at each of a huge LISTEN_FDS.
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(RawFd::MAX, |(_, hard)| {
            RawFd::try_from(hard).unwrap_or(RawFd::MAX)
        });
        let first = LISTEN_FDS_START + 1;
        let scanned = end.min(limit).max(first);
        let mut ignored = Vec::new();
        let mut missing: Vec<RangeInclusive<RawFd>> = Vec::new();
        for fd in first..scanned {
            if set_cloexec(fd).is_ok() {
                ignored.push((fd, name(fd)));
            } else {
                add_to_ranges(&mut missing, fd..=fd);
            }
        }
        if scanned < end {
            add_to_ranges(&mut missing, scanned..=end - 1);
        }
        Ok(Some(Activation {
            listener,
            name: name(LISTEN_FDS_START),
            count,
            ignored,
            missing,
        }))
    }
}

/// Sets close-on-exec on `fd`, so that no child inherits it; fails (EBADF)
/// if it is not open.
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) with F_GETFD/F_SETFD only reads and sets the flags of
    // a descriptor number; on one that is not open it fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Appends `range` to `ranges` (ascending), merged with the last one when
/// they touch.
fn add_to_ranges(ranges: &mut Vec<RangeInclusive<RawFd>>, range: RangeInclusive<RawFd>) {
    match ranges.last_mut() {
        Some(last) if last.end().saturating_add(1) >= *range.start() => {
            *last = *last.start()..=*range.end().max(last.end());
        }
        _ => ranges.push(range),
    }
}

/// Descriptor ranges as an operator reads them: `4`, `4-6`, `4, 7-9`.
pub fn describe_ranges(ranges: &[RangeInclusive<RawFd>]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_descriptors_are_listed_as_ranges() {
        let mut ranges = Vec::new();
        for fd in [4, 5, 6, 9, 11, 12] {
            add_to_ranges(&mut ranges, fd..=fd);
        }
        add_to_ranges(&mut ranges, 13..=1000);
        assert_eq!(ranges, vec![4..=6, 9..=9, 11..=1000]);
        assert_eq!(describe_ranges(&ranges), "4-6, 9, 11-1000");
        assert_eq!(describe_ranges(&[]), "");
    }
}
