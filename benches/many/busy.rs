//! The idle crowd's busy connections: closed-loop echo ping-pong of
//! [`DATA_PAYLOAD`] bytes, as fast as one thread per connection can go.

use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;

use hdrhistogram::Histogram;
use wharf::frame::{DATA, GOAWAY};

use crate::wire::{
    frame, goaway_text, histogram, micros, payload, read_frame, Errors, DATA_PAYLOAD,
};

#[derive(Default)]
pub(crate) struct BusyResult {
    pub(crate) latency: Option<Histogram<u64>>,
    /// Replies that arrived within the window.
    pub(crate) in_window: u64,
    pub(crate) errors: Errors,
}

pub(crate) fn busy_loop(
    id: u64,
    mut stream: TcpStream,
    measure_from: Instant,
    measure_to: Instant,
) -> BusyResult {
    let mut result = BusyResult {
        latency: Some(histogram()),
        ..BusyResult::default()
    };
    let mut body = Vec::new();
    let mut out = Vec::new();
    let mut seq = 1u64;
    loop {
        let sent = Instant::now();
        if sent >= measure_to {
            break;
        }
        payload(id, seq, DATA_PAYLOAD, &mut body);
        out.clear();
        frame(DATA, &body, &mut out);
        let reply = stream
            .write_all(&out)
            .and_then(|()| read_frame(&mut stream));
        let received = Instant::now();
        match reply {
            Ok((DATA, reply)) if reply == body => {}
            Ok((GOAWAY, reply)) => {
                result
                    .errors
                    .push(format!("busy connection {id}: {}", goaway_text(&reply)));
                break;
            }
            Ok((kind, _)) => {
                result
                    .errors
                    .push(format!("busy connection {id}: wrong reply (kind {kind})"));
                break;
            }
            Err(e) => {
                result.errors.push(format!("busy connection {id}: {e}"));
                break;
            }
        }
        if received >= measure_from && received < measure_to {
            result.in_window += 1;
            if sent >= measure_from {
                if let Some(h) = result.latency.as_mut() {
                    h.saturating_record(micros(received - sent));
                }
            }
        }
        seq += 1;
    }
    result
}
