//! The PROXY protocol (contract v3 §6), over real sockets.
//!
//! A peer listed in `--proxy-from` must start each connection with a
//! complete header (version 1 or 2, written here by hand, byte for byte);
//! the client the header names then becomes the connection's client: in the
//! access log (`conn N from CLIENT via BALANCER`, at debug level) and in the
//! service's [`ConnInfo`] (`peer`, and the balancer in `via`). Proven here:
//! - v1 TCP4 and TCP6, v2 IPv4 and IPv6 headers name the client; v2 TLVs
//!   are skipped; a v2 LOCAL header keeps the socket's own address;
//! - a header cut byte by byte is waited for, and a header sent in one
//!   write with the first request loses no byte of the request;
//! - half a header holds no worker (`--workers 1`);
//! - from a peer not listed, a header is not one: its bytes are the
//!   protocol (GOAWAY 5 in length framing, an echoed line in line framing);
//! - from a listed peer, a request without a header, or silence past
//!   `--handshake-timeout`, closes the connection without a reply and counts
//!   a protocol error; a connect-and-close (a health check) does not;
//! - a TLS listener reads the header before the handshake, and
//!   `--proxy-from unix` trusts the peers of a `unix:PATH` listener.
//!
//! Every read has a timeout; time bounds are generous (a busy 2-core
//! machine); servers run on port 0 and the binary is killed by its PID.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::{logged_metrics_addr, scrape, value, wait_for};
use common::pki::recorder;
use common::proxy_header::{
    frame, request, tlv, v1, v2, v2_raw, SocketPath, TCP4, UNSPEC, V2_LOCAL,
};
use common::tls::{bytes_until_closed, start_tls, Certs, ClientSetup};
use common::{eventually, serve_command, spawn_wharf, spawn_wharf_command, Client, Wharf};
use wharf::frame::DATA;
use wharf::{Config, ConnInfo, Framing, GoAwayCode, Peer, Server};

/// The client the headers name.
const CLIENT4: &str = "203.0.113.7:5555";
const CLIENT6: &str = "[2001:db8::7]:5555";
/// The address the balancer says the client connected to.
const FRONT4: &str = "192.0.2.1:7878";
const FRONT6: &str = "[2001:db8::1]:7878";

