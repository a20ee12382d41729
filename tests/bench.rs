//! `wharf bench` through the real binary (a tiny sweep: table, CSV, JSON,
//! SVG, the Little's-law lines with `--delay`) and `wharf::bench::recommend`
//! on synthetic points.
//!
//! Nothing here asserts on speed: only on the structure of the output and on
//! counts being non-zero. Output files go to the temporary directory under
//! unique names and are removed afterwards, even when a test fails.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wharf::bench::{littles_law, recommend, BenchOptions, BenchPoint};

/// The longest a bench run may take before it is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// The first CSV columns, as documented by the bench subcommand (more
/// follow them).
const CSV_HEADER: &str = "workers,requests,seconds,requests_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,clients_served,busy,errors,server_cpu_seconds";

/// Files in the temporary directory, removed on drop.
struct TempFiles(Vec<PathBuf>);

impl TempFiles {
    fn new(names: &[&str]) -> TempFiles {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = format!(
            "wharf-bench-test-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        TempFiles(
            names
                .iter()
                .map(|name| std::env::temp_dir().join(format!("{unique}-{name}")))
                .collect(),
        )
    }

    fn path(&self, i: usize) -> &str {
        self.0[i].to_str().expect("temporary path is UTF-8")
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A child killed by PID if still running when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `wharf bench <args>`, waiting at most DEADLINE.
fn bench(args: &[&str]) -> Run {
    let mut guard = Guard(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("bench")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wharf bench starts"),
    );
    let mut out = guard.0.stdout.take().unwrap();
    let mut err = guard.0.stderr.take().unwrap();
    let stdout = thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = guard.0.kill();
            let _ = guard.0.wait();
            panic!("wharf bench still running after {DEADLINE:?}; killed");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

#[test]
fn tiny_sweep_writes_table_csv_json_and_svg() {
    let files = TempFiles::new(&["out.csv", "out.json", "out.svg"]);
    let run = bench(&[
        "--workers",
        "1,2",
        "--clients",
        "2",
        "--warmup",
        "50ms",
        "--duration",
        "300ms",
        "--csv",
        files.path(0),
        "--json",
        files.path(1),
        "--plot",
        files.path(2),
    ]);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.status.code(), Some(0), "{context}");

    // The table: a header row, one row per pool size, the recommendation.
    let mut lines = run.stdout.lines();
    let header = lines.next().expect("a table header");
    for column in ["workers", "req/s", "p50 us", "p99 us", "errors"] {
        assert!(header.contains(column), "{column} in {header:?}");
    }
    let rows: Vec<Vec<&str>> = lines
        .clone()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{context}");
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[1][0], "2");
    let recommendation = run
        .stdout
        .lines()
        .find(|l| l.starts_with("recommendation:"))
        .unwrap_or_else(|| panic!("a recommendation line; {context}"));
    assert!(run.stdout.contains("  why: "), "{context}");
    assert!(
        recommendation.starts_with("recommendation: --workers 1 ")
            || recommendation.starts_with("recommendation: --workers 2 "),
        "{recommendation}"
    );
    // No --delay: no Little's law section.
    assert!(!run.stdout.contains("Little's law"), "{context}");

    // CSV: the documented header and exactly two rows.
    let csv = std::fs::read_to_string(files.path(0)).expect("CSV written");
    let mut csv_lines = csv.lines();
    let header = csv_lines.next().expect("a CSV header");
    assert!(header.starts_with(CSV_HEADER), "{header}");
    for column in [
        "offered_rps",
        "queue_wait_p99_us",
        "utilisation",
        "version",
        "kernel",
    ] {
        assert!(
            header.split(',').any(|c| c == column),
            "{column} in {header}"
        );
    }
    let columns: Vec<&str> = header.split(',').collect();
    let csv_rows: Vec<Vec<&str>> = csv_lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(csv_rows.len(), 2, "{csv}");
    for (row, workers) in csv_rows.iter().zip(["1", "2"]) {
        assert_eq!(row.len(), columns.len(), "{row:?}");
        let field = |name: &str| row[columns.iter().position(|c| *c == name).unwrap()];
        assert_eq!(field("workers"), workers);
        let requests: u64 = field("requests").parse().unwrap();
        assert!(requests > 0, "{row:?}");
        let rps: f64 = field("requests_per_sec").parse().unwrap();
        assert!(rps > 0.0, "{row:?}");
        let seconds: f64 = field("seconds").parse().unwrap();
        assert!(seconds > 0.0, "{row:?}");
        assert_eq!(field("errors"), "0", "{row:?}");
        let served: usize = field("clients_served").parse().unwrap();
        assert!((1..=2).contains(&served), "{row:?}");
        // In-process servers: CPU time is measured.
        let cpu: f64 = field("server_cpu_seconds").parse().unwrap();
        assert!(cpu >= 0.0, "{row:?}");
        for name in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "busy"] {
            field(name)
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name} is a count: {row:?}"));
        }
    }

    // JSON: options, two results and a recommendation among them.
    let text = std::fs::read_to_string(files.path(1)).expect("JSON written");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON parses");
    let results = json["results"].as_array().expect("results array");
    assert_eq!(results.len(), 2, "{text}");
    for (result, workers) in results.iter().zip([1, 2]) {
        assert_eq!(result["workers"], workers, "{result}");
        assert!(result["requests"].as_u64().unwrap() > 0, "{result}");
        assert!(
            result["requests_per_sec"].as_f64().unwrap() > 0.0,
            "{result}"
        );
        assert_eq!(result["errors"], 0, "{result}");
    }
    let recommended = json["recommendation"]["workers"]
        .as_u64()
        .expect("recommendation.workers");
    assert!(recommended == 1 || recommended == 2, "{text}");
    assert!(
        json["recommendation"]["reason"].as_str().is_some(),
        "{text}"
    );
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"), "{text}");
    // The commit, as `wharf --version` names it (a checkout has one).
    let long = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("--version")
        .output()
        .expect("wharf --version");
    let long = String::from_utf8_lossy(&long.stdout);
    match json["commit"].as_str() {
        Some(commit) => assert!(long.contains(commit), "{long} / {text}"),
        None => assert!(json["commit"].is_null(), "{text}"),
    }
    // Options are named as their flags are.
    let options = json["options"].as_object().expect("options");
    assert!(options.contains_key("reconnect_every"), "{text}");
    assert!(options.contains_key("metrics_url"), "{text}");
    assert!(!options.contains_key("batches_per_connection"), "{text}");
    assert!(!options.contains_key("metrics"), "{text}");
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1, "{text}");
    assert!(json["machine"]["kernel"].is_string(), "{text}");
    assert!(json["timestamp"].as_str().unwrap().ends_with('Z'), "{text}");
    // Durations in seconds, not {secs, nanos}.
    assert_eq!(json["options"]["duration"].as_f64(), Some(0.3), "{text}");
    for result in results {
        let server = &result["server"];
        assert!(server["utilisation"].as_f64().is_some(), "{result}");
        assert!(
            server["queue_wait"]["p99_us"].as_u64().is_some(),
            "{result}"
        );
        assert!(server["service"]["p99_us"].as_u64().is_some(), "{result}");
        assert!(
            server["rejected"]["queue_full"].as_u64().is_some(),
            "{result}"
        );
    }
    assert_eq!(json["options"]["clients"], 2, "{text}");
    assert_eq!(
        json["options"]["workers"],
        serde_json::json!([1, 2]),
        "{text}"
    );

    // SVG: a drawing with text labels and a line.
    let svg = std::fs::read_to_string(files.path(2)).expect("SVG written");
    let start = svg.trim_start();
    assert!(
        start.starts_with("<svg") || start.starts_with("<?xml"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.contains("<text"), "text labels in the SVG");
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "a line in the SVG"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "a complete SVG");
    assert!(
        svg.contains("wharf bench: throughput and latency by pool size"),
        "the title in the SVG"
    );
    assert!(svg.contains("(µs)"), "latency in µs");
    assert!(
        svg.contains("log scale"),
        "the latency axis says it is logarithmic"
    );
    assert!(
        svg.contains("server: queue wait p99") && svg.contains("not stacked"),
        "the legend says what the bars show"
    );
}

