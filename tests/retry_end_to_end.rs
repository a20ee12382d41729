//! Safe retries (docs/protocol.md, "Retrying safely") in `wharf::Client` against real
//! in-process servers: a server drained with requests in flight, while a
//! small forwarding proxy (a stand-in for a load balancer, see
//! `common::proxy`) sends new connections to a second server, loses and
//! repeats nothing; and a real server kept busy turns the client away with
//! GOAWAY 3 until it has room.
//!
//! Every read has a timeout, so a broken client fails a test instead of
//! hanging it. Time bounds are generous: CI is a busy 2-core machine.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::fake::{causes, lock, record_reconnects, reply, retrying};
use common::proxy::{drain_after, ran_once_each, recording, server_config, Proxy};
use wharf::{Client, ClientOptions, Config, Server};

// ---------------------------------------------------------------------------
// End to end: a real server drained with requests in flight.

#[test]
fn end_to_end_a_drained_server_loses_and_repeats_nothing() {
    const N: usize = 30;
    let (service_a, ran_a) = recording(Duration::from_millis(20));
    let (service_b, ran_b) = recording(Duration::ZERO);
    let a = Server::start("127.0.0.1:0", server_config(), service_a).unwrap();
    let b = Server::start("127.0.0.1:0", server_config(), service_b).unwrap();
    let proxy = Proxy::start(a.local_addr());

    let mut client = Client::connect(proxy.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    let requests: Vec<String> = (0..N).map(|i| format!("q{i}")).collect();
    for r in &requests {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    // Once A has started a few, new connections go to B and A drains (the
    // drain SIGTERM starts) with the other pipelined requests not started.
    // (Not keyed to the replies: A may hold them until its batch is done.)
    let drained = drain_after(a, 3, &ran_a, &proxy, b.local_addr());
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(client.recv().unwrap(), reply(r), "reply {i}, in order");
    }
    assert_eq!(client.outstanding(), 0);
    let report_a = drained.join().unwrap();
    assert!(!report_a.forced, "{report_a}");
    let k = ran_once_each(&requests, &lock(&ran_a), &lock(&ran_b));
    assert!(
        (3..N).contains(&k),
        "A ran {k}: the drain found requests in flight"
    );
    assert_eq!(report_a.requests, k as u64);
    assert_eq!((client.reconnects(), client.resent()), (1, (N - k) as u64));
    assert_eq!(causes(&reports), vec![("GOAWAY 1".to_owned(), 1, N - k)]);
    drop(client);
    b.handle().shutdown();
    assert_eq!(b.join().requests, (N - k) as u64);
}

/// A real server that is busy (its only worker held, `--queue 0`) turns the
/// client away with GOAWAY 3; the client backs off and comes back until the
/// worker is free, and its request runs once.
#[test]
fn end_to_end_a_busy_server_is_retried_until_it_has_room() {
    let (service, gate) = common::gate::gate();
    let server = common::start_with(
        Config {
            workers: 1,
            queue: 0,
            heartbeat_timeout: Duration::from_secs(20),
            ..common::config()
        },
        service,
    );
    let addr = server.local_addr();
    // The holder keeps the only worker busy with a held request. With queue
    // 0 a connection made before the worker waits is turned away, so the
    // holder itself retries (which is what retries are for).
    let mut holder = Client::connect(addr, retrying(50)).unwrap();
    assert_eq!(holder.request(b"hello").unwrap(), b"hello");
    holder.send(b"slow: hold the only worker").unwrap();
    holder.flush().unwrap();
    gate.wait_started(b"slow: hold the only worker");

    let options = ClientOptions {
        retry_backoff: Duration::from_millis(20),
        retry_backoff_max: Duration::from_millis(100),
        ..retrying(50)
    };
    let mut client = Client::connect(addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    let releaser = {
        let reports = Arc::clone(&reports);
        thread::spawn(move || {
            assert!(
                common::eventually(Duration::from_secs(20), || lock(&reports).len() >= 2),
                "the client was not turned away twice"
            );
            gate.release();
        })
    };
    assert_eq!(client.request(b"patient").unwrap(), b"patient");
    releaser.join().unwrap();
    assert!(causes(&reports)
        .iter()
        .all(|(cause, _, resend)| cause == "GOAWAY 3" && *resend == 1));
    assert!(client.reconnects() >= 2);
    assert_eq!(holder.recv().unwrap(), reply("slow: hold the only worker"));
    drop((client, holder));
    server.handle().shutdown();
    let report = server.join();
    assert!(report.rejected_busy >= 2, "{report}");
    // hello, the held request and "patient" once: a request turned away
    // with GOAWAY 3 never ran.
    assert_eq!(report.requests, 3, "{report}");
}
