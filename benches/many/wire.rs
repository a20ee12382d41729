//! The wire as the clients see it: payloads that name their connection and
//! sequence number, framing, reading one whole frame, opening connections
//! in batches ([`connect_all`]), and the latency histograms and error tally
//! every client thread keeps.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hdrhistogram::Histogram;
use wharf::frame::{DATA, GOAWAY, HEADER_LEN, PING, PONG};

/// Payload of every DATA request.
pub(crate) const DATA_PAYLOAD: usize = 64;
/// Payload of every PING: the connection's number and a sequence number.
pub(crate) const PING_PAYLOAD: usize = 16;
/// Connections opened at once before waiting for their PONGs.
const CONNECT_BATCH: usize = 100;
/// Pause between two batches of connections.
const CONNECT_PAUSE: Duration = Duration::from_millis(2);

/// The payload of request `seq` on connection `id`: both numbers, then a
/// pattern that depends on both, so a reply to the wrong request or from
/// the wrong connection cannot pass.
pub(crate) fn payload(id: u64, seq: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend(
        (16..len).map(|i| (id.wrapping_mul(31) ^ seq.wrapping_mul(7)).wrapping_add(i as u64) as u8),
    );
    out.truncate(len);
}

pub(crate) fn frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len() + 1).expect("small frame");
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

pub(crate) fn reply_kind(request: u8) -> u8 {
    if request == PING {
        PONG
    } else {
        DATA
    }
}

/// What a GOAWAY frame says, for an error message.
pub(crate) fn goaway_text(body: &[u8]) -> String {
    match body {
        [a, b, reason @ ..] => format!(
            "GOAWAY {} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "GOAWAY (malformed)".into(),
    }
}

/// Reads one whole frame from a blocking stream.
pub(crate) fn read_frame(stream: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; HEADER_LEN];
    stream.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > 1 << 20 {
        return Err(io::Error::new(ErrorKind::InvalidData, "bad frame length"));
    }
    let mut body = vec![0; len - 1];
    stream.read_exact(&mut body)?;
    Ok((head[4], body))
}

/// Opens `n` connections in batches; each sends a PING and its batch waits
/// for every PONG before the next batch. Connection `i` gets number
/// `first_id + i`. The streams are returned blocking, with TCP_NODELAY.
pub(crate) fn connect_all(
    addr: SocketAddr,
    n: usize,
    first_id: u64,
) -> Result<Vec<TcpStream>, String> {
    let mut streams = Vec::with_capacity(n);
    let mut out = Vec::new();
    let mut body = Vec::new();
    while streams.len() < n {
        let from = streams.len();
        let batch = CONNECT_BATCH.min(n - from);
        for i in from..from + batch {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .map_err(|e| format!("connection {i}: connect: {e}"))?;
            stream
                .set_nodelay(true)
                .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(10))))
                .map_err(|e| format!("connection {i}: {e}"))?;
            payload(first_id + i as u64, 0, PING_PAYLOAD, &mut body);
            out.clear();
            frame(PING, &body, &mut out);
            stream
                .write_all(&out)
                .map_err(|e| format!("connection {i}: first PING: {e}"))?;
            streams.push(stream);
        }
        for (i, stream) in streams.iter_mut().enumerate().skip(from) {
            let (kind, reply) =
                read_frame(stream).map_err(|e| format!("connection {i}: first PONG: {e}"))?;
            payload(first_id + i as u64, 0, PING_PAYLOAD, &mut body);
            if kind == GOAWAY {
                return Err(format!("connection {i}: {}", goaway_text(&reply)));
            }
            if kind != PONG || reply != body {
                return Err(format!(
                    "connection {i}: the first PONG is wrong (kind {kind})"
                ));
            }
        }
        std::thread::sleep(CONNECT_PAUSE);
    }
    Ok(streams)
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Keeps the first few error messages and counts all.
#[derive(Default)]
pub(crate) struct Errors {
    pub(crate) count: u64,
    pub(crate) first: Vec<String>,
}

impl Errors {
    pub(crate) fn push(&mut self, e: String) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(e);
        }
    }

    pub(crate) fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for e in other.first {
            if self.first.len() < 5 {
                self.first.push(e);
            }
        }
    }
}