/// Idle clients' PONG latency is reported on its own, per pool size.
#[test]
fn idle_clients_are_reported_apart() {
    let run = bench(&[
        "--workers",
        "1,2",
        "--clients",
        "2",
        "--idle",
        "20",
        "--idle-ping",
        "100ms",
        "--warmup",
        "50ms",
        "--duration",
        "500ms",
    ]);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.status.code(), Some(0), "{context}");
    assert!(
        run.stdout.contains("idle clients (PONG latency"),
        "{context}"
    );
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("idle at workers="))
        .collect();
    assert_eq!(lines.len(), 2, "{context}");
    for line in lines {
        // 20 clients PINGing every 100 ms for 500 ms: about 100 PONGs.
        let pongs: u64 = line
            .split(": ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no PONG count in {line:?}"));
        assert!((50..=150).contains(&pongs), "{line}");
    }
}

/// CPU-bound work: Little's law is capped by the cores, and says so.
#[test]
fn spin_run_caps_littles_law_at_the_cores() {
    let run = bench(&[
        "--workers",
        "1,4",
        "--clients",
        "8",
        "--spin",
        "100us",
        "--warmup",
        "50ms",
        "--duration",
        "300ms",
    ]);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.status.code(), Some(0), "{context}");
    assert!(
        run.stdout.contains(
            "Little's law (min(clients, workers, cpus) / service time) against measured:"
        ),
        "{context}"
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = 4.min(cpus) * 10_000; // min(8, 4, cpus) / 100 us
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("workers=4 "))
        .unwrap_or_else(|| panic!("no Little's law line for 4 workers: {context}"));
    assert!(
        line.contains(&format!("expected {:>9} req/s", expected)),
        "{line}"
    );
}

