//! `wharf bench`: sweep pool sizes and report, so the pool size is chosen
//! by measurement. The measuring is in [`wharf::bench`]; this file checks
//! the flags and output paths before anything runs, shows the progress,
//! prints the table and writes the CSV, JSON and SVG files.
//!
//! Ctrl-C sets the sweep's cancel flag: the point under way is dropped, the
//! points measured so far are printed and written, and the exit status is
//! 130. A second Ctrl-C exits at once.
//!
//! The CSV carries the run's context (wharf version, CPUs, kernel,
//! timestamp) as its last four columns, the same on every row, so that any
//! CSV reader takes it (comment lines would trip some).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use serde::Serialize;
use wharf::bench::{
    self, human_rate, human_us, BenchError, BenchOptions, BenchPoint, Event, Recommendation,
};

use crate::cli::BenchArgs;

mod plot;

/// Exit status of an interrupted run.
const INTERRUPTED: u8 = 130;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        workers: if args.workers.is_empty() {
            BenchOptions::default().workers
        } else {
            args.workers.clone()
        },
        queue: args.queue,
        delay: args.delay,
        spin: args.spin,
        clients: args.clients,
        warmup: args.warmup,
        duration: args.duration,
        payload: args.payload,
        pipeline: args.pipeline,
        connect: args.connect,
        batches_per_connection: args.reconnect_every,
        rate: args.rate,
        idle: args.idle,
        idle_ping: args.idle_ping,
        target_p99: args.target_p99,
        metrics: args.metrics,
    };
    // Everything that can be refused is refused before measuring.
    if let Err(e) = bench::check(&options) {
        return Ok(usage(&e.to_string()));
    }
    let outputs = match Outputs::open(&args) {
        Ok(outputs) => outputs,
        Err(message) => return Ok(usage(&message)),
    };

    let cancel = Arc::new(AtomicBool::new(false));
    // The second Ctrl-C exits at once; the first sets the flag.
    for register in [
        signal_hook::flag::register_conditional_shutdown(
            signal_hook::consts::SIGINT,
            i32::from(INTERRUPTED),
            Arc::clone(&cancel),
        ),
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&cancel)),
    ] {
        if let Err(e) = register {
            eprintln!("bench: cannot handle Ctrl-C ({e}); it will stop the run without a report");
        }
    }

    let progress = Progress::new(&options);
    let mut points = Vec::new();
    let result = bench::sweep(&options, &cancel, |event| {
        progress.event(&event);
        if let Event::Done(point) = event {
            points.push(point.clone());
        }
    });
    progress.finish();
    let interrupted = cancel.load(Ordering::Relaxed);

    let recommendation = bench::recommend(&points, options.target_p99);
    if !points.is_empty() {
        print!("{}", table(&options, &points, recommendation.as_ref()));
    }
    let report = JsonReport::new(&options, &points, recommendation.as_ref(), interrupted);
    outputs.write(&report)?;

    if interrupted {
        eprintln!(
            "bench: interrupted: {} point(s) measured are reported",
            points.len()
        );
        return Ok(ExitCode::from(INTERRUPTED));
    }
    if let Err(e) = result {
        eprintln!("wharf: error: {e}");
        if !points.is_empty() {
            eprintln!(
                "bench: the {} point(s) measured before are reported",
                points.len()
            );
        }
        return Ok(ExitCode::from(match e {
            BenchError::Invalid(_) => 2,
            _ => 1,
        }));
    }
    let errors: u64 = points.iter().map(|p| p.errors).sum();
    if errors > 0 {
        eprintln!("bench: {errors} error(s): wrong echoes, ERROR replies or failed connections");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A usage error: the message, and exit status 2 as for a bad flag.
fn usage(message: &str) -> ExitCode {
    eprintln!("wharf: error: {message}");
    ExitCode::from(2)
}

/// The output files, created before measuring so that a bad path fails at
/// once instead of after the sweep.
struct Outputs {
    csv: Option<(PathBuf, File)>,
    json: Option<(PathBuf, File)>,
    plot: Option<PathBuf>,
}

impl Outputs {
    fn open(args: &BenchArgs) -> Result<Outputs, String> {
        if let Some(plot) = &args.plot {
            let svg = plot
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
            if !svg {
                return Err(format!(
                    "--plot {}: the plot is SVG, and the file name must end in .svg (convert it \
                     afterwards for another format, e.g. rsvg-convert plot.svg -o plot.png)",
                    plot.display()
                ));
            }
        }
        let create = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        let csv = match &args.csv {
            Some(path) => Some((path.clone(), create(path)?)),
            None => None,
        };
        let json = match &args.json {
            Some(path) => Some((path.clone(), create(path)?)),
            None => None,
        };
        // The plot is written by path (the SVG backend opens it): check it
        // the same way now.
        if let Some(path) = &args.plot {
            create(path)?;
        }
        Ok(Outputs {
            csv,
            json,
            plot: args.plot.clone(),
        })
    }

    fn write(self, report: &JsonReport<'_>) -> anyhow::Result<()> {
        let fail = |path: &Path, e: &dyn std::fmt::Display| {
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        };
        if let Some((path, mut file)) = self.csv {
            file.write_all(csv(report).as_bytes())
                .map_err(|e| fail(&path, &e))?;
        }
        if let Some((path, mut file)) = self.json {
            let text = serde_json::to_string_pretty(report)?;
            file.write_all(text.as_bytes())
                .map_err(|e| fail(&path, &e))?;
        }
        if let Some(path) = self.plot {
            if report.results.iter().any(|p| p.workers.is_some()) {
                plot::draw(&path, report).map_err(|e| fail(&path, &e))?;
            } else {
                // Created empty before the run: leave no empty file behind.
                let _ = std::fs::remove_file(&path);
                eprintln!("bench: no point measured, no plot drawn");
            }
        }
        Ok(())
    }
}

/// The machine the run was on.
#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
}

