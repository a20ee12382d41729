//! The real `wharf client` binary (docs/protocol.md, "`wharf client`"): its
//! flags. An address that cannot parse or resolve, and `--count` or
//! `--interval` without `--ping`, are refused as bad flags (exit 2) before
//! any connection; `--help` lists every exit status of the chapter's table,
//! with the same meaning, so the two cannot drift apart.
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use common::client_cli::{assert_exit, run_client};

/// An address that cannot parse or resolve is a bad flag, as for
/// `serve --bind`: exit 2 with clap's message naming the flag and the
/// input (it used to be "cannot connect to (unresolved)", exit 3).
#[test]
fn an_address_that_cannot_parse_or_resolve_is_a_bad_flag() {
    for bad in [
        "nowhere",
        "127.0.0.1",
        "127.0.0.1:notaport",
        "[::1",
        "no-such-host.invalid:7878",
    ] {
        let done = run_client(&["--connect", bad, "--send", "x"], b"");
        assert_exit(&done, 2);
        assert!(
            done.stderr.starts_with(&format!(
                "error: invalid value '{bad}' for '--connect <ADDR>'"
            )),
            "{bad}: {done:#?}"
        );
        assert_eq!(done.stdout, "");
    }
}

/// `--count` and `--interval` belong to `--ping`: without it they are bad
/// flags (exit 2, clap's message), with `--send` as in stdin mode. They
/// used to be ignored silently next to `--send`.
#[test]
fn ping_only_flags_without_ping_are_bad_flags() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--count", "3", "--send", "x"],
            "error: the argument '--count <N>' cannot be used with '--send <TEXT>'",
        ),
        (
            &["--send", "x", "--interval", "10ms"],
            "error: the argument '--send <TEXT>' cannot be used with '--interval <D>'",
        ),
        (
            &["--count", "3"],
            "error: the following required arguments were not provided:\n  --ping",
        ),
    ];
    for (args, message) in cases {
        // No server is needed: the flags are refused before any connect.
        let mut all = vec!["--connect", "127.0.0.1:9"];
        all.extend_from_slice(args);
        let done = run_client(&all, b"");
        assert_exit(&done, 2);
        assert!(done.stderr.starts_with(message), "{args:?}: {done:#?}");
    }
}

/// `wharf client --help` (and `-h`) lists every exit status of the table in
/// docs/protocol.md ("`wharf client`"), with the same meaning, so the two
/// cannot drift apart.
#[test]
fn help_lists_the_exit_statuses_the_readme_documents() {
    let chapter = include_str!("../docs/protocol.md");
    let table = chapter
        .split("| exit status | meaning |")
        .nth(1)
        .expect("the exit status table of docs/protocol.md");
    let rows: Vec<(String, String)> = table
        .lines()
        .skip(2) // the rest of the header line, and the |---| line
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 2, "{line}");
            (cells[0].trim().to_owned(), cells[1].trim().replace('`', ""))
        })
        .collect();
    assert!(rows.len() >= 7, "{rows:?}");
    for flag in ["--help", "-h"] {
        let done = run_client(&[flag], b"");
        assert_exit(&done, 0);
        let help: Vec<String> = done
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert!(help.iter().any(|l| l == "Exit status:"), "{}", done.stdout);
        for (status, meaning) in &rows {
            let line = format!("{status} {meaning}");
            assert!(
                help.contains(&line),
                "{flag}: no line {line:?} in:\n{}",
                done.stdout
            );
        }
    }
}
