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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::logged_metrics_addr;
use common::metrics::scrape;
use common::netns;
use common::pki::{Ca, Dir};
use common::scrape::handshakes;
use common::tls::{spawn_tls_wharf, Certs};
use common::{eventually, Wharf};

/// HAProxy's frontend, plain TCP, in the test's own namespace.
const FRONT: &str = "127.0.0.1:7878";
/// How long a server may take to reach the state a test waits for.
const SETTLE: Duration = Duration::from_secs(30);

/// Whether HAProxy with OpenSSL runs here; if not, says so loudly.
fn have_haproxy_with_ssl(test: &str) -> bool {
    let out = match Command::new("haproxy").arg("-vv").output() {
        Ok(out) => out,
        Err(e) => {
            netns::skipped(&format!(
                "{test}: haproxy is not installed ({e}; bash .ci/run installs it)"
            ));
            return false;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    if !text.contains("built with openssl") {
        netns::skipped(&format!("{test}: haproxy is built without OpenSSL"));
        return false;
    }
    true
}

/// HAProxy in the foreground (`-db`), its output kept for failure messages.
struct Haproxy {
    child: Child,
    socket: std::path::PathBuf,
    output: Arc<Mutex<String>>,
}

impl Haproxy {
    /// Writes the config for one backend server, wharf at `backend`, whose
    /// certificate HAProxy verifies against `ca`, and starts HAProxy.
    fn start(dir: &Dir, backend: SocketAddr, ca: &Path) -> Haproxy {
        let socket = dir.path("haproxy.sock");
        let config = format!(
            "global
    stats socket {socket} level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 5s
frontend front
    bind {FRONT}
    default_backend wharf
backend wharf
    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect string PONG
    default-server inter 200ms fall 1 rise 1
    server s1 {backend} ssl verify required ca-file {ca} sni str(localhost) alpn wharf check check-ssl check-sni localhost check-alpn wharf
",
            socket = socket.display(),
            ca = ca.display(),
        );
        let path = dir.path("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        Haproxy {
            child,
            socket,
            output,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// `show stat` on the stats socket: server `wharf/s1`'s fields by name.
    /// `None` while the socket is not up yet.
    fn server_stat(&mut self) -> Option<Vec<(String, String)>> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("haproxy exited ({status}):\n{}", self.output());
        }
        let mut socket = UnixStream::connect(&self.socket).ok()?;
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut text = String::new();
        socket.read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let header = lines.next()?.trim_start_matches("# ");
        let row = lines.find(|l| l.starts_with("wharf,s1,"))?;
        Some(
            header
                .split(',')
                .zip(row.split(','))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// Waits until `wharf/s1` shows `status` and a check status starting
    /// with `check`; returns its fields.
    fn wait_server(&mut self, status: &str, check: &str) -> Vec<(String, String)> {
        let deadline = Instant::now() + SETTLE;
        let mut last = None;
        loop {
            if let Some(stat) = self.server_stat() {
                if field(&stat, "status") == status
                    && field(&stat, "check_status").starts_with(check)
                {
                    return stat;
                }
                last = Some(stat);
            }
            assert!(
                Instant::now() < deadline,
                "wharf/s1 never {status} with check {check}*; last: {}\nhaproxy:\n{}",
                last.as_deref().map(summary).unwrap_or_default(),
                self.output()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) with the PID of a child we started and have not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() >= deadline {
                    let _ = self.child.kill();
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.wait();
        }
    }
}

/// One field of a `show stat` row ("" if absent).
fn field<'a>(stat: &'a [(String, String)], name: &str) -> &'a str {
    stat.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// What a failure message needs of a `show stat` row.
fn summary(stat: &[(String, String)]) -> String {
    const NAMES: [&str; 6] = [
        "status",
        "check_status",
        "check_desc",
        "last_chk",
        "ssl_sess",
        "ssl_failed_handshake",
    ];
    NAMES
        .iter()
        .map(|name| format!("{name}={:?}", field(stat, name)))
        .collect::<Vec<_>>()
        .join(" ")
}

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
    let mut haproxy = Haproxy::start(&dir, wharf.addr, &certs.path("ca.pem"));
    let stat = haproxy.wait_server("UP", "L7OK");
    println!("wharf/s1: {}", summary(&stat));
    assert_eq!(
        field(&stat, "ssl_failed_handshake"),
        "0",
        "{}",
        summary(&stat)
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
    let mut haproxy = Haproxy::start(&dir, wharf.addr, &foreign);
    // Layer 6: TCP connected, the TLS handshake failed.
    let stat = haproxy.wait_server("DOWN", "L6");
    println!("wharf/s1: {}", summary(&stat));
    assert!(
        field(&stat, "last_chk").contains("SSL handshake failure"),
        "{}",
        summary(&stat)
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
