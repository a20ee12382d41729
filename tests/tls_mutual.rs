//! Mutual TLS (contract v3 §5, "Client certificates"): with a client CA
//! and `required`, a client without a certificate, or with one from another
//! CA, or with a revoked one (a CRL), fails the handshake; a valid client is
//! served and the service sees its verified identity (common name, DNS, URI
//! and e-mail names, SHA-256 fingerprint) in `ConnInfo.tls.client`. With
//! `optional`, a client without a certificate is served (`client: None`),
//! but one that presents an untrusted certificate still fails.
//!
//! The certificates are made by the test (rcgen), so it knows exactly what
//! they say. TLS 1.3 reports a refused client certificate after the client
//! has finished its side of the handshake: the client sees the alert on its
//! first read; TLS 1.2 during the handshake. `ClientSetup::refused` takes
//! either.

mod common;

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use common::metrics::{metrics_addr, wait_for, with_metrics};
use common::pki::{client_params, recorder, sha256, Ca, Dir, Issued};
use common::scrape::handshakes;
use common::tls::{rustls_error, start_tls, ClientSetup, TLS12_ONLY, TLS13_ONLY};
use rcgen::SanType;
use rustls::AlertDescription;
use wharf::tls::{ClientAuth, ClientIdentity, TlsSettings, TlsVersion};
use wharf::{Config, ConnInfo, Server};

/// A CA, a server certificate it signed, and the files a server reads.
struct Pki {
    dir: Dir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = Dir::new("mtls");
        let ca = Ca::new("wharf test CA");
        std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
        ca.server("localhost").write(&dir, "server");
        Pki { dir, ca }
    }

    fn settings(&self, client_auth: ClientAuth) -> TlsSettings {
        TlsSettings {
            client_ca: Some(self.dir.path("ca.pem")),
            client_auth,
            ..TlsSettings::new(self.dir.path("server.pem"), self.dir.path("server.key"))
        }
    }

    /// A client trusting this CA, presenting `identity` if any.
    fn client(&self, identity: Option<(PathBuf, PathBuf)>) -> ClientSetup {
        ClientSetup {
            ca: self.dir.path("ca.pem"),
            alpn: vec![b"wharf".to_vec()],
            identity,
            versions: rustls::ALL_VERSIONS,
        }
    }

    /// Issues a client certificate by `ca` and writes it as NAME.pem/.key.
    fn issue(&self, ca: &Ca, name: &str, serial: u64) -> (Issued, (PathBuf, PathBuf)) {
        let issued = ca.issue(client_params(name, Vec::new(), serial));
        let paths = issued.write(&self.dir, name);
        (issued, paths)
    }
}

fn start(settings: TlsSettings) -> (Server, std::net::SocketAddr, Receiver<ConnInfo>) {
    let (service, opened) = recorder();
    let config = with_metrics(Config {
        tls: Some(settings),
        ..common::config()
    });
    let (server, addr) = start_tls(config, service);
    (server, addr, opened)
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

#[test]
fn required_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let (server, addr, opened) = start(pki.settings(ClientAuth::Required));
    let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
    // TLS 1.3: the client's side of the handshake completes; the refusal
    // comes on its first read.
    let mut client = ClientSetup {
        versions: TLS13_ONLY,
        ..pki.client(None)
    }
    .connect(addr)
    .expect("TLS 1.3: the client's side of the handshake completes");
    let error = client.recv().expect_err("refused on the first read");
    assert_eq!(rustls_error(&error), Some(required.clone()), "{error:?}");
    // TLS 1.2: the handshake itself fails.
    let error = ClientSetup {
        versions: TLS12_ONLY,
        ..pki.client(None)
    }
    .connect(addr)
    .err()
    .expect("TLS 1.2: the handshake fails");
    assert_eq!(rustls_error(&error), Some(required), "{error:?}");
    wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"failed\"}",
        2.0,
    );
    assert!(
        opened.try_recv().is_err(),
        "the service saw a refused client"
    );
    stop(server);
}

#[test]
fn required_refuses_a_certificate_from_another_ca() {
    let pki = Pki::new();
    let other = Ca::new("another CA");
    let (_, identity) = pki.issue(&other, "mallory", 7);
    let (server, addr, opened) = start(pki.settings(ClientAuth::Required));
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let error = ClientSetup {
            versions,
            ..pki.client(Some(identity.clone()))
        }
        .refused(addr);
        assert!(
            matches!(
                error,
                rustls::Error::AlertReceived(
                    AlertDescription::UnknownCA | AlertDescription::BadCertificate
                )
            ),
            "versions {versions:?}: {error:?}"
        );
    }
    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"failed\"}",
        2.0,
    );
    assert_eq!(handshakes(&text, "ok"), 0.0);
    assert!(
        opened.try_recv().is_err(),
        "the service saw a refused client"
    );
    stop(server);
}