const PROTOCOL_ERRORS: &str = "wharf_protocol_errors_total";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The `wharf` binary trusting 127.0.0.1 as a balancer, logging at debug,
/// with metrics, plus `args`.
fn balanced_wharf(args: &[&str]) -> Wharf {
    let mut all = vec![
        "--proxy-from",
        "127.0.0.1/32",
        "--log-level",
        "debug",
        "--metrics",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    spawn_wharf(&all)
}

fn metrics_of(wharf: &Wharf) -> SocketAddr {
    logged_metrics_addr(&wharf.log())
}

/// Waits until the log holds `needle`; fails with the log if it never does.
fn wait_for_log(wharf: &Wharf, needle: &str) {
    let seen = eventually(Duration::from_secs(10), || wharf.log().contains(needle));
    assert!(seen, "no {needle:?} in the log:\n{}", wharf.log());
}

/// A library server trusting 127.0.0.1 as a balancer, recording each
/// connection the service opens.
fn balanced_server() -> (Server, Receiver<ConnInfo>) {
    let (service, opened) = recorder();
    let config = Config {
        proxy_from: Some("127.0.0.1/32".parse().unwrap()),
        ..common::config()
    };
    (common::start_with(config, service), opened)
}

fn next_opened(opened: &Receiver<ConnInfo>) -> ConnInfo {
    opened
        .recv_timeout(common::READ_TIMEOUT)
        .expect("the service opened the connection")
}

fn stop(server: Server) {
    server.handle().shutdown();
    let report = server.join();
    assert!(!report.forced, "{report}");
}

/// Sends `header` then a request on a new connection, and checks the echo.
fn served_after(server: SocketAddr, header: &[u8]) -> Client {
    let mut client = Client::connect(server);
    client.send_raw(header);
    client.echo(b"after the header");
    client
}

// ---------------------------------------------------------------------------
// The header names the client.

#[test]
fn every_header_kind_names_the_client_in_the_access_log() {
    let wharf = balanced_wharf(&[]);
    let front4 = addr(FRONT4);
    let front6 = addr(FRONT6);
    let cases = [
        // v1 TCP4, v1 TCP6, v2 IPv4, v2 IPv6.
        (v1(addr("203.0.113.7:5555"), front4), "203.0.113.7:5555"),
        (v1(addr("[2001:db8::7]:5556"), front6), "[2001:db8::7]:5556"),
        (
            v2(addr("203.0.113.8:5557"), front4, &[]),
            "203.0.113.8:5557",
        ),
        (
            v2(addr("[2001:db8::8]:5558"), front6, &[]),
            "[2001:db8::8]:5558",
        ),
    ];
    for (header, client) in cases {
        let mut served = served_after(wharf.addr, &header);
        let balancer = served.stream.local_addr().unwrap();
        served.stream.shutdown(Shutdown::Write).unwrap();
        served.expect_closed();
        // The access log's lines about it name the header's client, and
        // the balancer it came through.
        wait_for_log(&wharf, &format!(" from {client} via {balancer}: "));
    }
    assert_eq!(value(&scrape(metrics_of(&wharf)), PROTOCOL_ERRORS), 0.0);
}

#[test]
fn the_service_sees_the_headers_client_and_the_balancer_in_via() {
    let (server, opened) = balanced_server();
    for (header, client) in [
        (v1(addr(CLIENT4), addr(FRONT4)), CLIENT4),
        (v1(addr(CLIENT6), addr(FRONT6)), CLIENT6),
        (v2(addr(CLIENT4), addr(FRONT4), &[]), CLIENT4),
        (v2(addr(CLIENT6), addr(FRONT6), &[]), CLIENT6),
    ] {
        let served = served_after(server.local_addr(), &header);
        let info = next_opened(&opened);
        assert_eq!(info.peer, Peer::Ip(addr(client)), "{info:?}");
        assert_eq!(
            info.via,
            Some(Peer::Ip(served.stream.local_addr().unwrap())),
            "{info:?}"
        );
    }
    stop(server);
}

#[test]
fn v2_tlvs_are_skipped() {
    let (server, opened) = balanced_server();
    let mut tlvs = tlv(0x01, b"h2"); // ALPN
    tlvs.extend(tlv(0x02, b"example.org")); // authority
    tlvs.extend(tlv(0x05, b"a-unique-id")); // unique id
    tlvs.extend(tlv(0x04, &[0; 40])); // NOOP padding
    tlvs.extend(tlv(0xE0, b"custom")); // a custom type
    let header = v2(addr(CLIENT4), addr(FRONT4), &tlvs);
    let mut served = served_after(server.local_addr(), &header);
    served.echo(b"and again");
    let info = next_opened(&opened);
    assert_eq!(info.peer, Peer::Ip(addr(CLIENT4)), "{info:?}");
    stop(server);
}

#[test]
fn v2_local_keeps_the_sockets_own_address() {
    let (server, opened) = balanced_server();
    for family in [UNSPEC, TCP4] {
        // LOCAL with an empty block (the usual), and with an address block
        // that must be ignored.
        let body: &[u8] = if family == UNSPEC {
            &[]
        } else {
            &[203, 0, 113, 7, 192, 0, 2, 1, 0x15, 0xB3, 0x1E, 0xC6]
        };
        let served = served_after(server.local_addr(), &v2_raw(V2_LOCAL, family, body));
        let info = next_opened(&opened);
        assert_eq!(
            info.peer,
            Peer::Ip(served.stream.local_addr().unwrap()),
            "{info:?}"
        );
        assert_eq!(info.via, None, "{info:?}");
    }
    stop(server);
}

// ---------------------------------------------------------------------------
// How the header arrives.

#[test]
fn a_header_cut_byte_by_byte_is_waited_for() {
    let (server, opened) = balanced_server();
    for header in [
        v1(addr(CLIENT4), addr(FRONT4)),
        v2(addr(CLIENT6), addr(FRONT6), &tlv(0x04, &[0; 8])),
    ] {
        let mut client = Client::connect(server.local_addr());
        for byte in &header {
            client.send_raw(std::slice::from_ref(byte));
            thread::sleep(Duration::from_millis(3));
        }
        client.echo(b"after a slow header");
        let info = next_opened(&opened);
        assert!(info.via.is_some(), "{info:?}");
    }
    stop(server);
}

#[test]
fn the_header_and_the_first_requests_in_one_write_lose_no_byte() {
    let (server, opened) = balanced_server();
    for header in [
        v1(addr(CLIENT4), addr(FRONT4)),
        v2(addr(CLIENT4), addr(FRONT4), &tlv(0x01, b"wharf")),
    ] {
        let mut bytes = header.clone();
        bytes.extend(frame(DATA, b"first"));
        bytes.extend(frame(DATA, b"second"));
        let mut client = Client::connect(server.local_addr());
        client.send_raw(&bytes);
        for payload in [&b"first"[..], b"second"] {
            let reply = client.recv().expect("a reply");
            assert_eq!((reply.kind, reply.payload.as_slice()), (DATA, payload));
        }
        assert_eq!(next_opened(&opened).peer, Peer::Ip(addr(CLIENT4)));
    }
    stop(server);
}

#[test]
fn half_a_header_holds_no_worker() {
    let wharf = balanced_wharf(&["--workers", "1", "--handshake-timeout", "30s"]);
    let header = v1(addr(CLIENT4), addr(FRONT4));
    let mut stalled = Client::connect(wharf.addr);
    stalled.send_raw(&header[..header.len() / 2]);
    // Let the only worker take the stalled one first.
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut served = served_after(wharf.addr, &v1(addr("203.0.113.9:5559"), addr(FRONT4)));
    served.echo(b"again");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} behind half a header",
        started.elapsed()
    );
    // The stalled one finishes its header later and is served too.
    stalled.send_raw(&header[header.len() / 2..]);
    stalled.echo(b"late but whole");
}

