//! Reloading the TLS files (contract v3 §5, "Reloading"): on demand
//! (`TlsHandle::reload`, what SIGHUP calls) and by itself every
//! `reload_interval` when a file changed. New handshakes get the new set,
//! established connections are not disturbed; a reload is all or nothing:
//! a broken file or a key that does not match fails it with an error naming
//! the file, and the old set keeps serving. The client CA bundle and the
//! revocation lists are reloaded too. `wharf_tls_reloads_total` counts the
//! outcomes and the expiry gauge follows the serving certificate.
//!
//! The client tells which certificate it was served by its common name.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::metrics::{metrics_addr, scrape, value, wait_for, with_metrics};
use common::pki::{client_params, common_name, not_after, server_params, Ca, Dir, Issued};
use common::scrape::reloads;
use common::tls::{start_tls, ClientSetup, TlsStream};
use rcgen::KeyPair;
use rustls::AlertDescription;
use wharf::tls::{ClientAuth, TlsSettings};
use wharf::{Config, Echo, Server};

const EXPIRY: &str = "wharf_tls_certificate_expiry_timestamp_seconds";

/// A CA and a server certificate (common name `first`) in files.
struct Files {
    dir: Dir,
    ca: Ca,
    first: Issued,
}

impl Files {
    fn new() -> Files {
        let dir = Dir::new("reload");
        let ca = Ca::new("wharf reload CA");
        std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
        let first = ca.server("first");
        first.write(&dir, "server");
        Files { dir, ca, first }
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            reload_interval: Duration::ZERO,
            ..TlsSettings::new(self.dir.path("server.pem"), self.dir.path("server.key"))
        }
    }

    fn client(&self) -> ClientSetup {
        ClientSetup {
            ca: self.dir.path("ca.pem"),
            alpn: vec![b"wharf".to_vec()],
            identity: None,
            versions: rustls::ALL_VERSIONS,
        }
    }

    /// Connects, and returns the served certificate's common name with the
    /// connection.
    fn served(&self, addr: SocketAddr) -> (String, TlsStream) {
        let mut client = self.client().connect(addr).expect("handshake");
        client.echo(b"hello");
        (common_name(&client.peer_certificate()), client)
    }

    /// Puts a new certificate (and its key) in place of the server's.
    fn replace_server(&self, issued: &Issued) {
        self.dir.replace("server.pem", &issued.pem());
        self.dir.replace("server.key", &issued.key_pem());
    }
}

fn start(settings: TlsSettings) -> (Server, SocketAddr) {
    let config = with_metrics(Config {
        tls: Some(settings),
        ..common::config()
    });
    start_tls(config, Echo::default())
}

fn stop(server: Server) {
    server.handle().shutdown();
    let report = server.join();
    assert!(!report.forced, "{report}");
}

#[test]
fn a_reload_serves_the_new_certificate_and_keeps_established_connections() {
    let files = Files::new();
    let (server, addr) = start(files.settings());
    let metrics = metrics_addr(&server);
    let (cn, mut established) = files.served(addr);
    assert_eq!(cn, "first");
    assert_eq!(
        value(&scrape(metrics), EXPIRY),
        not_after(files.first.der()) as f64
    );

    let mut params = server_params("second");
    params.not_after += time::Duration::days(100);
    let second = files.ca.issue(params);
    files.replace_server(&second);
    // With the check off, a changed file changes nothing by itself.
    assert_eq!(files.served(addr).0, "first", "before the reload");

    server
        .tls()
        .expect("a TLS handle")
        .reload()
        .expect("reload");
    assert_eq!(files.served(addr).0, "second", "after the reload");
    // The connection made before the reload goes on with its keys.
    for i in 0..3 {
        established.echo(format!("across the reload {i}").as_bytes());
    }
    assert_eq!(common_name(&established.peer_certificate()), "first");

    let text = scrape(metrics);
    assert_eq!(reloads(&text, "ok"), 1.0);
    assert_eq!(reloads(&text, "failed"), 0.0);
    assert_eq!(value(&text, EXPIRY), not_after(second.der()) as f64);
    assert_ne!(not_after(second.der()), not_after(files.first.der()));
    stop(server);
}

#[test]
fn a_failed_reload_names_the_file_and_keeps_the_old_set() {
    let files = Files::new();
    let (server, addr) = start(files.settings());
    let metrics = metrics_addr(&server);
    let handle = server.tls().expect("a TLS handle");
    let (_, mut established) = files.served(addr);
    let expiry = value(&scrape(metrics), EXPIRY);
    let cert = files.dir.path("server.pem");
    let key = files.dir.path("server.key");
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let good_key = files.first.key_pem();
    let good_cert = files.first.pem();

    // Each: how to break the set, the file the error must name, words the
    // cause must contain, and how to mend it.
    type Break<'a> = (&'a str, PathBuf, &'a str, Box<dyn Fn() + 'a>);
    let cases: Vec<Break> = vec![
        (
            "a key file of garbage",
            key.clone(),
            "",
            Box::new(|| {
                files.dir.replace("server.key", "not a key at all\n");
            }),
        ),
        (
            "a key of another certificate",
            key.clone(),
            "does not match",
            Box::new(|| {
                files.dir.replace("server.key", &other_key);
            }),
        ),
        (
            "a certificate file that is not PEM",
            cert.clone(),
            "",
            Box::new(|| {
                files.dir.replace("server.pem", "garbage\n");
            }),
        ),
        (
            "a missing certificate",
            cert.clone(),
            "",
            Box::new(|| std::fs::remove_file(&cert).unwrap()),
        ),
    ];
    for (i, (what, path, cause, break_it)) in cases.iter().enumerate() {
        break_it();
        let error = handle.reload().expect_err(what);
        assert_eq!(&error.path, path, "{what}: {error}");
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(cause),
            "{what}: the message names the file and the cause: {message}"
        );
        // The old set serves on, old and new connections alike.
        assert_eq!(files.served(addr).0, "first", "{what}");
        established.echo(what.as_bytes());
        let text = scrape(metrics);
        assert_eq!(reloads(&text, "failed"), (i + 1) as f64, "{what}");
        assert_eq!(reloads(&text, "ok"), 0.0, "{what}");
        assert_eq!(value(&text, EXPIRY), expiry, "{what}");
        // Mend it for the next case.
        files.dir.replace("server.pem", &good_cert);
        files.dir.replace("server.key", &good_key);
    }
    handle.reload().expect("the mended set reloads");
    assert_eq!(reloads(&scrape(metrics), "ok"), 1.0);
    stop(server);
}

