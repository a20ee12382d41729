//! Helpers of the wire protocol tests (`protocol_*.rs`): frames and bare
//! headers as raw bytes, payloads whose damage shows, a config with a small
//! `max_frame`, and stopping a server for its report.

use wharf::{Config, Framing, Report, Server};

use super::config;

/// One length frame, as raw bytes.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Framing::Length.encode(kind, payload, &mut out);
    out
}

/// A DATA frame header announcing `len` (kind byte plus payload), nothing else.
pub fn header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// Starts the drain and waits for it.
pub fn stop(server: Server) -> Report {
    server.handle().shutdown();
    server.join()
}

/// A payload of `len` bytes that is not all the same byte, so that
/// truncation, reordering or an off-by-one shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn small_max_config(max_frame: u32) -> Config {
    Config {
        max_frame,
        ..config()
    }
}
