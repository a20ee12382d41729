//! The inbox split at every point, the budget it keeps, and the look the
//! spent budget takes at the socket.

use super::*;
use crate::frame::{DATA, PING};
use proptest::prelude::*;

fn budget(max: usize) -> Arc<Budget> {
    Arc::new(Budget::new(max, Box::new(|| {})))
}

/// Feeds `stream` in the chunks given by `cuts`; after every chunk the
/// connection leaves with a carry and comes back to a *different*
/// inbox. Returns every frame decoded, as (kind, payload).
fn decode_in_pieces(
    framing: Framing,
    max_frame: u32,
    stream: &[u8],
    cuts: &[usize],
) -> Result<Vec<(u8, Vec<u8>)>, DecodeError> {
    let budget = budget(1 << 30);
    let mut inboxes = [
        Inbox::new(framing, max_frame, Arc::clone(&budget)),
        Inbox::new(framing, max_frame, Arc::clone(&budget)),
    ];
    let mut frames = Vec::new();
    let mut carry = None;
    let mut at = 0;
    for (turn, &cut) in cuts.iter().chain([&stream.len()]).enumerate() {
        let inbox = &mut inboxes[turn % 2];
        if let Some(carry) = carry.take() {
            inbox.restore(carry);
        }
        let cut = cut.clamp(at, stream.len());
        while at < cut {
            let spare = inbox.spare();
            let n = spare.len().min(cut - at);
            assert!(n > 0, "no room to read");
            spare[..n].copy_from_slice(&stream[at..at + n]);
            inbox.filled(n);
            at += n;
            while let Some(frame) = inbox.next_frame()? {
                frames.push((frame.kind, frame.payload.to_vec()));
            }
        }
        inbox.count_unfinished();
        carry = inbox.stash();
    }
    let left = carry.as_ref().map_or(0, Carry::len);
    drop(carry);
    assert_eq!(
        budget.used(),
        0,
        "budget released ({left} bytes were carried)"
    );
    Ok(frames)
}

