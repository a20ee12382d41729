//! Many connections, few workers: what the v2 design (a connection holds a
//! worker only while it has work; quiet connections rest in the poller)
//! costs and buys against a thread-per-connection `std` server and a tokio
//! server. Run with `cargo bench --bench many`.
//!
//! Every server runs as a child process, so that its own resources can be
//! read from `/proc`: peak RSS (`VmHWM`), threads (entries of
//! `/proc/PID/task`, sampled every 250 ms; the maximum is reported) and CPU
//! (`utime + stime` of `/proc/PID/stat`, over the measured window). The
//! child is this bench binary again, run as `many --serve wharf|std|tokio`;
//! it prints its address on stdout, serves until its stdin closes, then
//! stops (wharf: drain, then its exit report on stdout). The clients run in
//! this process. Before anything starts, `RLIMIT_NOFILE` is raised to 65536
//! (soft and hard; the child inherits it). Without CAP_SYS_RESOURCE the
//! hard limit cannot be raised and the soft limit goes up to the hard one
//! instead; a server (or the clients) needing more descriptors than that
//! for a scenario is skipped with a loud `SKIPPED:` line (the
//! thread-per-connection peer holds 3 descriptors per connection).
//!
//! The scheduled client threads (the ones that measure) run at nice -10
//! (`WHARF_MANY_CLIENT_NICE`; needs CAP_SYS_NICE, else a note says so): on
//! a 2-core machine a normal-priority client thread is starved by the
//! server it measures, most of all by a thousand server threads, and its
//! own lateness then dominates the latencies. Each table still shows how
//! late the client sent (send lag), and the CPU used in the window by the
//! server, the clients, other processes, softirq and steal (from
//! `/proc/stat`), so a noisy run can be recognised, and how late a thread
//! that sleeps 1 ms at a time woke up (stalls of the machine itself).
//!
//! wharf runs with 4 and with 2 workers, `--queue 10000` (a burst of new
//! connections must not be turned away: the default 64 is for production,
//! not for a connect storm) and `--max-connections` 10000, or the
//! scenario's connections plus 64 if that is more.
//!
//! Connections are opened in batches of 100: each connection of a batch
//! sends a PING and the batch waits for every PONG before the next batch
//! starts, so the accept backlog is never overrun and every connection is
//! known to be served before the measurement starts.
//!
//! **Open loop.** 1,000 connections, driven at a fixed total rate (default
//! 20,000 req/s, so 20 req/s per connection): request `k` is due at
//! `t0 + k / rate` on connection `k mod 1000`, whether or not earlier replies
//! have come back, and its latency counts from that due time to its reply,
//! so a stalled server is charged for every request it delays (no
//! coordinated omission). One client thread (or `WHARF_MANY_CLIENT_THREADS`)
//! drives all of them with non-blocking sockets on a `polling` poller.
//! Every echo is verified (each payload names its connection and sequence
//! number). Requests due in the warm-up are not measured.
//!
//! **Idle crowd.** 10,000 connections that each send a PING every 3 s,
//! spread evenly (3,333 PING/s), on one client thread as above, beside 8
//! busy connections doing closed-loop 64 B echo ping-pong as fast as they
//! can (a thread each). Every PONG must come back: a PING without one by
//! the end of the drain is a miss. Latency of a PONG counts from the PING's
//! due time.
//!
//! **TLS churn** and **TLS idle crowd** (`tls`): the same servers speaking
//! TLS (wharf's TLS listener, tokio with tokio-rustls, the thread per
//! connection with rustls), every one serving one certificate made for the
//! run with the same rustls settings, loaded by `wharf::bench`'s own driver
//! with full handshakes (no resumption). Churn: 4 clients that each
//! connect, shake hands, send one 64 B request and close; handshakes per
//! second, and the server's CPU per handshake. Idle crowd: 5,000 TLS
//! connections that each PING every 5 s beside 8 busy TLS connections;
//! every PONG must come back, and the server's RSS per idle connection is
//! measured against its RSS before any client.
//!
//! Environment (defaults in brackets): `WHARF_MANY_RATE` [20000],
//! `WHARF_MANY_CONNS` [1000], `WHARF_MANY_WARMUP` [1], `WHARF_MANY_SECS` [5],
//! `WHARF_MANY_CLIENT_THREADS` [1]; `WHARF_MANY_IDLE_CONNS` [10000],
//! `WHARF_MANY_PING_EVERY` [3], `WHARF_MANY_BUSY` [8],
//! `WHARF_MANY_IDLE_WARMUP` [3], `WHARF_MANY_IDLE_SECS` [9];
//! `WHARF_MANY_QUEUE` [10000] and `WHARF_MANY_MAX_CONNECTIONS` for wharf;
//! `WHARF_MANY_SERVERS` [wharf4,wharf2,std,tokio]; for TLS,
//! `WHARF_MANY_TLS_SERVERS` [wharf2,wharf4,tokio,std],
//! `WHARF_MANY_CHURN_CLIENTS` [4], `WHARF_MANY_CHURN_WARMUP` [1],
//! `WHARF_MANY_CHURN_SECS` [5], `WHARF_MANY_TLS_IDLE_CONNS` [5000],
//! `WHARF_MANY_TLS_PING_EVERY` [5], `WHARF_MANY_TLS_BUSY` [8],
//! `WHARF_MANY_TLS_IDLE_WARMUP` [6], `WHARF_MANY_TLS_IDLE_SECS` [10]; and
//! `WHARF_MANY_ONLY` [open,idle,tls-churn,tls-idle] to run a part
//! (`wharfN` is wharf with N workers). Times are in seconds. The tables go to stdout
//! and to `target/many.md`; progress goes to stderr. Any verification
//! error, missed reply or failed server makes the process exit 1.
//!
//! This file holds `main`; the settings are in `settings`. One scenario
//! against one server is run in `scenario` (the TLS ones in `tls`, their
//! tables in `tls_report`); the child process and what is read of it from
//! `/proc` are in `child`; the scheduled (open-loop) driver is in `driver`,
//! the busy closed-loop connections in `busy`; framing, connecting and the
//! histograms in `wire`; the tables and notes in `report`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../peers/mod.rs"]
mod peers;

