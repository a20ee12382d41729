//! The library's blocking [`wharf::Client`] talking to a server in the other
//! framing, played by a fake server that answers one connection with exact
//! bytes: a length client reading a text line says the server looks line
//! framed, a line client reading a length-framed GOAWAY reports that GOAWAY,
//! and what merely looks odd is not mistaken for either.
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::thread;

use common::client::{connect, connect_line, options, REPLY_TIMEOUT};
use wharf::{Client, ClientError, ClientOptions, Framing, GoAwayCode, Reply};

/// A fake server for one connection: reads what the client sends (up to
/// its first request), answers with exactly `reply`, then closes.
fn answers_once(reply: impl AsRef<[u8]> + Send + 'static) -> (SocketAddr, thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(reply.as_ref());
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Until the client closes: no reset under the client's last read.
        let _ = stream.read(&mut buf);
    });
    (addr, server)
}

/// A length client gets what a `--framing line` server sends: a text line
/// where a length header should be. It is reported at once, naming the text
/// and the likely cause, instead of waiting for a gigabyte.
#[test]
fn length_client_reading_a_text_line_says_the_server_looks_line_framed() {
    let cases: [(&[u8], &str, Option<u32>); 4] = [
        (b"ERROR unknown\n", "ERROR unknown", None),
        (
            b"GOAWAY 2 no complete frame within the heartbeat timeout\r\n",
            "GOAWAY 2 no complete frame within the heartbeat timeout",
            None,
        ),
        (b"PONG\n", "PONG", None),
        // Within a huge max_frame the length alone is plausible, but no
        // reply kind is a text byte.
        (b"hello world\n", "hello world", Some(u32::MAX)),
    ];
    for (reply, quoted, max_frame) in cases {
        let (addr, fake) = answers_once(reply);
        let mut client = Client::connect(
            addr,
            ClientOptions {
                max_frame: max_frame.unwrap_or(options().max_frame),
                ..options()
            },
        )
        .unwrap();
        client.send(b"hello").unwrap();
        client.flush().unwrap();
        match client.recv() {
            Err(ClientError::Protocol(message)) => assert_eq!(
                message,
                format!(
                    "the reply looks like text (\"{quoted}\"): is the server using --framing line?"
                )
            ),
            other => panic!("{reply:?}: expected a protocol error, got {other:?}"),
        }
        drop(client);
        fake.join().unwrap();
    }
}

/// A huge length that is not text is still just out of range: no hint.
#[test]
fn length_client_reading_a_binary_huge_length_gets_no_framing_hint() {
    let (addr, fake) = answers_once(b"\xde\xad\xbe\xef\x01junk");
    let mut client = connect(addr);
    client.send(b"hello").unwrap();
    client.flush().unwrap();
    match client.recv() {
        Err(ClientError::Protocol(message)) => {
            assert_eq!(message, "reply frame length 3735928559 out of range");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    drop(client);
    fake.join().unwrap();
}

/// A line client gets the length-framed GOAWAY of a `--framing length`
/// server (which read its first line as a length header): it is reported as
/// that GOAWAY, with its code and reason, not as a closed connection.
#[test]
fn line_client_reading_a_length_framed_goaway_reports_it() {
    // The server's own reason already names the framing: kept as it is.
    let (addr, fake) = answers_once(length_goaway(GoAwayCode::FrameTooLarge, "hint: --framing"));
    let mut client = connect_line(addr);
    client.send(b"hello").unwrap();
    client.flush().unwrap();
    match client.recv() {
        Err(ClientError::GoAway { code, reason }) => {
            assert_eq!((code, reason.as_str()), (5, "hint: --framing"));
        }
        other => panic!("expected GOAWAY 5, got {other:?}"),
    }
    drop(client);
    fake.join().unwrap();

    // Any other reason gets the client's hint. A length of 10 puts a
    // newline inside the header: the GOAWAY is still recognised.
    for (code, said) in [
        (GoAwayCode::Busy, "busy"),
        (GoAwayCode::Shutdown, "no room"),
    ] {
        let reply = length_goaway(code, said);
        let code = code.as_u16();
        if said == "no room" {
            assert_eq!(reply[3], b'\n', "the length byte is a newline");
        }
        let (addr, fake) = answers_once(reply.clone());
        let mut client = connect_line(addr);
        client.send(b"hello").unwrap();
        client.flush().unwrap();
        match client.recv() {
            Err(ClientError::GoAway { code: c, reason }) => {
                assert_eq!(c, code);
                assert_eq!(
                    reason,
                    format!(
                        "{said}; it came as a length frame: is the server using --framing length?"
                    )
                );
            }
            other => panic!("{reply:?}: expected GOAWAY {code}, got {other:?}"),
        }
        drop(client);
        fake.join().unwrap();
    }
}

/// A GOAWAY as a `--framing length` server sends it.
fn length_goaway(code: GoAwayCode, reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Framing::Length.encode_goaway(code, reason, &mut out);
    out
}

/// A line reply that merely starts with a NUL byte is still a line.
#[test]
fn line_client_still_takes_a_line_starting_with_nul_as_data() {
    let (addr, fake) = answers_once(b"\x00\x00\x00\x03\x01ab\n");
    let mut client = connect_line(addr);
    client.send(b"hello").unwrap();
    client.flush().unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Reply::Data(b"\x00\x00\x00\x03\x01ab".to_vec())
    );
    drop(client);
    fake.join().unwrap();
}
