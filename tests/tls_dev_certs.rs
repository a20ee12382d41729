//! `wharf dev-certs DIR`: the five files the contract names, keys readable
//! by their owner only, the server certificate naming the asked-for DNS
//! names and both loopback addresses, never overwriting, and the files
//! good enough for `wharf serve` to run TLS and mutual TLS with them.
//!
//! Runs the real binary; the server listens on 127.0.0.1:0.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::Dir;
use common::tls::ClientSetup;
use common::{serve_command, spawn_wharf_command, Wharf};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

const FILES: [&str; 5] = [
    "ca.pem",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];

fn dev_certs(dir: &Path, names: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command.arg("dev-certs").arg(dir);
    for name in names {
        command.args(["--name", name]);
    }
    command.output().expect("wharf dev-certs runs")
}

/// The server certificate's subject alternative names, as text.
fn sans(pem: &[u8]) -> Vec<String> {
    let (_, pem) = parse_x509_pem(pem).expect("PEM");
    let cert = pem.parse_x509().expect("a certificate");
    let ext = cert
        .subject_alternative_name()
        .expect("well-formed")
        .expect("has SANs");
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns).to_owned(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                _ => format!("{ip:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn writes_the_five_files_with_private_keys_and_the_names_asked_for() {
    let dir = Dir::new("dev-certs");
    let out = dev_certs(&dir.0, &["localhost", "wharf.test"]);
    assert!(out.status.success(), "{out:?}");
    for file in FILES {
        let mode = std::fs::metadata(dir.path(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        if file.ends_with(".key") {
            assert_eq!(mode, 0o600, "{file} is readable by its owner only");
        } else {
            assert_eq!(mode & 0o077, mode & 0o044, "{file}: mode {mode:o}");
        }
    }
    let names = sans(&std::fs::read(dir.path("server.pem")).unwrap());
    for want in ["localhost", "wharf.test", "127.0.0.1", "::1"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    // What to type next is printed with the paths.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--tls-cert"), "{stdout}");
}

#[test]
fn the_default_name_is_localhost() {
    let dir = Dir::new("dev-certs-default");
    let out = dev_certs(&dir.0, &[]);
    assert!(out.status.success(), "{out:?}");
    let names = sans(&std::fs::read(dir.path("server.pem")).unwrap());
    assert_eq!(names, ["localhost", "127.0.0.1", "::1"]);
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = Dir::new("dev-certs-again");
    assert!(dev_certs(&dir.0, &[]).status.success());
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(dir.path(f)).unwrap())
        .collect();
    let again = dev_certs(&dir.0, &[]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    let after: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(dir.path(f)).unwrap())
        .collect();
    assert!(before == after, "the files are unchanged");
}

/// The TLS listener's address, from the server's second listening line.
fn tls_addr(server: &Wharf) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        let line = log
            .lines()
            .find(|line| line.contains("listening on") && line.contains("(tls"));
        if let Some(line) = line {
            let addr = line.split("listening on ").nth(1).unwrap();
            return addr.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no TLS listening line: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_runs_mutual_tls_with_the_files() {
    let dir = Dir::new("dev-certs-serve");
    assert!(dev_certs(&dir.0, &[]).status.success());
    let path = |f: &str| dir.path(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let args = [
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let mut server = spawn_wharf_command(serve_command("127.0.0.1:0", &args));
    let addr = tls_addr(&server);
    let setup = ClientSetup {
        ca: dir.path("ca.pem"),
        alpn: vec![b"wharf".to_vec()],
        identity: Some((dir.path("client.pem"), dir.path("client.key"))),
        versions: rustls::ALL_VERSIONS,
    };
    let mut client = setup.connect(addr).expect("the handshake verifies");
    client.echo(b"over the development CA");
    drop(client);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", server.log());
}
