//! Line framing (`Framing::Line`): one request per `\n`-terminated line, one
//! reply line each; `PING`/`PONG`, `ERROR <message>` and `GOAWAY <code> <reason>`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown as How, TcpStream};
use std::time::{Duration, Instant};

use common::{config, start, start_with, Client, Received, READ_TIMEOUT};
use wharf::frame::{DATA, ERROR, PONG};
use wharf::{Config, Framing, GoAwayCode, Report, Response, Server, ServiceError};

fn line_config() -> Config {
    Config {
        framing: Framing::Line,
        ..config()
    }
}

fn small_line_config(max_frame: u32) -> Config {
    Config {
        max_frame,
        ..line_config()
    }
}

fn stop(server: Server) -> Report {
    server.handle().shutdown();
    server.join()
}

fn connect(server: &Server) -> Client {
    Client::connect_with(server.local_addr(), Framing::Line)
}

fn data(payload: &[u8]) -> Received {
    Received {
        kind: DATA,
        payload: payload.to_vec(),
    }
}

/// A plain socket, for checking the exact bytes of replies.
fn raw(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Reads one line, terminator included, a byte at a time (so nothing after
/// it is consumed). Panics on timeout or end-of-stream before the newline.
fn read_line_raw(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        assert!(line.len() < 64 * 1024, "runaway line: {line:?}");
        match stream.read(&mut byte) {
            Ok(0) => panic!("end-of-stream inside a line: {line:?}"),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading a line: {e} (got {line:?})"),
        }
    }
    line
}

/// Asserts that the next read sees end-of-stream (or a reset).
fn expect_eof_raw(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected end-of-stream, got {:?}", &buf[..n]),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected end-of-stream, got {e}"),
    }
}

