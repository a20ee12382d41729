//! `wharf client --tls` verifies the server (contract v3 §5, "Client and
//! bench"), with no switch that skips it: a certificate from a CA not
//! given is refused as untrusted, one for another name as a name mismatch,
//! and a plain listener as not TLS, each with exit status 3 and one line
//! saying why. A TLS file that cannot be read is exit 1 naming it, and the
//! TLS flags need `--tls` (and a certificate its key): exit 2.

mod common;

use common::client_cli::run_client;
use common::client_tls::{serve, tls_args, Pki};
use common::pki::Ca;
use wharf::tls::TlsVersion;

fn args<'a>(all: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    all.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// The one line on stderr.
fn only_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    lines[0]
}

#[test]
fn a_server_signed_by_another_ca_is_untrusted() {
    let pki = Pki::new("ctls-untrusted");
    let (server, addr, opened) = serve(pki.settings(None, TlsVersion::V1_2));
    let other = Ca::new("some other CA");
    std::fs::write(pki.path("other.pem"), other.pem()).unwrap();
    let mut base = tls_args(&pki, addr);
    base[4] = pki.arg("other.pem");
    let refused = run_client(&args(&base, &["--send", "x"]), b"");
    assert_eq!(refused.code(), Some(3), "{refused:?}");
    let line = only_line(&refused.stderr);
    assert!(
        line.starts_with(&format!(
            "wharf client: TLS handshake with {addr} failed: untrusted certificate"
        )),
        "{line}"
    );
    assert!(
        line.contains("--tls-ca"),
        "the line says what to check: {line}"
    );
    assert!(refused.stdout.is_empty());
    assert!(opened.try_recv().is_err(), "no session was opened");
    server.handle().shutdown();
    server.join();
}

#[test]
fn a_certificate_for_another_name_is_a_name_mismatch() {
    let pki = Pki::new("ctls-name");
    let (server, addr, _opened) = serve(pki.settings(None, TlsVersion::V1_2));
    let base = tls_args(&pki, addr);
    let refused = run_client(
        &args(
            &base,
            &["--tls-server-name", "wharf.example", "--send", "x"],
        ),
        b"",
    );
    assert_eq!(refused.code(), Some(3), "{refused:?}");
    let line = only_line(&refused.stderr);
    assert!(line.contains("failed: name mismatch"), "{line}");
    assert!(line.contains("wharf.example"), "the name verified: {line}");
    assert!(line.contains("localhost"), "the names it carries: {line}");
    server.handle().shutdown();
    server.join();
}

#[test]
fn an_ip_address_the_certificate_does_not_name_is_a_name_mismatch() {
    let pki = Pki::new("ctls-ip");
    let (server, addr, _opened) = serve(pki.settings(None, TlsVersion::V1_3));
    let base = tls_args(&pki, addr);
    let refused = run_client(
        &args(&base, &["--tls-server-name", "10.0.0.1", "--ping"]),
        b"",
    );
    assert_eq!(refused.code(), Some(3), "{refused:?}");
    assert!(
        only_line(&refused.stderr).contains("name mismatch"),
        "{refused:?}"
    );
    server.handle().shutdown();
    server.join();
}

#[test]
fn a_plain_listener_is_not_tls() {
    let pki = Pki::new("ctls-plain");
    let (server, _tls, _opened) = serve(pki.settings(None, TlsVersion::V1_2));
    let plain = server.local_addrs()[0].0.tcp().expect("a TCP listener");
    let base = tls_args(&pki, plain);
    let refused = run_client(&args(&base, &["--send", "x"]), b"");
    assert_eq!(refused.code(), Some(3), "{refused:?}");
    let line = only_line(&refused.stderr);
    assert!(line.contains("TLS handshake with"), "{line}");
    server.handle().shutdown();
    server.join();
}

#[test]
fn a_tls_file_that_cannot_be_read_is_named_and_exits_1() {
    let pki = Pki::new("ctls-files");
    let (server, addr, _opened) = serve(pki.settings(None, TlsVersion::V1_2));
    let mut base = tls_args(&pki, addr);
    base[4] = pki.arg("missing.pem");
    let failed = run_client(&args(&base, &["--send", "x"]), b"");
    assert_eq!(failed.code(), Some(1), "{failed:?}");
    let line = only_line(&failed.stderr);
    assert!(
        line.contains("TLS CA bundle") && line.contains("missing.pem"),
        "{line}"
    );

    std::fs::write(pki.path("empty.pem"), "").unwrap();
    let key_args = [
        "--tls-cert",
        &pki.arg("server.pem"),
        "--tls-key",
        &pki.arg("empty.pem"),
        "--send",
        "x",
    ]
    .map(str::to_owned);
    let base = tls_args(&pki, addr);
    let failed = run_client(&args(&base, &key_args.each_ref().map(String::as_str)), b"");
    assert_eq!(failed.code(), Some(1), "{failed:?}");
    assert!(
        only_line(&failed.stderr).contains("TLS client private key"),
        "{failed:?}"
    );
    server.handle().shutdown();
    server.join();
}

#[test]
fn tls_flags_need_tls_and_a_certificate_needs_its_key() {
    for flags in [
        &["--tls-ca", "ca.pem"][..],
        &["--tls-server-name", "localhost"],
        &["--tls", "--tls-cert", "client.pem"],
        &["--tls", "--tls-key", "client.key"],
        &["--tls", "--tls-server-name", "not a name!"],
    ] {
        let mut all = flags.to_vec();
        all.extend(["--send", "x"]);
        let refused = run_client(&all, b"");
        assert_eq!(refused.code(), Some(2), "{flags:?}: {refused:?}");
    }
}

#[test]
fn help_lists_the_tls_flags_and_no_way_to_skip_verification() {
    let help = run_client(&["--help"], b"");
    assert_eq!(help.code(), Some(0));
    for flag in [
        "--tls",
        "--tls-ca",
        "--tls-server-name",
        "--tls-cert",
        "--tls-key",
    ] {
        let listed = help.stdout.lines().any(|line| {
            let line = line.trim_start();
            line == flag || line.starts_with(&format!("{flag} "))
        });
        assert!(listed, "{flag} in:\n{}", help.stdout);
    }
    assert!(!help.stdout.contains("insecure"), "{}", help.stdout);
}
