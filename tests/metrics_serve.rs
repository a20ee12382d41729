//! Metrics and probes (docs/operating.md, "Metrics and probes") through the
//! real binary: `wharf serve --metrics ADDR` logs `metrics on <addr>` with
//! the real port before its listening line (and no such line without the
//! flag), exits 1 naming an address already taken, and runs the endpoint
//! on exactly one thread however many HTTP clients wait.
//!
//! Every test runs `wharf serve` on 127.0.0.1, port 0, killed by its PID if
//! the test fails midway.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::metrics::{connect_http, get, logged_metrics_addr, scrape, WITHIN};
use common::{eventually, spawn_wharf, Client};

/// The number of threads of process `pid`.
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read /proc/<pid>/task")
        .count()
}

#[test]
fn serve_logs_metrics_on_with_the_real_address() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--metrics", "127.0.0.1:0"]);
    // The listening line is announced before it is added to the log.
    assert!(eventually(WITHIN, || wharf.log().contains("listening on")));
    let log = wharf.log();
    let addr = logged_metrics_addr(&log);
    assert_ne!(addr.port(), 0, "{log}");
    let metrics_line = log.lines().position(|l| l.contains("metrics on")).unwrap();
    let listening_line = log
        .lines()
        .position(|l| l.contains("listening on"))
        .unwrap();
    assert!(metrics_line < listening_line, "{log}");
    assert_eq!(get(addr, "/ready").status, 200);
    assert!(scrape(addr).contains("wharf_workers 2"));

    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
}

#[test]
fn serve_without_metrics_logs_no_metrics_line_and_a_taken_address_fails() {
    let wharf = spawn_wharf(&["--workers", "2"]);
    assert!(!wharf.log().contains("metrics on"), "{}", wharf.log());
    drop(wharf);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let output = common::serve_command("127.0.0.1:0", &["--metrics", &taken_addr])
        .output()
        .expect("wharf runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&taken_addr), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_thread_count_stays_fixed_with_metrics() {
    let without = spawn_wharf(&["--workers", "2"]);
    let base = thread_count(without.child.id());
    drop(without);

    let mut wharf = spawn_wharf(&["--workers", "2", "--metrics", "127.0.0.1:0"]);
    let pid = wharf.child.id();
    let at_start = thread_count(pid);
    assert_eq!(at_start, base + 1, "the endpoint is exactly one thread");
    let addr = logged_metrics_addr(&wharf.log());

    let clients: Vec<Client> = (0..50).map(|_| Client::connect(wharf.addr)).collect();
    let silent: Vec<TcpStream> = (0..5).map(|_| connect_http(addr)).collect();
    let scrapers: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = connect_http(addr);
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            })
        })
        .collect();
    for scraper in scrapers {
        scraper.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        thread_count(pid),
        at_start,
        "threads with HTTP clients waiting"
    );
    drop(silent);
    for mut client in clients {
        client.echo(b"served");
    }
    assert_eq!(thread_count(pid), at_start);
    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
}
