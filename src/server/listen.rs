//! The listening socket: binding it, checking one handed over, and fitting
//! the limits to the descriptors the process may open.

use std::net::{SocketAddr, ToSocketAddrs};

use log::warn;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::engine::closer;
use crate::error::Error;

/// Descriptors kept free for everything but client connections (the
/// listener, the epoll set, standard streams, log files), at most a quarter
/// of the limit.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Lowers `max_connections` to what the soft descriptor limit allows, with
/// a warning, and returns how many connections the closer may keep
/// lingering (their descriptors count too: a connection turned away at
/// accept has no place under `max_connections`).
pub(super) fn fit_descriptors(mut config: Config) -> (Config, usize) {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return (config, closer::MAX_LINGERING);
    };
    // The closer holds at most this many lingering sockets, and as many
    // more waiting for it.
    let lingering = (soft / 8).min(closer::MAX_LINGERING as u64);
    let reserved = (soft / 4).min(RESERVED_DESCRIPTORS);
    let allowed = soft.saturating_sub(reserved + 2 * lingering).max(1);
    if config.max_connections as u64 > allowed {
        warn!(
            "max-connections {} is more than the descriptor limit ({soft}) allows; lowered to \
             {allowed} (raise the limit, e.g. LimitNOFILE= in a systemd unit, to allow more)",
            config.max_connections
        );
        config.max_connections = allowed as usize;
    }
    (config, lingering as usize)
}

pub(super) fn resolve<A: ToSocketAddrs>(addr: A) -> Result<SocketAddr, Error> {
    let mut addrs = addr
        .to_socket_addrs()
        .map_err(|e| Error::Resolve(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| Error::Resolve("no address".to_owned()))
}

/// The metrics endpoint's queue of connections not yet accepted: it serves
/// one scrape at a time, and a scraper retries.
pub(super) const METRICS_BACKLOG: u32 = 128;

/// A listening socket with `SO_REUSEADDR` (a restart does not wait for old
/// connections in TIME_WAIT), `SO_REUSEPORT` if asked, and the configured
/// backlog.
pub(super) fn listen(addr: SocketAddr, backlog: u32, reuse_port: bool) -> Result<Socket, Error> {
    let setup = || -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Ok(socket)
    };
    setup().map_err(|source| Error::Listen {
        addr: addr.into(),
        source,
    })
}

/// Where Linux says whether a listener closing in a `SO_REUSEPORT` group
/// hands its queued connections to another listener of the group.
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Warns unless `net.ipv4.tcp_migrate_req` is 1: without it, connections
/// still queued on this listener when it closes are reset, not handed to the
/// next instance.
pub(super) fn check_migrate_req() {
    let problem = match std::fs::read_to_string(MIGRATE_REQ) {
        Ok(value) if value.trim() == "1" => return,
        Ok(value) => format!("net.ipv4.tcp_migrate_req is {}, not 1", value.trim()),
        Err(e) => format!("cannot read {MIGRATE_REQ} ({e})"),
    };
    warn!(
        "reuse-port: {problem}; when this instance stops, connections still queued on its \
         listener are reset instead of moving to the next instance (set it with \
         sysctl -w net.ipv4.tcp_migrate_req=1)"
    );
}

/// Checks that a socket handed over is a listening IPv4, IPv6 or Unix
/// stream socket.
pub(crate) fn check_listening(socket: &Socket) -> Result<(), Error> {
    let invalid = |what: String| Err(Error::InvalidListener(what));
    match socket.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(_) => return invalid("not a stream socket".into()),
        Err(e) => return invalid(format!("not a socket ({e})")),
    }
    match socket.domain() {
        Ok(d) if d == Domain::IPV4 || d == Domain::IPV6 || d == Domain::UNIX => {}
        Ok(_) => return invalid("not an IPv4, IPv6 or Unix socket".into()),
        Err(e) => return invalid(e.to_string()),
    }
    match socket.is_listener() {
        Ok(true) => Ok(()),
        Ok(false) => invalid("a stream socket, but not listening".into()),
        Err(e) => invalid(e.to_string()),
    }
}
