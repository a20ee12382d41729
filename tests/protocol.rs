//! Wire protocol v1 in length framing: replies, ordering, errors and GOAWAY codes.

mod common;

use std::io::Write;
use std::net::{Shutdown as How, SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, eventually, spawn_wharf, start, start_with, Client, Received};
use wharf::frame::{GoAway, DATA, ERROR, GOAWAY, PING, PONG};
use wharf::{Config, Echo, Framing, GoAwayCode, Report, Response, Server, ServiceError};

/// One length frame, as raw bytes.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Framing::Length.encode(kind, payload, &mut out);
    out
}

/// A DATA frame header announcing `len` (kind byte plus payload), nothing else.
fn header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// Starts the drain and waits for it.
fn stop(server: Server) -> Report {
    server.handle().shutdown();
    server.join()
}

/// A payload of `len` bytes that is not all the same byte, so that
/// truncation, reordering or an off-by-one shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn small_max_config(max_frame: u32) -> Config {
    Config {
        max_frame,
        ..config()
    }
}

/// Asserts that the reply is an ERROR with a UTF-8 message, and returns it.
fn expect_error(reply: Option<Received>) -> String {
    let reply = reply.expect("an ERROR reply, not end-of-stream");
    assert_eq!(
        reply.kind, ERROR,
        "reply kind (payload {:?})",
        reply.payload
    );
    String::from_utf8(reply.payload).expect("ERROR message is UTF-8")
}

#[test]
fn echoes_a_data_request() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.echo(b"hello");
    drop(client);
    server.handle().shutdown();
    assert_eq!(server.join().requests, 1);
}

#[test]
fn echo_of_an_empty_payload_is_a_one_byte_frame() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.echo(b"");
    // The exact bytes on the wire: len = 1, kind DATA, nothing else.
    client.send_raw(&frame(DATA, b""));
    let reply = client.recv().expect("reply");
    assert_eq!(
        reply,
        Received {
            kind: DATA,
            payload: Vec::new()
        }
    );
    drop(client);
    stop(server);
}

#[test]
fn echo_of_assorted_payload_sizes() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    for (i, len) in [
        1usize,
        2,
        1000,
        16 * 1024 - 5,
        16 * 1024,
        64 * 1024,
        100_000,
    ]
    .into_iter()
    .enumerate()
    {
        client.echo(&pattern(len, i as u8));
    }
    // Small requests still work after the buffer grew for a large one.
    client.echo(b"x");
    drop(client);
    // And on a fresh connection (the worker's buffers are reset in between).
    let mut client = Client::connect(server.local_addr());
    client.echo(&pattern(64 * 1024, 9));
    client.echo(b"y");
    drop(client);
    stop(server);
}

#[test]
fn frame_of_exactly_max_frame_is_accepted_with_a_small_max() {
    let max = 4096u32;
    let server = start(small_max_config(max));
    let mut client = Client::connect(server.local_addr());
    // len = kind byte + payload = max_frame exactly.
    let payload = pattern(max as usize - 1, 3);
    client.send_raw(&frame(DATA, &payload));
    let reply = client.recv().expect("reply");
    assert_eq!(reply.kind, DATA);
    assert_eq!(reply.payload, payload);
    // Twice in one write, and the connection is still fine afterwards.
    let mut both = frame(DATA, &payload);
    both.extend(frame(DATA, &pattern(max as usize - 1, 4)));
    client.send_raw(&both);
    assert_eq!(client.recv().unwrap().payload, payload);
    assert_eq!(client.recv().unwrap().payload, pattern(max as usize - 1, 4));
    client.echo(b"after");
    drop(client);
    stop(server);
}

#[test]
fn frame_of_exactly_max_frame_is_accepted_with_the_default_max() {
    let config = Config {
        max_frame: Config::default().max_frame,
        ..config()
    };
    assert_eq!(config.max_frame, 1024 * 1024);
    let server = start(config);
    let mut client = Client::connect(server.local_addr());
    let payload = pattern(1024 * 1024 - 1, 7);
    client.echo(&payload);
    client.echo(b"small after large");
    drop(client);
    stop(server);
}