// ---------------------------------------------------------------------------
// Who may send one.

#[test]
fn from_an_untrusted_peer_a_header_is_protocol_bytes_in_length_framing() {
    let wharf = spawn_wharf(&["--proxy-from", "10.0.0.0/8"]);
    let mut client = Client::connect(wharf.addr);
    client.send_raw(&v1(addr(CLIENT4), addr(FRONT4)));
    // "PROX" read as a length is far over --max-frame.
    client.expect_goaway(GoAwayCode::FrameTooLarge);
    // A v2 header's first bytes, "\r\n\r\n", are a length too.
    let mut client = Client::connect(wharf.addr);
    client.send_raw(&v2(addr(CLIENT4), addr(FRONT4), &[]));
    client.expect_goaway(GoAwayCode::FrameTooLarge);
}

#[test]
fn from_an_untrusted_peer_a_header_is_a_line_in_line_framing() {
    let wharf = spawn_wharf(&["--proxy-from", "10.0.0.0/8", "--framing", "line"]);
    let mut client = Client::connect_with(wharf.addr, Framing::Line);
    let header = v1(addr(CLIENT4), addr(FRONT4));
    client.send_raw(&header);
    // An ordinary request: the line (its CRLF dropped) comes back.
    let reply = client.recv().expect("a reply");
    assert_eq!(reply.kind, DATA);
    assert_eq!(reply.payload, &header[..header.len() - 2]);
    client.send_raw(b"next\n");
    assert_eq!(client.recv().expect("a reply").payload, b"next");
}

#[test]
fn a_trusted_peer_without_a_header_is_closed_at_once_as_a_protocol_error() {
    let wharf = balanced_wharf(&["--handshake-timeout", "20s"]);
    let metrics = metrics_of(&wharf);
    // Sent at once, and sent after the server has looked and found nothing
    // yet: a frame shorter than the shortest header must still wake it.
    for (errors, pause) in [(1.0, 0), (2.0, 300)] {
        let mut client = Client::connect(wharf.addr);
        thread::sleep(Duration::from_millis(pause));
        let started = Instant::now();
        client.send(DATA, b"no header");
        client.expect_closed();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed only after {:?}: bytes that cannot start a header need no waiting",
            started.elapsed()
        );
        wait_for(metrics, PROTOCOL_ERRORS, errors);
    }
    // Bytes that begin like a header but are not one.
    let mut client = Client::connect(wharf.addr);
    client.send_raw(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
    client.expect_closed();
    wait_for(metrics, PROTOCOL_ERRORS, 3.0);
    // A v2 signature with a wrong version.
    let mut bad = v2(addr(CLIENT4), addr(FRONT4), &[]);
    bad[12] = 0x31;
    let mut client = Client::connect(wharf.addr);
    client.send_raw(&bad);
    client.expect_closed();
    wait_for(metrics, PROTOCOL_ERRORS, 4.0);
    // Half a header, then the balancer shuts its side: no more is coming.
    let mut client = Client::connect(wharf.addr);
    let started = Instant::now();
    client.send_raw(b"PROXY TCP4 203.0.113.7 ");
    client.stream.shutdown(Shutdown::Write).unwrap();
    client.expect_closed();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    wait_for(metrics, PROTOCOL_ERRORS, 5.0);
    wait_for_log(&wharf, "protocol error");
}

