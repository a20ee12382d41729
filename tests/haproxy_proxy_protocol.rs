//! Interop: a real HAProxy in front of wharf speaking the PROXY protocol
//! (contract v3 §6), with per-address limits behind it.
//!
//! HAProxy runs in TCP mode on a free port of 127.0.0.1 with one server,
//! the `wharf` binary started with `--proxy-from 127.0.0.1 --log-level
//! debug`, and a `tcp-check` PING/PONG health check that goes through the
//! PROXY header as well (`tcp-check connect default` takes the server's
//! `send-proxy*`). Clients connect to HAProxy from distinct source
//! addresses, 127.0.0.2 and 127.0.0.3 (the whole of 127.0.0.0/8 is
//! loopback on Linux). The tests prove, for `send-proxy-v2` and for
//! `send-proxy` (v1):
//! - wharf's access log names each client's own address and port, with
//!   HAProxy's as the `via` address, not HAProxy's alone;
//! - the per-address limit counts the clients apart: a second connection
//!   from 127.0.0.2 is sent GOAWAY 6 (`retry after N ms`) through HAProxy
//!   while one from 127.0.0.3 is served — with
//!   `--max-connections-per-address 1` over v2, with
//!   `--connect-rate-per-address` over v1;
//! - HAProxy's health checks pass (the server is UP with `L7OK` and no
//!   failed check) and count as no protocol error on wharf (the metric
//!   stays 0 and no protocol error is logged).
//!
//! A third test checks `deploy/haproxy.cfg` with `haproxy -c` and that
//! every server in it sends the PROXY header, its checks included.
//!
//! HAProxy cannot bind port 0, so the frontend's port is one the kernel
//! picked for a socket closed just before. Where HAProxy is not installed
//! (`.ci/run` installs it), the tests say `SKIPPED:` and pass.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::haproxy::{self, Haproxy, Stat, SETTLE};
use common::metrics::{logged_metrics_addr, scrape, value};
use common::pki::Dir;
use common::{eventually, serve_command, spawn_wharf_command, Client, Wharf};
use socket2::{Domain, Socket, Type};
use wharf::{Framing, GoAwayCode};

/// The shipped example.
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");

/// Whether `haproxy` runs here; if not, says so loudly.
fn have_haproxy(test: &str) -> bool {
    match haproxy::version(test) {
        Some(version) => {
            println!("{}", version.lines().next().unwrap_or(""));
            true
        }
        None => false,
    }
}

/// A port of 127.0.0.1 nobody listens on: the kernel's pick for a socket
/// closed at once (HAProxy cannot bind port 0 and report it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// HAProxy on a free port of 127.0.0.1 (returned) with one backend
/// server, wharf at `backend`, with `server` options (the PROXY protocol
/// version) and health checks every `inter`.
fn start(dir: &Dir, backend: SocketAddr, server: &str, inter: &str) -> (Haproxy, SocketAddr) {
    let front = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let lines = format!(
        "    option tcp-check
    tcp-check connect default
    tcp-check send-binary 00000003026863
    tcp-check expect binary 00000003036863
    default-server inter {inter} fall 1 rise 1
    server s1 {backend} {server} check
"
    );
    (
        Haproxy::with_backend(dir, &front.to_string(), &lines),
        front,
    )
}

/// Waits until `wharf/s1` is UP on a passed layer-7 check (the PONG came
/// back through the PROXY header); returns its row.
fn wait_up(haproxy: &mut Haproxy) -> Stat {
    haproxy.wait_server("UP with L7OK", &SUMMARY, |stat| {
        stat.field("status") == "UP" && stat.field("check_status") == "L7OK"
    })
}

/// A client of the frontend at `front` whose socket is bound to `source`
/// first.
fn client(front: SocketAddr, source: Ipv4Addr) -> (Client, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddrV4::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket
        .connect(&front.into())
        .unwrap_or_else(|e| panic!("connect to haproxy at {front}: {e}"));
    let stream = TcpStream::from(socket);
    let local = stream.local_addr().unwrap();
    assert_eq!(local.ip(), source);
    (Client::from_stream(stream, Framing::Length), local)
}

/// What a failure message needs of a `show stat` row.
const SUMMARY: [&str; 6] = [
    "status",
    "check_status",
    "check_desc",
    "last_chk",
    "chkfail",
    "chkdown",
];

