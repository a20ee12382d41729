//! Metrics and probes (docs/operating.md, "Metrics and probes"): the
//! endpoint runs on its own thread and never slows the data port. While
//! a silent HTTP client holds the endpoint for its whole head timeout and
//! garbage, oversized and dribbling heads pile up behind it, pipelining
//! data clients are timed reply by reply; then the endpoint recovers.
//!
//! The test talks to a real server over real sockets on 127.0.0.1, port 0.
//! HTTP requests are written by hand, byte for byte, so that malformed ones
//! can be sent too. No speed is compared: the machine is shared.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::{connect_http, metrics_addr, parse, read_all, value, with_metrics};
use common::{config, eventually, start, Client};

/// How long a data client may wait for its next reply while the metrics
/// endpoint is being abused (generous: the machine is shared and busy).
const MAX_REPLY_GAP: Duration = Duration::from_secs(2);

/// What one pipelining data client saw.
#[derive(Debug)]
struct Progress {
    replies: usize,
    /// The longest wait for a reply: from the start to the first, and
    /// between any two.
    max_gap: Duration,
    started: Instant,
    last_reply: Instant,
}

/// Pipelines batches of 16 echo requests of 16 B to 4 KiB on `client`,
/// reading each batch's replies before sending the next, until `stop` is
/// set (or an upper bound of batches). Checks every reply, in order, and
/// the longest wait for one.
fn pipeline(mut client: Client, id: usize, stop: &AtomicBool) -> Progress {
    const BATCH: usize = 16;
    const MAX_BATCHES: usize = 1_000_000;
    const SIZES: [usize; 4] = [16, 256, 1024, 4096];
    let started = Instant::now();
    let mut last_reply = started;
    let mut max_gap = Duration::ZERO;
    let mut replies = 0;
    for round in 0..MAX_BATCHES {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let payloads: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| {
                let mut payload = format!("client {id} round {round} request {i} ").into_bytes();
                payload.resize(SIZES[i % SIZES.len()].max(payload.len()), b'.');
                payload
            })
            .collect();
        let mut batch = Vec::new();
        for payload in &payloads {
            wharf::Framing::Length.encode_data(payload, &mut batch);
        }
        client.send_raw(&batch);
        for payload in &payloads {
            let reply = client.recv().expect("a reply, not end-of-stream");
            let now = Instant::now();
            assert_eq!(reply.kind, wharf::frame::DATA, "client {id}: {reply:?}");
            assert!(
                reply.payload == *payload,
                "client {id}: a reply out of order"
            );
            max_gap = max_gap.max(now - last_reply);
            last_reply = now;
            replies += 1;
        }
    }
    Progress {
        replies,
        max_gap,
        started,
        last_reply,
    }
}

/// Operations: the metrics endpoint runs on its own thread, and "nothing
/// it does can slow or stop the data path". Four clients pipeline echo
/// requests on the data port (with two workers, so their connections keep
/// changing hands through the line and the poller) while a silent HTTP
/// client holds the endpoint's one thread for its whole 5 s head timeout,
/// and garbage, oversized and dribbling heads pile up behind it. No data
/// client may wait more than [`MAX_REPLY_GAP`] for any reply, at any time
/// during the hold. No speed is compared: the machine is shared.
#[test]
fn misbehaving_http_clients_do_not_slow_the_data_port() {
    const DATA_CLIENTS: usize = 4;
    /// Far below what any machine does in the ~6 s of load, but more than
    /// a client stalled for most of it gets.
    const MIN_REPLIES: usize = 320;
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    // Connected and answered before the endpoint is held, so that what is
    // measured is the traffic on established connections.
    let clients: Vec<Client> = (0..DATA_CLIENTS)
        .map(|_| {
            let mut client = Client::connect(data);
            client.echo(b"connected");
            client
        })
        .collect();

    // Silent: connects and sends nothing. The endpoint serves one request
    // at a time, so it holds the thread until its 408, 5 s on.
    let mut silent = connect_http(addr);
    let held_from = Instant::now();
    let silent = thread::spawn(move || {
        let response = parse(&read_all(&mut silent));
        (response, Instant::now())
    });

    let stop_data = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, client)| {
            let stop = Arc::clone(&stop_data);
            thread::spawn(move || pipeline(client, id, &stop))
        })
        .collect();

    let stop_http = Arc::new(AtomicBool::new(false));
    let mut misbehaving = Vec::new();
    // Garbage, a huge head, and a dribbler, again and again.
    let http_clients: [fn(&mut TcpStream) -> bool; 3] = [
        |s| {
            s.write_all(b"\x00\x01\x02 \xff\xfe garbage \r\n\r\n")
                .is_ok()
        },
        |s| {
            let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
            big.extend(std::iter::repeat_n(b'x', 200 * 1024));
            let _ = s.write_all(&big);
            true
        },
        |s| {
            for byte in b"GET /metrics HTTP/1.1\r\n" {
                if s.write_all(&[*byte]).is_err() {
                    return false;
                }
                thread::sleep(Duration::from_millis(20));
            }
            true
        },
    ];
    for client in http_clients {
        let stop = Arc::clone(&stop_http);
        misbehaving.push(thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) && rounds < 50 {
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    break;
                };
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                client(&mut stream);
                let mut sink = [0; 4096];
                let _ = stream.read(&mut sink);
                rounds += 1;
            }
        }));
    }

    // The hold is over when the silent client gets its 408 (bounded by its
    // 20 s read timeout); the data clients go on a little past it.
    let (timed_out, held_until) = silent.join().unwrap();
    thread::sleep(Duration::from_millis(500));
    stop_data.store(true, Ordering::SeqCst);
    let progress: Vec<Progress> = loads.into_iter().map(|l| l.join().unwrap()).collect();
    stop_http.store(true, Ordering::SeqCst);
    for thread in misbehaving {
        thread.join().unwrap();
    }

    let held = held_until - held_from;
    eprintln!(
        "FIGURES pipelining data clients while the metrics endpoint was held for {held:?}: {}",
        progress
            .iter()
            .map(|p| format!("{} replies, longest wait {:?}", p.replies, p.max_gap))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_eq!(timed_out.status, 408, "{timed_out:?}");
    assert!(
        held >= Duration::from_millis(4500),
        "the silent client held the endpoint for only {held:?}"
    );
    for (id, p) in progress.iter().enumerate() {
        // The client was at work through the hold...
        assert!(
            p.started <= held_from + MAX_REPLY_GAP && p.last_reply >= held_until,
            "client {id} did not run through the hold: {p:?}"
        );
        // ... and never waited long for a reply.
        assert!(
            p.max_gap < MAX_REPLY_GAP,
            "client {id} waited {:?} for a reply ({} replies)",
            p.max_gap,
            p.replies
        );
        assert!(p.replies >= MIN_REPLIES, "client {id}: {p:?}");
    }

    // The endpoint recovers: what piled up behind the silent client is
    // answered or dropped, and then scrapes work again.
    let started = Instant::now();
    let mut last = None;
    let recovered = eventually(Duration::from_secs(20), || {
        let mut stream = connect_http(addr);
        if stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").is_err() {
            return false;
        }
        let response = parse(&read_all(&mut stream));
        let ok = response.status == 200;
        last = Some(response);
        ok
    });
    assert!(recovered, "no 200 after the misbehaving clients: {last:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let text = last.unwrap().text();
    let replies: usize = progress.iter().map(|p| p.replies + 1).sum();
    assert!(
        value(&text, "wharf_requests_total") >= replies as f64,
        "{text}"
    );
    server.handle().shutdown();
    server.join();
}
