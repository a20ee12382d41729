//! `wharf client --tls` and client certificates (contract v3 §5): with
//! `--tls-cert`/`--tls-key` the client is served and the service sees who
//! it is; a server that requires a certificate and gets none, or gets one
//! from a CA it does not trust, is a failed handshake: exit 3 and one line
//! saying why. With TLS 1.3 the server says so only after the client has
//! finished its side of the handshake, so these run against TLS 1.3 (a
//! wharf server with `--tls-min-version 1.3`) and TLS 1.2 (a rustls server
//! limited to it: a wharf server cannot be).

mod common;

use std::time::Duration;

use common::client_cli::run_client;
use common::client_tls::{one_connection, rustls_server, serve, tls_args, Pki};
use common::pki::Ca;
use wharf::tls::{ClientAuth, TlsVersion};

fn args<'a>(all: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    all.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

fn assert_refused(finished: &common::client_cli::Finished, why: &str) {
    assert_eq!(finished.code(), Some(3), "{finished:?}");
    let lines: Vec<&str> = finished.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {finished:?}");
    assert!(
        lines[0].starts_with("wharf client: TLS handshake with "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(why), "{why:?} in {}", lines[0]);
    assert!(finished.stdout.is_empty(), "{finished:?}");
}

#[test]
fn a_client_certificate_is_presented_and_the_service_sees_who() {
    for min in [TlsVersion::V1_2, TlsVersion::V1_3] {
        let pki = Pki::new("ctls-mutual");
        let (cert, key) = pki.client(&pki.ca, "alice");
        let (server, addr, opened) = serve(pki.settings(Some(ClientAuth::Required), min));
        let base = tls_args(&pki, addr);
        let served = run_client(
            &args(
                &base,
                &["--tls-cert", &cert, "--tls-key", &key, "--send", "hi"],
            ),
            b"",
        );
        assert_eq!(served.code(), Some(0), "{served:?}");
        assert_eq!(served.stdout, "hi\n");
        let conn = opened.recv_timeout(Duration::from_secs(10)).unwrap();
        let identity = conn
            .tls
            .and_then(|tls| tls.client)
            .expect("a client identity");
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        server.handle().shutdown();
        server.join();
    }
}

#[test]
fn tls13_no_certificate_for_a_server_that_requires_one_exits_3() {
    let pki = Pki::new("ctls-required13");
    let settings = pki.settings(Some(ClientAuth::Required), TlsVersion::V1_3);
    let (server, addr, opened) = serve(settings);
    let base = tls_args(&pki, addr);
    // Each mode: the refusal comes after the client's side is finished.
    for mode in [&["--send", "x"][..], &["--ping", "--count", "1"], &[]] {
        let refused = run_client(&args(&base, mode), b"line\n");
        assert_refused(&refused, "a client certificate required");
        assert!(refused.stderr.contains("--tls-cert"), "{refused:?}");
    }
    assert!(opened.try_recv().is_err(), "no session was opened");
    server.handle().shutdown();
    server.join();
}

#[test]
fn tls13_a_certificate_from_another_ca_is_rejected_exits_3() {
    let pki = Pki::new("ctls-rejected13");
    let other = Ca::new("not the client CA");
    let (cert, key) = pki.client(&other, "mallory");
    let (server, addr, opened) = serve(pki.settings(Some(ClientAuth::Required), TlsVersion::V1_3));
    let base = tls_args(&pki, addr);
    let refused = run_client(
        &args(
            &base,
            &["--tls-cert", &cert, "--tls-key", &key, "--send", "x"],
        ),
        b"",
    );
    assert_refused(&refused, "client certificate rejected");
    assert!(opened.try_recv().is_err(), "no session was opened");
    server.handle().shutdown();
    server.join();
}

#[test]
fn tls12_no_certificate_for_a_server_that_requires_one_exits_3() {
    let pki = Pki::new("ctls-required12");
    let config = rustls_server(&pki, &[&rustls::version::TLS12], b"wharf", true);
    let (addr, server) = one_connection(config);
    let refused = run_client(&args(&tls_args(&pki, addr), &["--send", "x"]), b"");
    assert_refused(&refused, "a client certificate required");
    assert!(
        server.join().unwrap().is_some(),
        "the server refused the handshake"
    );
}

#[test]
fn tls12_a_certificate_is_presented_when_asked() {
    let pki = Pki::new("ctls-mutual12");
    let (cert, key) = pki.client(&pki.ca, "bob");
    let config = rustls_server(&pki, &[&rustls::version::TLS12], b"wharf", true);
    let (addr, server) = one_connection(config);
    // The test server echoes bytes, so a frame comes back as a frame.
    let served = run_client(
        &args(
            &tls_args(&pki, addr),
            &["--tls-cert", &cert, "--tls-key", &key, "--send", "x"],
        ),
        b"",
    );
    assert_eq!(served.code(), Some(0), "{served:?}");
    assert_eq!(served.stdout, "x\n");
    assert!(server.join().unwrap().is_none());
}
