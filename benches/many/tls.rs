//! The TLS scenarios, against each server in a child process serving the
//! same certificate (made for the run): handshake churn, and an idle TLS
//! crowd beside a few busy connections.
//!
//! The clients are `wharf::bench`'s own load driver (every connection on
//! one event-driven thread, every reply verified, session resumption off
//! so every handshake is full), run against the child with `connect`, on a
//! thread at the measuring clients' nice value. The driver tells when its
//! measured window starts; a sampler reads the child's CPU, RSS and
//! threads and the machine's CPU then, and again when the window ends.
//!
//! - **Churn**: `churn_clients` clients, each connecting, shaking hands,
//!   sending one 64 B request, reading its echo and closing, over and
//!   over. Handshakes per second are the handshakes the clients completed
//!   in the window; server CPU per handshake is the child's utime + stime
//!   over the window divided by them.
//! - **Idle**: `tls_idle_conns` TLS connections that each PING every
//!   `tls_ping_every`, beside `tls_busy` connections echoing 64 B in a
//!   closed loop. PONG latency counts from each PING's due time. RSS per
//!   idle connection is (VmRSS at the end of the window, every connection
//!   open, less VmRSS of the child before any client connected) divided by
//!   the idle connections.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wharf::bench::{sweep, BenchOptions, Event};

use crate::child::{cpu_secs, machine_cpu, status_kib, thread_count, ProcFigures, ServerProcess};
use crate::common::thousands;
use crate::driver::renice_this_thread;
use crate::report::mib;
use crate::tls_report::{churn_table, tls_idle_table, tls_notes, TlsOutcome};
use crate::{Settings, Spec};

/// Payload of every DATA request.
const PAYLOAD: usize = 64;
/// How long a freshly started child is left alone before its RSS is read.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TlsLoad {
    Churn,
    Idle,
}

/// Runs one TLS scenario against `spec` serving the certificate in `certs`.
pub(crate) fn run_tls(
    spec: Spec,
    load: TlsLoad,
    s: &Settings,
    certs: &Path,
) -> Result<TlsOutcome, String> {
    let (clients, idle, warmup, window, batches) = match load {
        TlsLoad::Churn => (s.churn_clients, 0, s.churn_warmup, s.churn_window, Some(1)),
        TlsLoad::Idle => (
            s.tls_busy,
            s.tls_idle_conns,
            s.tls_idle_warmup,
            s.tls_idle_window,
            None,
        ),
    };
    let max_connections = s
        .max_connections
        .unwrap_or_else(|| 10_000.max(clients + idle + 64));
    let server = ServerProcess::spawn(spec, s.queue, max_connections, Some(certs))?;
    let pid = server.pid;
    std::thread::sleep(SETTLE);
    let rss_before_kib = status_kib(pid, "VmRSS");
    let options = BenchOptions {
        clients,
        idle,
        idle_ping: s.tls_ping_every,
        warmup,
        duration: window,
        payload: PAYLOAD,
        batches_per_connection: batches,
        connect: Some(server.addr),
        tls: true,
        tls_ca: Some(certs.join("ca.pem")),
        ..BenchOptions::default()
    };

    // The window's start comes from the driver; its end is `window` later.
    let (started, start_rx) = mpsc::channel::<Instant>();
    let sampler = std::thread::spawn(move || {
        let mut figures = ProcFigures::default();
        let Ok(from) = start_rx.recv() else {
            return figures;
        };
        let me = std::process::id();
        let start = (cpu_secs(pid), cpu_secs(me), machine_cpu());
        figures.rss_window_start_kib = status_kib(pid, "VmRSS");
        std::thread::sleep((from + window).saturating_duration_since(Instant::now()));
        let end = (cpu_secs(pid), cpu_secs(me), machine_cpu());
        figures.rss_window_end_kib = status_kib(pid, "VmRSS");
        figures.threads_in_window = thread_count(pid);
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        figures.cpu_in_window = delta(start.0, end.0);
        figures.client_cpu_in_window = delta(start.1, end.1);
        if let (Some(server), Some(client), Some(a), Some(b)) = (
            figures.cpu_in_window,
            figures.client_cpu_in_window,
            start.2,
            end.2,
        ) {
            figures.others_cpu_in_window = Some((b.tasks - a.tasks - server - client).max(0.0));
            figures.irq_in_window = Some(b.irq - a.irq);
            figures.steal_in_window = Some(b.steal - a.steal);
        }
        figures
    });
    let nice = s.client_nice;
    let clients_thread = std::thread::spawn(move || {
        let reniced = renice_this_thread(nice);
        let cancel = AtomicBool::new(false);
        let result = sweep(&options, &cancel, |event| {
            if let Event::Measure { .. } = event {
                let _ = started.send(Instant::now());
            }
        });
        (result, reniced)
    });
    let (result, reniced) = clients_thread
        .join()
        .map_err(|_| format!("{}: the client thread panicked", spec.tls_label()))?;
    let mut proc = sampler.join().unwrap_or_default();
    // Every client connection is closed: stop the server.
    let config = server.config.clone();
    server.stop(&mut proc);
    let point = result
        .map_err(|e| format!("{}: {e}", spec.tls_label()))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: nothing measured", spec.tls_label()))?;
    Ok(TlsOutcome {
        spec,
        config,
        point,
        window,
        proc,
        rss_before_kib,
        not_reniced: !reniced,
    })
}