#[test]
fn a_silent_trusted_peer_is_closed_after_the_handshake_timeout() {
    let wharf = balanced_wharf(&["--handshake-timeout", "1s"]);
    let metrics = metrics_of(&wharf);
    for partial in [&b""[..], b"PROXY TCP4 203.0"] {
        let mut client = Client::connect(wharf.addr);
        client.send_raw(partial);
        let started = Instant::now();
        client.expect_closed();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(700) && waited < Duration::from_secs(8),
            "closed after {waited:?} with --handshake-timeout 1s"
        );
    }
    wait_for(metrics, PROTOCOL_ERRORS, 2.0);
}

#[test]
fn a_trusted_peer_closing_without_a_byte_is_no_error() {
    let wharf = balanced_wharf(&[]);
    let metrics = metrics_of(&wharf);
    for _ in 0..3 {
        drop(TcpStream::connect(wharf.addr).expect("connect"));
    }
    // Once all three are gone, none counted as a protocol error.
    let gone = eventually(Duration::from_secs(10), || {
        let text = scrape(metrics);
        value(&text, "wharf_connections_accepted_total") == 3.0
            && ["queued", "active", "resting"].iter().all(|state| {
                value(&text, &format!("wharf_connections{{state=\"{state}\"}}")) == 0.0
            })
    });
    assert!(gone, "{}", scrape(metrics));
    assert_eq!(value(&scrape(metrics), PROTOCOL_ERRORS), 0.0);
    // And a real one still works.
    served_after(wharf.addr, &v1(addr(CLIENT4), addr(FRONT4)));
}

// ---------------------------------------------------------------------------
// Other listeners.

#[test]
fn on_a_tls_listener_the_header_comes_before_the_handshake() {
    let certs = Certs::new();
    let (service, opened) = recorder();
    let config = Config {
        proxy_from: Some("127.0.0.1/32".parse().unwrap()),
        tls: Some(certs.settings()),
        ..common::config()
    };
    let (server, tls) = start_tls(config, service);
    let client = ClientSetup::new(&certs);
    for header in [
        v1(addr(CLIENT4), addr(FRONT4)),
        v2(addr(CLIENT6), addr(FRONT6), &[]),
    ] {
        let mut tcp = TcpStream::connect(tls).unwrap();
        tcp.write_all(&header).unwrap();
        let balancer = tcp.local_addr().unwrap();
        let mut stream = client
            .handshake(tcp)
            .expect("the handshake after the header");
        stream.echo(b"over TLS");
        let info = next_opened(&opened);
        assert!(info.tls.is_some(), "{info:?}");
        assert_eq!(info.via, Some(Peer::Ip(balancer)), "{info:?}");
    }
    // A handshake without the header first is not one.
    let mut tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    tcp.write_all(&client.client_hello()).unwrap();
    assert_eq!(bytes_until_closed(&mut tcp), 0, "no handshake answer");
    stop(server);
}

#[test]
fn proxy_from_unix_trusts_the_peers_of_a_unix_listener() {
    let path = SocketPath::new("proxy");
    let command = serve_command(
        "127.0.0.1:0",
        &[
            "--bind",
            &path.bind_arg(),
            "--proxy-from",
            "unix",
            "--log-level",
            "debug",
        ],
    );
    let wharf = spawn_wharf_command(command);
    wait_for_log(&wharf, &format!("listening on {}", path.bind_arg()));
    let connect = || {
        let stream = UnixStream::connect(&path.0).expect("connect to the Unix listener");
        stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
        stream
    };
    let mut stream = connect();
    stream.write_all(&v1(addr(CLIENT4), addr(FRONT4))).unwrap();
    let reply = request(&mut stream, b"through a Unix balancer");
    assert_eq!(reply, Some((DATA, b"through a Unix balancer".to_vec())));
    drop(stream);
    wait_for_log(&wharf, &format!(" from {CLIENT4} via unix pid "));
    // From a Unix peer, a request without the header is closed unanswered.
    let mut stream = connect();
    stream.write_all(&frame(DATA, b"no header")).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "got {rest:?}");
    // The TCP listener's peers are not listed: their bytes are requests.
    let mut tcp = Client::connect(wharf.addr);
    tcp.echo(b"plain");
}