#[test]
fn a_frame_dribbled_one_byte_at_a_time_is_reassembled() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let bytes = frame(DATA, b"dribbled payload");
    for &b in &bytes {
        client.send_raw(&[b]);
        thread::sleep(Duration::from_millis(2));
    }
    let reply = client.recv().expect("reply");
    assert_eq!(reply.kind, DATA);
    assert_eq!(reply.payload, b"dribbled payload");
    // A large frame written in uneven chunks.
    let payload = pattern(40_000, 1);
    let bytes = frame(DATA, &payload);
    for chunk in bytes.chunks(7919) {
        client.send_raw(chunk);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(client.recv().unwrap().payload, payload);
    drop(client);
    stop(server);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("request-{i}:").repeat(i % 7 + 1).into_bytes())
        .collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        batch.extend(frame(DATA, payload));
    }
    client.send_raw(&batch);
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply.kind, DATA, "reply {i}");
        assert_eq!(reply.payload, *payload, "reply {i} out of order or wrong");
    }
    client.echo(b"after the batch");
    drop(client);
    stop(server);
}

#[test]
fn pipelined_large_requests_are_answered_in_order() {
    // More output than one write batch: the responses are flushed in parts.
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..12).map(|i| pattern(60_000 + i, i as u8)).collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        batch.extend(frame(DATA, payload));
    }
    // Write from another thread: the server answers while we still send.
    let mut writer = client.stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&batch).expect("send batch"));
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply.kind, DATA);
        assert_eq!(reply.payload, *payload, "reply {i}");
    }
    sender.join().unwrap();
    drop(client);
    stop(server);
}

#[test]
fn pipelined_data_ping_and_bad_kinds_keep_their_order() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..90 {
        let payload = format!("m{i}").into_bytes();
        match i % 3 {
            0 => {
                batch.extend(frame(PING, &payload));
                expected.push((PONG, Some(payload)));
            }
            1 => {
                batch.extend(frame(DATA, &payload));
                expected.push((DATA, Some(payload)));
            }
            _ if i % 9 == 2 => {
                batch.extend(frame(0x09, &payload));
                expected.push((ERROR, None));
            }
            _ => {
                batch.extend(frame(DATA, &payload));
                expected.push((DATA, Some(payload)));
            }
        }
    }
    client.send_raw(&batch);
    for (i, (kind, payload)) in expected.into_iter().enumerate() {
        let reply = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply.kind, kind, "reply {i}: {reply:?}");
        if let Some(payload) = payload {
            assert_eq!(reply.payload, payload, "reply {i}");
        }
    }
    client.ping(b"done");
    drop(client);
    stop(server);
}

#[test]
fn ping_gets_pong_with_the_same_payload() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.ping(b"");
    client.ping(&pattern(64, 5));
    client.ping(b"x");
    client.echo(b"data still works");
    drop(client);
    stop(server);
}

#[test]
fn ping_longer_than_64_bytes_gets_error_and_connection_stays_usable() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.send(PING, &pattern(65, 1));
    let message = expect_error(client.recv());
    assert!(!message.is_empty(), "ERROR carries a message");
    client.send(PING, &pattern(1000, 1));
    expect_error(client.recv());
    client.echo(b"next");
    client.ping(&pattern(64, 2));
    drop(client);
    stop(server);
}

#[test]
fn unknown_kinds_get_error_and_connection_stays_usable() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    for kind in [0x00u8, 0x06, 0x09, 0x7f, 0xff] {
        client.send(kind, b"whatever");
        let message = expect_error(client.recv());
        assert!(
            !message.is_empty(),
            "kind 0x{kind:02x}: ERROR carries a message"
        );
        client.send(kind, b"");
        expect_error(client.recv());
        client.echo(format!("after 0x{kind:02x}").as_bytes());
    }
    drop(client);
    stop(server);
}

#[test]
fn client_sent_pong_goaway_and_error_get_error() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut goaway = Vec::new();
    goaway.extend_from_slice(&1u16.to_be_bytes());
    goaway.extend_from_slice(b"bye");
    for (kind, payload) in [
        (PONG, b"pong".to_vec()),
        (GOAWAY, goaway),
        (ERROR, b"oops".to_vec()),
        (PONG, Vec::new()),
        (GOAWAY, Vec::new()),
        (ERROR, Vec::new()),
    ] {
        client.send(kind, &payload);
        expect_error(client.recv());
        client.echo(b"still usable");
        client.ping(b"p");
    }
    drop(client);
    stop(server);
}

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