mod busy;
mod child;
mod driver;
mod report;
mod scenario;
mod settings;
mod tls;
mod tls_report;
mod wire;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use child::serve;
use common::{ephemeral_ports, machine, target_dir, thousands};
use report::{idle_table, mib, notes, open_table};
use scenario::{run, Load};
use settings::settings;
pub(crate) use settings::{Settings, Spec};
use tls::tls_scenarios;

/// The descriptor limit asked for, soft and hard.
const NOFILE: u64 = 65536;

// ---------------------------------------------------------------------------
// Descriptors, and `main`.

/// Raises the descriptor limit, soft and hard; returns the soft limit.
/// Raises the descriptor limit, soft and hard, to [`NOFILE`]; returns the
/// soft limit in force and, if the raise failed, why.
fn raise_nofile() -> (u64, Option<String>) {
    use rlimit::Resource;
    let mut failure = None;
    if let Err(e) = rlimit::setrlimit(Resource::NOFILE, NOFILE, NOFILE) {
        let hard = rlimit::getrlimit(Resource::NOFILE).map_or(0, |(_, hard)| hard);
        failure = Some(format!(
            "cannot set RLIMIT_NOFILE to {NOFILE}: {e} (hard limit {hard}; raising it needs \
             CAP_SYS_RESOURCE); the soft limit was raised to the hard limit instead"
        ));
        let _ = rlimit::increase_nofile_limit(NOFILE);
    }
    let soft = rlimit::getrlimit(Resource::NOFILE).map_or(0, |(soft, _)| soft);
    (soft, failure)
}

