//! The real `wharf client` binary (docs/protocol.md, "`wharf client`")
//! against in-process servers on 127.0.0.1:0: `--ping` prints one line per
//! round trip and a summary with the minimum, average and maximum, in
//! either framing.
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use common::client::stop;
use common::client_cli::{addr_arg, assert_exit, run_client};
use common::{config, start};
use wharf::{Config, Framing};

#[test]
fn ping_prints_each_round_trip_and_a_summary() {
    let server = start(config());
    let addr = addr_arg(&server);
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--ping",
            "--count",
            "3",
            "--interval",
            "50ms",
        ],
        b"",
    );
    assert_exit(&done, 0);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "3 pings and a summary: {lines:#?}");
    for (seq, line) in lines[..3].iter().enumerate() {
        assert!(
            line.starts_with(&format!("PONG from {addr}: seq={seq} time=")),
            "{line}"
        );
        assert!(line.ends_with(" ms"), "{line}");
    }
    let summary = lines[3];
    assert!(
        summary.starts_with("3 pings, 3 pongs; rtt min/avg/max = "),
        "{summary}"
    );
    let numbers = summary.rsplit("= ").next().unwrap().trim_end_matches(" ms");
    let values: Vec<f64> = numbers
        .split('/')
        .map(|v| v.parse().unwrap_or_else(|_| panic!("number in {summary}")))
        .collect();
    assert_eq!(values.len(), 3, "{summary}");
    assert!(
        values[0] <= values[1] && values[1] <= values[2],
        "min <= avg <= max: {summary}"
    );
    stop(server);
}

#[test]
fn ping_in_line_framing() {
    let server = start(Config {
        framing: Framing::Line,
        ..config()
    });
    let done = run_client(
        &[
            "--connect",
            &addr_arg(&server),
            "--framing",
            "line",
            "--ping",
            "--count",
            "2",
            "--interval",
            "10ms",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout.lines().count(), 3, "{}", done.stdout);
    assert!(done.stdout.contains("2 pings, 2 pongs"), "{}", done.stdout);
    stop(server);
}
