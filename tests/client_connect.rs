//! The library's blocking [`wharf::Client`]: connect failures (a closed
//! port, an address that does not resolve) and a reply slower than the
//! read timeout, each a typed error.
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::client::{options, stop};
use common::{config, start_with};
use wharf::{Client, ClientError, ClientOptions, Echo};

// ---------------------------------------------------------------------------
// Connect failures and timeouts.

#[test]
fn connect_to_a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        ..options()
    };
    match Client::connect(addr, opts) {
        Err(err @ ClientError::Connect { .. }) => {
            let ClientError::Connect { addr: tried, .. } = &err else {
                unreachable!()
            };
            assert_eq!(tried, &addr.to_string());
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("cannot connect to {addr}: ")),
                "{text}"
            );
            assert_eq!(err.goaway_code(), None);
        }
        other => panic!("expected ClientError::Connect, got {other:?}"),
    }
}

#[test]
fn unresolvable_address_is_a_connect_error() {
    match Client::connect("not an address", options()) {
        Err(ClientError::Connect { .. }) => {}
        other => panic!("expected ClientError::Connect, got {other:?}"),
    }
}

#[test]
fn slow_reply_is_a_timeout() {
    let server = start_with(
        config(),
        Echo {
            delay: Duration::from_millis(1500),
            ..Echo::default()
        },
    );
    let timeout = Duration::from_millis(200);
    let mut client = Client::connect(
        server.local_addr(),
        ClientOptions {
            read_timeout: Some(timeout),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    match client.request(b"slow") {
        Err(ClientError::Timeout(t)) => assert_eq!(t, timeout),
        other => panic!("expected a Timeout, got {other:?}"),
    }
    drop(client);
    stop(server);
}