/// Descriptors a server process holds per client connection: the
/// thread-per-connection peer keeps the accepted socket, a clone for its
/// list of connections and a clone for the reader.
fn descriptors_per_connection(spec: Spec) -> u64 {
    match spec {
        Spec::Std => 3,
        Spec::Wharf { .. } | Spec::Tokio => 1,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        return serve(&args[i + 1..]);
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    if !args.iter().any(|a| a == "--bench") {
        println!("many: skipped (run it with `cargo bench --bench many`)");
        return ExitCode::SUCCESS;
    }
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("many: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let (nofile, nofile_failure) = raise_nofile();
    if let Some(why) = &nofile_failure {
        eprintln!("many: {why}");
    }
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## many: {} servers in child processes, clients in the bench process\n\n\
         wharf: `--queue {}` (so a connect burst is not turned away), `--max-connections` {}. \
         RLIMIT_NOFILE {nofile}{}. The scheduled client threads run at nice {} (the busy \
         closed-loop threads at 0), so that the measuring client is not starved by the server \
         it measures on this small machine; the send-lag columns show how late it still was. \
         \"CPU cores\" is CPU time in the window over its length: the server (child), the \
         clients (this process), other processes, irq + softirq (charged to no process; on \
         loopback mostly the TCP receive path of these connections) and steal (the hypervisor \
         ran something else): busy others or steal mean a noisy measurement. The 1 ms sleeper \
         is a thread of this process at the measuring clients' priority that sleeps 1 ms at a \
         time through the window: how late it woke shows stalls of the machine itself, which \
         stall the measuring client as much.",
        s.servers.len(),
        s.queue,
        s.max_connections.map_or_else(
            || "10000, or the scenario's connections + 64 if more".to_string(),
            |m| m.to_string()
        ),
        nofile_failure
            .as_deref()
            .map_or(String::new(), |why| format!(" ({why})")),
        s.client_nice,
    );
    if let Some((low, high)) = ephemeral_ports() {
        let ports = (high + 1).saturating_sub(low) as usize;
        let most = s.conns.max(s.idle_conns + s.busy);
        let _ = write!(
            report,
            " Ephemeral ports {low}-{high} ({ports}) for at most {most} connections at once"
        );
        if most > ports {
            let _ = write!(report, ": TOO FEW, connections will fail");
        }
        report.push('.');
    }
    report.push('\n');
    let mut failed = false;
    let loads: Vec<(Load, bool, usize)> = vec![
        (Load::Open, s.open, s.conns),
        (Load::Idle, s.idle, s.idle_conns + s.busy),
    ];
    for (load, wanted, conns) in loads {
        if !wanted {
            continue;
        }
        let name = match load {
            Load::Open => "open loop",
            Load::Idle => "idle crowd",
        };
        // The clients hold a descriptor per connection, plus a few.
        let need = conns as u64 + 256;
        if nofile < need {
            let line = format!(
                "SKIPPED: {name}: the clients need about {need} descriptors, RLIMIT_NOFILE is \
                 {nofile} and could not be raised"
            );
            eprintln!("many: {line}");
            let _ = writeln!(report, "\n{line}");
            continue;
        }
        let mut outcomes = Vec::new();
        let mut failures = Vec::new();
        let mut skipped = Vec::new();
        for &spec in &s.servers {
            let need = conns as u64 * descriptors_per_connection(spec) + 256;
            if nofile < need {
                let line = format!(
                    "SKIPPED: {name}, {}: the server needs about {need} descriptors ({} per \
                     connection), RLIMIT_NOFILE is {nofile} and could not be raised",
                    spec.label(),
                    descriptors_per_connection(spec)
                );
                eprintln!("many: {line}");
                skipped.push(line);
                continue;
            }
            let t = Instant::now();
            match run(spec, &load, &s) {
                Ok(o) => {
                    let h = o.latency();
                    eprintln!(
                        "many: {name:<10} {:<28} {:>9} replies/s in window  p99 {:>7} µs  \
                         missed {}  errors {}  RSS {} MiB  threads {}  ({:.0} s)",
                        spec.label(),
                        thousands(o.driven.replies_in_window as f64 / o.window.as_secs_f64()),
                        thousands(h.value_at_quantile(0.99) as f64),
                        o.driven.missed,
                        o.error_count(),
                        mib(o.proc.peak_rss_kib),
                        o.proc.threads_max,
                        t.elapsed().as_secs_f64(),
                    );
                    if o.error_count() > 0 || o.driven.missed > 0 || o.proc.stop_note.is_some() {
                        failed = true;
                    }
                    outcomes.push(o);
                }
                Err(e) => {
                    eprintln!("many: {name}: {e}");
                    failures.push(e);
                    failed = true;
                }
            }
        }
        report.push('\n');
        report.push_str(&match load {
            Load::Open => open_table(&outcomes, &s),
            Load::Idle => idle_table(&outcomes, &s),
        });
        report.push_str(&notes(&outcomes));
        for f in failures {
            let _ = writeln!(report, "- FAILED: {f}");
        }
        for line in skipped {
            let _ = writeln!(report, "- **{line}**");
        }
    }
    if s.tls_churn || s.tls_idle {
        failed |= tls_scenarios(&s, nofile, &mut report);
    }
    let _ = writeln!(
        report,
        "\n{} ({:.0} s in all)",
        machine(),
        started.elapsed().as_secs_f64()
    );
    print!("{report}");
    let path = target_dir().join("many.md");
    if let Err(e) =
        std::fs::create_dir_all(target_dir()).and_then(|()| std::fs::write(&path, &report))
    {
        eprintln!("many: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("many: tables written to {}", path.display());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