#[test]
fn changed_files_are_reloaded_by_themselves_every_reload_interval() {
    let files = Files::new();
    let settings = TlsSettings {
        reload_interval: Duration::from_millis(200),
        ..files.settings()
    };
    let (server, addr) = start(settings);
    let metrics = metrics_addr(&server);
    let (_, mut established) = files.served(addr);

    // Unchanged files are not reloaded.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&scrape(metrics), "ok"), 0.0, "nothing changed");

    // A renewal: a new certificate for the same key, replacing one file
    // at once (so no check can see a certificate without its key).
    let key = KeyPair::from_pem(&files.first.key_pem()).unwrap();
    let renewed = files.ca.issue_for(server_params("renewed"), key);
    files.dir.replace("server.pem", &renewed.pem());
    let text = wait_for(metrics, "wharf_tls_reloads_total{result=\"ok\"}", 1.0);
    assert_eq!(reloads(&text, "failed"), 0.0);
    assert_eq!(files.served(addr).0, "renewed");
    established.echo(b"undisturbed");

    // Only one reload for one change.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reloads(&scrape(metrics), "ok"), 1.0, "reloaded once");
    stop(server);
}

#[test]
fn a_reload_rereads_the_revocation_lists() {
    let files = Files::new();
    let carol = files.ca.issue(client_params("carol", Vec::new(), 10));
    let identity = carol.write(&files.dir, "carol");
    files.dir.replace("crl.pem", &files.ca.crl(&[]));
    let settings = TlsSettings {
        client_ca: Some(files.dir.path("ca.pem")),
        client_auth: ClientAuth::Required,
        crls: vec![files.dir.path("crl.pem")],
        ..files.settings()
    };
    let (server, addr) = start(settings);
    let setup = ClientSetup {
        identity: Some(identity),
        ..files.client()
    };
    let mut established = setup.connect(addr).expect("carol, not yet revoked");
    established.echo(b"before");

    files.dir.replace("crl.pem", &files.ca.crl(&[10]));
    server.tls().unwrap().reload().expect("reload");
    assert_eq!(
        setup.refused(addr),
        rustls::Error::AlertReceived(AlertDescription::CertificateRevoked)
    );
    established.echo(b"an established connection is not disturbed");
    stop(server);
}

#[test]
fn a_reload_rereads_the_client_ca_bundle() {
    let files = Files::new();
    let carol = files.ca.issue(client_params("carol", Vec::new(), 10));
    let carol = carol.write(&files.dir, "carol");
    let next_ca = Ca::new("the next client CA");
    let dave = next_ca.issue(client_params("dave", Vec::new(), 11));
    let dave = dave.write(&files.dir, "dave");
    files.dir.replace("clients.pem", &files.ca.pem());
    let settings = TlsSettings {
        client_ca: Some(files.dir.path("clients.pem")),
        ..files.settings()
    };
    let (server, addr) = start(settings);
    let as_carol = ClientSetup {
        identity: Some(carol),
        ..files.client()
    };
    let as_dave = ClientSetup {
        identity: Some(dave),
        ..files.client()
    };
    let mut established = as_carol.connect(addr).expect("carol");
    established.echo(b"carol");
    assert!(matches!(
        as_dave.refused(addr),
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate
        )
    ));

    files.dir.replace("clients.pem", &next_ca.pem());
    server.tls().unwrap().reload().expect("reload");
    as_dave
        .connect(addr)
        .expect("dave, now trusted")
        .echo(b"dave");
    assert!(matches!(
        as_carol.refused(addr),
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate
        )
    ));
    established.echo(b"carol's established connection goes on");
    stop(server);
}

#[test]
fn a_broken_file_is_tried_once_per_change_not_every_interval() {
    let files = Files::new();
    let interval = Duration::from_millis(200);
    let settings = TlsSettings {
        reload_interval: interval,
        ..files.settings()
    };
    let (server, addr) = start(settings);
    let metrics = metrics_addr(&server);
    files.dir.replace("server.key", "garbage\n");
    wait_for(metrics, "wharf_tls_reloads_total{result=\"failed\"}", 1.0);
    // Many intervals later, with no further change: still the one failure.
    std::thread::sleep(8 * interval);
    let text = scrape(metrics);
    assert_eq!(
        reloads(&text, "failed"),
        1.0,
        "one change, one failed reload"
    );
    assert_eq!(files.served(addr).0, "first");
    // The next change (the mend) is tried, and succeeds.
    files.dir.replace("server.key", &files.first.key_pem());
    wait_for(metrics, "wharf_tls_reloads_total{result=\"ok\"}", 1.0);
    stop(server);
}