#[test]
fn half_close_still_gets_every_reply_then_end_of_stream() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..20).map(|i| pattern(i * 997 % 5000, i as u8)).collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        batch.extend(frame(DATA, payload));
    }
    batch.extend(frame(PING, b"last"));
    client.send_raw(&batch);
    client.stream.shutdown(How::Write).unwrap();
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client
            .recv()
            .unwrap_or_else(|| panic!("reply {i} after half-close"));
        assert_eq!(reply.kind, DATA);
        assert_eq!(reply.payload, *payload, "reply {i}");
    }
    let pong = client.recv().expect("PONG after half-close");
    assert_eq!((pong.kind, pong.payload.as_slice()), (PONG, &b"last"[..]));
    client.expect_closed();
    stop(server);
}

#[test]
fn half_close_with_a_slow_service_still_gets_every_reply() {
    let server = start_with(
        config(),
        Echo {
            delay: Duration::from_millis(20),
            ..Echo::default()
        },
    );
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    for i in 0..5u8 {
        batch.extend(frame(DATA, &[i]));
    }
    client.send_raw(&batch);
    client.stream.shutdown(How::Write).unwrap();
    for i in 0..5u8 {
        assert_eq!(client.recv().expect("reply").payload, [i]);
    }
    client.expect_closed();
    stop(server);
}

#[test]
fn half_close_with_a_partial_frame_answers_the_complete_ones() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut batch = frame(DATA, b"complete");
    batch.extend(&frame(DATA, b"never finished")[..7]);
    client.send_raw(&batch);
    client.stream.shutdown(How::Write).unwrap();
    assert_eq!(client.recv().expect("reply").payload, b"complete");
    client.expect_closed();
    stop(server);
}

/// Echo, except that requests starting with `fail` get a service error.
fn failing_service(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if let Some(rest) = request.strip_prefix(b"fail") {
        return Err(ServiceError(format!(
            "refused:{}",
            String::from_utf8_lossy(rest)
        )));
    }
    response.extend_from_slice(request);
    Ok(())
}

#[test]
fn service_error_becomes_error_with_its_message() {
    let server = start_with(config(), failing_service);
    let mut client = Client::connect(server.local_addr());
    client.echo(b"fine");
    let reply = client.request(b"fail-42");
    assert_eq!(reply.kind, ERROR);
    assert_eq!(reply.payload, b"refused:-42");
    client.echo(b"fine again");
    // Pipelined around an error: order and kinds kept.
    let mut batch = frame(DATA, b"a");
    batch.extend(frame(DATA, b"failX"));
    batch.extend(frame(DATA, b"b"));
    client.send_raw(&batch);
    assert_eq!(
        client.recv().unwrap(),
        Received {
            kind: DATA,
            payload: b"a".to_vec()
        }
    );
    assert_eq!(
        client.recv().unwrap(),
        Received {
            kind: ERROR,
            payload: b"refused:X".to_vec()
        }
    );
    assert_eq!(
        client.recv().unwrap(),
        Received {
            kind: DATA,
            payload: b"b".to_vec()
        }
    );
    drop(client);
    stop(server);
}

#[test]
fn service_error_discards_partial_response() {
    let service = |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        response.extend_from_slice(b"partial output");
        if request == b"bad" {
            return Err("bad request".into());
        }
        Ok(())
    };
    let server = start_with(config(), service);
    let mut client = Client::connect(server.local_addr());
    let reply = client.request(b"bad");
    assert_eq!(
        reply,
        Received {
            kind: ERROR,
            payload: b"bad request".to_vec()
        }
    );
    let reply = client.request(b"good");
    assert_eq!(
        reply,
        Received {
            kind: DATA,
            payload: b"partial output".to_vec()
        }
    );
    drop(client);
    stop(server);
}

/// A service whose `together` requests only succeed when two of them are
/// inside the service at the same time (proving two workers serve at once),
/// and whose `panic` requests panic.
#[derive(Clone, Default)]
struct Rendezvous {
    inside: Arc<(Mutex<usize>, Condvar)>,
}

impl wharf::Service for Rendezvous {
    type Session = ();

    fn open(&self, _conn: &wharf::ConnInfo) {}

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        match request {
            b"panic" => {
                response.extend_from_slice(b"half-written");
                panic!("test service panics on purpose")
            }
            b"together" => {
                let (lock, cvar) = &*self.inside;
                let mut inside = lock.lock().unwrap();
                *inside += 1;
                cvar.notify_all();
                let deadline = Instant::now() + Duration::from_secs(10);
                while *inside < 2 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        *inside -= 1;
                        return Err("alone: no second worker served concurrently".into());
                    }
                    inside = cvar.wait_timeout(inside, left).unwrap().0;
                }
                response.extend_from_slice(b"met");
                Ok(())
            }
            other => {
                response.extend_from_slice(other);
                Ok(())
            }
        }
    }
}

