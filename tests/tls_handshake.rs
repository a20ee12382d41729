//! TLS handshakes and records (contract v3 §5): which clients a TLS
//! listener serves (TLS 1.3 and 1.2; TLS 1.3 only with `min_version`
//! 1.3), ALPN (`wharf` or none, and `no_application_protocol` for a client
//! that offers only other protocols), frames however TLS records cut them
//! (a byte per record, many frames per record, bursts larger than a read
//! on one worker), and the TLS metric families (present from startup with a TLS listener,
//! absent without one).
//!
//! Every test runs a real server on 127.0.0.1:0 and real rustls clients.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::metrics::{metrics_addr, scrape, value, wait_for, with_metrics};
use common::pki::{not_after, recorder};
use common::scrape::handshakes;
use common::tls::{start_tls, Certs, ClientSetup, TLS12_ONLY, TLS13_ONLY};
use common::Client;
use rustls::pki_types::pem::PemObject as _;
use rustls::{AlertDescription, ProtocolVersion};
use wharf::frame::{DATA, PING, PONG};
use wharf::tls::{TlsSettings, TlsVersion};
use wharf::{Config, Echo, Framing};

fn config(settings: TlsSettings) -> Config {
    with_metrics(Config {
        tls: Some(settings),
        ..common::config()
    })
}

