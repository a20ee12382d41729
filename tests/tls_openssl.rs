//! Interop: `openssl s_client`, a TLS client this project did not write,
//! against the real `wharf` binary's TLS listener (contract v3 §5), in the
//! line framing of §2, which is what a person typing into s_client speaks.
//!
//! The other TLS tests use rustls on both sides, so a mistake shared by the
//! server and the test client (an extension, an alert, a record layout)
//! would pass them. Here OpenSSL does its own verification of wharf's
//! certificate (`-CAfile`, `-verify_return_error`, `-verify_hostname`, SNI
//! `localhost`), and the tests prove:
//! - by default the session is TLS 1.3 with ALPN `wharf`, and the line
//!   `PING` gets `PONG`; with `-tls1_2` the same over TLS 1.2; a client that
//!   offers no ALPN is served too;
//! - a client offering only ALPN `other` gets the `no_application_protocol`
//!   alert and no reply, and wharf counts the handshake as failed in
//!   `wharf_tls_handshakes_total{result="failed"}`;
//! - with `--tls-client-ca` (required), a client without a certificate gets
//!   the `certificate_required` alert and no reply, while one presenting the
//!   test client certificate is served, and wharf's access log names it;
//! - with `--tls-min-version 1.3`, `-tls1_2` gets `protocol_version`.
//!
//! Every s_client is given `PING\n` and keeps its stdin open until `PONG`
//! arrives or it exits; then its stdin is closed, so it sends close_notify
//! and exits by itself. Each runs under a deadline: past it, it is killed by
//! its PID and reaped, and the test fails. Where `openssl` is missing
//! (`.ci/run` installs it) each test says SKIPPED and passes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::logged_metrics_addr;
use common::metrics::{scrape, wait_for};
use common::netns::skipped;
use common::scrape::handshakes;
use common::tls::{spawn_tls_wharf, Certs};
use common::Wharf;

/// The longest one s_client session may take, handshake to exit.
const DEADLINE: Duration = Duration::from_secs(30);

/// Whether `openssl` runs here; if not, says so loudly.
fn have_openssl(test: &str) -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            skipped(&format!(
                "{test}: `openssl version` failed ({})",
                out.status
            ));
            false
        }
        Err(e) => {
            skipped(&format!(
                "{test}: openssl is not installed ({e}; bash .ci/run installs it)"
            ));
            false
        }
    }
}

/// A child killed (by PID) and reaped if the test leaves it running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What one s_client session showed.
struct Session {
    status: ExitStatus,
    /// The session report and the server's replies.
    stdout: String,
    /// Verification progress, errors and alerts.
    stderr: String,
    /// Whether the line `PONG` came back.
    ponged: bool,
}

impl Session {
    fn served(&self) {
        assert!(
            self.ponged && self.status.success(),
            "s_client was not served ({}):\n{self}",
            self.status
        );
        assert!(self.stdout.contains("Verify return code: 0 (ok)"), "{self}");
    }

    /// Refused with the alert OpenSSL describes as `alert`.
    fn refused(&self, alert: &str) {
        assert!(!self.ponged, "a refused client got PONG:\n{self}");
        assert!(!self.status.success(), "s_client exited 0:\n{self}");
        assert!(
            self.stderr.contains(alert),
            "expected the alert `{alert}`:\n{self}"
        );
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// `openssl s_client` to `addr`, verifying it for `localhost` against `ca`,
/// with `extra` options; sends `PING\n` (see the module doc).
fn s_client(addr: SocketAddr, ca: &Path, extra: &[&str]) -> Session {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(["-verify_return_error", "-servername", "localhost"])
        .args(["-verify_hostname", "localhost", "-no_ign_eof"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{command:?}");
    let mut child = Reaped(command.spawn().expect("openssl s_client starts"));
    let mut stdin = child.0.stdin.take();
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // A write after s_client has gone fails (EPIPE): what it showed says why.
    if let Some(pipe) = stdin.as_mut() {
        let _ = pipe.write_all(b"PING\n").and_then(|()| pipe.flush());
    }

    let deadline = Instant::now() + DEADLINE;
    let mut out = String::new();
    let mut ponged = false;
    let mut closed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line == "PONG" && !closed {
                    ponged = true;
                    // End of input: s_client closes the session and exits.
                    drop(stdin.take());
                    closed = true;
                }
            }
            // Its stdout is closed: s_client has exited.
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.0.kill();
                let _ = child.0.wait();
                panic!(
                    "{what} still running after {DEADLINE:?}\n--- stdout\n{out}--- stderr\n{}",
                    errors.join().unwrap_or_default()
                );
            }
        }
    }
    drop(stdin);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} closed stdout, never exited"
        );
        thread::sleep(Duration::from_millis(10));
    };
    Session {
        status,
        stdout: out,
        stderr: errors.join().unwrap_or_default(),
        ponged,
    }
}

/// wharf in line framing with a TLS listener serving `certs`' server
/// certificate, plus `args`.
fn wharf(certs: &Certs, args: &[&str]) -> Wharf {
    let mut all = vec!["--workers", "2", "--framing", "line"];
    all.extend_from_slice(args);
    spawn_tls_wharf(&certs.path("server.pem"), &certs.path("server.key"), &all)
}

