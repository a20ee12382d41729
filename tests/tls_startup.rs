//! Starting a server with TLS listeners (contract v3 §5): every TLS file
//! that cannot be read or parsed, and a key that does not match its
//! certificate, stops the start with `Error::Tls` naming the file; a TLS
//! listener without `Config::tls` is `Error::InvalidConfig`; a certificate
//! already expired, or not yet valid, is logged as a warning and the
//! server starts and serves it (the expiry gauge shows its `notAfter`).
//!
//! The library logs through the `log` crate; this test binary installs a
//! logger of its own to read the warnings.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, Once};

use common::metrics::{metrics_addr, scrape, value, with_metrics};
use common::pki::{not_after, server_params, Ca, Dir};
use common::tls::ClientSetup;
use rcgen::KeyPair;
use rustls::CertificateError;
use time::OffsetDateTime;
use wharf::tls::{TlsError, TlsSettings};
use wharf::{Bind, Config, Echo, Security, Server};

/// Every warning and error the library logs, as `LEVEL message`.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGGED
                .lock()
                .unwrap()
                .push(format!("{} {}", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

fn capture_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// The logged lines that mention `needle`.
fn logged_about(needle: &str) -> Vec<String> {
    LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}

fn tls_bind() -> Bind {
    Bind {
        addr: "127.0.0.1:0".parse().unwrap(),
        security: Security::Tls,
    }
}

fn start(settings: Option<TlsSettings>) -> Result<Server, wharf::Error> {
    let config = with_metrics(Config {
        tls: settings,
        ..common::config()
    });
    Server::start_all(&[tls_bind()], config, Echo::default())
}

fn tls_addr(server: &Server) -> SocketAddr {
    server.local_addrs()[0].0.tcp().expect("a TCP listener")
}

fn stop(server: Server) {
    server.handle().shutdown();
    assert!(!server.join().forced);
}

/// A CA and a good server certificate in files: `ca.pem`, `server.pem`,
/// `server.key`, and a revocation list `crl.pem`.
fn good_files() -> (Dir, Ca) {
    let dir = Dir::new("startup");
    let ca = Ca::new("wharf startup CA");
    std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path("crl.pem"), ca.crl(&[])).unwrap();
    ca.server("localhost").write(&dir, "server");
    (dir, ca)
}

fn full_settings(dir: &Dir) -> TlsSettings {
    TlsSettings {
        client_ca: Some(dir.path("ca.pem")),
        crls: vec![dir.path("crl.pem")],
        ..TlsSettings::new(dir.path("server.pem"), dir.path("server.key"))
    }
}

#[test]
fn the_good_files_start() {
    let (dir, _ca) = good_files();
    let server = start(Some(full_settings(&dir))).expect("the good set starts");
    stop(server);
}

#[test]
fn every_unusable_tls_file_stops_the_start_with_an_error_naming_it() {
    // How to spoil a good set, the file to blame, and words of the cause.
    type Spoil = fn(&Dir, &str);
    let cases: [(&str, &str, Spoil, &str); 9] = [
        (
            "missing certificate",
            "server.pem",
            |d, f| remove(d, f),
            "cannot read",
        ),
        (
            "certificate not PEM",
            "server.pem",
            |d, f| garbage(d, f),
            "",
        ),
        (
            "missing key",
            "server.key",
            |d, f| remove(d, f),
            "cannot read",
        ),
        ("key not PEM", "server.key", |d, f| garbage(d, f), ""),
        (
            "key of another certificate",
            "server.key",
            |d, f| other_key(d, f),
            "does not match",
        ),
        (
            "missing client CA",
            "ca.pem",
            |d, f| remove(d, f),
            "cannot read",
        ),
        ("client CA not PEM", "ca.pem", |d, f| garbage(d, f), ""),
        ("missing CRL", "crl.pem", |d, f| remove(d, f), "cannot read"),
        ("CRL not PEM", "crl.pem", |d, f| garbage(d, f), ""),
    ];
    for (what, file, spoil, cause) in cases {
        let (dir, _ca) = good_files();
        spoil(&dir, file);
        let error: TlsError = match start(Some(full_settings(&dir))) {
            Err(wharf::Error::Tls(e)) => e,
            Err(e) => panic!("{what}: not a TLS error: {e:?}"),
            Ok(server) => {
                stop(server);
                panic!("{what}: the server started");
            }
        };
        let path: PathBuf = dir.path(file);
        assert_eq!(error.path, path, "{what}: {error}");
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(cause),
            "{what}: the message names the file and says {cause:?}: {message}"
        );
        assert!(!message.contains('\n'), "{what}: one line: {message:?}");
    }
}

fn remove(dir: &Dir, file: &str) {
    std::fs::remove_file(dir.path(file)).unwrap();
}

/// A good key, of no certificate in the set.
fn other_key(dir: &Dir, file: &str) {
    let key = KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(dir.path(file), key).unwrap();
}

fn garbage(dir: &Dir, file: &str) {
    std::fs::write(dir.path(file), "this is not PEM\n").unwrap();
}

#[test]
fn a_tls_listener_without_tls_settings_is_invalid_config() {
    match start(None) {
        Err(wharf::Error::InvalidConfig(why)) => {
            assert!(why.to_lowercase().contains("tls"), "{why}");
        }
        Err(e) => panic!("not InvalidConfig: {e:?}"),
        Ok(server) => {
            stop(server);
            panic!("a TLS listener started without a certificate");
        }
    }
}

#[test]
fn an_expired_certificate_starts_with_a_warning_and_is_served() {
    capture_log();
    let dir = Dir::new("expired");
    let ca = Ca::new("wharf expiry CA");
    std::fs::write(dir.path("ca.pem"), ca.pem()).unwrap();
    let mut params = server_params("expired");
    params.not_before = OffsetDateTime::now_utc() - time::Duration::days(10);
    params.not_after = OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = ca.issue(params);
    let (cert, key) = expired.write(&dir, "server");

    let server = start(Some(TlsSettings::new(&cert, &key))).expect("an expired certificate starts");
    let warned = logged_about(&cert.display().to_string());
    assert!(
        warned
            .iter()
            .any(|line| line.starts_with("WARN") && line.contains("expired")),
        "a warning naming the expired certificate: {warned:?}"
    );
    // It is served: the client refuses it for its dates, having received it.
    let client = ClientSetup {
        ca: dir.path("ca.pem"),
        alpn: vec![b"wharf".to_vec()],
        identity: None,
        versions: rustls::ALL_VERSIONS,
    };
    let error = client.connect(tls_addr(&server)).err().expect("refused");
    let error = common::tls::rustls_error(&error).expect("a TLS error");
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ),
        "{error:?}"
    );
    let text = scrape(metrics_addr(&server));
    assert_eq!(
        value(&text, "wharf_tls_certificate_expiry_timestamp_seconds"),
        not_after(expired.der()) as f64
    );
    stop(server);
}

#[test]
fn a_certificate_not_yet_valid_starts_with_a_warning() {
    capture_log();
    let dir = Dir::new("not-yet");
    let ca = Ca::new("wharf not-yet CA");
    let mut params = server_params("not yet");
    params.not_before = OffsetDateTime::now_utc() + time::Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(10);
    let early = ca.issue(params);
    let (cert, key) = early.write(&dir, "server");

    let server = start(Some(TlsSettings::new(&cert, &key))).expect("it starts");
    let warned = logged_about(&cert.display().to_string());
    assert!(
        warned
            .iter()
            .any(|line| line.starts_with("WARN") && line.contains("not valid before")),
        "a warning naming the certificate not yet valid: {warned:?}"
    );
    stop(server);
}
