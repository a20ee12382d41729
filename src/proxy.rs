//! PROXY protocol (versions 1 and 2): the header a trusted load balancer
//! puts before a connection's own bytes to say who the client is, and the
//! `--proxy-from` list of the peers trusted to send one (contract §6).
//!
//! The engine peeks at a connection's first bytes without consuming them and
//! asks `parse` what they are: `Parsed::Incomplete` says how many bytes
//! (from the start) to wait for, so the connection can rest in the kernel
//! with `SO_RCVLOWAT` set to that; `Parsed::Header` says how many bytes to
//! consume and which address the connection now speaks for;
//! `Parsed::Invalid` closes it. Only connections from a peer that
//! [`ProxyFrom::trusts`] are parsed at all: from anyone else the first bytes
//! are the protocol itself, never a header guessed at.
//!
//! The header is decoded by the `proxy-header` crate, which parses from a
//! borrowed buffer, returns the length consumed and reports "buffer too
//! short" for every prefix of a valid header, a v1 line cut anywhere
//! included (`ppp`, the other candidate, rejects a valid v1 line cut just
//! after the source port). This module adds only what the peek-and-wait
//! contract needs on top: bytes that cannot begin a header are rejected at
//! once rather than waited on, a complete v1 line longer than 107 bytes is
//! rejected (the crate caps only an unfinished one), v1 ports are digits only
//! (the crate would take `+80`), a v2 LOCAL header is accepted whatever its
//! address block holds (as the specification says, where the crate rejects
//! an unknown family), and the number of bytes to wait for is computed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use proxy_header::{ParseConfig, ProxyHeader};

/// The v1 header starts with this (the word and one space).
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// The shortest v1 line, `PROXY UNKNOWN\r\n`: nothing shorter can complete one.
const V1_MIN: usize = 15;
/// What may follow `PROXY ` (as far as the buffer goes).
const V1_PROTOCOLS: [&[u8]; 3] = [b"TCP4 ", b"TCP6 ", b"UNKNOWN"];
/// The 12-byte v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\x00\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family and
/// protocol, and the big-endian length of what follows.
const V2_FIXED: usize = 16;
/// v2 version 2 with the LOCAL command (health checks from the balancer itself).
const V2_LOCAL: u8 = 0x20;
/// v2 version 2 with the PROXY command.
const V2_PROXY: u8 = 0x21;

/// The most bytes a header may take: a v2 header with the largest length
/// field (16 + 65535). A v1 line is at most 107. The engine sizes its peek
/// with this; a buffer holding this many bytes always parses to a
/// `Parsed::Header` or `Parsed::Invalid`, never to `Incomplete`.
pub(crate) const MAX_HEADER: usize = V2_FIXED + u16::MAX as usize;

/// What the first bytes of a connection from a trusted balancer say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not complete yet: wait until at least `need` bytes (in total, from the
    /// start of the connection) are there, then parse again from the start.
    /// `need` is always more than the bytes given and at most [`MAX_HEADER`].
    Incomplete { need: usize },
    /// A complete header of `len` bytes: consume exactly these; whatever
    /// follows is the client's own first bytes.
    Header { len: usize, source: Source },
    /// Not a PROXY header, or a malformed one: close the connection. The text
    /// says why, for a log line.
    Invalid(&'static str),
}

/// Whom a complete header says the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Keep the socket's own addresses: a v2 LOCAL header (the balancer's
    /// own health check), v1 `UNKNOWN`, or a v2 PROXY header with an
    /// unspecified or Unix-socket address family.
    Local,
    /// The client the balancer accepted, and the address it connected to.
    Proxied {
        client: SocketAddr,
        destination: SocketAddr,
    },
}

/// Parses the start of a connection from a trusted balancer. Never panics,
/// whatever the bytes; the same header gives the same answer however it is
/// cut, and `Invalid` comes as soon as the bytes so far cannot begin a valid
/// header.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        // The first byte alone tells v1, v2 or not a header: wait for it
        // and no more, or a short first write that is not a header (a
        // 14-byte frame, `PING\n`) would never wake the connection.
        None => Parsed::Incomplete { need: 1 },
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Parsed::Invalid("not a PROXY protocol header"),
    }
}