#[test]
fn tls_1_3_and_tls_1_2_clients_are_served_and_the_service_sees_the_version() {
    let certs = Certs::new();
    let (service, opened) = recorder();
    let (server, addr) = start_tls(config(certs.settings()), service);

    for (versions, expected, seen) in [
        (TLS13_ONLY, ProtocolVersion::TLSv1_3, TlsVersion::V1_3),
        (TLS12_ONLY, ProtocolVersion::TLSv1_2, TlsVersion::V1_2),
    ] {
        let mut client = ClientSetup {
            versions,
            ..ClientSetup::new(&certs)
        }
        .connect(addr)
        .unwrap_or_else(|e| panic!("a {expected:?} client's handshake: {e}"));
        assert_eq!(client.0.conn.protocol_version(), Some(expected));
        client.echo(b"hello");
        let info = opened.recv_timeout(common::READ_TIMEOUT).expect("opened");
        let tls = info.tls.expect("ConnInfo.tls on a TLS listener");
        assert_eq!(tls.version, seen, "the version the service sees");
        assert_eq!(
            tls.client, None,
            "no client certificate without a client CA"
        );
    }

    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"ok\"}",
        2.0,
    );
    assert_eq!(handshakes(&text, "failed"), 0.0);
    assert_eq!(
        value(&text, "wharf_tls_handshake_seconds_count"),
        2.0,
        "each completed handshake is timed"
    );
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn with_min_version_1_3_a_tls_1_2_only_client_fails_the_handshake() {
    let certs = Certs::new();
    let settings = TlsSettings {
        min_version: TlsVersion::V1_3,
        ..certs.settings()
    };
    let (server, addr) = start_tls(config(settings), Echo::default());

    let error = ClientSetup {
        versions: TLS12_ONLY,
        ..ClientSetup::new(&certs)
    }
    .refused(addr);
    assert_eq!(
        error,
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
        "the server's alert to a TLS 1.2-only client"
    );

    // A TLS 1.3 client is still served.
    let mut client = ClientSetup {
        versions: TLS13_ONLY,
        ..ClientSetup::new(&certs)
    }
    .connect(addr)
    .expect("a TLS 1.3 handshake");
    client.echo(b"1.3 only");

    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"failed\"}",
        1.0,
    );
    assert_eq!(handshakes(&text, "ok"), 1.0);
    assert_eq!(handshakes(&text, "timeout"), 0.0);
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_client_offering_wharf_among_others_negotiates_wharf() {
    let certs = Certs::new();
    let (server, addr) = start_tls(config(certs.settings()), Echo::default());
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let mut client = ClientSetup {
            alpn: vec![b"h2".to_vec(), b"wharf".to_vec(), b"http/1.1".to_vec()],
            versions,
            ..ClientSetup::new(&certs)
        }
        .connect(addr)
        .expect("handshake");
        assert_eq!(client.0.conn.alpn_protocol(), Some(&b"wharf"[..]));
        client.echo(b"alpn");
    }
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_client_offering_no_alpn_is_served() {
    let certs = Certs::new();
    let (server, addr) = start_tls(config(certs.settings()), Echo::default());
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let mut client = ClientSetup {
            alpn: Vec::new(),
            versions,
            ..ClientSetup::new(&certs)
        }
        .connect(addr)
        .expect("handshake without ALPN");
        assert_eq!(client.0.conn.alpn_protocol(), None);
        client.echo(b"no alpn");
    }
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_client_offering_only_other_protocols_fails_with_no_application_protocol() {
    let certs = Certs::new();
    let (server, addr) = start_tls(config(certs.settings()), Echo::default());
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let error = ClientSetup {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions,
            ..ClientSetup::new(&certs)
        }
        .refused(addr);
        assert_eq!(
            error,
            rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)
        );
    }
    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"failed\"}",
        2.0,
    );
    assert_eq!(handshakes(&text, "ok"), 0.0);
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_frame_written_one_byte_per_record_is_echoed() {
    let certs = Certs::new();
    let (server, addr) = start_tls(config(certs.settings()), Echo::default());
    let mut client = ClientSetup::new(&certs).connect(addr).expect("handshake");
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let mut frame = Vec::new();
    Framing::Length.encode(DATA, &payload, &mut frame);
    // Each write and flush is a TLS record of its own: 305 records, one
    // byte each.
    for byte in &frame {
        client.0.write_all(std::slice::from_ref(byte)).unwrap();
        client.0.flush().unwrap();
    }
    assert_eq!(client.recv().unwrap(), Some((DATA, payload)));
    // The connection goes on as usual.
    client.echo(b"after");
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_large_frame_across_many_full_records_is_echoed() {
    let certs = Certs::new();
    let (server, addr) = start_tls(config(certs.settings()), Echo::default());
    let mut client = ClientSetup::new(&certs).connect(addr).expect("handshake");
    // 300 KiB: about twenty 16 KiB records for one frame.
    let payload: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    client.send(DATA, &payload).unwrap();
    let (kind, got) = client.recv().unwrap().expect("a reply");
    assert!(
        kind == DATA && got == payload,
        "a frame of kind {kind} and {} bytes, not the echo of {} bytes",
        got.len(),
        payload.len()
    );
    client.echo(b"small after large");
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_large_frame_paused_in_the_middle_of_a_record_is_echoed() {
    let certs = Certs::new();
    let heartbeat = Duration::from_secs(3);
    let config = Config {
        heartbeat_timeout: heartbeat,
        ..config(certs.settings())
    };
    let (server, addr) = start_tls(config, Echo::default());
    let mut client = ClientSetup::new(&certs).connect(addr).expect("handshake");
    // 100 KiB in one frame: seven records of 16 KiB, as the client's
    // session seals them.
    let payload: Vec<u8> = (0..100 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut frame = Vec::new();
    Framing::Length.encode(DATA, &payload, &mut frame);
    client.0.conn.set_buffer_limit(None);
    client.0.conn.writer().write_all(&frame).unwrap();
    let mut sealed = Vec::new();
    while client.0.conn.wants_write() {
        client.0.conn.write_tls(&mut sealed).unwrap();
    }
    // The first two records and half of the third, then a pause long
    // enough for the server to read them: it decrypts two records and
    // holds half of the third, undecrypted, in its session.
    let cut = 2 * (16 * 1024 + 22) + 8 * 1024;
    assert!(
        sealed.len() > cut + 16 * 1024,
        "{} bytes sealed",
        sealed.len()
    );
    client.0.sock.write_all(&sealed[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rest_sent = Instant::now();
    client.0.sock.write_all(&sealed[cut..]).unwrap();
    let (kind, got) = client.recv().expect("a reply").expect("not the end");
    let took = rest_sent.elapsed();
    assert!(
        kind == DATA && got == payload,
        "got a frame of kind {kind} and {} bytes {took:?} after the rest was sent, not the \
         echo of {} bytes",
        got.len(),
        payload.len()
    );
    assert!(took < heartbeat, "the echo took {took:?}");
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn many_frames_in_one_record_are_all_answered_in_order() {
    let certs = Certs::new();
    let (server, addr) = start_tls(config(certs.settings()), Echo::default());
    let mut client = ClientSetup::new(&certs).connect(addr).expect("handshake");
    let mut batch = Vec::new();
    for i in 0..300u32 {
        if i % 10 == 9 {
            Framing::Length.encode(PING, format!("p{i}").as_bytes(), &mut batch);
        } else {
            Framing::Length.encode(DATA, format!("request {i}").as_bytes(), &mut batch);
        }
    }
    assert!(batch.len() < 16 * 1024, "one record holds the whole batch");
    client.0.write_all(&batch).unwrap();
    client.0.flush().unwrap();
    for i in 0..300u32 {
        let got = client.recv().unwrap().expect("a reply");
        let expected = if i % 10 == 9 {
            (PONG, format!("p{i}").into_bytes())
        } else {
            (DATA, format!("request {i}").into_bytes())
        };
        assert_eq!(got, expected, "reply {i}");
    }
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn bursts_larger_than_a_read_are_answered_whole_on_one_worker() {
    // Two clients on one worker, each sending more frames at once than
    // one read takes (many records): the worker takes turns between them,
    // and a connection put back with decrypted bytes still inside its
    // session must be served again, though its socket has nothing new.
    const FRAMES: usize = 1000;
    let certs = Certs::new();
    let config = Config {
        workers: 1,
        ..config(certs.settings())
    };
    let (server, addr) = start_tls(config, Echo::default());
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let setup = ClientSetup::new(&certs);
            std::thread::spawn(move || {
                let mut client = setup.connect(addr).expect("handshake");
                let mut burst = Vec::new();
                for i in 0..FRAMES {
                    let payload = format!("client {c} request {i:04} {}", "x".repeat(24));
                    Framing::Length.encode(DATA, payload.as_bytes(), &mut burst);
                }
                assert!(burst.len() > 3 * 16 * 1024, "{} bytes", burst.len());
                client.0.write_all(&burst).unwrap();
                client.0.flush().unwrap();
                for i in 0..FRAMES {
                    let expected = format!("client {c} request {i:04} {}", "x".repeat(24));
                    assert_eq!(
                        client.recv().unwrap(),
                        Some((DATA, expected.into_bytes())),
                        "client {c}, reply {i}"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every reply, in order");
    }
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn tls_metrics_are_exported_from_startup_at_zero_with_a_tls_listener() {
    let certs = Certs::new();
    let (server, _addr) = start_tls(config(certs.settings()), Echo::default());
    let text = scrape(metrics_addr(&server));
    for result in ["ok", "failed", "timeout"] {
        assert_eq!(handshakes(&text, result), 0.0, "{result}:\n{text}");
    }
    for result in ["ok", "failed"] {
        assert_eq!(
            value(
                &text,
                &format!("wharf_tls_reloads_total{{result=\"{result}\"}}")
            ),
            0.0
        );
    }
    assert_eq!(value(&text, "wharf_tls_handshake_seconds_count"), 0.0);
    assert!(
        text.contains("wharf_tls_handshake_seconds_bucket{"),
        "the histogram's buckets:\n{text}"
    );
    let pem = std::fs::read(certs.path("server.pem")).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(
        value(&text, "wharf_tls_certificate_expiry_timestamp_seconds"),
        not_after(&der) as f64,
        "the serving certificate's notAfter"
    );
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn tls_metrics_are_absent_without_a_tls_listener() {
    let certs = Certs::new();
    // Settings given, but only a plain listener: still no TLS families.
    for tls in [None, Some(certs.settings())] {
        let config = with_metrics(Config {
            tls,
            ..common::config()
        });
        let server = common::start(config);
        assert!(
            server.tls().is_none(),
            "no reload handle without TLS listener"
        );
        let mut plain = Client::connect(server.local_addr());
        plain.echo(b"plain");
        let text = scrape(metrics_addr(&server));
        assert!(
            text.contains("wharf_connections_accepted_total"),
            "a real scrape:\n{text}"
        );
        assert!(!text.contains("wharf_tls_"), "TLS metrics:\n{text}");
        server.handle().shutdown();
        assert!(!server.join().forced);
    }
}
