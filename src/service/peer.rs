//! Who is at the other end of a connection: an address on the network, or
//! a local process on a Unix socket, as the kernel vouches for it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Who a connection comes from, as [`ConnInfo`](crate::ConnInfo) tells a
/// service and the server's log lines name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A TCP client: its address and port. Behind a load balancer listed in
    /// `--proxy-from` ([`Config::proxy_from`](crate::Config::proxy_from)),
    /// the client the balancer's PROXY header names.
    Ip(SocketAddr),
    /// A process on the same host, connected through a Unix socket: its
    /// credentials, read from the socket (`SO_PEERCRED`) when it connected.
    Unix(Credentials),
}

/// A Unix-socket client's process and user, as the kernel recorded them
/// when it connected: they cannot be forged by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Its process id (as seen from the server's PID namespace; 0 if the
    /// client is in a namespace the server cannot see).
    pub pid: u32,
    /// Its effective user id: per-address limits count Unix clients by it.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
}

impl Peer {
    /// The IP address, for a TCP client.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Ip(addr) => Some(addr.ip()),
            Peer::Unix(_) => None,
        }
    }

    /// The address and port, for a TCP client.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Ip(addr) => Some(*addr),
            Peer::Unix(_) => None,
        }
    }

    /// The credentials, for a Unix-socket client.
    pub fn credentials(&self) -> Option<Credentials> {
        match self {
            Peer::Ip(_) => None,
            Peer::Unix(creds) => Some(*creds),
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer::Ip(addr)
    }
}

/// `127.0.0.1:40312`, `[::1]:40312`, or `unix pid 4242 uid 1000 gid 1000`.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => write!(f, "{addr}"),
            Peer::Unix(Credentials { pid, uid, gid }) => {
                write!(f, "unix pid {pid} uid {uid} gid {gid}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_reads_as_the_log_lines_name_it() {
        let ip = Peer::from("127.0.0.1:40312".parse::<SocketAddr>().unwrap());
        assert_eq!(ip.to_string(), "127.0.0.1:40312");
        assert_eq!(ip.ip(), Some("127.0.0.1".parse().unwrap()));
        let unix = Peer::Unix(Credentials {
            pid: 4242,
            uid: 1000,
            gid: 100,
        });
        assert_eq!(unix.to_string(), "unix pid 4242 uid 1000 gid 100");
        assert_eq!(unix.ip(), None);
        assert_eq!(unix.credentials().map(|c| c.uid), Some(1000));
    }
}