/// Whether `buf` and `pattern` agree as far as both go.
fn agrees(buf: &[u8], pattern: &[u8]) -> bool {
    let n = buf.len().min(pattern.len());
    buf[..n] == pattern[..n]
}

/// Bytes that may appear in the addresses and ports of a v1 TCP4/TCP6 line.
fn v1_address_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b' ')
}

fn parse_v1(buf: &[u8]) -> Parsed {
    if !agrees(buf, V1_PREFIX) {
        return Parsed::Invalid("not a PROXY protocol header");
    }
    let after = buf.get(V1_PREFIX.len()..).unwrap_or_default();
    if !V1_PROTOCOLS.iter().any(|p| agrees(after, p)) {
        return Parsed::Invalid("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
    }
    // The crate parses ports with u16::from_str, which takes a leading '+';
    // and garbage in an address would otherwise be waited on until a space.
    // Up to the CR the line must be hex digits, dots, colons and spaces.
    if after.starts_with(b"TCP") {
        let line = after.get(V1_PROTOCOLS[0].len()..).unwrap_or_default();
        let end = memchr::memchr(b'\r', line).unwrap_or(line.len());
        if !line[..end].iter().all(|&b| v1_address_byte(b)) {
            return Parsed::Invalid("malformed PROXY v1 header");
        }
    }
    let config = ParseConfig {
        allow_v1: true,
        allow_v2: false,
        include_tlvs: false,
    };
    match ProxyHeader::parse(buf, config) {
        Ok((_, len)) if len > V1_MAX => Parsed::Invalid("PROXY v1 line longer than 107 bytes"),
        Ok((header, len)) => Parsed::Header {
            len,
            source: source_of(&header),
        },
        Err(proxy_header::Error::BufferTooShort) if buf.len() < V1_MAX => {
            // The end is unknown: one more byte may finish the line if this
            // one is its CR, otherwise the CRLF is still to come.
            let more = if buf.last() == Some(&b'\r') { 1 } else { 2 };
            Parsed::Incomplete {
                need: (buf.len() + more).clamp(V1_MIN, V1_MAX),
            }
        }
        Err(proxy_header::Error::BufferTooShort) => {
            Parsed::Invalid("PROXY v1 line longer than 107 bytes")
        }
        Err(_) => Parsed::Invalid("malformed PROXY v1 header"),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if !agrees(buf, V2_SIGNATURE) {
        return Parsed::Invalid("not a PROXY protocol header");
    }
    match buf.get(12) {
        None | Some(&V2_LOCAL) | Some(&V2_PROXY) => {}
        Some(v) if v >> 4 != 2 => return Parsed::Invalid("PROXY v2 header of another version"),
        Some(_) => return Parsed::Invalid("PROXY v2 command is neither LOCAL nor PROXY"),
    }
    let (Some(&version_command), Some(length)) = (buf.get(12), buf.get(14..16)) else {
        return Parsed::Incomplete { need: V2_FIXED };
    };
    let len = V2_FIXED + usize::from(u16::from_be_bytes([length[0], length[1]]));
    if buf.len() < len {
        return Parsed::Incomplete { need: len };
    }
    if version_command == V2_LOCAL {
        // "The receiver must accept this connection as valid and must use the
        // real connection endpoints and discard the protocol block including
        // the family which is ignored": whatever the block holds.
        return Parsed::Header {
            len,
            source: Source::Local,
        };
    }
    let config = ParseConfig {
        allow_v1: false,
        allow_v2: true,
        include_tlvs: false,
    };
    match ProxyHeader::parse(buf, config) {
        Ok((header, used)) if used == len => Parsed::Header {
            len,
            source: source_of(&header),
        },
        _ => Parsed::Invalid("malformed PROXY v2 header"),
    }
}

/// The addresses a parsed header carries; none (v1 UNKNOWN, v2 AF_UNSPEC or
/// AF_UNIX) keeps the socket's own.
fn source_of(header: &ProxyHeader<'_>) -> Source {
    match header.proxied_address() {
        Some(a) => Source::Proxied {
            client: a.source,
            destination: a.destination,
        },
        None => Source::Local,
    }
}

/// The peers trusted to start their connections with a PROXY header: the
/// value of `--proxy-from`, comma-separated CIDRs (a bare address is one
/// host) and the word `unix` for Unix-socket peers. Displays as it parses,
/// with every address written as a CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFrom {
    nets: Vec<IpNet>,
    unix: bool,
}

impl ProxyFrom {
    /// Whether a connection from `peer` must start with a PROXY header.
    /// `None` is a Unix-socket peer. An IPv4-mapped IPv6 peer
    /// (`::ffff:10.1.2.3`, as accepted on a `[::]` listener) matches the
    /// IPv4 CIDRs as well as any IPv6 CIDR written for the mapped form.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => self.unix,
            Some(ip) => {
                let canonical = ip.to_canonical();
                self.nets
                    .iter()
                    .any(|n| n.contains(&ip) || n.contains(&canonical))
            }
        }
    }
}