#[test]
fn the_service_sees_the_verified_client_identity() {
    let pki = Pki::new();
    let sans = vec![
        SanType::DnsName("alice.example.org".try_into().unwrap()),
        SanType::URI("spiffe://example.org/team/alice".try_into().unwrap()),
        SanType::Rfc822Name("alice@example.org".try_into().unwrap()),
    ];
    let alice = pki.ca.issue(client_params("alice", sans, 1001));
    let identity = alice.write(&pki.dir, "alice");
    let expected = ClientIdentity {
        common_name: Some("alice".to_owned()),
        dns_names: vec!["alice.example.org".to_owned()],
        uris: vec!["spiffe://example.org/team/alice".to_owned()],
        emails: vec!["alice@example.org".to_owned()],
        fingerprint_sha256: sha256(alice.der()),
    };
    let (server, addr, opened) = start(pki.settings(ClientAuth::Required));
    for (versions, version) in [
        (TLS13_ONLY, TlsVersion::V1_3),
        (TLS12_ONLY, TlsVersion::V1_2),
    ] {
        let mut client = ClientSetup {
            versions,
            ..pki.client(Some(identity.clone()))
        }
        .connect(addr)
        .expect("a verified client's handshake");
        client.echo(b"who am I");
        let tls = next_opened(&opened).tls.expect("ConnInfo.tls");
        assert_eq!(tls.version, version);
        let seen = tls.client.expect("the verified client identity");
        assert_eq!(seen, expected, "{version:?}");
        assert_eq!(seen.fingerprint_hex().len(), 64);
    }
    wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"ok\"}",
        2.0,
    );
    stop(server);
}

#[test]
fn optional_serves_a_client_without_a_certificate_but_not_an_untrusted_one() {
    let pki = Pki::new();
    let other = Ca::new("another CA");
    let (_, untrusted) = pki.issue(&other, "mallory", 7);
    let (bob, trusted) = pki.issue(&pki.ca, "bob", 8);
    let (server, addr, opened) = start(pki.settings(ClientAuth::Optional));

    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let mut anonymous = ClientSetup {
            versions,
            ..pki.client(None)
        }
        .connect(addr)
        .expect("a client without a certificate, optional");
        anonymous.echo(b"anonymous");
        let tls = next_opened(&opened).tls.expect("ConnInfo.tls");
        assert_eq!(tls.client, None, "no certificate presented");

        let error = ClientSetup {
            versions,
            ..pki.client(Some(untrusted.clone()))
        }
        .refused(addr);
        assert!(
            matches!(
                error,
                rustls::Error::AlertReceived(
                    AlertDescription::UnknownCA | AlertDescription::BadCertificate
                )
            ),
            "an untrusted certificate presented, {versions:?}: {error:?}"
        );

        let mut known = ClientSetup {
            versions,
            ..pki.client(Some(trusted.clone()))
        }
        .connect(addr)
        .expect("a trusted client, optional");
        known.echo(b"bob");
        let seen = next_opened(&opened).tls.unwrap().client.expect("bob");
        assert_eq!(seen.common_name.as_deref(), Some("bob"));
        assert_eq!(seen.fingerprint_sha256, sha256(bob.der()));
    }
    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"ok\"}",
        4.0,
    );
    assert_eq!(handshakes(&text, "failed"), 2.0);
    stop(server);
}

#[test]
fn a_client_certificate_revoked_by_a_crl_fails() {
    let pki = Pki::new();
    let (_, revoked) = pki.issue(&pki.ca, "revoked", 666);
    let (_, valid) = pki.issue(&pki.ca, "valid", 667);
    std::fs::write(pki.dir.path("crl.pem"), pki.ca.crl(&[666])).unwrap();
    let settings = TlsSettings {
        crls: vec![pki.dir.path("crl.pem")],
        ..pki.settings(ClientAuth::Required)
    };
    let (server, addr, opened) = start(settings);
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let error = ClientSetup {
            versions,
            ..pki.client(Some(revoked.clone()))
        }
        .refused(addr);
        assert_eq!(
            error,
            rustls::Error::AlertReceived(AlertDescription::CertificateRevoked),
            "{versions:?}"
        );
        let mut client = ClientSetup {
            versions,
            ..pki.client(Some(valid.clone()))
        }
        .connect(addr)
        .expect("a client the CRL does not name");
        client.echo(b"not revoked");
        let seen = next_opened(&opened).tls.unwrap().client.expect("valid");
        assert_eq!(seen.common_name.as_deref(), Some("valid"));
    }
    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"failed\"}",
        2.0,
    );
    assert_eq!(handshakes(&text, "ok"), 2.0);
    stop(server);
}
