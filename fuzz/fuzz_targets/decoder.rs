//! Fuzzes the frame decoder of both framings the way a worker drives it.
//!
//! The input is split into a `max_frame`, a chunking pattern and a byte
//! stream. The stream is fed in chunks to a buffer that is decoded from the
//! front, passing `scanned` as the worker does (bytes of the current partial
//! frame already searched for a newline; 0 after each complete frame). The
//! decoder must not panic, must never use more than it was given, must never
//! ask for more than `max_frame + 5` bytes, and must produce the same frames
//! (and the same error, if any) as decoding the whole stream at once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::frame::{DecodeError, Decoded, HEADER_LEN};
use wharf::Framing;

/// How decoding a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The stream ran out; this many bytes of a partial frame are left.
    Partial(usize),
    /// A protocol error (compared by variant: for lines the byte count
    /// reported depends on how much had arrived).
    EmptyFrame,
    TooLarge,
}

/// Decodes `stream`, delivered in chunks of the sizes in `chunks` (cycled),
/// like a worker does. Returns the frames (kind, payload) and how it ended.
fn decode_stream(
    framing: Framing,
    stream: &[u8],
    chunks: &[usize],
    max_frame: u32,
) -> (Vec<(u8, Vec<u8>)>, Outcome) {
    let limit = max_frame as usize + HEADER_LEN;
    let mut frames = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut scanned = 0usize;
    let mut fed = 0usize;
    let mut next_chunk = 0usize;
    while fed < stream.len() {
        let size = chunks[next_chunk % chunks.len()].max(1);
        next_chunk += 1;
        let take = size.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + take]);
        fed += take;
        loop {
            match framing.decode(&buf, scanned, max_frame) {
                Ok(Decoded::Frame { frame, used }) => {
                    assert!(used >= 1, "a frame uses at least one byte");
                    assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
                    assert!(used <= limit + 2, "frame of {used} bytes, max {max_frame}");
                    if framing == Framing::Length {
                        assert_eq!(frame.payload.len() + HEADER_LEN, used);
                    } else {
                        assert!(frame.payload.len() <= max_frame as usize);
                    }
                    frames.push((frame.kind, frame.payload.to_vec()));
                    buf.drain(..used);
                    scanned = 0;
                }
                Ok(Decoded::Partial { need }) => {
                    assert!(need <= limit, "need {need} > max_frame {max_frame} + 5");
                    assert!(need > buf.len(), "need {need} with {} buffered", buf.len());
                    // The worker records what it has searched so far.
                    scanned = buf.len();
                    break;
                }
                Err(DecodeError::EmptyFrame) => {
                    assert_eq!(framing, Framing::Length, "only length frames can be empty");
                    return (frames, Outcome::EmptyFrame);
                }
                Err(DecodeError::TooLarge { max, .. }) => {
                    assert_eq!(max, max_frame);
                    return (frames, Outcome::TooLarge);
                }
            }
        }
    }
    (frames, Outcome::Partial(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    // [max_frame: 2 bytes][pattern length: 1 byte][pattern][stream]
    let Some((head, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let raw = u16::from_be_bytes([head[0], head[1]]);
    // Mostly small limits, so frames complete and limits are hit; sometimes
    // the largest limit the server accepts.
    let max_frame = if raw == u16::MAX {
        wharf::config::MAX_FRAME_LIMIT
    } else {
        1 + u32::from(raw % 512)
    };
    let pattern_len = (usize::from(head[2]) % 8 + 1).min(rest.len());
    let (pattern, stream) = rest.split_at(pattern_len);
    let chunks: Vec<usize> = if pattern.is_empty() {
        vec![1]
    } else {
        pattern.iter().map(|&b| usize::from(b) + 1).collect()
    };

    for framing in [Framing::Length, Framing::Line] {
        let chunked = decode_stream(framing, stream, &chunks, max_frame);
        let whole = decode_stream(framing, stream, &[stream.len().max(1)], max_frame);
        assert_eq!(
            chunked, whole,
            "{framing:?}: chunked and whole decoding differ"
        );
    }
});
