//! Socket activation: the listening sockets systemd passes from
//! descriptor 3 on (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`).
//!
//! Every descriptor that is a listening stream socket, TCP or Unix, is
//! served; one named `tls` in `LISTEN_FDNAMES` (systemd's
//! `FileDescriptorName=tls`) is a TLS listener. Others are skipped with a
//! warning; if none is usable, the server does not start.
//!
//! The variables are parsed here, not by a crate, so that a `LISTEN_FDS`
//! counting descriptors that are not open is a warning rather than a
//! failure: those are listed as ranges ([`describe_ranges`]) for the log.

use std::env;
use std::io;
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use socket2::{Domain, SockRef, Type};
use wharf::{ListenSocket, Security};

/// The first descriptor passed by socket activation.
const LISTEN_FDS_START: RawFd = 3;

/// The `LISTEN_FDNAMES` name that makes a descriptor a TLS listener.
const TLS_NAME: &str = "tls";

/// A listening socket passed by socket activation, to be served.
#[derive(Debug)]
pub struct Inherited {
    /// Its descriptor number.
    pub fd: RawFd,
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`).
    pub name: String,
    pub socket: ListenSocket,
    /// TLS if its name is `tls`.
    pub security: Security,
}

/// The sockets passed by socket activation.
#[derive(Debug)]
pub struct Activation {
    /// The listening stream sockets, in descriptor order.
    pub listeners: Vec<Inherited>,
    /// `LISTEN_FDS`: how many descriptors were said to be passed.
    pub count: u32,
    /// Descriptors passed that are not listening stream sockets: number,
    /// name and why. Left open (close-on-exec), not served.
    pub skipped: Vec<(RawFd, String, &'static str)>,
    /// Descriptors that `LISTEN_FDS` counts but that are not open, as
    /// ranges: ignored.
    pub missing: Vec<RangeInclusive<RawFd>>,
}

impl Activation {
    /// Takes the sockets passed for this process (`LISTEN_PID` is this
    /// process and `LISTEN_FDS` at least 1), and removes the variables.
    /// Must run before any thread is started.
    ///
    /// Fails if none of the descriptors is a listening stream socket. A
    /// `LISTEN_FDS` larger than what was passed is not fatal: the
    /// descriptors that are not open are listed in `missing`.
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

        let end = i64::from(LISTEN_FDS_START) + i64::from(count);
        let end = RawFd::try_from(end).unwrap_or(RawFd::MAX);
        // No descriptor at or above the hard limit can be open: no need to
        // look at each of a huge LISTEN_FDS.
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(RawFd::MAX, |(_, hard)| {
            RawFd::try_from(hard).unwrap_or(RawFd::MAX)
        });
        let scanned = end.min(limit).max(LISTEN_FDS_START);
        let mut listeners = Vec::new();
        let mut skipped = Vec::new();
        let mut missing: Vec<RangeInclusive<RawFd>> = Vec::new();
        for fd in LISTEN_FDS_START..scanned {
            if set_cloexec(fd).is_err() {
                add_to_ranges(&mut missing, fd..=fd);
                continue;
            }
            match listening_stream(fd) {
                Ok(domain) => {
                    // SAFETY: `fd` is open (set close-on-exec just above),
                    // LISTEN_PID and LISTEN_FDS say that it was passed to
                    // this process, and nothing else in the process owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    let socket = if domain == Domain::UNIX {
                        ListenSocket::Unix(UnixListener::from(owned))
                    } else {
                        ListenSocket::Tcp(TcpListener::from(owned))
                    };
                    let name = name(fd);
                    let security = if name == TLS_NAME {
                        Security::Tls
                    } else {
                        Security::Plain
                    };
                    listeners.push(Inherited {
                        fd,
                        name,
                        socket,
                        security,
                    });
                }
                Err(why) => skipped.push((fd, name(fd), why)),
            }
        }
        if scanned < end {
            add_to_ranges(&mut missing, scanned..=end - 1);
        }
        if listeners.is_empty() {
            let why = match skipped.first() {
                Some((fd, name, why)) if skipped.len() == 1 => {
                    format!("descriptor {fd} ({name}) is {why}")
                }
                Some(_) => format!(
                    "none of descriptors {} is a listening TCP or Unix stream socket",
                    describe_ranges(&[LISTEN_FDS_START..=scanned - 1])
                ),
                None => format!("descriptor 3 is not open (LISTEN_FDS={count})"),
            };
            anyhow::bail!("socket activation: {why}");
        }
        Ok(Some(Activation {
            listeners,
            count,
            skipped,
            missing,
        }))
    }
}

/// Whether descriptor `fd` is a listening stream socket, TCP or Unix: its
/// domain if so, else what it is instead.
fn listening_stream(fd: RawFd) -> Result<Domain, &'static str> {
    // SAFETY: `fd` is open for the duration of this call (checked by the
    // caller), and is only borrowed here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    match socket.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(_) => return Err("not a stream socket (UDP?)"),
        Err(_) => return Err("not a socket"),
    }
    let domain = match socket.domain() {
        Ok(d) if d == Domain::IPV4 || d == Domain::IPV6 || d == Domain::UNIX => d,
        _ => return Err("not a TCP or Unix socket"),
    };
    match socket.is_listener() {
        Ok(true) => Ok(domain),
        _ => Err("a stream socket that does not listen"),
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
