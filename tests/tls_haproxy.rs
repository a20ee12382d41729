//! Interop: HAProxy as a TLS client of wharf (contract v3 §5), for its
//! health checks and for the traffic it forwards.
//!
//! HAProxy's backend connects to the `wharf` binary's TLS listener with
//! `ssl verify required ca-file CA sni str(localhost) alpn wharf`, and its
//! health check runs over TLS too (`check-ssl check-sni localhost
//! check-alpn wharf`), as a line-framing `tcp-check`: send `PING\r\n`
//! (§2 drops the `\r`), expect the string `PONG`. The tests prove:
//! - with the CA that signed wharf's certificate, HAProxy's check passes
//!   (the server is UP with `L7OK`, read from HAProxy's stats socket), wharf
//!   counts the check's handshakes as ok and none as failed, and a client
//!   speaking plain TCP to HAProxy's frontend gets `PONG` and the echo of a
//!   line through the TLS hop;
//! - with a CA that did not sign it, HAProxy refuses wharf's certificate:
//!   the server goes DOWN on a layer-6 (TLS) check failure, wharf counts
//!   those handshakes as failed, and a client of the frontend gets nothing.
//!
//! HAProxy cannot bind port 0, so, like `haproxy.rs`, each test runs in a
//! network namespace of its own (`common::netns`, as root) where the
//! frontend's fixed port is free. Where HAProxy is missing or built without
//! OpenSSL (`.ci/run` installs it and checks), or namespaces are not
//! allowed, the test says SKIPPED and passes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::haproxy::{self, Haproxy, Stat};
use common::metrics::logged_metrics_addr;
use common::metrics::scrape;
use common::netns;
use common::pki::{Ca, Dir};
use common::scrape::handshakes;
use common::tls::{spawn_tls_wharf, Certs};
use common::{eventually, Wharf};

/// HAProxy's frontend, plain TCP, in the test's own namespace.
const FRONT: &str = "127.0.0.1:7878";

/// Whether HAProxy with OpenSSL runs here; if not, says so loudly.
fn have_haproxy_with_ssl(test: &str) -> bool {
    let Some(version) = haproxy::version(test) else {
        return false;
    };
    if !version.to_lowercase().contains("built with openssl") {
        netns::skipped(&format!("{test}: haproxy is built without OpenSSL"));
        return false;
    }
    true
}

/// Writes the config for one backend server, wharf at `backend`, whose
/// certificate HAProxy verifies against `ca`, and starts HAProxy.
fn start(dir: &Dir, backend: SocketAddr, ca: &Path) -> Haproxy {
    let lines = format!(
        "    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string PONG
    default-server inter 200ms fall 1 rise 1
    server s1 {backend} ssl verify required ca-file {ca} sni str(localhost) alpn wharf check check-ssl check-sni localhost check-alpn wharf
",
        ca = ca.display(),
    );
    Haproxy::with_backend(dir, FRONT, &lines)
}

/// Waits until `wharf/s1` shows `status` and a check status starting with
/// `check`; returns its row.
fn wait_server(haproxy: &mut Haproxy, status: &str, check: &str) -> Stat {
    haproxy.wait_server(&format!("{status} with check {check}*"), &SUMMARY, |stat| {
        stat.field("status") == status && stat.field("check_status").starts_with(check)
    })
}

/// What a failure message needs of a `show stat` row.
const SUMMARY: [&str; 6] = [
    "status",
    "check_status",
    "check_desc",
    "last_chk",
    "ssl_sess",
    "ssl_failed_handshake",
];

/// wharf in line framing, with metrics, serving `certs`' server certificate.
fn wharf(certs: &Certs) -> (Wharf, SocketAddr) {
    let wharf = spawn_tls_wharf(
        &certs.path("server.pem"),
        &certs.path("server.key"),
        &[
            "--workers",
            "2",
            "--framing",
            "line",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = logged_metrics_addr(&wharf.log());
    (wharf, metrics)
}

/// A plain-TCP client of HAProxy's frontend.
fn front() -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(FRONT).expect("connect to haproxy's frontend");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

#[test]
fn haproxy_checks_and_forwards_over_verified_tls() {
    let test = "haproxy_checks_and_forwards_over_verified_tls";
    if !have_haproxy_with_ssl(test) || !netns::enter(test) {
        return;
    }
    let certs = Certs::new();
    let dir = Dir::new("tls-haproxy");
    let (wharf, metrics) = wharf(&certs);
    let mut haproxy = start(&dir, wharf.addr, &certs.path("ca.pem"));
    let stat = wait_server(&mut haproxy, "UP", "L7OK");
    println!("wharf/s1: {}", stat.summary(&SUMMARY));
    assert_eq!(
        stat.field("ssl_failed_handshake"),
        "0",
        "{}",
        stat.summary(&SUMMARY)
    );

    let (mut stream, mut reader) = front();
    stream
        .write_all(b"PING\nhello through haproxy\n")
        .expect("send through haproxy");
    for want in ["PONG\n", "hello through haproxy\n"] {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("a reply through haproxy");
        assert_eq!(
            line,
            want,
            "haproxy:\n{}\nwharf:\n{}",
            haproxy.output(),
            wharf.log()
        );
    }
    drop((stream, reader));

    // The checks and the forwarded connection were TLS handshakes wharf
    // completed; none failed.
    let mut text = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            text = scrape(metrics);
            handshakes(&text, "ok") >= 2.0
        }),
        "{text}"
    );
    assert_eq!(handshakes(&text, "failed"), 0.0, "{text}");
}

#[test]
fn haproxy_with_a_foreign_ca_marks_wharf_down() {
    let test = "haproxy_with_a_foreign_ca_marks_wharf_down";
    if !have_haproxy_with_ssl(test) || !netns::enter(test) {
        return;
    }
    let certs = Certs::new();
    let dir = Dir::new("tls-haproxy-foreign");
    let foreign = dir.path("foreign-ca.pem");
    std::fs::write(&foreign, Ca::new("not wharf's CA").pem()).expect("write the foreign CA");
    let (wharf, metrics) = wharf(&certs);
    let mut haproxy = start(&dir, wharf.addr, &foreign);
    // Layer 6: TCP connected, the TLS handshake failed.
    let stat = wait_server(&mut haproxy, "DOWN", "L6");
    println!("wharf/s1: {}", stat.summary(&SUMMARY));
    assert!(
        stat.field("last_chk").contains("SSL handshake failure"),
        "{}",
        stat.summary(&SUMMARY)
    );

    // HAProxy hung up in the handshake; wharf saw it fail.
    let mut text = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            text = scrape(metrics);
            handshakes(&text, "failed") >= 1.0
        }),
        "{text}\nwharf:\n{}",
        wharf.log()
    );
    assert_eq!(handshakes(&text, "ok"), 0.0, "{text}");

    // With its only server DOWN, the frontend's client gets no reply.
    let (mut stream, mut reader) = front();
    let _ = stream.write_all(b"PING\n");
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(_) => assert!(line.is_empty(), "a reply with wharf DOWN: {line:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}