#[test]
fn service_panic_gets_error_and_the_pool_does_not_shrink() {
    let config = Config {
        workers: 2,
        heartbeat_timeout: Duration::from_secs(30),
        reap_interval: Duration::from_millis(100),
        ..config()
    };
    let service = Rendezvous::default();
    let server = start_with(config, service);
    let addr = server.local_addr();

    // Several panics, on several connections (so that both workers panic).
    let mut panics = 0;
    for round in 0..4 {
        let mut a = Client::connect(addr);
        let mut b = Client::connect(addr);
        for client in [&mut a, &mut b] {
            let reply = client.request(b"panic");
            assert_eq!(reply.kind, ERROR, "round {round}: {reply:?}");
            assert!(
                !reply.payload.starts_with(b"half-written"),
                "partial output leaked: {reply:?}"
            );
            panics += 1;
            client.echo(b"usable after panic");
            // Pipelined behind a panic.
            let mut batch = frame(DATA, b"panic");
            batch.extend(frame(DATA, b"behind"));
            client.send_raw(&batch);
            assert_eq!(client.recv().unwrap().kind, ERROR);
            assert_eq!(client.recv().unwrap().payload, b"behind");
            panics += 1;
        }
    }

    // Two clients, each in its own thread, must be inside the service at
    // the same time: only possible if both workers are still alive.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                let reply = client.request(b"together");
                let result = (reply.kind, reply.payload);
                client.echo(b"after");
                result
            })
        })
        .collect();
    for client in clients {
        let (kind, payload) = client.join().expect("client thread");
        assert_eq!(
            (kind, String::from_utf8_lossy(&payload).into_owned()),
            (DATA, "met".to_owned())
        );
    }
    let report = stop(server);
    assert_eq!(report.service_panics, panics);
    assert!(!report.forced);
}

#[test]
fn serves_over_ipv6_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        println!("skipped: cannot bind [::1]:0 on this machine ({e})");
        return;
    }
    let server = Server::start("[::1]:0", config(), Echo::default()).expect("server on [::1]:0");
    let addr = server.local_addr();
    assert!(addr.is_ipv6(), "{addr}");
    assert_eq!(addr.ip(), "::1".parse::<std::net::IpAddr>().unwrap());
    assert_ne!(addr.port(), 0);
    let mut client = Client::connect(addr);
    client.echo(b"over ipv6");
    client.ping(b"v6");
    drop(client);
    let report = stop(server);
    assert_eq!(report.requests, 2);
}

#[test]
fn report_counts_every_reply() {
    let server = start(small_max_config(4096));
    let addr: SocketAddr = server.local_addr();

    // 3 DATA + 2 PING + 1 long PING (ERROR) + 1 unknown kind (ERROR) = 7.
    let mut a = Client::connect(addr);
    a.echo(b"1");
    a.echo(b"2");
    a.echo(b"");
    a.ping(b"");
    a.ping(b"p");
    a.send(PING, &[0; 65]);
    expect_error(a.recv());
    a.send(0xee, b"?");
    expect_error(a.recv());
    drop(a);

    // 2 replies, then GOAWAY 4, which is not a reply to a request.
    let mut b = Client::connect(addr);
    let mut batch = frame(DATA, b"x");
    batch.extend(frame(PING, b"y"));
    batch.extend(header(0));
    b.send_raw(&batch);
    assert_eq!(b.expect_goaway(GoAwayCode::ProtocolError).len(), 2);

    // 1 reply, then GOAWAY 5.
    let mut c = Client::connect(addr);
    let mut batch = frame(DATA, b"z");
    batch.extend(header(5000));
    c.send_raw(&batch);
    assert_eq!(c.expect_goaway(GoAwayCode::FrameTooLarge).len(), 1);

    // A pipelined batch of 50, still connected when the drain starts.
    let mut d = Client::connect(addr);
    let mut batch = Vec::new();
    for i in 0..50u8 {
        batch.extend(frame(DATA, &[i]));
    }
    d.send_raw(&batch);
    for i in 0..50u8 {
        assert_eq!(d.recv().unwrap().payload, [i]);
    }

    server.handle().shutdown();
    d.expect_goaway(GoAwayCode::Shutdown);
    let report = server.join();
    assert_eq!(report.requests, 7 + 2 + 1 + 50, "{report:?}");
    assert_eq!(report.protocol_errors, 2, "{report:?}");
    assert!(report.accepted >= 4, "{report:?}");
}
