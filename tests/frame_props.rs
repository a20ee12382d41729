//! Property tests of the wire format in `wharf::frame`: encode/decode round
//! trips, robustness against arbitrary bytes, independence from how a stream
//! is split into reads, and the header-only rejection of oversized frames.

use proptest::collection::vec;
use proptest::prelude::*;
use wharf::frame::{DecodeError, Decoded, Frame, GoAway, DATA, HEADER_LEN, PING};
use wharf::{Framing, GoAwayCode};

/// An owned copy of a decoded frame.
type Owned = (u8, Vec<u8>);

fn decode_one(framing: Framing, buf: &[u8], scanned: usize, max: u32) -> Option<(Owned, usize)> {
    match framing.decode(buf, scanned, max) {
        Ok(Decoded::Frame {
            frame: Frame { kind, payload },
            used,
        }) => Some(((kind, payload.to_vec()), used)),
        Ok(Decoded::Partial { .. }) => None,
        Err(e) => panic!("unexpected decode error {e:?}"),
    }
}

/// What the line decoder makes of a newline-free line: one trailing `\r` is
/// dropped, and the line `PING` is a heartbeat.
fn expected_line_frame(line: &[u8]) -> Owned {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"PING" {
        (PING, Vec::new())
    } else {
        (DATA, line.to_vec())
    }
}

/// A max_frame and a payload that fits it (`len = payload + 1 <= max`).
fn max_and_payload() -> impl Strategy<Value = (u32, Vec<u8>)> {
    (1u32..=8192).prop_flat_map(|max| (Just(max), vec(any::<u8>(), 0..max as usize)))
}

/// Any byte but `\n`.
fn no_newline() -> impl Strategy<Value = u8> {
    any::<u8>().prop_map(|b| if b == b'\n' { b'N' } else { b })
}

/// A max_frame and a newline-free line of at most max_frame bytes.
fn max_and_line() -> impl Strategy<Value = (u32, Vec<u8>)> {
    (1u32..=2048).prop_flat_map(|max| (Just(max), vec(no_newline(), 0..=max as usize)))
}

/// Reads `stream` in the given chunk sizes the way a server does: append
/// each chunk to a buffer, decode complete frames from the front, and
/// remember how much of an unfinished line was already scanned.
fn decode_in_chunks(
    framing: Framing,
    stream: &[u8],
    chunks: &[usize],
    max: u32,
) -> Result<Vec<Owned>, TestCaseError> {
    let mut buf = Vec::new();
    let mut start = 0;
    let mut scanned = 0;
    let mut out = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while fed < stream.len() {
        let size = sizes.next().unwrap_or(1).max(1).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + size]);
        fed += size;
        loop {
            let pending = &buf[start..];
            match framing.decode(pending, scanned, max) {
                Ok(Decoded::Frame { frame, used }) => {
                    prop_assert!(used > 0 && used <= pending.len());
                    out.push((frame.kind, frame.payload.to_vec()));
                    start += used;
                    scanned = 0;
                }
                Ok(Decoded::Partial { need }) => {
                    prop_assert!(need > pending.len(), "need {need} <= {}", pending.len());
                    scanned = pending.len();
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(format!("decode error {e:?}"))),
            }
        }
    }
    prop_assert_eq!(start, buf.len(), "bytes left over");
    Ok(out)
}

