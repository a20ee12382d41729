//! Wire protocol v1 in length framing: the GOAWAY codes of a malformed
//! stream. A zero-length frame gets GOAWAY 4, a frame over `max_frame`
//! GOAWAY 5 from its header alone (with a hint when the header looks like
//! text), each after the replies to the requests before it; and the GOAWAY
//! payload is the code, then a UTF-8 reason.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::protocol::{frame, header, pattern, small_max_config, stop};
use common::{config, eventually, spawn_wharf, start, Client};
use wharf::frame::{GoAway, DATA, ERROR, GOAWAY, PING, PONG};
use wharf::{Config, Framing, GoAwayCode};

#[test]
fn zero_length_frame_gets_goaway_4_after_earlier_replies() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    batch.extend(frame(DATA, b"first"));
    batch.extend(frame(PING, b"second"));
    batch.extend(frame(0x42, b"third"));
    batch.extend(frame(DATA, b"fourth"));
    batch.extend(header(0));
    // Never answered: it comes after the malformed frame.
    batch.extend(frame(DATA, b"after"));
    client.send_raw(&batch);
    let before = client.expect_goaway(GoAwayCode::ProtocolError);
    let kinds: Vec<u8> = before.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [DATA, PONG, ERROR, DATA],
        "replies before GOAWAY: {before:?}"
    );
    assert_eq!(before[0].payload, b"first");
    assert_eq!(before[1].payload, b"second");
    assert_eq!(before[3].payload, b"fourth");
    let report = stop(server);
    assert_eq!(report.protocol_errors, 1);
    assert_eq!(report.requests, 4);
}

#[test]
fn zero_length_frame_alone_gets_goaway_4() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.echo(b"one");
    client.send_raw(&header(0));
    let before = client.expect_goaway(GoAwayCode::ProtocolError);
    assert!(before.is_empty(), "{before:?}");
    stop(server);
}

#[test]
fn goaway_payload_is_code_then_utf8_reason() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.send_raw(&header(0));
    let goaway = client.recv().expect("GOAWAY");
    assert_eq!(goaway.kind, GOAWAY);
    assert!(goaway.payload.len() >= 2, "{goaway:?}");
    assert_eq!(&goaway.payload[..2], &4u16.to_be_bytes());
    let reason = std::str::from_utf8(&goaway.payload[2..]).expect("reason is UTF-8");
    assert!(!reason.is_empty());
    client.expect_closed();
    stop(server);
}

#[test]
fn oversized_frame_is_rejected_from_its_header_alone() {
    let max = 4096u32;
    // A long heartbeat: a server waiting for the payload would not be
    // rescued by the reaper within the bound below.
    let server = start(Config {
        heartbeat_timeout: Duration::from_secs(60),
        reap_interval: Duration::from_secs(1),
        ..small_max_config(max)
    });
    let mut client = Client::connect(server.local_addr());
    client.echo(b"ok");
    // Only the 4-byte header: the server must not wait for the payload.
    let sent = Instant::now();
    client.send_raw(&header(max + 1));
    let before = client.expect_goaway(GoAwayCode::FrameTooLarge);
    assert!(before.is_empty(), "{before:?}");
    // Generous: a server waiting for 4097 bytes that never come would
    // instead hit the 10 s read timeout (or the 5 s heartbeat).
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    let report = stop(server);
    assert_eq!(report.protocol_errors, 1);
}

#[test]
fn huge_announced_length_is_rejected_from_its_header_alone() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.send_raw(&header(u32::MAX));
    client.expect_goaway(GoAwayCode::FrameTooLarge);
    // The default max: one past it is rejected too.
    let mut client = Client::connect(server.local_addr());
    client.send_raw(&header(1024 * 1024 + 1));
    client.expect_goaway(GoAwayCode::FrameTooLarge);
    stop(server);
}

/// Reads frames until the GOAWAY and returns it; then expects the close.
fn goaway_of(client: &mut Client) -> GoAway {
    loop {
        let frame = client.recv().expect("a GOAWAY before the close");
        if let Some(goaway) = frame.goaway(Framing::Length) {
            client.expect_closed();
            return goaway;
        }
    }
}