#[test]
fn echoes_a_line() {
    let server = start(line_config());
    let mut stream = raw(&server);
    stream.write_all(b"hello world\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"hello world\n");
    drop(stream);
    let mut client = connect(&server);
    client.echo(b"through the helper");
    drop(client);
    assert_eq!(stop(server).requests, 2);
}

#[test]
fn crlf_terminator_is_stripped() {
    let server = start(line_config());
    let mut stream = raw(&server);
    stream.write_all(b"telnet style\r\n").unwrap();
    // The reply is the line without its `\r`, ended by `\n` alone.
    assert_eq!(read_line_raw(&mut stream), b"telnet style\n");
    stream.write_all(b"\r\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"\n");
    // Only one trailing `\r` is a terminator; one inside the line is data.
    stream.write_all(b"a\rb\r\r\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"a\rb\r\n");
    drop(stream);
    stop(server);
}

#[test]
fn ping_line_gets_pong_line() {
    let server = start(line_config());
    let mut stream = raw(&server);
    stream.write_all(b"PING\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"PONG\n");
    stream.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"PONG\n");
    // Only the exact line `PING` is a heartbeat; anything else is data.
    stream.write_all(b"PING x\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"PING x\n");
    stream.write_all(b"ping\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"ping\n");
    drop(stream);
    let mut client = connect(&server);
    client.ping(b"");
    client.echo(b"after ping");
    drop(client);
    stop(server);
}

#[test]
fn empty_line_echoes_an_empty_line() {
    let server = start(line_config());
    let mut stream = raw(&server);
    stream.write_all(b"\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"\n");
    stream.write_all(b"\n\nx\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"\n");
    assert_eq!(read_line_raw(&mut stream), b"\n");
    assert_eq!(read_line_raw(&mut stream), b"x\n");
    drop(stream);
    stop(server);
}

#[test]
fn pipelined_lines_are_answered_in_order() {
    let server = start(line_config());
    let mut client = connect(&server);
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        if i % 10 == 9 {
            batch.extend_from_slice(b"PING\n");
            expected.push(Received {
                kind: PONG,
                payload: Vec::new(),
            });
        } else {
            let line = format!("line {i} ").repeat(i % 5 + 1);
            batch.extend_from_slice(line.as_bytes());
            batch.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
            expected.push(data(line.as_bytes()));
        }
    }
    client.send_raw(&batch);
    for (i, want) in expected.iter().enumerate() {
        let got = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(&got, want, "reply {i}");
    }
    drop(client);
    assert_eq!(stop(server).requests, 200);
}

#[test]
fn half_close_gets_every_complete_line_answered() {
    let server = start(line_config());
    let mut stream = raw(&server);
    stream.write_all(b"one\nPING\nthree\r\nunfinished").unwrap();
    stream.shutdown(How::Write).unwrap();
    assert_eq!(read_line_raw(&mut stream), b"one\n");
    assert_eq!(read_line_raw(&mut stream), b"PONG\n");
    assert_eq!(read_line_raw(&mut stream), b"three\n");
    expect_eof_raw(&mut stream);
    assert_eq!(stop(server).requests, 3);
}

#[test]
fn a_line_dribbled_in_pieces_is_reassembled() {
    let server = start(small_line_config(16));
    let mut stream = raw(&server);
    // Exactly max_frame bytes, then `\r`, then `\n`, each in its own write.
    for piece in [&b"0123"[..], b"4567", b"89ab", b"cdef", b"\r", b"\n"] {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_line_raw(&mut stream), b"0123456789abcdef\n");
    drop(stream);
    stop(server);
}

#[test]
fn line_longer_than_max_frame_gets_goaway_5_before_any_newline() {
    let server = start(Config {
        // A long heartbeat: only the length rule can end this connection.
        heartbeat_timeout: Duration::from_secs(60),
        reap_interval: Duration::from_secs(1),
        ..small_line_config(16)
    });
    let mut client = connect(&server);
    client.echo(b"short");
    // max_frame + 1 bytes, no newline ever sent.
    let sent = Instant::now();
    client.send_raw(b"0123456789abcdefX");
    let before = client.expect_goaway(GoAwayCode::FrameTooLarge);
    assert!(before.is_empty(), "{before:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(stop(server).protocol_errors, 1);
}

#[test]
fn line_longer_than_max_frame_dribbled_gets_goaway_5() {
    let server = start(Config {
        heartbeat_timeout: Duration::from_secs(60),
        reap_interval: Duration::from_secs(1),
        ..small_line_config(16)
    });
    let mut stream = raw(&server);
    for piece in [&b"0123456789"[..], b"abcdef", b"X"] {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = read_line_raw(&mut stream);
    assert!(
        line.starts_with(b"GOAWAY 5 "),
        "{:?}",
        String::from_utf8_lossy(&line)
    );
    expect_eof_raw(&mut stream);
    stop(server);
}

#[test]
fn overlong_line_with_newline_gets_goaway_5_after_earlier_replies() {
    let server = start(small_line_config(16));
    let mut client = connect(&server);
    client.send_raw(b"one\nPING\n0123456789abcdefXYZ\nnever answered\n");
    let before = client.expect_goaway(GoAwayCode::FrameTooLarge);
    assert_eq!(
        before,
        [
            data(b"one"),
            Received {
                kind: PONG,
                payload: Vec::new()
            }
        ]
    );
    stop(server);
}

#[test]
fn line_of_exactly_max_frame_bytes_is_accepted() {
    let server = start(small_line_config(16));
    let mut client = connect(&server);
    client.echo(b"0123456789abcdef");
    client.send_raw(b"fedcba9876543210\r\n");
    assert_eq!(client.recv().unwrap(), data(b"fedcba9876543210"));
    // Two of them pipelined, then a short one.
    client.send_raw(b"aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\r\nc\n");
    assert_eq!(client.recv().unwrap(), data(b"aaaaaaaaaaaaaaaa"));
    assert_eq!(client.recv().unwrap(), data(b"bbbbbbbbbbbbbbbb"));
    assert_eq!(client.recv().unwrap(), data(b"c"));
    drop(client);
    assert_eq!(stop(server).protocol_errors, 0);
}

fn line_service(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    match request {
        b"fail" => Err("no such thing".into()),
        b"multi" => {
            response.extend_from_slice(b"two\nlines");
            Ok(())
        }
        other => {
            response.extend_from_slice(&other.to_ascii_uppercase());
            Ok(())
        }
    }
}

#[test]
fn service_error_becomes_an_error_line() {
    let server = start_with(line_config(), line_service);
    let mut stream = raw(&server);
    stream.write_all(b"fail\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"ERROR no such thing\n");
    stream.write_all(b"ok\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"OK\n");
    // Pipelined around the error.
    stream.write_all(b"a\nfail\nb\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"A\n");
    assert_eq!(read_line_raw(&mut stream), b"ERROR no such thing\n");
    assert_eq!(read_line_raw(&mut stream), b"B\n");
    drop(stream);
    stop(server);
}

#[test]
fn response_with_a_newline_becomes_an_error_line() {
    // A reply must stay one line: a response containing `\n` cannot be sent
    // as is, and must not split into two replies.
    let server = start_with(line_config(), line_service);
    let mut client = connect(&server);
    let reply = client.request(b"multi");
    assert_eq!(reply.kind, ERROR, "{reply:?}");
    client.send_raw(b"next\n");
    assert_eq!(client.recv().unwrap(), data(b"NEXT"));
    drop(client);
    stop(server);
}

#[test]
fn drain_sends_a_goaway_1_line() {
    let server = start(line_config());
    let mut stream = raw(&server);
    stream.write_all(b"before drain\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"before drain\n");
    let handle = server.handle();
    handle.shutdown();
    let line = read_line_raw(&mut stream);
    let text = String::from_utf8(line).expect("UTF-8");
    assert!(text.starts_with("GOAWAY 1 "), "{text:?}");
    assert!(text.len() > "GOAWAY 1 \n".len(), "reason present: {text:?}");
    expect_eof_raw(&mut stream);
    let report = server.join();
    assert!(!report.forced);
    assert_eq!(report.requests, 1);
}

#[test]
fn drain_goaway_parses_with_the_line_client() {
    let server = start(line_config());
    let mut client = connect(&server);
    client.echo(b"x");
    server.handle().shutdown();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert!(before.is_empty(), "{before:?}");
    server.join();
}

#[test]
fn silent_client_is_reaped_with_a_goaway_2_line() {
    let server = start(Config {
        heartbeat_timeout: Duration::from_millis(500),
        reap_interval: Duration::from_millis(50),
        ..line_config()
    });
    let mut stream = raw(&server);
    stream.write_all(b"hi\n").unwrap();
    assert_eq!(read_line_raw(&mut stream), b"hi\n");
    // Say nothing more.
    let line = read_line_raw(&mut stream);
    let text = String::from_utf8(line).expect("UTF-8");
    assert!(text.starts_with("GOAWAY 2 "), "{text:?}");
    expect_eof_raw(&mut stream);
    let report = stop(server);
    assert_eq!(report.reaped, 1, "{report:?}");
}

#[test]
fn client_dribbling_an_unfinished_line_is_reaped() {
    let server = start(Config {
        heartbeat_timeout: Duration::from_millis(500),
        reap_interval: Duration::from_millis(50),
        ..line_config()
    });
    let mut stream = raw(&server);
    // A byte every 50 ms never completes a line, so never moves the
    // deadline. Stop as soon as the server says something.
    let started = Instant::now();
    let mut peek = [0u8; 1];
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not reaped while dribbling"
        );
        stream.set_nonblocking(true).unwrap();
        let replied = match stream.peek(&mut peek) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("peek: {e}"),
        };
        stream.set_nonblocking(false).unwrap();
        if replied {
            break;
        }
        stream.write_all(b"x").expect("dribble");
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = String::from_utf8(read_line_raw(&mut stream)).expect("UTF-8");
    assert!(line.starts_with("GOAWAY 2 "), "{line:?}");
    expect_eof_raw(&mut stream);
    assert_eq!(stop(server).reaped, 1);
}

#[test]
fn ping_lines_keep_a_connection_alive() {
    let server = start(Config {
        heartbeat_timeout: Duration::from_secs(2),
        reap_interval: Duration::from_millis(50),
        ..line_config()
    });
    let mut client = connect(&server);
    // Well past the heartbeat timeout, pinging far more often than needed
    // (a loaded machine may stall this thread for a while).
    for _ in 0..30 {
        client.ping(b"");
        std::thread::sleep(Duration::from_millis(100));
    }
    client.echo(b"still here");
    drop(client);
    assert_eq!(stop(server).reaped, 0);
}