/// wharf taking PROXY headers from 127.0.0.1, with the access log and
/// metrics on, and `limit` (per-address flags).
fn wharf(limit: &[&str]) -> (Wharf, SocketAddr) {
    let mut args = vec![
        "--workers",
        "2",
        "--proxy-from",
        "127.0.0.1",
        "--log-level",
        "debug",
        "--metrics",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(limit);
    let wharf = spawn_wharf_command(serve_command("127.0.0.1:0", &args));
    let metrics = logged_metrics_addr(&wharf.log());
    (wharf, metrics)
}

/// The access log's closing lines (`conn N from ...: closed after ...`).
fn closed_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("[DEBUG] conn ") && l.contains(": closed after "))
        .collect()
}

/// The closing line of the connection whose client was `client`, waited for.
fn closed_line_of(wharf: &Wharf, client: SocketAddr) -> String {
    let needle = format!(" from {client} via 127.0.0.1:");
    let mut found = None;
    let ok = eventually(SETTLE, || {
        found = closed_lines(&wharf.log())
            .into_iter()
            .find(|l| l.contains(&needle))
            .map(str::to_owned);
        found.is_some()
    });
    assert!(
        ok,
        "no access-log close line naming {needle:?}:\n{}",
        wharf.log()
    );
    found.unwrap()
}

/// Health-check connections in wharf's log: closed lines naming HAProxy's
/// own address (a v2 LOCAL header or v1 `UNKNOWN` keeps the socket's), or
/// naming it as client and balancer at once (v1 may send its own
/// addresses). Neither names a test client.
fn check_lines(log: &str) -> usize {
    closed_lines(log)
        .into_iter()
        .filter(|l| !l.contains(" from 127.0.0.2:") && !l.contains(" from 127.0.0.3:"))
        .count()
}

/// What every test asserts after its clients: more health checks went
/// through, all passed, and none was a protocol error on wharf.
fn assert_checks_clean(haproxy: &mut Haproxy, wharf: &Wharf, metrics: SocketAddr) {
    let before = check_lines(&wharf.log());
    assert!(
        eventually(SETTLE, || check_lines(&wharf.log()) >= before + 3),
        "fewer than 3 more health checks reached wharf:\n{}\nhaproxy:\n{}",
        wharf.log(),
        haproxy.output()
    );
    let stat = wait_up(haproxy);
    println!("wharf/s1: {}", stat.summary(&SUMMARY));
    assert_eq!(stat.field("chkfail"), "0", "{}", stat.summary(&SUMMARY));
    let text = scrape(metrics);
    assert_eq!(
        value(&text, "wharf_protocol_errors_total"),
        0.0,
        "wharf:\n{}",
        wharf.log()
    );
    assert!(
        !wharf.log().contains("protocol error"),
        "a protocol error on wharf:\n{}",
        wharf.log()
    );
}

/// Reads the GOAWAY 6 a limited connection gets through HAProxy; returns
/// its retry hint.
fn expect_limited(client: &mut Client, haproxy: &Haproxy, wharf: &Wharf) -> Duration {
    let frame = client.recv().unwrap_or_else(|| {
        panic!(
            "closed without GOAWAY 6\nwharf:\n{}\nhaproxy:\n{}",
            wharf.log(),
            haproxy.output()
        )
    });
    let goaway = frame
        .goaway(Framing::Length)
        .unwrap_or_else(|| panic!("not a GOAWAY: {frame:?}"));
    assert_eq!(goaway.code, GoAwayCode::Limited.as_u16(), "{goaway:?}");
    assert!(
        goaway.reason.starts_with("retry after "),
        "{:?}",
        goaway.reason
    );
    client.expect_closed();
    goaway.retry_after().expect("a retry hint")
}

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

