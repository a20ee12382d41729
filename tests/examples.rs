//! The examples, run as a user runs them (`cargo run --example NAME`):
//! they succeed, and when they fail they print the error's message and a
//! hint, not a `Debug` dump.
//!
//! `cargo test` builds the examples next to the test binaries
//! (`target/<profile>/examples/`); a run that did not build them (`cargo
//! test --test examples` alone may not) prints `SKIPPED:` and passes.
//! Every child is waited for with a deadline and killed by its PID if it
//! outlives it.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{config, run_to_exit, start, Finished};

/// The longest an example may run.
const DEADLINE: Duration = Duration::from_secs(30);

/// The built example `name`, if this build has it.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let dir = exe.parent()?.parent()?.join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: example {name} not built at {} (run the whole `cargo test`)",
            path.display()
        );
        None
    }
}

/// Runs the example with `args` (see `common::run_to_exit`).
fn run(path: &PathBuf, args: &[&str]) -> Finished {
    let mut command = Command::new(path);
    command.args(args);
    run_to_exit(command, DEADLINE)
}

/// `cargo run --example pipeline` with no server: the error's message and
/// the hint to start one, exit 1 (it used to print `Error: Connect { addr:
/// ..., source: Os { code: 111, ... } }`).
#[test]
fn pipeline_without_a_server_prints_the_message_and_a_hint() {
    let Some(pipeline) = example("pipeline") else {
        return;
    };
    // A port nobody listens on.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let done = run(&pipeline, &[&addr.to_string()]);
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", done.stderr);
    assert!(
        lines[0].starts_with(&format!("pipeline: cannot connect to {addr}: ")),
        "{}",
        done.stderr
    );
    assert!(
        lines[1].starts_with("hint: start a server first (`cargo run --release -- serve`)"),
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("Connect {"),
        "a Debug dump: {}",
        done.stderr
    );

    // A bad address is named.
    let done = run(&pipeline, &["nowhere"]);
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert_eq!(done.stderr, "pipeline: nowhere: invalid socket address\n");
}

#[test]
fn pipeline_against_a_server_answers_in_order() {
    let Some(pipeline) = example("pipeline") else {
        return;
    };
    let server = start(config());
    let done = run(&pipeline, &[&server.local_addr().to_string()]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("1000 pipelined requests answered in order in "),
        "{}",
        done.stdout
    );
    server.handle().shutdown();
    server.join();
}

/// The examples that start their own server run to the end.
#[test]
fn session_and_uppercase_run_to_the_end() {
    for (name, last) in [("session", "drained: "), ("uppercase", "drained: ")] {
        let Some(path) = example(name) else {
            continue;
        };
        let done = run(&path, &[]);
        assert_eq!(done.status.code(), Some(0), "{name}: {}", done.stderr);
        assert!(
            done.stdout
                .lines()
                .last()
                .is_some_and(|l| l.starts_with(last)),
            "{name}: {}",
            done.stdout
        );
        assert_eq!(done.stderr, "", "{name}");
    }
}
