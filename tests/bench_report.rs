//! The sizing report of `wharf bench`: the recommendation with and without
//! a p99 target (on synthetic points, and on a real in-process sweep whose
//! answer Little's law gives), flag combinations refused before measuring,
//! and Ctrl-C keeping the points measured so far.
//!
//! Bounds are generous: only the structure of the output and answers with
//! wide margins are asserted, never speed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wharf::bench::{recommend, sweep, BenchOptions, BenchPoint, Event, ServerFigures};

fn point(workers: usize, rps: f64, p99_us: u64) -> BenchPoint {
    BenchPoint {
        workers: Some(workers),
        requests: (rps * 2.0) as u64,
        seconds: 2.0,
        requests_per_sec: rps,
        p50_us: 1,
        p90_us: 1,
        p99_us,
        p999_us: 1,
        max_us: 1,
        clients_served: 4,
        busy: 0,
        errors: 0,
        server_cpu_seconds: None,
        clients: 4,
        offered_rps: None,
        idle: None,
        server: None,
        tls: None,
        first_error: None,
    }
}

fn open(workers: usize, offered: f64, rps: f64, p99_us: u64) -> BenchPoint {
    BenchPoint {
        offered_rps: Some(offered),
        server: Some(ServerFigures {
            service_mean_us: 1_000.0,
            busy_workers: (offered / 1_000.0).min(workers as f64),
            ..ServerFigures::default()
        }),
        ..point(workers, rps, p99_us)
    }
}

#[test]
fn a_target_picks_the_smallest_pool_that_meets_it_at_the_offered_rate() {
    let points = [
        open(8, 20_000.0, 8_000.0, 900_000),  // did not keep up
        open(16, 20_000.0, 19_900.0, 50_000), // kept up, p99 too high
        open(24, 20_000.0, 19_950.0, 1_500),  // meets 2 ms
        open(32, 20_000.0, 19_960.0, 1_200),  // meets it too, larger
    ];
    let rec = recommend(&points, Some(Duration::from_millis(2))).unwrap();
    assert_eq!(rec.workers, Some(24), "{rec:?}");
    assert_eq!(rec.target_p99_us, Some(2_000));
    assert!(rec.reason.contains("20,000 req/s"), "{}", rec.reason);
    assert!(rec.reason.contains("1 ms in the service"), "{}", rec.reason);
    assert!(
        rec.reason.contains("20.0 workers are busy"),
        "{}",
        rec.reason
    );
    assert!(
        rec.reason.contains("16 workers: p99 50 ms"),
        "{}",
        rec.reason
    );

    // Nothing meets 1 ms: no recommendation, and the reason names the best.
    let rec = recommend(&points, Some(Duration::from_millis(1))).unwrap();
    assert_eq!(rec.workers, None);
    assert!(
        rec.reason.contains("32 workers, had p99 1.2 ms"),
        "{}",
        rec.reason
    );
}

#[test]
fn a_saturated_pool_is_not_recommended_however_good_its_p99() {
    let saturated = |workers, p99| {
        let mut p = open(workers, 4_000.0, 3_990.0, p99);
        if let Some(server) = p.server.as_mut() {
            server.utilisation = server.busy_workers / workers as f64;
        }
        p
    };
    // 4 workers at 4,000 req/s x 1 ms are busy all the time.
    let points = [saturated(4, 1_500), saturated(8, 1_600)];
    assert!(!points[0].kept_up());
    assert!(points[0].shortfall().unwrap().contains("saturated"));
    let rec = recommend(&points, Some(Duration::from_millis(2))).unwrap();
    assert_eq!(rec.workers, Some(8), "{rec:?}");
}

#[test]
fn without_a_target_a_pool_that_left_work_unserved_is_never_recommended() {
    // 2 workers match the best throughput but served only 2 of 4 clients.
    let mut starved = point(2, 1_000.0, 10);
    starved.clients_served = 2;
    let points = [point(1, 500.0, 10), starved, point(4, 990.0, 10)];
    let rec = recommend(&points, None).unwrap();
    assert_eq!(rec.workers, Some(4), "{rec:?}");
    assert!(
        rec.reason.contains("2 workers: served only 2/4 clients"),
        "{}",
        rec.reason
    );

    // An offered rate not met (below 95%) disqualifies too.
    let points = [open(1, 1_000.0, 900.0, 10), open(2, 1_000.0, 990.0, 10)];
    assert_eq!(recommend(&points, None).unwrap().workers, Some(2));
    let points = [open(1, 1_000.0, 900.0, 10)];
    let rec = recommend(&points, None).unwrap();
    assert_eq!(rec.workers, None);
    assert!(
        rec.reason.contains("served 900 of the 1,000 req/s"),
        "{}",
        rec.reason
    );
}

