//! Per-address limits (contract v3 §6), over real sockets.
//!
//! Test clients connect from different loopback sources (127.0.0.2,
//! 127.0.0.3, ...: all of 127.0.0.0/8 is loopback), so each source is a
//! client address of its own to the server. Proven here:
//! - `--max-connections-per-address N`: the connection after N from one
//!   address gets GOAWAY 6 (LIMITED) with `retry after 0 ms`, another
//!   address is served, and closing one frees a place;
//! - `--connect-rate-per-address` with `--connect-burst`: a quick
//!   connection beyond the burst gets GOAWAY 6 with the time to the next
//!   token, another address is unaffected, and after that time the address
//!   is let in again;
//! - both count in `wharf_connections_rejected_total` under their reasons,
//!   in the `with LIMITED` warn line and in the exit summary;
//! - behind a balancer (`--proxy-from`) the limits count the client its
//!   PROXY header names, not the balancer (IPv6 clients by /64);
//! - on a TLS listener a connection over a limit is closed without a
//!   handshake and without GOAWAY;
//! - `wharf client --retries` waits the hint and gets in; without retries
//!   it exits 16;
//! - Unix-socket clients are counted by uid.
//!
//! Every read has a timeout and every loop a bound; time bounds are
//! generous (a busy 2-core machine); servers run on port 0 and the binary
//! is killed by its PID.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use common::client_cli::{assert_exit, run_client};
use common::metrics::{logged_metrics_addr, scrape, value, wait_for, with_metrics};
use common::proxy_header::{
    connect_from, frame, goaway_of, read_frame, request, retry_after_ms, v1, SocketPath,
};
use common::scrape::handshakes;
use common::tls::{bytes_until_closed, start_tls, Certs, ClientSetup};
use common::{eventually, serve_command, spawn_wharf, spawn_wharf_command, Wharf};
use wharf::config::PerAddressSettings;
use wharf::frame::{GoAway, DATA};
use wharf::{Config, Echo, GoAwayCode};

const CONNECTIONS: &str = "wharf_connections_rejected_total{reason=\"per_address_connections\"}";
const RATE: &str = "wharf_connections_rejected_total{reason=\"per_address_rate\"}";