/// A `--proxy-from` value that does not parse: which entry, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyFromError {
    /// Nothing was given.
    #[error("--proxy-from is empty: name at least one CIDR (such as 10.0.0.0/8) or `unix`")]
    Empty,
    /// An entry that is neither an address, a CIDR nor `unix`.
    #[error(
        "--proxy-from entry `{0}` is not an IP address, a CIDR (such as 10.0.0.0/8 or ::1/128) or `unix`"
    )]
    Entry(String),
    /// A CIDR with bits set past its prefix (`10.1.2.3/8`), most likely a
    /// typo for its network.
    #[error("--proxy-from entry `{entry}` has host bits set: the network is `{network}`")]
    HostBits {
        /// The entry as written.
        entry: String,
        /// The network it would stand for.
        network: IpNet,
    },
}

impl FromStr for ProxyFrom {
    type Err = ProxyFromError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ProxyFromError::Empty);
        }
        let mut nets = Vec::new();
        let mut unix = false;
        for entry in s.split(',').map(str::trim) {
            if entry.eq_ignore_ascii_case("unix") {
                unix = true;
            } else if entry.contains('/') {
                let net: IpNet = entry
                    .parse()
                    .map_err(|_| ProxyFromError::Entry(entry.to_owned()))?;
                // 10.1.2.3/8 is more likely a typo than a wish for 10.0.0.0/8.
                if net.trunc() != net {
                    return Err(ProxyFromError::HostBits {
                        entry: entry.to_owned(),
                        network: net.trunc(),
                    });
                }
                nets.push(net);
            } else {
                let ip: IpAddr = entry
                    .parse()
                    .map_err(|_| ProxyFromError::Entry(entry.to_owned()))?;
                nets.push(IpNet::from(ip));
            }
        }
        Ok(ProxyFrom { nets, unix })
    }
}