impl Machine {
    fn this() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
        }
    }
}

/// What `--json` writes; the CSV and the plot read it too.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub version: &'static str,
    pub machine: Machine,
    /// When the report was written (RFC 3339, UTC).
    pub timestamp: String,
    pub options: &'a BenchOptions,
    pub results: &'a [BenchPoint],
    pub recommendation: Option<&'a Recommendation>,
    /// Cut short by Ctrl-C: `results` holds the points measured before.
    pub interrupted: bool,
}

impl<'a> JsonReport<'a> {
    fn new(
        options: &'a BenchOptions,
        results: &'a [BenchPoint],
        recommendation: Option<&'a Recommendation>,
        interrupted: bool,
    ) -> Self {
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        JsonReport {
            version: wharf::build_info::VERSION,
            machine: Machine::this(),
            timestamp,
            options,
            results,
            recommendation,
            interrupted,
        }
    }
}

/// The progress display: a bar on a TTY that moves within a step, one
/// plain line per step otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    state: Arc<Mutex<Phase>>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// Where the sweep is: step, phase, and when the phase started.
struct Phase {
    label: String,
    measuring: bool,
    step: usize,
    steps: usize,
    since: Instant,
}

impl Progress {
    fn new(options: &BenchOptions) -> Progress {
        let steps = if options.connect.is_some() {
            1
        } else {
            options.workers.len()
        };
        let state = Arc::new(Mutex::new(Phase {
            label: String::new(),
            measuring: false,
            step: 0,
            steps,
            since: Instant::now(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (warmup, duration) = (options.warmup, options.duration);
        let step_ms = (warmup + duration).as_millis().max(1) as u64;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(step_ms * steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:30} {msg} [{elapsed}, about {eta} to go]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        // The bar's position and message follow the clock within a step.
        let ticker = bar.clone().and_then(|bar| {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("bench-progress".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        {
                            let phase = state.lock();
                            let elapsed = phase.since.elapsed();
                            let (done_in_step, left) = if phase.measuring {
                                (
                                    warmup + elapsed.min(duration),
                                    duration.saturating_sub(elapsed),
                                )
                            } else {
                                (
                                    elapsed.min(warmup),
                                    warmup.saturating_sub(elapsed) + duration,
                                )
                            };
                            bar.set_position(
                                phase.step as u64 * step_ms + done_in_step.as_millis() as u64,
                            );
                            bar.set_message(format!(
                                "step {}/{} {}: {} ({:.1} s left in the step)",
                                phase.step + 1,
                                phase.steps,
                                phase.label,
                                if phase.measuring {
                                    "measuring"
                                } else {
                                    "warming up"
                                },
                                left.as_secs_f64()
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .ok()
        });
        Progress {
            bar,
            state,
            ticker,
            stop,
        }
    }

    fn event(&self, event: &Event<'_>) {
        match *event {
            Event::Warmup {
                step,
                steps,
                workers,
            }
            | Event::Measure {
                step,
                steps,
                workers,
            } => {
                let mut phase = self.state.lock();
                phase.label = label(workers);
                phase.measuring = matches!(event, Event::Measure { .. });
                phase.step = step;
                phase.steps = steps;
                phase.since = Instant::now();
            }
            Event::Done(point) => {
                let line = format!(
                    "{}: {} req/s, p99 {}, served {}/{}, {} errors",
                    label(point.workers),
                    human_rate(point.requests_per_sec),
                    human_us(point.p99_us as f64),
                    point.clients_served,
                    point.clients,
                    point.errors
                );
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("bench: {line}"),
                }
            }
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn label(workers: Option<usize>) -> String {
    workers.map_or("external server".to_owned(), |w| format!("workers={w}"))
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}

/// The human-readable table, the recommendation and Little's law.
pub fn table(
    options: &BenchOptions,
    points: &[BenchPoint],
    rec: Option<&Recommendation>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7} {:>7} {:>10} {:>9} {:>6} {:>7}",
        "workers",
        "offered",
        "req/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "served",
        "busy",
        "errors",
        "qwait p99",
        "svc p99",
        "util",
        "cpu s"
    );
    for p in points {
        let server = p.server.as_ref();
        let _ = writeln!(
            out,
            "{:>8} {:>9} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7} {:>7} {:>10} {:>9} {:>6} {:>7}",
            p.workers.map_or("ext".to_owned(), |w| w.to_string()),
            p.offered_rps.map_or("-".to_owned(), |r| format!("{r:.0}")),
            p.requests_per_sec,
            p.p50_us,
            p.p90_us,
            p.p99_us,
            p.p999_us,
            p.max_us,
            format!("{}/{}", p.clients_served, p.clients),
            p.busy,
            p.errors,
            opt(server.map(|s| s.queue_wait.p99_us)),
            opt(server.map(|s| s.service.p99_us)),
            server.map_or("-".to_owned(), |s| format!("{:.0}%", 100.0 * s.utilisation)),
            p.server_cpu_seconds
                .map_or("-".to_owned(), |c| format!("{c:.2}"))
        );
    }
    if points.iter().any(|p| p.server.is_some()) {
        let _ = writeln!(
            out,
            "\n(qwait, svc: the server's queue wait and service time, from its 1-2.5-5 buckets; \
             util: busy workers / pool)"
        );
    }
    if points.iter().any(|p| p.idle.is_some()) {
        let _ = writeln!(
            out,
            "\nidle clients (PONG latency from each PING's scheduled time):"
        );
        for p in points {
            if let Some(idle) = p.idle {
                let _ = writeln!(
                    out,
                    "  idle at {}: {} PONGs, {} missed; p50 {} us, p99 {} us, max {} us",
                    label(p.workers),
                    idle.pongs,
                    idle.missed,
                    idle.latency.p50_us,
                    idle.latency.p99_us,
                    idle.latency.max_us
                );
            }
        }
    }
    match rec {
        Some(Recommendation {
            workers: Some(workers),
            requests_per_sec,
            p99_us,
            reason,
            ..
        }) => {
            let _ = writeln!(
                out,
                "\nrecommendation: --workers {workers} ({} req/s, p99 {} us)\n  why: {reason}",
                human_rate(requests_per_sec.unwrap_or_default()),
                opt(*p99_us)
            );
        }
        Some(rec) => {
            let _ = writeln!(out, "\nrecommendation: none\n  why: {}", rec.reason);
        }
        None => {}
    }
    let law: Vec<String> = points
        .iter()
        .filter_map(|p| {
            let workers = p.workers?;
            let expected = bench::littles_law(options, workers)?;
            let mut line = format!(
                "  workers={:<4} expected {:>9.0} req/s, measured {:>9.0} req/s ({:.0}%)",
                workers,
                expected,
                p.requests_per_sec,
                100.0 * p.requests_per_sec / expected
            );
            if let (Some(busy), Some(server)) = (bench::expected_busy(options, workers), p.server) {
                let _ = write!(
                    line,
                    "; busy workers expected {busy:.1}, measured {:.1}",
                    server.busy_workers
                );
            }
            Some(line)
        })
        .collect();
    if !law.is_empty() {
        // CPU-bound work runs at most one request per core at a time.
        let rule = match (options.rate.is_some(), options.spin.is_zero()) {
            (true, true) => "min(rate, workers / service time); busy workers = rate x service time",
            (true, false) => {
                "min(rate, min(workers, cpus) / service time); busy workers = rate x service time"
            }
            (false, true) => "min(clients, workers) / service time",
            (false, false) => "min(clients, workers, cpus) / service time",
        };
        let _ = writeln!(out, "\nLittle's law ({rule}) against measured:");
        for line in law {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "workers",
    "requests",
    "seconds",
    "requests_per_sec",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "clients_served",
    "busy",
    "errors",
    "server_cpu_seconds",
    "clients",
    "offered_rps",
    "queue_wait_p50_us",
    "queue_wait_p99_us",
    "queue_wait_max_us",
    "service_p50_us",
    "service_p99_us",
    "service_max_us",
    "service_mean_us",
    "busy_workers",
    "utilisation",
    "rests_per_request",
    "wakeups_per_request",
    "rejected_max_connections",
    "rejected_queue_full",
    "rejected_queue_deadline",
    "idle_pongs",
    "idle_missed",
    "idle_p99_us",
    "version",
    "cpus",
    "kernel",
    "timestamp",
];

/// One row per point, with a header; empty fields where a figure is not
/// known.
fn csv(report: &JsonReport<'_>) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    let f = |v: Option<f64>, digits: usize| v.map_or(String::new(), |v| format!("{v:.digits$}"));
    let u = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for p in report.results {
        let s = p.server.as_ref();
        let idle = p.idle.as_ref();
        let fields = [
            p.workers.map_or(String::new(), |w| w.to_string()),
            p.requests.to_string(),
            format!("{:.3}", p.seconds),
            format!("{:.1}", p.requests_per_sec),
            p.p50_us.to_string(),
            p.p90_us.to_string(),
            p.p99_us.to_string(),
            p.p999_us.to_string(),
            p.max_us.to_string(),
            p.clients_served.to_string(),
            p.busy.to_string(),
            p.errors.to_string(),
            f(p.server_cpu_seconds, 3),
            p.clients.to_string(),
            f(p.offered_rps, 1),
            u(s.map(|s| s.queue_wait.p50_us)),
            u(s.map(|s| s.queue_wait.p99_us)),
            u(s.map(|s| s.queue_wait.max_us)),
            u(s.map(|s| s.service.p50_us)),
            u(s.map(|s| s.service.p99_us)),
            u(s.map(|s| s.service.max_us)),
            f(s.map(|s| s.service_mean_us), 1),
            f(s.map(|s| s.busy_workers), 2),
            f(s.map(|s| s.utilisation), 3),
            f(s.and_then(|s| s.rests_per_request), 3),
            f(s.and_then(|s| s.wakeups_per_request), 3),
            u(s.map(|s| s.rejected.max_connections)),
            u(s.map(|s| s.rejected.queue_full)),
            u(s.map(|s| s.rejected.queue_deadline)),
            u(idle.map(|i| i.pongs)),
            u(idle.map(|i| i.missed)),
            u(idle.map(|i| i.latency.p99_us)),
            report.version.to_owned(),
            report.machine.cpus.to_string(),
            // A kernel release has no comma; make sure.
            report.machine.kernel.replace(',', ";"),
            report.timestamp.clone(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}