/// A directory of its own for the TLS scenarios' certificate, removed on
/// drop.
struct Certs(std::path::PathBuf);

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the TLS scenarios against every TLS server, adding their tables
/// to `report`; true if any failed.
pub(crate) fn tls_scenarios(s: &Settings, nofile: u64, report: &mut String) -> bool {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("wharf-many-certs-{}", std::process::id()));
    let made = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map(|()| Certs(dir.clone()))
        .and_then(|certs| {
            wharf::tls::write_dev_certs(&certs.0, &["localhost".to_owned()]).map(|_| certs)
        });
    let certs = match made {
        Ok(certs) => certs,
        Err(e) => {
            let line = format!("FAILED: TLS scenarios: cannot write the certificate: {e}");
            eprintln!("many: {line}");
            let _ = writeln!(report, "\n{line}");
            return true;
        }
    };
    let mut failed = false;
    let loads = [
        (TlsLoad::Churn, s.tls_churn, s.churn_clients),
        (TlsLoad::Idle, s.tls_idle, s.tls_idle_conns + s.tls_busy),
    ];
    for (load, wanted, conns) in loads {
        if !wanted {
            continue;
        }
        let name = match load {
            TlsLoad::Churn => "TLS churn",
            TlsLoad::Idle => "TLS idle",
        };
        let mut outcomes: Vec<TlsOutcome> = Vec::new();
        let mut lines = Vec::new();
        for &spec in &s.tls_servers {
            // The thread-per-connection peer keeps the socket and a clone.
            let per_connection = if spec == Spec::Std { 2 } else { 1 };
            let need = conns as u64 * per_connection + 256;
            if nofile < need {
                let line = format!(
                    "SKIPPED: {name}, {}: needs about {need} descriptors, RLIMIT_NOFILE is \
                     {nofile}",
                    spec.tls_label()
                );
                eprintln!("many: {line}");
                lines.push(line);
                continue;
            }
            let t = Instant::now();
            match run_tls(spec, load, s, &certs.0) {
                Ok(o) => {
                    eprintln!(
                        "many: {name:<10} {:<28} {:>7} handshakes/s  {:>9} req/s  server CPU \
                         {:>6} µs/handshake  idle p99 {:>7} µs  missed {}  errors {}  RSS {} \
                         MiB  threads {}  ({:.0} s)",
                        spec.tls_label(),
                        thousands(o.handshakes_per_sec()),
                        thousands(o.point.requests_per_sec),
                        o.cpu_us_per_handshake()
                            .map_or("-".into(), |c| format!("{c:.0}")),
                        o.idle_p99_us().map_or("-".into(), |p| thousands(p as f64)),
                        o.point.idle.map_or(0, |i| i.missed),
                        o.point.errors,
                        mib(o.proc.rss_window_end_kib),
                        o.proc.threads_max,
                        t.elapsed().as_secs_f64(),
                    );
                    failed |= o.failed();
                    outcomes.push(o);
                }
                Err(e) => {
                    eprintln!("many: {name}: {e}");
                    lines.push(format!("FAILED: {e}"));
                    failed = true;
                }
            }
        }
        report.push('\n');
        report.push_str(&match load {
            TlsLoad::Churn => churn_table(&outcomes, s),
            TlsLoad::Idle => tls_idle_table(&outcomes, s),
        });
        report.push_str(&tls_notes(&outcomes));
        for line in lines {
            let _ = writeln!(report, "- **{line}**");
        }
    }
    failed
}