fn length_stream(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        Framing::Length.encode(if i % 3 == 2 { PING } else { DATA }, p, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any split of any length-framed stream, with the connection
    /// resting (and changing worker) at every split, decodes the same
    /// frames as one read.
    #[test]
    fn length_frames_survive_any_split_across_rests(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        cuts in prop::collection::vec(0usize..4000, 0..24),
    ) {
        let stream = length_stream(&payloads);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = decode_in_pieces(Framing::Length, 1 << 20, &stream, &[]).unwrap();
        let pieces = decode_in_pieces(Framing::Length, 1 << 20, &stream, &cuts).unwrap();
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(whole.len(), payloads.len());
    }

    /// The same for lines, including the scan offset of a long line and
    /// a `\r\n` cut between its two bytes.
    #[test]
    fn lines_survive_any_split_across_rests(
        lines in prop::collection::vec("[a-zA-Z0-9 ]{0,200}", 0..12),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(0usize..3000, 0..24),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let stream: String = lines.iter().map(|l| format!("{l}{end}")).collect();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = decode_in_pieces(Framing::Line, 256, stream.as_bytes(), &[]).unwrap();
        let pieces = decode_in_pieces(Framing::Line, 256, stream.as_bytes(), &cuts).unwrap();
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(whole.len(), lines.len());
    }

    /// A line too long is refused at the same byte however it is split.
    #[test]
    fn an_overlong_line_is_refused_however_it_is_split(
        len in 9usize..200,
        cuts in prop::collection::vec(0usize..200, 0..12),
    ) {
        let stream = vec![b'x'; len];
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert!(decode_in_pieces(Framing::Line, 8, &stream, &cuts).is_err());
    }
}

#[test]
fn unfinished_bytes_are_counted_until_taken_back() {
    let budget = budget(1 << 20);
    let mut inbox = Inbox::new(Framing::Length, 1024, Arc::clone(&budget));
    let spare = inbox.spare();
    spare[..3].copy_from_slice(&[0, 0, 0]);
    inbox.filled(3);
    assert!(inbox.next_frame().unwrap().is_none());
    assert_eq!(
        budget.used(),
        0,
        "not counted while it may still be answered"
    );
    inbox.count_unfinished();
    assert_eq!(budget.used(), 3);
    let carry = inbox.stash().expect("a carry");
    assert_eq!((carry.len(), budget.used()), (3, 3));
    let mut other = Inbox::new(Framing::Length, 1024, Arc::clone(&budget));
    other.restore(carry);
    assert_eq!(budget.used(), 3, "the new inbox counts it");
    other.clear();
    assert_eq!(budget.used(), 0);
    let carry = {
        let spare = other.spare();
        spare[..2].copy_from_slice(&[0, 0]);
        other.filled(2);
        other.stash().expect("a carry")
    };
    assert_eq!(budget.used(), 2);
    drop(carry);
    assert_eq!(budget.used(), 0, "a dropped carry releases its bytes");
}

#[test]
fn complete_prefix_counts_only_bytes_that_finish_frames() {
    let mut inbox = Inbox::new(Framing::Length, 1024, budget(1 << 30));
    let mut stream = Vec::new();
    Framing::Length.encode_data(b"one", &mut stream); // 8 bytes
    Framing::Length.encode_data(b"two", &mut stream); // 8 more
                                                      // Three bytes of the first frame already read and unconsumed.
    inbox.spare()[..3].copy_from_slice(&stream[..3]);
    inbox.filled(3);
    assert!(inbox.next_frame().unwrap().is_none());
    // Peeked: the rest of frame one and half of frame two.
    let peeked = &stream[3..12];
    inbox.spare()[..peeked.len()].copy_from_slice(peeked);
    assert_eq!(
        inbox.complete_prefix(peeked.len()),
        Prefix::Complete(5),
        "through frame one only"
    );
    // Nothing complete in a peek of two bytes: frame one needs 8 in all.
    assert_eq!(inbox.complete_prefix(2), Prefix::Partial { need: 8 });
    // A malformed header counts whole, so reading it reports the error.
    let mut bad = Inbox::new(Framing::Length, 1024, budget(1 << 30));
    bad.spare()[..4].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(bad.complete_prefix(4), Prefix::Complete(4));
    // Lines: through the last newline; a partial line needs one more.
    let mut lines = Inbox::new(Framing::Line, 1024, budget(1 << 30));
    lines.spare()[..8].copy_from_slice(b"ab\ncd\nef");
    assert_eq!(lines.complete_prefix(8), Prefix::Complete(6));
    assert_eq!(lines.complete_prefix(2), Prefix::Partial { need: 3 });
}

#[test]
fn the_look_widens_to_a_whole_frame_of_any_size_up_to_max_frame() {
    let mut inbox = Inbox::new(Framing::Length, 1 << 20, budget(1 << 30));
    let mut frame = Vec::new();
    Framing::Length.encode_data(&[7; 40_000], &mut frame);
    // A first look of one read buffer sees only part of it...
    let window = inbox.peek_room(READ_BUF);
    assert_eq!(window.len(), READ_BUF);
    window.copy_from_slice(&frame[..READ_BUF]);
    assert_eq!(
        inbox.complete_prefix(READ_BUF),
        Prefix::Partial { need: frame.len() }
    );
    // ...and a look as wide as the frame sees all of it.
    let window = inbox.peek_room(frame.len());
    assert_eq!(window.len(), frame.len());
    window.copy_from_slice(&frame);
    assert_eq!(
        inbox.complete_prefix(frame.len()),
        Prefix::Complete(frame.len())
    );
    // Never wider than one max-frame frame.
    assert_eq!(inbox.peek_room(usize::MAX).len(), (1 << 20) + HEADER_LEN);
}

#[test]
fn a_read_never_takes_more_than_max_read() {
    let mut inbox = Inbox::new(Framing::Length, 1 << 20, budget(1 << 30));
    // Announce a frame of 1 MiB: the buffer grows, one read does not.
    inbox.spare()[..4].copy_from_slice(&(1u32 << 20).to_be_bytes());
    inbox.filled(4);
    assert!(inbox.next_frame().unwrap().is_none());
    assert_eq!(inbox.spare().len(), MAX_READ);
}