#[test]
fn tls13_by_default_alpn_wharf_and_ping_gets_pong() {
    if !have_openssl("tls13_by_default_alpn_wharf_and_ping_gets_pong") {
        return;
    }
    let certs = Certs::new();
    let wharf = wharf(&certs, &[]);
    let session = s_client(wharf.addr, &certs.path("ca.pem"), &["-alpn", "wharf"]);
    session.served();
    assert!(session.stdout.contains("Protocol  : TLSv1.3"), "{session}");
    assert!(session.stdout.contains("ALPN protocol: wharf"), "{session}");
}

#[test]
fn tls12_alpn_wharf_and_ping_gets_pong() {
    if !have_openssl("tls12_alpn_wharf_and_ping_gets_pong") {
        return;
    }
    let certs = Certs::new();
    let wharf = wharf(&certs, &[]);
    let ca = certs.path("ca.pem");
    let session = s_client(wharf.addr, &ca, &["-tls1_2", "-alpn", "wharf"]);
    session.served();
    assert!(session.stdout.contains("Protocol  : TLSv1.2"), "{session}");
    assert!(session.stdout.contains("ALPN protocol: wharf"), "{session}");
}

#[test]
fn wrong_alpn_is_refused_and_counted_failed_while_no_alpn_is_served() {
    if !have_openssl("wrong_alpn_is_refused_and_counted_failed_while_no_alpn_is_served") {
        return;
    }
    let certs = Certs::new();
    let wharf = wharf(&certs, &["--metrics", "127.0.0.1:0"]);
    let metrics = logged_metrics_addr(&wharf.log());
    let ca = certs.path("ca.pem");

    let session = s_client(wharf.addr, &ca, &["-alpn", "other"]);
    session.refused("no application protocol");
    let text = wait_for(
        metrics,
        "wharf_tls_handshakes_total{result=\"failed\"}",
        1.0,
    );
    assert_eq!(handshakes(&text, "ok"), 0.0, "{text}");

    // No ALPN at all is not a wrong one (§5): served.
    let session = s_client(wharf.addr, &ca, &[]);
    session.served();
    assert!(session.stdout.contains("No ALPN negotiated"), "{session}");
    let text = wait_for(metrics, "wharf_tls_handshakes_total{result=\"ok\"}", 1.0);
    assert_eq!(handshakes(&text, "failed"), 1.0, "{text}");
    // The refusal is also logged (warn), with its cause.
    assert!(
        wharf.log().contains("TLS handshakes failed"),
        "{}",
        wharf.log()
    );
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_and_serves_one_with_it() {
    if !have_openssl("mutual_tls_refuses_a_client_without_a_certificate_and_serves_one_with_it") {
        return;
    }
    let certs = Certs::new();
    let ca = certs.path("ca.pem");
    let ca_arg = ca.to_str().expect("UTF-8 temp path");
    let wharf = wharf(
        &certs,
        &[
            "--tls-client-ca",
            ca_arg,
            "--tls-client-auth",
            "required",
            "--metrics",
            "127.0.0.1:0",
            "--log-level",
            "debug",
        ],
    );
    let metrics = logged_metrics_addr(&wharf.log());

    // TLS 1.3 reports the refusal after the client's Finished, on its
    // first read: the PING must not be answered.
    let session = s_client(wharf.addr, &ca, &["-alpn", "wharf"]);
    session.refused("certificate required");
    // TLS 1.2 refuses within the handshake.
    let session = s_client(wharf.addr, &ca, &["-tls1_2", "-alpn", "wharf"]);
    assert!(!session.ponged && !session.status.success(), "{session}");
    wait_for(
        metrics,
        "wharf_tls_handshakes_total{result=\"failed\"}",
        2.0,
    );

    let (cert, key) = (certs.path("client.pem"), certs.path("client.key"));
    let identity = [
        "-alpn",
        "wharf",
        "-cert",
        cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
    ];
    s_client(wharf.addr, &ca, &identity).served();
    let mut tls12 = vec!["-tls1_2"];
    tls12.extend_from_slice(&identity);
    s_client(wharf.addr, &ca, &tls12).served();
    let text = scrape(metrics);
    assert_eq!(handshakes(&text, "ok"), 2.0, "{text}");
    // The access log's connection line names the client OpenSSL presented.
    let log = wharf.log();
    assert!(
        log.lines()
            .any(|l| l.contains("tls1.3") && l.contains("cn=wharf dev client")),
        "no tls1.3 connection line with the client's name:\n{log}"
    );
}

#[test]
fn min_version_13_refuses_tls12() {
    if !have_openssl("min_version_13_refuses_tls12") {
        return;
    }
    let certs = Certs::new();
    let wharf = wharf(&certs, &["--tls-min-version", "1.3"]);
    let ca = certs.path("ca.pem");
    s_client(wharf.addr, &ca, &["-tls1_2", "-alpn", "wharf"]).refused("protocol version");
    let session = s_client(wharf.addr, &ca, &["-alpn", "wharf"]);
    session.served();
    assert!(session.stdout.contains("Protocol  : TLSv1.3"), "{session}");
}