proptest! {
    #[test]
    fn length_frames_round_trip((max, payload) in max_and_payload(), kind in any::<u8>(),
                                trailing in vec(any::<u8>(), 0..16)) {
        let mut buf = Vec::new();
        Framing::Length.encode(kind, &payload, &mut buf);
        prop_assert_eq!(buf.len(), HEADER_LEN + payload.len());
        prop_assert_eq!(&buf[..4], &(payload.len() as u32 + 1).to_be_bytes());
        let total = buf.len();
        // Whatever follows the frame does not change it.
        buf.extend_from_slice(&trailing);
        let ((k, p), used) = decode_one(Framing::Length, &buf, 0, max).expect("whole frame");
        prop_assert_eq!(k, kind);
        prop_assert_eq!(&p, &payload);
        prop_assert_eq!(used, total);
        // At the tightest limit (len == max_frame) it is still accepted...
        let tight = payload.len() as u32 + 1;
        let ((k, p), used) = decode_one(Framing::Length, &buf, 0, tight).expect("len == max_frame");
        prop_assert_eq!((k, &p, used), (kind, &payload, total));
        // ...and one below, it is rejected from the header alone.
        if tight > 1 {
            prop_assert_eq!(
                Framing::Length.decode(&buf[..4], 0, tight - 1),
                Err(DecodeError::TooLarge {
                    len: u64::from(tight),
                    max: tight - 1,
                    header: Some(tight.to_be_bytes()),
                })
            );
        }
    }

    #[test]
    fn length_frame_prefixes_are_partial((max, payload) in max_and_payload(), kind in any::<u8>(),
                                         cut in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        Framing::Length.encode(kind, &payload, &mut buf);
        let cut = cut.index(buf.len());
        match Framing::Length.decode(&buf[..cut], 0, max) {
            Ok(Decoded::Partial { need }) => {
                prop_assert!(need > cut);
                if cut >= 4 {
                    prop_assert_eq!(need, buf.len());
                }
            }
            other => return Err(TestCaseError::fail(format!("{other:?} for a {cut}-byte prefix"))),
        }
    }

    #[test]
    fn data_lines_round_trip((max, line) in max_and_line(), crlf in any::<bool>(),
                             trailing in vec(any::<u8>(), 0..16)) {
        let mut buf = Vec::new();
        Framing::Line.encode_data(&line, &mut buf);
        prop_assert_eq!(buf.last(), Some(&b'\n'));
        if crlf {
            buf.insert(buf.len() - 1, b'\r');
        }
        let total = buf.len();
        buf.extend_from_slice(&trailing);
        let (frame, used) = decode_one(Framing::Line, &buf, 0, max).expect("whole line");
        prop_assert_eq!(used, total);
        let expected = if crlf {
            // `line\r\n`: exactly the `\r` we added is dropped.
            if line == b"PING" { (PING, Vec::new()) } else { (DATA, line.clone()) }
        } else {
            expected_line_frame(&line)
        };
        prop_assert_eq!(&frame, &expected);
        // The line without its terminator is exactly max_frame bytes: accepted;
        // one byte less: rejected.
        let content = total - 1 - usize::from(total >= 2 && buf[total - 2] == b'\r');
        if content >= 1 {
            let tight = content as u32;
            let (tight_frame, used) = decode_one(Framing::Line, &buf, 0, tight).expect("line == max_frame");
            prop_assert_eq!((&tight_frame, used), (&expected, total));
            if tight > 1 {
                let too_large = matches!(
                    Framing::Line.decode(&buf, 0, tight - 1),
                    Err(DecodeError::TooLarge { .. })
                );
                prop_assert!(too_large, "a line of {} bytes accepted with max {}", content, tight - 1);
            }
        }
    }

    #[test]
    fn line_replies_stay_on_one_line(kind in prop::sample::select(vec![2u8, 3, 4, 5, 0x09]),
                                     payload in vec(any::<u8>(), 0..200)) {
        let mut buf = Vec::new();
        Framing::Line.encode(kind, &payload, &mut buf);
        prop_assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(buf.last(), Some(&b'\n'));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics_or_overreads(
        bytes in vec(any::<u8>(), 0..600),
        max in prop_oneof![1u32..=64, 1u32..=4096, Just(u32::MAX)],
        scanned in 0usize..700,
    ) {
        for framing in [Framing::Length, Framing::Line] {
            for scanned in [0, scanned] {
                match framing.decode(&bytes, scanned, max) {
                    Ok(Decoded::Frame { frame, used }) => {
                        prop_assert!(used >= 1 && used <= bytes.len(), "used {used} of {}", bytes.len());
                        prop_assert!(frame.payload.len() < used);
                    }
                    Ok(Decoded::Partial { need }) => prop_assert!(need > bytes.len()),
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn length_decoding_of_arbitrary_bytes_matches_the_header(
        bytes in vec(any::<u8>(), 0..300),
        max in 1u32..=256,
    ) {
        let result = Framing::Length.decode(&bytes, 0, max);
        if bytes.len() < 4 {
            prop_assert_eq!(result, Ok(Decoded::Partial { need: HEADER_LEN }));
            return Ok(());
        }
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        match result {
            Err(DecodeError::EmptyFrame) => prop_assert_eq!(len, 0),
            Err(DecodeError::TooLarge { len: l, max: m, header }) => {
                prop_assert!(len > max);
                prop_assert_eq!((l, m), (u64::from(len), max));
                prop_assert_eq!(header, Some(len.to_be_bytes()));
            }
            Ok(Decoded::Partial { need }) => {
                prop_assert!(len >= 1 && len <= max);
                prop_assert_eq!(need, 4 + len as usize);
                prop_assert!(bytes.len() < need);
            }
            Ok(Decoded::Frame { frame, used }) => {
                prop_assert!(len >= 1 && len <= max);
                prop_assert_eq!(used, 4 + len as usize);
                prop_assert_eq!(frame.kind, bytes[4]);
                prop_assert_eq!(frame.payload, &bytes[5..used]);
            }
        }
    }

    #[test]
    fn partial_frames_never_ask_for_more_than_one_max_frame(
        (max, len) in prop_oneof![1u32..=64, 1u32..=(1 << 30)]
            .prop_flat_map(|max| (Just(max), 1u32..=max)),
        present in vec(any::<u8>(), 0..64),
        line in vec(no_newline(), 0..=70),
    ) {
        // A reader that grows its buffer only to `need` never holds more
        // than one max_frame frame (plus its header or terminator).
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(&present);
        if let Ok(Decoded::Partial { need }) = Framing::Length.decode(&buf, 0, max) {
            prop_assert_eq!(need, 4 + len as usize);
            prop_assert!(need <= max as usize + HEADER_LEN);
        }
        let small = max.min(64);
        if let Ok(Decoded::Partial { need }) = Framing::Line.decode(&line, 0, small) {
            prop_assert!(need <= small as usize + 2, "need {need} for max {small}");
        }
    }

    #[test]
    fn length_stream_decodes_the_same_however_it_is_split(
        frames in vec((any::<u8>(), vec(any::<u8>(), 0..300)), 0..24),
        chunks in vec(1usize..700, 1..12),
    ) {
        let max = 301;
        let mut stream = Vec::new();
        for (kind, payload) in &frames {
            Framing::Length.encode(*kind, payload, &mut stream);
        }
        let decoded = decode_in_chunks(Framing::Length, &stream, &chunks, max)?;
        prop_assert_eq!(&decoded, &frames);
        // Worst case: a byte at a time.
        let decoded = decode_in_chunks(Framing::Length, &stream, &[1], max)?;
        prop_assert_eq!(&decoded, &frames);
    }

    #[test]
    fn line_stream_decodes_the_same_however_it_is_split(
        lines in vec((vec(prop_oneof![8 => no_newline(), 1 => Just(b'\r')], 0..=64),
                      0u8..3), 0..24),
        chunks in vec(1usize..200, 1..12),
    ) {
        let max = 64;
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (line, style) in &lines {
            match style {
                // The heartbeat line.
                0 => {
                    stream.extend_from_slice(b"PING\n");
                    expected.push((PING, Vec::new()));
                }
                // `line\n`: a trailing `\r` of the line itself is dropped.
                1 => {
                    stream.extend_from_slice(line);
                    stream.push(b'\n');
                    expected.push(expected_line_frame(line));
                }
                // `line\r\n`: the line comes back exactly.
                _ => {
                    stream.extend_from_slice(line);
                    stream.extend_from_slice(b"\r\n");
                    expected.push(if line == b"PING" { (PING, Vec::new()) } else { (DATA, line.clone()) });
                }
            }
        }
        let decoded = decode_in_chunks(Framing::Line, &stream, &chunks, max)?;
        prop_assert_eq!(&decoded, &expected);
        let decoded = decode_in_chunks(Framing::Line, &stream, &[1], max)?;
        prop_assert_eq!(&decoded, &expected);
    }

    #[test]
    fn line_scanned_hint_does_not_change_the_result(
        (max, line) in max_and_line(),
        tail in vec(any::<u8>(), 0..8),
        hint in any::<prop::sample::Index>(),
    ) {
        // `scanned` may be anything up to the newline-free prefix.
        let mut buf = line.clone();
        buf.push(b'\n');
        buf.extend_from_slice(&tail);
        let scanned = hint.index(line.len() + 1);
        prop_assert_eq!(
            Framing::Line.decode(&buf, scanned, max),
            Framing::Line.decode(&buf, 0, max)
        );
        // Without the newline yet: still partial, whatever was scanned.
        let scanned = hint.index(line.len() + 1);
        prop_assert_eq!(
            Framing::Line.decode(&line, scanned, max),
            Framing::Line.decode(&line, 0, max)
        );
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone(
        max in 1u32..=(1 << 30),
        excess in prop_oneof![1u64..=16, 1u64..=u64::from(u32::MAX)],
        payload_prefix in vec(any::<u8>(), 0..8),
    ) {
        let len = (u64::from(max) + excess).min(u64::from(u32::MAX)) as u32;
        prop_assume!(len > max);
        let header = len.to_be_bytes();
        let error = DecodeError::TooLarge { len: u64::from(len), max, header: Some(header) };
        let expected = Err(error);
        prop_assert_eq!(Framing::Length.decode(&header, 0, max), expected);
        // With some of the payload present the answer is the same.
        let mut buf = header.to_vec();
        buf.extend_from_slice(&payload_prefix);
        prop_assert_eq!(Framing::Length.decode(&buf, 0, max), expected);
        prop_assert_eq!(error.goaway_code(), GoAwayCode::FrameTooLarge);
        // The framing hint appears exactly when the four bytes read as text.
        let text = header
            .iter()
            .all(|&b| matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r'));
        prop_assert_eq!(error.text_header().is_some(), text);
        prop_assert_eq!(error.to_string().contains("looks like text"), text);
        prop_assert_eq!(error.goaway_reason().contains("--framing line"), text);
    }

    #[test]
    fn a_text_header_always_gets_the_framing_hint(
        header in proptest::array::uniform4(
            prop_oneof![0x20u8..=0x7e, Just(b'\t'), Just(b'\n'), Just(b'\r')]
        ),
    ) {
        // Every text header announces at least 0x09090909 bytes (151 MB),
        // far above the default max-frame of 1 MiB.
        let error = Framing::Length.decode(&header, 0, 1 << 20).unwrap_err();
        prop_assert_eq!(error.text_header(), Some(header));
        prop_assert_eq!(error.goaway_code(), GoAwayCode::FrameTooLarge);
        prop_assert!(error.goaway_reason().ends_with("is the client using --framing line?"));
    }

    #[test]
    fn overlong_line_is_rejected_without_a_newline(
        max in 1u32..=512,
        extra in 1usize..64,
        byte in any::<u8>().prop_filter("no newline or CR", |b| *b != b'\n' && *b != b'\r'),
    ) {
        // max_frame + 1 bytes, the last not a possible `\r` of `\r\n`.
        let buf = vec![byte; max as usize + 1];
        let too_large = matches!(
            Framing::Line.decode(&buf, 0, max),
            Err(DecodeError::TooLarge { .. })
        );
        prop_assert!(too_large, "max_frame + 1 bytes accepted");
        let buf = vec![byte; max as usize + extra];
        prop_assert!(Framing::Line.decode(&buf, 0, max).is_err());
        // And up to max_frame bytes are just an unfinished line.
        let buf = vec![byte; max as usize];
        let partial = matches!(
            Framing::Line.decode(&buf, 0, max),
            Ok(Decoded::Partial { need }) if need > max as usize
        );
        prop_assert!(partial, "max_frame bytes rejected");
    }

    #[test]
    fn zero_length_is_a_protocol_error(max in 1u32..=u32::MAX, rest in vec(any::<u8>(), 0..8)) {
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(&rest);
        let err = Framing::Length.decode(&buf, 0, max).unwrap_err();
        prop_assert_eq!(err, DecodeError::EmptyFrame);
        prop_assert_eq!(err.goaway_code(), GoAwayCode::ProtocolError);
    }

    #[test]
    fn goaway_round_trips_in_length_framing(code in any::<u16>(), reason in ".{0,80}") {
        let mut buf = Vec::new();
        match GoAwayCode::from_u16(code) {
            Some(known) => Framing::Length.encode_goaway(known, &reason, &mut buf),
            None => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(reason.as_bytes());
                Framing::Length.encode(wharf::frame::GOAWAY, &payload, &mut buf);
            }
        }
        let ((kind, payload), used) =
            decode_one(Framing::Length, &buf, 0, u32::MAX).expect("whole frame");
        prop_assert_eq!(kind, wharf::frame::GOAWAY);
        prop_assert_eq!(used, buf.len());
        let goaway = GoAway::parse(Framing::Length, &payload).expect("parses");
        prop_assert_eq!(goaway, GoAway { code, reason });
    }

    #[test]
    fn goaway_round_trips_in_line_framing(
        code in prop::sample::select(GoAwayCode::ALL.to_vec()),
        reason in "[^\n\r]{0,80}",
    ) {
        let mut buf = Vec::new();
        Framing::Line.encode_goaway(code, &reason, &mut buf);
        let ((kind, line), used) =
            decode_one(Framing::Line, &buf, 0, 1024).expect("whole line");
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(kind, DATA);
        let text = String::from_utf8(line.clone()).expect("UTF-8");
        prop_assert!(text.starts_with(&format!("GOAWAY {} ", code.as_u16())), "{}", text);
        let payload = line.strip_prefix(b"GOAWAY ").expect("GOAWAY prefix");
        let goaway = GoAway::parse(Framing::Line, payload).expect("parses");
        prop_assert_eq!(goaway, GoAway { code: code.as_u16(), reason });
    }

    #[test]
    fn goaway_parse_never_panics(payload in vec(any::<u8>(), 0..64)) {
        let parsed = GoAway::parse(Framing::Length, &payload);
        prop_assert_eq!(parsed.is_some(), payload.len() >= 2);
        if let Some(g) = parsed {
            prop_assert_eq!(g.code, u16::from_be_bytes([payload[0], payload[1]]));
        }
        if let Some(g) = GoAway::parse(Framing::Line, &payload) {
            // The code is the text before the first space, as a number.
            let text = String::from_utf8_lossy(&payload);
            let first = text.split(' ').next().unwrap_or("");
            prop_assert_eq!(first.parse::<u16>().ok(), Some(g.code));
        }
    }
}

#[test]
fn goaway_codes_round_trip_through_u16() {
    for code in GoAwayCode::ALL {
        assert_eq!(GoAwayCode::from_u16(code.as_u16()), Some(code));
    }
    let wire: Vec<u16> = GoAwayCode::ALL.iter().map(|c| c.as_u16()).collect();
    assert_eq!(wire, [1, 2, 3, 4, 5, 6]);
    assert_eq!(GoAwayCode::from_u16(0), None);
    assert_eq!(GoAwayCode::from_u16(7), None);
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// A reason with a newline must not split a line-framing GOAWAY in two.
    #[test]
    fn line_goaway_stays_on_one_line_for_any_reason(
        code in prop::sample::select(GoAwayCode::ALL.to_vec()),
        reason in ".{0,40}\n.{0,40}",
    ) {
        let mut buf = Vec::new();
        Framing::Line.encode_goaway(code, &reason, &mut buf);
        prop_assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
