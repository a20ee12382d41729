//! TLS listeners (contract v3 §5): the handshake and the protocol inside it.

mod common;

use std::time::Duration;

use common::tls::{start_tls, Certs, ClientSetup};
use wharf::frame::{DATA, GOAWAY, PING, PONG};
use wharf::{Config, Echo};

fn config(certs: &Certs) -> Config {
    Config {
        tls: Some(certs.settings()),
        ..common::config()
    }
}

#[test]
fn a_tls_client_is_served_beside_a_plain_one() {
    let certs = Certs::new();
    let (server, tls_addr) = start_tls(config(&certs), Echo::default());
    let mut client = ClientSetup::new(&certs)
        .connect(tls_addr)
        .expect("handshake");
    assert_eq!(
        client.0.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(client.0.conn.alpn_protocol(), Some(&b"wharf"[..]));
    client.echo(b"over tls");
    client.send(PING, b"p").unwrap();
    assert_eq!(client.recv().unwrap(), Some((PONG, b"p".to_vec())));
    let mut plain = common::Client::connect(server.local_addr());
    plain.echo(b"in the clear");
    server.handle().shutdown();
    // GOAWAY 1, then close_notify.
    let (kind, _) = client.recv().unwrap().expect("GOAWAY");
    assert_eq!(kind, GOAWAY);
    assert_eq!(client.recv().unwrap(), None);
    assert!(client.closed_cleanly(), "close_notify after the GOAWAY");
    let report = server.join();
    assert!(!report.forced, "{report}");
    let _ = (DATA, Duration::ZERO);
}