impl fmt::Display for ProxyFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for net in &self.nets {
            write!(f, "{sep}{net}")?;
            sep = ",";
        }
        if self.unix {
            write!(f, "{sep}unix")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn v2_ipv4_with_tlvs() -> Vec<u8> {
        let mut block = vec![192, 0, 2, 1, 198, 51, 100, 7, 0xd4, 0x31, 0x01, 0xbb];
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]); // NOOP
        block.extend_from_slice(&[0x02, 0x00, 0x03, b'w', b'h', b'f']); // AUTHORITY
        v2(V2_PROXY, 0x11, &block)
    }

    fn v2_ipv6() -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0x30, 0x39, 0x1f, 0x90]);
        block.extend_from_slice(&[0xe0, 0x00, 0x00]); // an empty custom TLV
        v2(V2_PROXY, 0x21, &block)
    }

    fn proxied(client: &str, destination: &str) -> Source {
        Source::Proxied {
            client: client.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    /// Every valid header used below, with what it parses to.
    fn valid() -> Vec<(Vec<u8>, Source)> {
        vec![
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.7 54321 443\r\n".to_vec(),
                proxied("192.0.2.1:54321", "198.51.100.7:443"),
            ),
            (
                b"PROXY TCP6 2001:db8::1 ::1 12345 8080\r\n".to_vec(),
                proxied("[2001:db8::1]:12345", "[::1]:8080"),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), Source::Local),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
                Source::Local,
            ),
            (
                v2_ipv4_with_tlvs(),
                proxied("192.0.2.1:54321", "198.51.100.7:443"),
            ),
            (v2_ipv6(), proxied("[2001:db8::1]:12345", "[::1]:8080")),
            (v2(V2_LOCAL, 0x00, &[]), Source::Local),
            (
                v2(V2_LOCAL, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]),
                Source::Local,
            ),
            (v2(V2_LOCAL, 0x99, &[0xff; 5]), Source::Local),
            (v2(V2_PROXY, 0x00, &[0x04, 0x00, 0x00]), Source::Local),
            (v2(V2_PROXY, 0x31, &[0u8; 216]), Source::Local),
        ]
    }

    #[test]
    fn every_valid_header_parses_whole() {
        for (h, source) in valid() {
            assert_eq!(
                parse(&h),
                Parsed::Header {
                    len: h.len(),
                    source
                },
                "{h:?}"
            );
        }
    }

    #[test]
    fn bytes_after_the_header_are_not_in_len() {
        for (h, source) in valid() {
            let mut more = h.clone();
            more.extend_from_slice(b"\r\n\x00\x00\x00\x05hello PROXY ");
            assert_eq!(
                parse(&more),
                Parsed::Header {
                    len: h.len(),
                    source
                }
            );
        }
    }

    #[test]
    fn nothing_yet_waits_for_one_byte_only() {
        assert_eq!(parse(b""), Parsed::Incomplete { need: 1 });
        assert!(matches!(parse(&[0, 0, 0, 10]), Parsed::Invalid(_)));
    }

    #[test]
    fn every_cut_waits_for_more_then_gives_the_same_header() {
        for (h, source) in valid() {
            for cut in 0..h.len() {
                match parse(&h[..cut]) {
                    Parsed::Incomplete { need } => {
                        assert!(need > cut, "{h:?} cut at {cut}: need {need}");
                        assert!(need <= h.len(), "{h:?} cut at {cut}: need {need}");
                    }
                    other => panic!("{h:?} cut at {cut}: {other:?}"),
                }
            }
            assert_eq!(
                parse(&h),
                Parsed::Header {
                    len: h.len(),
                    source
                }
            );
        }
    }

    #[test]
    fn v1_need_is_capped_at_the_longest_line() {
        let line = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 92]].concat();
        assert_eq!(line.len(), 106);
        assert_eq!(parse(&line), Parsed::Incomplete { need: 107 });
    }

    #[test]
    fn an_overlong_v1_line_is_invalid() {
        // Complete but 108 bytes long.
        let mut line = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 92]].concat();
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), 108);
        assert!(matches!(parse(&line), Parsed::Invalid(_)));
        // 107 bytes and no end in sight, or the CR as the 107th byte.
        assert!(matches!(parse(&line[..107]), Parsed::Invalid(_)));
        let mut cr = line[..106].to_vec();
        cr.push(b'\r');
        assert!(matches!(parse(&cr), Parsed::Invalid(_)));
        // Exactly 107 bytes is fine.
        let mut max = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 91]].concat();
        max.extend_from_slice(b"\r\n");
        assert_eq!(max.len(), 107);
        assert_eq!(
            parse(&max),
            Parsed::Header {
                len: 107,
                source: Source::Local
            }
        );
    }

    #[test]
    fn impossible_prefixes_are_invalid_at_once() {
        for bytes in [
            &b"G"[..],
            b"GET / HTTP/1.1\r\n",
            b"\x16\x03\x01",
            b"PROXZ",
            b"PROXYX",
            b"PROXY tcp4",
            b"PROXY UDP4 ",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n",
            b"PROXY TCP4 1.2.3.4x",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r\r",
            b"\r\n\r\n\x00\r\nQUIX",
            b"\r\x00",
            b"\r\n\r\n\x00\r\nQUIT\n\x10",
            b"\r\n\r\n\x00\r\nQUIT\n\x22",
            b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c",
        ] {
            assert!(matches!(parse(bytes), Parsed::Invalid(_)), "{bytes:?}");
        }
    }

    #[test]
    fn malformed_headers_are_invalid() {
        for bytes in [
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 70000\r\n".to_vec(),
            b"PROXY TCP4 ::1 ::2 80 443\r\n".to_vec(),
            b"PROXY TCP6 1.2.3.4 5.6.7.8 80 443\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4  5.6.7.8 80 443\r\n".to_vec(),
            v2(V2_PROXY, 0x11, &[1, 2, 3, 4]),
            v2(V2_PROXY, 0x21, &[0; 12]),
            v2(V2_PROXY, 0x31, &[0; 100]),
            v2(V2_PROXY, 0x99, &[0; 12]),
        ] {
            assert!(matches!(parse(&bytes), Parsed::Invalid(_)), "{bytes:?}");
        }
    }

    #[test]
    fn v2_waits_for_the_length_it_announces() {
        let h = v2_ipv4_with_tlvs();
        assert_eq!(parse(&h[..16]), Parsed::Incomplete { need: h.len() });
        assert_eq!(parse(&h[..3]), Parsed::Incomplete { need: 16 });
        let biggest = v2(V2_PROXY, 0x11, &[0u8; u16::MAX as usize]);
        assert_eq!(
            parse(&biggest[..16]),
            Parsed::Incomplete { need: MAX_HEADER }
        );
        assert!(matches!(
            parse(&biggest),
            Parsed::Header {
                len: MAX_HEADER,
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            match parse(&bytes) {
                Parsed::Incomplete { need } => {
                    prop_assert!(need > bytes.len());
                    prop_assert!(need <= MAX_HEADER);
                }
                Parsed::Header { len, .. } => prop_assert!(len <= bytes.len()),
                Parsed::Invalid(_) => {}
            }
        }

        #[test]
        fn garbage_after_a_valid_prefix_never_panics(
            which in 0usize..11,
            cut in 0usize..300,
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let (h, _) = valid().swap_remove(which);
            let mut bytes = h[..cut.min(h.len())].to_vec();
            bytes.extend_from_slice(&tail);
            let _ = parse(&bytes);
        }

        #[test]
        fn a_prefix_that_cannot_match_is_invalid_at_once(
            bytes in proptest::collection::vec(any::<u8>(), 1..40),
        ) {
            if !agrees(&bytes, V1_PREFIX) && !agrees(&bytes, V2_SIGNATURE) {
                prop_assert!(matches!(parse(&bytes), Parsed::Invalid(_)));
            }
        }

        #[test]
        fn a_v1_line_cut_anywhere_waits_then_parses(
            a in any::<u32>(), b in any::<u32>(), p in any::<u16>(), q in any::<u16>(),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let line = format!(
                "PROXY TCP4 {} {} {p} {q}\r\n", Ipv4Addr::from(a), Ipv4Addr::from(b)
            );
            let h = line.as_bytes();
            for cut in 0..h.len() {
                match parse(&h[..cut]) {
                    Parsed::Incomplete { need } => prop_assert!(need > cut),
                    other => prop_assert!(false, "cut at {}: {:?}", cut, other),
                }
            }
            let mut whole = h.to_vec();
            whole.extend_from_slice(&tail);
            prop_assert_eq!(parse(&whole), Parsed::Header {
                len: h.len(),
                source: Source::Proxied {
                    client: SocketAddr::new(Ipv4Addr::from(a).into(), p),
                    destination: SocketAddr::new(Ipv4Addr::from(b).into(), q),
                },
            });
        }

        #[test]
        fn a_v2_header_cut_anywhere_waits_then_parses(
            a in any::<u128>(), b in any::<u128>(), p in any::<u16>(), q in any::<u16>(),
            tlvs in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut block = Vec::new();
            block.extend_from_slice(&a.to_be_bytes());
            block.extend_from_slice(&b.to_be_bytes());
            block.extend_from_slice(&p.to_be_bytes());
            block.extend_from_slice(&q.to_be_bytes());
            // TLVs are skipped, not validated: any bytes will do.
            block.extend_from_slice(&tlvs);
            let h = v2(V2_PROXY, 0x21, &block);
            for cut in 0..h.len() {
                match parse(&h[..cut]) {
                    Parsed::Incomplete { need } => prop_assert!(need > cut && need <= h.len()),
                    other => prop_assert!(false, "cut at {}: {:?}", cut, other),
                }
            }
            prop_assert_eq!(parse(&h), Parsed::Header {
                len: h.len(),
                source: Source::Proxied {
                    client: SocketAddr::new(Ipv6Addr::from(a).into(), p),
                    destination: SocketAddr::new(Ipv6Addr::from(b).into(), q),
                },
            });
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn trust_list_parses_cidrs_addresses_and_unix() {
        let list: ProxyFrom = "10.0.0.0/8, ::1/128,192.0.2.7,unix,2001:db8::/32"
            .parse()
            .unwrap();
        assert_eq!(
            list.to_string(),
            "10.0.0.0/8,::1/128,192.0.2.7/32,2001:db8::/32,unix"
        );
        assert_eq!(list.to_string().parse::<ProxyFrom>().unwrap(), list);
        assert!(list.trusts(ip("10.1.2.3")));
        assert!(list.trusts(ip("::1")));
        assert!(list.trusts(ip("192.0.2.7")));
        assert!(list.trusts(ip("2001:db8:1::5")));
        assert!(list.trusts(None));
        assert!(!list.trusts(ip("192.0.2.8")));
        assert!(!list.trusts(ip("11.0.0.1")));
        assert!(!list.trusts(ip("::2")));
        assert!(!list.trusts(ip("127.0.0.1")));
    }

    #[test]
    fn mapped_peers_match_ipv4_cidrs() {
        let list: ProxyFrom = "10.0.0.0/8".parse().unwrap();
        assert!(list.trusts(ip("::ffff:10.1.2.3")));
        assert!(!list.trusts(ip("::ffff:11.1.2.3")));
        assert!(!list.trusts(None), "unix not listed");
        // A CIDR written in the mapped form still matches the mapped peer.
        let mapped: ProxyFrom = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.trusts(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn trust_list_errors_name_the_bad_entry() {
        for (value, entry) in [
            ("10.0.0.0/8,bogus", "bogus"),
            ("10.0.0.0/33", "10.0.0.0/33"),
            ("10.0.0.0/8,,unix", ""),
            ("localhost", "localhost"),
            ("[::1]", "[::1]"),
            ("10.0.0.0/8 ,10.0.0.1/", "10.0.0.1/"),
        ] {
            let err = value.parse::<ProxyFrom>().unwrap_err();
            assert_eq!(err, ProxyFromError::Entry(entry.to_owned()), "{value}");
            assert!(err.to_string().contains(&format!("`{entry}`")), "{err}");
        }
        let err = "10.1.2.3/8".parse::<ProxyFrom>().unwrap_err();
        assert!(err.to_string().contains("`10.0.0.0/8`"), "{err}");
        assert_eq!("".parse::<ProxyFrom>(), Err(ProxyFromError::Empty));
        assert_eq!(" ".parse::<ProxyFrom>(), Err(ProxyFromError::Empty));
    }
}