/// The destination a PROXY header names (any will do, of the client's
/// family).
const FRONT4: &str = "192.0.2.1:7878";
const FRONT6: &str = "[2001:db8:ffff::1]:7878";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Whether a connection got in: its first request is echoed (the stream is
/// returned, still open), or it is turned away with a GOAWAY (returned).
fn try_in(mut stream: TcpStream) -> Result<TcpStream, GoAway> {
    let reply = request(&mut stream, b"let me in").expect("a reply, not the end");
    match goaway_of(&reply) {
        Some(goaway) => Err(goaway),
        None => {
            assert_eq!(reply, (DATA, b"let me in".to_vec()));
            Ok(stream)
        }
    }
}

/// A connection from `source` that must get in.
fn admitted(source: &str, server: SocketAddr) -> TcpStream {
    try_in(connect_from(source, server))
        .unwrap_or_else(|goaway| panic!("{source} turned away: {goaway:?}"))
}

/// A connection from `source` that must be turned away with GOAWAY 6,
/// read before the client sends anything; returns its reason.
fn limited(stream: &mut (impl std::io::Read + Write)) -> String {
    let reply = read_frame(stream)
        .expect("read the GOAWAY")
        .expect("a GOAWAY, not the end");
    let goaway = goaway_of(&reply).unwrap_or_else(|| panic!("not a GOAWAY: {reply:?}"));
    assert_eq!(goaway.code, GoAwayCode::Limited.as_u16(), "{goaway:?}");
    // Then the server closes.
    assert_eq!(read_frame(stream).expect("the end"), None);
    goaway.reason
}

/// Tries a connection from `source` every 50 ms until one gets in.
fn admitted_eventually(source: &str, server: SocketAddr) -> TcpStream {
    for _ in 0..200 {
        if let Ok(stream) = try_in(connect_from(source, server)) {
            return stream;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("{source} never let in again");
}

/// The warn line and the exit summary after SIGTERM; the counters in the
/// summary must be the scraped ones.
fn check_summary(mut wharf: Wharf, connections: f64, rate: f64) {
    wharf.signal(libc::SIGTERM);
    let status = wharf
        .wait_exit(Duration::from_secs(30))
        .expect("wharf exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", wharf.log());
    let log = wharf.log();
    for field in [
        format!(" rejected_per_address_connections={connections} "),
        format!(" rejected_per_address_rate={rate} "),
    ] {
        assert!(log.contains(&field), "no {field:?} in the summary:\n{log}");
    }
}

fn wait_for_log(wharf: &Wharf, needle: &str) {
    let seen = eventually(Duration::from_secs(10), || wharf.log().contains(needle));
    assert!(seen, "no {needle:?} in the log:\n{}", wharf.log());
}

// ---------------------------------------------------------------------------
// The connection cap.

#[test]
fn the_connection_cap_counts_each_address_apart() {
    let wharf = spawn_wharf(&[
        "--max-connections-per-address",
        "2",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = logged_metrics_addr(&wharf.log());
    let first = admitted("127.0.0.2", wharf.addr);
    let _second = admitted("127.0.0.2", wharf.addr);
    let mut third = connect_from("127.0.0.2", wharf.addr);
    assert_eq!(
        limited(&mut third),
        "retry after 0 ms: max connections per address reached (2)"
    );
    // Another address is not affected.
    let _other = admitted("127.0.0.3", wharf.addr);
    let _other2 = admitted("127.0.0.3", wharf.addr);
    // Closing one frees a place.
    drop(first);
    let _again = admitted_eventually("127.0.0.2", wharf.addr);
    wait_for_log(&wharf, "with LIMITED");
    wait_for_log(&wharf, "max connections per address reached (2)");
    let text = scrape(metrics);
    let rejected = value(&text, CONNECTIONS);
    assert!(rejected >= 1.0, "{text}");
    assert_eq!(value(&text, RATE), 0.0, "{text}");
    check_summary(wharf, rejected, 0.0);
}

// ---------------------------------------------------------------------------
// The connect rate.

#[test]
fn the_connect_rate_turns_away_past_the_burst_with_the_time_to_the_next_token() {
    let wharf = spawn_wharf(&[
        "--connect-rate-per-address",
        "5/s",
        "--connect-burst",
        "2",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = logged_metrics_addr(&wharf.log());
    // Quick connections from one address: at least the burst gets in, and
    // one soon does not (each is closed at once: the rate counts new
    // connections, not open ones).
    let mut admitted_before = 0;
    let reason = loop {
        assert!(admitted_before < 20, "never turned away");
        let mut stream = connect_from("127.0.0.2", wharf.addr);
        stream.write_all(&frame(DATA, b"quick")).unwrap();
        let reply = read_frame(&mut stream).unwrap().expect("a reply");
        match goaway_of(&reply) {
            Some(goaway) => {
                assert_eq!(goaway.code, GoAwayCode::Limited.as_u16(), "{goaway:?}");
                break goaway.reason;
            }
            None => admitted_before += 1,
        }
    };
    let turned_away_at = Instant::now();
    assert!(admitted_before >= 2, "the burst of 2 was not let in");
    assert!(
        reason.contains(": over the connect rate per address (5/s, burst 2)"),
        "{reason}"
    );
    // A token every 200 ms: the next one is at most that far.
    let hint = retry_after_ms(&reason);
    assert!((1..=200).contains(&hint), "{reason}");
    // Another address is unaffected.
    let _other = admitted("127.0.0.3", wharf.addr);
    // After the hint, the address is let in again.
    thread::sleep(Duration::from_millis(hint + 20).saturating_sub(turned_away_at.elapsed()));
    let _back = admitted("127.0.0.2", wharf.addr);
    wait_for_log(&wharf, "with LIMITED");
    let text = wait_for(metrics, RATE, 1.0);
    assert_eq!(value(&text, CONNECTIONS), 0.0, "{text}");
    check_summary(wharf, 0.0, 1.0);
}

#[test]
fn a_connection_turned_away_takes_no_token() {
    // One token per 5 s: turned-away attempts must not push the next one
    // further away.
    let wharf = spawn_wharf(&["--connect-rate-per-address", "12/m", "--connect-burst", "1"]);
    let _first = admitted("127.0.0.2", wharf.addr);
    let mut hints = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from("127.0.0.2", wharf.addr);
        hints.push(retry_after_ms(&limited(&mut stream)));
    }
    assert!(hints.iter().all(|&h| (1..=5000).contains(&h)), "{hints:?}");
    assert!(hints.windows(2).all(|w| w[1] <= w[0]), "{hints:?}");
}

// ---------------------------------------------------------------------------
// Behind a balancer.

#[test]
fn behind_a_balancer_the_limits_count_the_headers_client() {
    let wharf = spawn_wharf(&[
        "--proxy-from",
        "127.0.0.1/32",
        "--max-connections-per-address",
        "1",
    ]);
    let through = |client: &str| {
        let mut stream = TcpStream::connect(wharf.addr).unwrap();
        stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
        let client = addr(client);
        let front = addr(if client.is_ipv4() { FRONT4 } else { FRONT6 });
        stream.write_all(&v1(client, front)).unwrap();
        stream
    };
    // All from the balancer's one socket address: counted by their header's
    // client.
    let _a = try_in(through("203.0.113.7:1000")).expect("the first of 203.0.113.7");
    let _b = try_in(through("203.0.113.8:1000")).expect("203.0.113.8 is someone else");
    let mut again = through("203.0.113.7:1001");
    assert_eq!(
        limited(&mut again),
        "retry after 0 ms: max connections per address reached (1)"
    );
    // IPv6 clients count by /64.
    let _c = try_in(through("[2001:db8::1]:1000")).expect("the first of 2001:db8::/64");
    let mut same64 = through("[2001:db8::ffff:2]:1000");
    limited(&mut same64);
    let _d = try_in(through("[2001:db8:0:1::1]:1000")).expect("another /64");
}

// ---------------------------------------------------------------------------
// TLS.

#[test]
fn on_a_tls_listener_over_the_limit_is_closed_without_a_handshake() {
    let certs = Certs::new();
    let config = with_metrics(Config {
        tls: Some(certs.settings()),
        per_address: PerAddressSettings {
            max_connections: Some(1),
            ..PerAddressSettings::default()
        },
        ..common::config()
    });
    let (server, tls) = start_tls(config, Echo::default());
    let metrics = server.metrics_addr().expect("metrics");
    let client = ClientSetup::new(&certs);
    let mut first = client.connect(tls).expect("the first handshake");
    first.echo(b"in");
    // The second from 127.0.0.1: closed before any handshake byte, no GOAWAY.
    let mut tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let _ = tcp.write_all(&client.client_hello());
    assert_eq!(bytes_until_closed(&mut tcp), 0);
    assert!(client.connect(tls).is_err(), "a handshake over the limit");
    let text = wait_for(metrics, CONNECTIONS, 2.0);
    assert_eq!(handshakes(&text, "ok"), 1.0, "{text}");
    assert_eq!(handshakes(&text, "failed"), 0.0, "{text}");
    assert_eq!(handshakes(&text, "timeout"), 0.0, "{text}");
    // The plain listener shares the count: 127.0.0.1 has its one.
    let mut plain = TcpStream::connect(server.local_addr()).unwrap();
    plain.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    limited(&mut plain);
    // From elsewhere, TLS works.
    let mut other = client
        .handshake(connect_from("127.0.0.2", tls))
        .expect("127.0.0.2 has its own count");
    other.echo(b"from elsewhere");
    drop((first, other));
    server.handle().shutdown();
    server.join();
}

#[test]
fn on_a_tls_listener_behind_a_balancer_over_the_limit_is_closed_after_the_header() {
    let certs = Certs::new();
    let config = with_metrics(Config {
        tls: Some(certs.settings()),
        proxy_from: Some("127.0.0.1/32".parse().unwrap()),
        per_address: PerAddressSettings {
            max_connections: Some(1),
            ..PerAddressSettings::default()
        },
        ..common::config()
    });
    let (server, tls) = start_tls(config, Echo::default());
    let metrics = server.metrics_addr().expect("metrics");
    let client = ClientSetup::new(&certs);
    let through = |client: &str| {
        let mut tcp = TcpStream::connect(tls).unwrap();
        tcp.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
        tcp.write_all(&v1(addr(client), addr(FRONT4))).unwrap();
        tcp
    };
    let mut first = client
        .handshake(through("203.0.113.7:1000"))
        .expect("the first of 203.0.113.7");
    first.echo(b"in");
    // The same client through the same balancer: the header is read, then
    // the connection is closed without a handshake.
    let mut again = through("203.0.113.7:1001");
    let _ = again.write_all(&client.client_hello());
    assert_eq!(bytes_until_closed(&mut again), 0);
    // Another client through the same balancer is served.
    let mut other = client
        .handshake(through("203.0.113.8:1000"))
        .expect("203.0.113.8 is someone else");
    other.echo(b"in too");
    let text = wait_for(metrics, CONNECTIONS, 1.0);
    assert_eq!(handshakes(&text, "ok"), 2.0, "{text}");
    assert_eq!(handshakes(&text, "failed"), 0.0, "{text}");
    assert_eq!(value(&text, "wharf_protocol_errors_total"), 0.0, "{text}");
    drop((first, other));
    server.handle().shutdown();
    server.join();
}

// ---------------------------------------------------------------------------
// `wharf client`.

#[test]
fn wharf_client_waits_the_hint_and_gets_in_or_exits_16_without_retries() {
    // One token per 5 s (room for a slow start of the client), taken by the
    // test's own connection first.
    let wharf = spawn_wharf(&["--connect-rate-per-address", "12/m", "--connect-burst", "1"]);
    let connect = wharf.addr.to_string();
    let _token = admitted("127.0.0.1", wharf.addr);
    let started = Instant::now();
    let done = run_client(
        &["--connect", &connect, "--retries", "3", "--send", "hello"],
        b"",
    );
    let took = started.elapsed();
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "hello\n", "{done:#?}");
    let reconnect = done
        .stderr
        .lines()
        .find(|l| l.starts_with("reconnecting after GOAWAY 6 LIMITED, retry after "))
        .unwrap_or_else(|| panic!("no reconnect after GOAWAY 6: {done:#?}"));
    let hint = reconnect
        .strip_prefix("reconnecting after GOAWAY 6 LIMITED, retry after ")
        .and_then(|rest| rest.split_once(" ms"))
        .and_then(|(ms, _)| ms.parse::<u64>().ok())
        .expect("the hint");
    assert!((1..=5000).contains(&hint), "{reconnect}");
    assert!(
        took >= Duration::from_millis(hint),
        "took {took:?}, hint {hint} ms"
    );
    // Its successful reconnect took the token: without retries, exit 16.
    let done = run_client(&["--connect", &connect, "--send", "hello"], b"");
    assert_exit(&done, 16);
    assert!(done.stderr.contains("GOAWAY 6 LIMITED"), "{done:#?}");
    assert_eq!(done.stdout, "");
}

// ---------------------------------------------------------------------------
// Unix sockets.

#[test]
fn unix_clients_are_counted_by_uid() {
    let path = SocketPath::new("limits");
    let wharf = spawn_wharf_command(serve_command(
        "127.0.0.1:0",
        &[
            "--bind",
            &path.bind_arg(),
            "--max-connections-per-address",
            "1",
        ],
    ));
    wait_for_log(&wharf, &format!("listening on {}", path.bind_arg()));
    let connect = || {
        let stream = UnixStream::connect(&path.0).expect("connect to the Unix listener");
        stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
        stream
    };
    let mut first = connect();
    assert_eq!(request(&mut first, b"uid"), Some((DATA, b"uid".to_vec())));
    // The same uid again.
    let mut second = connect();
    assert_eq!(
        limited(&mut second),
        "retry after 0 ms: max connections per address reached (1)"
    );
    // A TCP client is another address.
    let _tcp = admitted("127.0.0.1", wharf.addr);
    // Closing the first frees the uid's place.
    drop(first);
    let served = (0..200).any(|_| {
        let mut stream = connect();
        let reply = request(&mut stream, b"again").expect("a reply");
        if reply == (DATA, b"again".to_vec()) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(served, "the uid never let in again");
}