#[test]
fn proxy_v2_through_haproxy_names_clients_and_caps_them_apart() {
    let test = "proxy_v2_through_haproxy_names_clients_and_caps_them_apart";
    if !have_haproxy(test) {
        return;
    }
    let dir = Dir::new("haproxy-proxy-v2");
    let (wharf, metrics) = wharf(&["--max-connections-per-address", "1"]);
    let (mut haproxy, front) = start(&dir, wharf.addr, "send-proxy-v2", "200ms");
    wait_up(&mut haproxy);

    // One connection from 127.0.0.2, held open: served.
    let (mut first, first_addr) = client(front, A);
    first.echo(b"first from 127.0.0.2");
    // A second from 127.0.0.2 is over its cap of 1: GOAWAY 6, hint 0.
    let (mut second, second_addr) = client(front, A);
    let hint = expect_limited(&mut second, &haproxy, &wharf);
    assert_eq!(hint, Duration::ZERO, "the cap's hint is 0");
    // 127.0.0.3 is another address, with a cap of its own.
    let (mut other, other_addr) = client(front, B);
    other.echo(b"from 127.0.0.3");
    first.echo(b"still served");
    drop((first, other));

    let line = closed_line_of(&wharf, first_addr);
    assert!(line.contains(": closed after "), "{line}");
    assert!(line.contains("2 requests: closed by the client"), "{line}");
    let line = closed_line_of(&wharf, second_addr);
    assert!(line.contains("GOAWAY 6 LIMITED"), "{line}");
    let line = closed_line_of(&wharf, other_addr);
    assert!(line.contains("1 request: closed by the client"), "{line}");

    let text = scrape(metrics);
    assert_eq!(
        value(
            &text,
            "wharf_connections_rejected_total{reason=\"per_address_connections\"}"
        ),
        1.0,
        "{text}"
    );
    assert_checks_clean(&mut haproxy, &wharf, metrics);
    // A v2 health check is LOCAL: wharf logs HAProxy's own address, no `via`.
    assert!(
        closed_lines(&wharf.log())
            .iter()
            .any(|l| l.contains(" from 127.0.0.1:") && !l.contains(" via ")),
        "{}",
        wharf.log()
    );
}

#[test]
fn proxy_v1_through_haproxy_names_clients_and_rate_limits_them_apart() {
    let test = "proxy_v1_through_haproxy_names_clients_and_rate_limits_them_apart";
    if !have_haproxy(test) {
        return;
    }
    let dir = Dir::new("haproxy-proxy-v1");
    // One new connection per 500 ms and address. HAProxy's checks come
    // from its own address once a second, under that rate.
    let (wharf, metrics) = wharf(&["--connect-rate-per-address", "2/s", "--connect-burst", "1"]);
    let (mut haproxy, front) = start(&dir, wharf.addr, "send-proxy", "1s");
    wait_up(&mut haproxy);

    let (mut first, first_addr) = client(front, A);
    first.echo(b"first from 127.0.0.2");
    drop(first);
    // At once again from 127.0.0.2: its token is spent, the hint says when
    // the next one comes (under 500 ms from now).
    let (mut second, second_addr) = client(front, A);
    let hint = expect_limited(&mut second, &haproxy, &wharf);
    assert!(
        hint > Duration::ZERO && hint <= Duration::from_millis(500),
        "{hint:?}"
    );
    let (mut other, other_addr) = client(front, B);
    other.echo(b"from 127.0.0.3");
    drop(other);

    for (client, end) in [
        (first_addr, "1 request: closed by the client"),
        (second_addr, "GOAWAY 6 LIMITED"),
        (other_addr, "1 request: closed by the client"),
    ] {
        let line = closed_line_of(&wharf, client);
        assert!(line.contains(end), "{line}");
    }
    let text = scrape(metrics);
    assert_eq!(
        value(
            &text,
            "wharf_connections_rejected_total{reason=\"per_address_rate\"}"
        ),
        1.0,
        "{text}"
    );
    assert_checks_clean(&mut haproxy, &wharf, metrics);
}

#[test]
fn deploy_haproxy_cfg_is_valid_and_sends_the_proxy_header() {
    let test = "deploy_haproxy_cfg_is_valid_and_sends_the_proxy_header";
    let text = std::fs::read_to_string(DEPLOY).expect("read deploy/haproxy.cfg");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let servers: Vec<&&str> = lines.iter().filter(|l| l.starts_with("server ")).collect();
    assert!(!servers.is_empty(), "no server lines");
    for server in servers {
        assert!(
            server.split_whitespace().any(|w| w == "send-proxy-v2")
                && server.split_whitespace().any(|w| w == "check"),
            "a server without send-proxy-v2 and check: {server}"
        );
    }
    // An explicit `tcp-check connect` without `default` (or its own
    // `send-proxy`) sends no header, whatever the server line says: wharf
    // would count every check as a protocol error.
    for connect in lines.iter().filter(|l| l.starts_with("tcp-check connect")) {
        assert!(
            connect.split_whitespace().any(|w| w == "default"),
            "{connect}"
        );
    }
    if !have_haproxy(test) {
        return;
    }
    let out = Command::new("haproxy")
        .args(["-c", "-f", DEPLOY])
        .output()
        .expect("haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c -f deploy/haproxy.cfg:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