/// Little's law: 400 req/s of 10 ms requests keep 4 workers busy on
/// average, so 4 workers run at 100% (the queue grows without bound in an
/// open loop; 16 closed-loop clients wait 4 deep, ~40 ms) and miss a 30 ms
/// p99, while 8 run at ~50% and meet it with a wide margin. 1 and 2 cannot
/// serve 400 req/s at all.
#[test]
fn a_delay_sweep_recommends_what_littles_law_predicts() {
    let options = BenchOptions {
        workers: vec![1, 2, 4, 8, 16],
        delay: Duration::from_millis(10),
        clients: 16,
        rate: Some(400.0),
        target_p99: Some(Duration::from_millis(30)),
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(800),
        ..BenchOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let mut measures = 0;
    let points = sweep(&options, &cancel, |event| {
        if let Event::Measure { .. } = event {
            measures += 1;
        }
    })
    .expect("the sweep runs");
    assert_eq!(points.len(), 5);
    assert_eq!(measures, 5);
    for p in &points {
        let server = p.server.expect("in-process figures");
        assert!(server.service_mean_us > 9_000.0, "{p:?}");
        assert!((0.0..=1.01).contains(&server.utilisation), "{p:?}");
        assert!(p.server_cpu_seconds.is_some(), "{p:?}");
    }
    // 1 and 2 workers are saturated: (nearly) all busy. So is 4: Little's
    // law puts 400 req/s x 10 ms = 4 workers busy on average, and a pool
    // busy all the time has a line that only grows.
    let small = points[0].server.unwrap();
    assert!(small.utilisation > 0.8, "{:?}", points[0]);
    assert!(!points[2].kept_up(), "{:?}", points[2]);
    let rec = recommend(&points, options.target_p99).expect("pool sizes measured");
    let table: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{:?}: {:.0} req/s p99 {} us",
                p.workers, p.requests_per_sec, p.p99_us
            )
        })
        .collect();
    assert!(
        matches!(rec.workers, Some(8) | Some(16)),
        "{rec:?}\n{}",
        table.join("\n")
    );
    assert!(rec.reason.contains("400 req/s"), "{}", rec.reason);
}

// ---------------------------------------------------------------------------
// The binary: refused before measuring, Ctrl-C.

fn temp(name: &str) -> std::path::PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "wharf-bench-report-{}-{nanos}-{name}",
        std::process::id()
    ))
}

/// Runs `wharf bench <args>` that must be refused quickly.
fn refused(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf bench starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: still running: it measured instead of refusing");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    (status.code(), stdout, stderr)
}

#[test]
fn bad_combinations_and_paths_exit_2_before_measuring() {
    let png = temp("plot.png");
    let png = png.to_str().unwrap();
    let missing_dir = temp("no-such-dir").join("out.csv");
    let missing_dir = missing_dir.to_str().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (&["--connect", "127.0.0.1:1", "--workers", "4"], "--workers"),
        (&["--connect", "127.0.0.1:1", "--plot", "x.svg"], "--plot"),
        (
            &["--metrics-url", "http://127.0.0.1:1/metrics"],
            "--connect",
        ),
        (
            &[
                "--connect",
                "127.0.0.1:1",
                "--metrics-url",
                "https://127.0.0.1:1/metrics",
            ],
            "http://",
        ),
        (&["--target-p99", "5ms"], "--rate"),
        // Open loop sends each request on its schedule: --pipeline would be
        // ignored, so it is refused.
        (&["--rate", "100", "--pipeline", "4"], "--pipeline"),
        (&["--plot", png], ".svg"),
        (&["--csv", missing_dir], "cannot write"),
        (&["--payload", "1MiB"], "max frame"),
    ];
    for (args, says) in cases {
        let long = [args, &["--duration", "60s"][..]].concat();
        let (code, stdout, stderr) = refused(&long);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should mention {says}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    assert!(!std::path::Path::new(png).exists(), "no PNG written");
}

#[test]
fn an_unreachable_server_is_named_with_the_cause() {
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let (code, _, stderr) = refused(&["--connect", &addr, "--duration", "60s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to {addr}")),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_reports_the_points_measured_so_far() {
    let json = temp("interrupted.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["bench", "--workers", "1,2,4", "--clients", "2"])
        .args(["--warmup", "50ms", "--duration", "1500ms", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf bench starts");
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Without a TTY, one line per measured point.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let first = line.starts_with("bench: workers=1:");
                seen.push(line);
                if first {
                    break;
                }
            }
            Err(_) if Instant::now() < deadline => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no first point within 60 s: {seen:?}");
            }
        }
    }
    // SAFETY: kill(2) on the child this test started, by its PID.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 30 s after Ctrl-C");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let mut stdout = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("workers"), "the table is printed: {stdout}");
    let text = std::fs::read_to_string(&json).expect("JSON written");
    let _ = std::fs::remove_file(&json);
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON parses");
    assert_eq!(report["interrupted"], true, "{text}");
    let results = report["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() < 3, "{text}");
    assert_eq!(results[0]["workers"], 1, "{text}");
}
