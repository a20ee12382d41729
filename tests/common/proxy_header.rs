//! Helpers of `proxy_protocol.rs` and `per_address_limits.rs`: PROXY
//! protocol headers written by hand (version 1 text lines, version 2 binary
//! headers with optional TLVs), TCP clients bound to a chosen loopback
//! source address (all of 127.0.0.0/8 is loopback, so each source is a
//! different client address to the server), and length-framed frames over
//! any stream (a Unix socket, say).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use wharf::frame::{GoAway, GOAWAY};
use wharf::Framing;

/// The 12-byte signature every version 2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\x00\r\nQUIT\n";
/// Version 2, command PROXY.
pub const V2_PROXY: u8 = 0x21;
/// Version 2, command LOCAL (a balancer's own health check).
pub const V2_LOCAL: u8 = 0x20;
/// Address family and protocol: TCP over IPv4.
pub const TCP4: u8 = 0x11;
/// Address family and protocol: TCP over IPv6.
pub const TCP6: u8 = 0x21;
/// Address family and protocol: unspecified (what LOCAL usually carries).
pub const UNSPEC: u8 = 0x00;

/// A version 1 line naming `client` (and `destination`): `TCP4` or `TCP6`
/// after the addresses' family.
pub fn v1(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        destination.ip(),
        client.port(),
        destination.port()
    )
    .into_bytes()
}

/// A version 2 header: signature, `command`, `family`, the length of what
/// follows, then `body` (addresses, ports and TLVs, as given).
pub fn v2_raw(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(command);
    header.push(family);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// A version 2 PROXY header naming `client` (and `destination`), then
/// `tlvs` (already encoded, see [`tlv`]).
pub fn v2(client: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let family = match (client.ip(), destination.ip()) {
        (IpAddr::V4(c), IpAddr::V4(d)) => {
            body.extend_from_slice(&c.octets());
            body.extend_from_slice(&d.octets());
            TCP4
        }
        (IpAddr::V6(c), IpAddr::V6(d)) => {
            body.extend_from_slice(&c.octets());
            body.extend_from_slice(&d.octets());
            TCP6
        }
        _ => panic!("client and destination of one family"),
    };
    body.extend_from_slice(&client.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    v2_raw(V2_PROXY, family, &body)
}

/// One TLV: type, big-endian length, value.
pub fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// A length-framed frame, encoded.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    Framing::Length.encode(kind, payload, &mut buf);
    buf
}

/// A TCP connection to `server` from the loopback address `source` (any
/// port), made with `socket2` so the source is bound before connecting.
pub fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let source: IpAddr = source.parse().expect("a source address");
    let domain = if source.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).expect("a socket");
    socket
        .bind(&SockAddr::from(SocketAddr::new(source, 0)))
        .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
    socket
        .connect(&SockAddr::from(server))
        .unwrap_or_else(|e| panic!("connect from {source} to {server}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(super::READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads one length-framed frame from any stream: `None` at its end (or a
/// reset).
pub fn read_frame(stream: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0; len - 1];
    stream.read_exact(&mut payload)?;
    Ok(Some((header[4], payload)))
}

/// Sends a DATA request over any stream and returns the reply frame.
pub fn request(stream: &mut (impl Read + Write), payload: &[u8]) -> Option<(u8, Vec<u8>)> {
    stream
        .write_all(&frame(wharf::frame::DATA, payload))
        .expect("send a request");
    read_frame(stream).expect("read a reply")
}

/// The GOAWAY in a received frame, if it is one.
pub fn goaway_of(frame: &(u8, Vec<u8>)) -> Option<GoAway> {
    (frame.0 == GOAWAY)
        .then(|| GoAway::parse(Framing::Length, &frame.1))
        .flatten()
}

/// The `N` of a GOAWAY 6 reason `retry after N ms: ...`.
pub fn retry_after_ms(reason: &str) -> u64 {
    reason
        .strip_prefix("retry after ")
        .and_then(|rest| rest.split_once(" ms: "))
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or_else(|| panic!("not a LIMITED reason: {reason:?}"))
}

/// A Unix socket path under the temp dir, unique to this test run, removed
/// (if still there) when dropped.
pub struct SocketPath(pub std::path::PathBuf);

impl SocketPath {
    pub fn new(tag: &str) -> SocketPath {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        SocketPath(std::env::temp_dir().join(format!(
            "wharf-{tag}-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// `unix:PATH`, as `--bind` takes it.
    pub fn bind_arg(&self) -> String {
        format!("unix:{}", self.0.display())
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
