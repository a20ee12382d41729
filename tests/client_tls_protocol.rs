//! `wharf client --tls` and a server with nothing in common (contract v3
//! §5): no common ALPN protocol, or no common TLS version, is a failed
//! handshake, exit 3 with a line that says "no common protocol". The
//! servers here are rustls servers the test limits: one that speaks
//! another ALPN protocol, and one that speaks TLS 1.2 only, which the
//! client (offering 1.2 and 1.3) is served by. The client has no flag that
//! limits its own versions, so no server here can have no version in
//! common with it: that case (`protocol_version` alert) is covered by the
//! unit tests of the mapping (`src/client/failure.rs`).

mod common;

use common::client_cli::run_client;
use common::client_tls::{one_connection, rustls_server, tls_args, Pki};

fn args<'a>(all: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    all.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

#[test]
fn another_alpn_protocol_is_no_common_protocol() {
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let pki = Pki::new("ctls-alpn");
        let config = rustls_server(&pki, &[version], b"h2", false);
        let (addr, server) = one_connection(config);
        let refused = run_client(&args(&tls_args(&pki, addr), &["--send", "x"]), b"");
        assert_eq!(refused.code(), Some(3), "{refused:?}");
        let lines: Vec<&str> = refused.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{refused:?}");
        assert!(
            lines[0].contains("failed: no common protocol"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("wharf"),
            "names the protocol: {}",
            lines[0]
        );
        assert_eq!(
            server.join().unwrap(),
            Some(rustls::Error::NoApplicationProtocol)
        );
    }
}

#[test]
fn a_tls12_only_server_is_served() {
    let pki = Pki::new("ctls-tls12");
    let config = rustls_server(&pki, &[&rustls::version::TLS12], b"wharf", false);
    let (addr, server) = one_connection(config);
    let served = run_client(
        &args(&tls_args(&pki, addr), &["--send", "a", "--send", "b"]),
        b"",
    );
    assert_eq!(served.code(), Some(0), "{served:?}");
    assert_eq!(served.stdout, "a\nb\n");
    assert!(server.join().unwrap().is_none());
}