/// What `nc` sends a length server: the line "hello" reads as a length
/// header "hell" (1751477356 bytes). The code stays 5 (FRAME_TOO_LARGE);
/// the reason says the header looks like text.
#[test]
fn text_sent_to_a_length_server_gets_goaway_5_with_a_framing_hint() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.send_raw(b"hello\n");
    let goaway = goaway_of(&mut client);
    assert_eq!(goaway.code, GoAwayCode::FrameTooLarge.as_u16());
    assert_eq!(
        goaway.reason,
        "frame larger than max-frame; the header looks like text (\"hell\"): \
         is the client using --framing line?"
    );
    // A CRLF inside the header counts as text too, and is shown escaped.
    let mut client = Client::connect(server.local_addr());
    client.send_raw(b"hi\r\nthere\r\n");
    let goaway = goaway_of(&mut client);
    assert_eq!(goaway.code, GoAwayCode::FrameTooLarge.as_u16());
    assert!(
        goaway.reason.contains(r#"("hi\r\n")"#),
        "{:?}",
        goaway.reason
    );
    // Binary with a huge length that is not text: the plain reason.
    for bytes in [&[0xde, 0xad, 0xbe, 0xef, DATA][..], &header(u32::MAX)[..]] {
        let mut client = Client::connect(server.local_addr());
        client.send_raw(bytes);
        let goaway = goaway_of(&mut client);
        assert_eq!(goaway.code, GoAwayCode::FrameTooLarge.as_u16());
        assert_eq!(goaway.reason, "frame larger than max-frame", "{bytes:?}");
    }
    let report = stop(server);
    assert_eq!(report.protocol_errors, 4);
}

/// The server's log line names the text header too (the real binary, at
/// the default log level).
#[test]
fn text_sent_to_a_length_server_is_logged_with_a_framing_hint() {
    let wharf = spawn_wharf(&[]);
    let mut client = Client::connect(wharf.addr);
    client.send_raw(b"hello\n");
    assert_eq!(goaway_of(&mut client).code, 5);
    let hint = r#"frame of 1751477356 bytes exceeds max-frame 1048576; the header looks like text ("hell"): is the client using --framing line?"#;
    assert!(
        eventually(Duration::from_secs(10), || wharf.log().contains(hint)),
        "no hint in the log:\n{}",
        wharf.log()
    );
}

#[test]
fn oversized_frame_after_pipelined_requests_gets_their_replies_first() {
    let max = 4096u32;
    let server = start(small_max_config(max));
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    batch.extend(frame(DATA, b"a"));
    batch.extend(frame(DATA, &pattern(max as usize - 1, 0)));
    batch.extend(frame(PING, b"b"));
    batch.extend(header(max + 1));
    batch.push(DATA);
    batch.extend(pattern(100, 0));
    client.send_raw(&batch);
    let before = client.expect_goaway(GoAwayCode::FrameTooLarge);
    let kinds: Vec<u8> = before.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [DATA, DATA, PONG], "{before:?}");
    assert_eq!(before[0].payload, b"a");
    assert_eq!(before[1].payload, pattern(max as usize - 1, 0));
    assert_eq!(before[2].payload, b"b");
    stop(server);
}

#[test]
fn oversized_frame_whose_payload_is_sent_anyway_still_gets_goaway_5() {
    let max = 4096u32;
    let server = start(small_max_config(max));
    let mut client = Client::connect(server.local_addr());
    // A client that ignores the limit and writes the whole 1 MiB frame.
    let mut bytes = header(1024 * 1024).to_vec();
    bytes.push(DATA);
    bytes.extend(pattern(1024 * 1024 - 1, 0));
    let mut writer = client.stream.try_clone().unwrap();
    // The server may close while we are still writing: errors are expected.
    let sender = thread::spawn(move || writer.write_all(&bytes).is_ok());
    client.expect_goaway(GoAwayCode::FrameTooLarge);
    let _ = sender.join();
    stop(server);
}
