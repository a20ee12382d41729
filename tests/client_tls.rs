//! `wharf client --tls` and the library's `ClientOptions::tls` against a
//! wharf TLS listener (contract v3 §5, "Client and bench"): requests, PINGs
//! and stdin lines are answered over TLS; the name verified is the host in
//! `--connect` or `--tls-server-name`; pipelined requests sent from
//! another thread work over TLS as over TCP.
//!
//! Certificates are made by the test (`common::client_tls::Pki`); the
//! server runs in process, the client is the real binary (or the library).

mod common;

use std::time::Duration;

use common::client_cli::{run_client, spawn_client};
use common::client_tls::{serve, tls_args, Pki};
use wharf::client::ClientTls;
use wharf::tls::TlsVersion;
use wharf::{Client, ClientOptions, Config, Echo, Reply};

fn args<'a>(all: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    all.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

#[test]
fn send_and_ping_are_answered_over_tls() {
    let pki = Pki::new("ctls-send");
    let (server, addr, opened) = serve(pki.settings(None, TlsVersion::V1_2));
    let base = tls_args(&pki, addr);

    let sent = run_client(&args(&base, &["--send", "hello", "--send", "world"]), b"");
    assert_eq!(sent.code(), Some(0), "{sent:?}");
    assert_eq!(sent.stdout, "hello\nworld\n");
    let tls = opened.recv_timeout(Duration::from_secs(10)).unwrap().tls;
    assert!(tls.is_some(), "the server saw a TLS connection");

    let pinged = run_client(
        &args(&base, &["--ping", "--count", "2", "--interval", "0"]),
        b"",
    );
    assert_eq!(pinged.code(), Some(0), "{pinged:?}");
    assert_eq!(pinged.stdout.matches("PONG from ").count(), 2, "{pinged:?}");
    assert!(pinged.stdout.contains("2 pings, 2 pongs"), "{pinged:?}");

    server.handle().shutdown();
    server.join();
}

#[test]
fn stdin_lines_are_echoed_over_tls_until_the_end() {
    let pki = Pki::new("ctls-stdin");
    let (server, addr, _opened) = serve(pki.settings(None, TlsVersion::V1_3));
    let base = tls_args(&pki, addr);
    let mut client = spawn_client(&args(&base, &[]));
    client.write(b"one\n");
    assert_eq!(client.line(), "one");
    // A big line: several TLS records each way.
    let big = "x".repeat(100_000);
    client.write(format!("{big}\ntwo\n").as_bytes());
    assert_eq!(client.line(), big);
    assert_eq!(client.line(), "two");
    // The end of stdin: close_notify, and the server closes in its turn.
    let finished = client.finish();
    assert_eq!(finished.code(), Some(0), "{finished:?}");
    server.handle().shutdown();
    server.join();
}

#[test]
fn the_name_verified_is_the_connect_host_or_tls_server_name() {
    let pki = Pki::new("ctls-name");
    let (server, addr, _opened) = serve(pki.settings(None, TlsVersion::V1_2));
    let base = tls_args(&pki, addr);
    // The certificate names localhost: verified by --tls-server-name while
    // connecting to 127.0.0.1...
    let named = run_client(
        &args(&base, &["--tls-server-name", "localhost", "--send", "a"]),
        b"",
    );
    assert_eq!(named.code(), Some(0), "{named:?}");
    // ...and by the host in --connect.
    let by_host = format!("localhost:{}", addr.port());
    let mut localhost = base.clone();
    localhost[1] = by_host;
    let connected = run_client(&args(&localhost, &["--send", "b"]), b"");
    assert_eq!(connected.code(), Some(0), "{connected:?}");
    assert_eq!(connected.stdout, "b\n");
    server.handle().shutdown();
    server.join();
}

#[test]
fn the_library_client_pipelines_and_sends_from_another_thread_over_tls() {
    let pki = Pki::new("ctls-lib");
    let config = Config {
        tls: Some(pki.settings(None, TlsVersion::V1_2)),
        ..common::config()
    };
    let (server, addr) = common::tls::start_tls(config, Echo::default());
    let options = ClientOptions {
        tls: Some(ClientTls {
            ca: Some(pki.path("ca.pem")),
            server_name: Some("localhost".into()),
            ..ClientTls::default()
        }),
        read_timeout: Some(Duration::from_secs(10)),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(addr, options).expect("a TLS connection");
    assert_eq!(client.request(b"hello").unwrap(), b"hello");
    let sender = client.sender();
    let producer = std::thread::spawn(move || {
        for i in 0..200 {
            sender.request(format!("request {i}").as_bytes())?;
        }
        sender.shutdown_write()
    });
    for i in 0..200 {
        assert_eq!(
            client.recv().unwrap(),
            Reply::Data(format!("request {i}").into_bytes())
        );
    }
    producer.join().unwrap().unwrap();
    assert!(matches!(client.recv(), Err(wharf::ClientError::Closed)));
    server.handle().shutdown();
    assert_eq!(server.join().data_requests, 201);
}