#[test]
fn delay_run_prints_littles_law_lines() {
    let run = bench(&[
        "--workers",
        "1,2",
        "--clients",
        "2",
        "--delay",
        "5ms",
        "--warmup",
        "50ms",
        "--duration",
        "300ms",
    ]);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.status.code(), Some(0), "{context}");
    assert!(run.stdout.contains("recommendation:"), "{context}");
    assert!(
        run.stdout
            .contains("Little's law (min(clients, workers) / service time) against measured:"),
        "{context}"
    );
    // min(2, 1) / 5 ms = 200 req/s and min(2, 2) / 5 ms = 400 req/s: computed,
    // not measured.
    let law: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("workers="))
        .collect();
    assert_eq!(law.len(), 2, "{context}");
    for (line, (workers, expected)) in law.iter().zip([(1, 200), (2, 400)]) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], format!("workers={workers}"), "{line}");
        assert_eq!(words[1], "expected", "{line}");
        assert_eq!(words[2], expected.to_string(), "{line}");
        assert!(line.contains("req/s, measured "), "{line}");
        assert!(line.trim_end().ends_with("%)"), "{line}");
    }
}

#[test]
fn bad_bench_flags_exit_2() {
    for args in [
        &["--clients", "0"][..],
        &["--duration", "0"][..],
        &["--workers", "x"][..],
        &["--workers", "0"][..],
        &["--workers", "1,0"][..],
        &["--rate", "0"][..],
        &["--rate", "-5"][..],
        &["--payload", "2MiB"][..],
        &["--idle-ping", "0"][..],
    ] {
        let run = bench(args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
}

// ---------------------------------------------------------------------------
// The library: recommend and Little's law on synthetic points.

fn point(workers: Option<usize>, rps: f64, p99_us: u64) -> BenchPoint {
    BenchPoint {
        workers,
        requests: (rps * 2.0) as u64,
        seconds: 2.0,
        requests_per_sec: rps,
        p50_us: 1,
        p90_us: 1,
        p99_us,
        p999_us: 1,
        max_us: 1,
        clients_served: 1,
        busy: 0,
        errors: 0,
        first_error: None,
        server_cpu_seconds: None,
        clients: 1,
        offered_rps: None,
        idle: None,
        server: None,
        tls: None,
    }
}

#[test]
fn recommend_picks_the_smallest_pool_within_5_percent_of_the_best() {
    let points = [
        point(Some(1), 100.0, 10),
        point(Some(2), 951.0, 20),
        point(Some(4), 1000.0, 40),
        point(Some(8), 990.0, 80),
    ];
    let rec = recommend(&points, None).expect("a recommendation");
    assert_eq!(rec.workers, Some(2));
    assert_eq!(rec.requests_per_sec, Some(951.0));
    assert_eq!(rec.p99_us, Some(20));
    assert_eq!(rec.best_requests_per_sec, 1000.0);

    // Just outside 5%: the best one.
    let points = [point(Some(2), 949.0, 20), point(Some(4), 1000.0, 40)];
    assert_eq!(recommend(&points, None).unwrap().workers, Some(4));
}

#[test]
fn recommend_does_not_depend_on_order_and_prefers_the_smaller_on_a_tie() {
    let points = [
        point(Some(16), 500.0, 1),
        point(Some(8), 500.0, 2),
        point(Some(1), 10.0, 3),
    ];
    let rec = recommend(&points, None).unwrap();
    assert_eq!(rec.workers, Some(8));
    assert_eq!(rec.p99_us, Some(2));
}

#[test]
fn recommend_has_nothing_to_say_without_pool_sizes_or_throughput() {
    assert!(recommend(&[], None).is_none());
    // An external server has no pool size to recommend.
    assert!(recommend(&[point(None, 1000.0, 1)], None).is_none());
    // Nothing got through: no pool to recommend, and the reason says so.
    let none = recommend(&[point(Some(1), 0.0, 1), point(Some(2), 0.0, 1)], None).unwrap();
    assert_eq!(none.workers, None);
    assert!(none.reason.contains("no pool"), "{}", none.reason);
    // A single measured pool is its own recommendation.
    assert_eq!(
        recommend(&[point(Some(3), 7.0, 1)], None).unwrap().workers,
        Some(3)
    );
}

/// An external server (`--connect`) with `--target-p99`: no pool to
/// recommend, but a verdict on the target.
#[test]
fn an_external_server_gets_a_verdict_on_the_target() {
    let target = Some(Duration::from_millis(5));
    let met = recommend(&[point(None, 1000.0, 800)], target).expect("a verdict");
    assert_eq!(met.workers, None);
    assert!(met.reason.starts_with("met:"), "{}", met.reason);
    let missed = recommend(&[point(None, 1000.0, 9_000)], target).expect("a verdict");
    assert!(missed.reason.starts_with("not met:"), "{}", missed.reason);
    let mut short = point(None, 10.0, 800);
    short.offered_rps = Some(1000.0);
    let short = recommend(&[short], target).expect("a verdict");
    assert!(short.reason.contains("did not keep up"), "{}", short.reason);
}

#[test]
fn littles_law_is_min_of_clients_and_workers_over_delay() {
    let options = BenchOptions {
        clients: 2,
        delay: Duration::from_millis(5),
        ..BenchOptions::default()
    };
    assert_eq!(littles_law(&options, 1), Some(200.0));
    assert_eq!(littles_law(&options, 2), Some(400.0));
    assert_eq!(littles_law(&options, 64), Some(400.0));
    let no_delay = BenchOptions {
        delay: Duration::ZERO,
        ..options
    };
    assert_eq!(littles_law(&no_delay, 1), None);
}
