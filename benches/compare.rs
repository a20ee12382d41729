//! wharf against two competent peers under the same closed-loop load: a
//! plain thread-per-connection `std` server and a tokio server, both written
//! here and speaking wharf's length framing. Run with
//! `cargo bench --bench compare`.
//!
//! Every point starts a fresh server on 127.0.0.1:0 in this process, drives
//! it with `wharf::bench::load` (closed-loop client threads that verify every
//! echoed byte), and stops it. Within a round the servers are interleaved
//! (wharf, std, tokio for scenario a, then b, ...) so slow drift of the
//! machine hits all three alike; the table reports the median over rounds.
//!
//! `WHARF_COMPARE_SECS` sets the measured window per point (default 2;
//! the warm-up is a quarter of it, at most 0.5 s) and
//! `WHARF_COMPARE_ROUNDS` the number of rounds (default 3);
//! `WHARF_COMPARE_ONLY=ab` runs only the scenarios whose letters it names.
//! The table goes
//! to stdout and to `target/compare.md`; any error reported by the load
//! generator is printed and makes the process exit 1.

use std::fmt::Write as _;
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wharf::bench::{load, BenchOptions, BenchPoint};
use wharf::frame::{DATA, ERROR, HEADER_LEN, PING, PONG};
use wharf::{Config, Echo, Server};

/// Largest frame (kind byte plus payload) the peers accept, as wharf's default.
const MAX_FRAME: usize = 1024 * 1024;
/// Read buffer of the peers.
const READ_BUF: usize = 64 * 1024;
/// Write buffer of the peers: a 64 KiB response plus its header goes out in
/// one write.
const WRITE_BUF: usize = 128 * 1024;
/// Connections per 1 ms in scenario g, for Little's law.
const DELAY_CLIENTS: usize = 64;

// ---------------------------------------------------------------------------
// The shared protocol logic of both peers.

/// The reply to one frame: DATA echoes, PING gets PONG, anything else ERROR.
fn reply(kind: u8, payload: &[u8]) -> (u8, &[u8]) {
    match kind {
        DATA => (DATA, payload),
        PING => (PONG, payload),
        _ => (ERROR, b"unexpected frame kind"),
    }
}

fn header(kind: u8, payload_len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(payload_len + 1).expect("frame fits in u32");
    let [a, b, c, d] = len.to_be_bytes();
    [a, b, c, d, kind]
}

/// The frame length announced by a header, if it is acceptable.
fn frame_len(header: &[u8; HEADER_LEN]) -> io::Result<usize> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(ErrorKind::InvalidData, "bad frame length"));
    }
    Ok(len)
}

/// Whether `buffered` starts with a whole frame, i.e. another reply will be
/// produced without reading the socket, so the writer need not flush yet.
fn whole_frame_buffered(buffered: &[u8]) -> bool {
    match buffered.get(..4) {
        Some(h) => {
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            buffered.len() >= 4 + len
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------
// The thread-per-connection std server.

struct StdServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl StdServer {
    fn start(delay: Duration) -> io::Result<StdServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::Builder::new()
            .name("std-acceptor".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || std_accept_loop(&listener, &stop, delay)
            })?;
        Ok(StdServer {
            addr,
            stop,
            acceptor,
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept(); it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let conns = self.acceptor.join().unwrap_or_default();
        for (stream, thread) in conns {
            // The clients have closed already; this only ends a straggler.
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

/// Accepts until the stop flag is set; returns the connections still open.
fn std_accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    delay: Duration,
) -> Vec<(TcpStream, JoinHandle<()>)> {
    let mut conns: Vec<(TcpStream, JoinHandle<()>)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let spawned = std::thread::Builder::new()
            .name("std-conn".into())
            .spawn(move || {
                let _ = std_serve(stream, delay);
            });
        if let Ok(thread) = spawned {
            conns.retain(|(_, t)| !t.is_finished());
            conns.push((handle, thread));
        }
    }
    conns
}

/// Serves one connection until the client closes it (or on an I/O error).
fn std_serve(stream: TcpStream, delay: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(READ_BUF, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(WRITE_BUF, stream);
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        match reader.read_exact(&mut head) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return writer.flush(),
            other => other?,
        }
        let len = frame_len(&head)?;
        payload.resize(len - 1, 0);
        reader.read_exact(&mut payload)?;
        let kind = head[4];
        if kind == DATA && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let (reply_kind, body) = reply(kind, &payload);
        writer.write_all(&header(reply_kind, body.len()))?;
        writer.write_all(body)?;
        if !whole_frame_buffered(reader.buffer()) {
            writer.flush()?;
        }
    }
}

// ---------------------------------------------------------------------------
// The tokio server.

struct TokioServer {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl TokioServer {
    fn start(delay: Duration) -> io::Result<TokioServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tokio-peer")
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            tokio::spawn(async move {
                                let _ = tokio_serve(stream, delay).await;
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                }
            }
        });
        Ok(TokioServer {
            addr,
            runtime,
            stop,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        // Drops every remaining task (the clients have closed already).
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Serves one connection until the client closes it (or on an I/O error).
async fn tokio_serve(mut stream: tokio::net::TcpStream, delay: Duration) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    stream.set_nodelay(true)?;
    let (read_half, write_half) = stream.split();
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUF, read_half);
    let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUF, write_half);
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        match reader.read_exact(&mut head).await {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return writer.flush().await,
            other => other?,
        };
        let len = frame_len(&head)?;
        payload.resize(len - 1, 0);
        reader.read_exact(&mut payload).await?;
        let kind = head[4];
        if kind == DATA && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (reply_kind, body) = reply(kind, &payload);
        writer.write_all(&header(reply_kind, body.len())).await?;
        writer.write_all(body).await?;
        if !whole_frame_buffered(reader.buffer()) {
            writer.flush().await?;
        }
    }
}

// ---------------------------------------------------------------------------
// Running the comparison.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wharf,
    Std,
    Tokio,
}

const KINDS: [Kind; 3] = [Kind::Wharf, Kind::Std, Kind::Tokio];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wharf => "wharf",
            Kind::Std => "std",
            Kind::Tokio => "tokio",
        }
    }
}

enum Running {
    Wharf(Server),
    Std(StdServer),
    Tokio(TokioServer),
}

impl Running {
    fn start(kind: Kind, delay: Duration) -> Result<Running, String> {
        let started = match kind {
            Kind::Wharf => {
                let config = Config {
                    workers: 64,
                    queue: 64,
                    ..Config::default()
                };
                let echo = Echo {
                    delay,
                    ..Echo::default()
                };
                Server::start("127.0.0.1:0", config, echo)
                    .map(Running::Wharf)
                    .map_err(|e| e.to_string())
            }
            Kind::Std => StdServer::start(delay)
                .map(Running::Std)
                .map_err(|e| e.to_string()),
            Kind::Tokio => TokioServer::start(delay)
                .map(Running::Tokio)
                .map_err(|e| e.to_string()),
        };
        started.map_err(|e| format!("cannot start the {} server: {e}", kind.name()))
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Running::Wharf(server) => server.local_addr(),
            Running::Std(server) => server.addr,
            Running::Tokio(server) => server.addr,
        }
    }

    fn stop(self) {
        match self {
            Running::Wharf(server) => {
                server.handle().shutdown();
                server.join();
            }
            Running::Std(server) => server.stop(),
            Running::Tokio(server) => server.stop(),
        }
    }
}

struct Scenario {
    label: &'static str,
    clients: usize,
    payload: usize,
    pipeline: usize,
    batches_per_connection: Option<usize>,
    delay: Duration,
    long_lived: bool,
}

fn scenarios() -> Vec<Scenario> {
    let base = |label, clients, payload| Scenario {
        label,
        clients,
        payload,
        pipeline: 1,
        batches_per_connection: None,
        delay: Duration::ZERO,
        long_lived: true,
    };
    vec![
        base("a) 1 conn, 64 B", 1, 64),
        base("b) 8 conns, 64 B", 8, 64),
        base("c) 64 conns, 64 B", 64, 64),
        Scenario {
            pipeline: 16,
            ..base("d) 8 conns, pipeline 16, 64 B", 8, 64)
        },
        base("e) 8 conns, 64 KiB", 8, 64 * 1024),
        Scenario {
            batches_per_connection: Some(1),
            long_lived: false,
            ..base("f) churn: 8 clients, connect-request-close, 64 B", 8, 64)
        },
        Scenario {
            delay: Duration::from_millis(1),
            ..base("g) 64 conns, 64 B, 1 ms delay", DELAY_CLIENTS, 64)
        },
    ]
}

struct Settings {
    rounds: usize,
    warmup: Duration,
    duration: Duration,
}

fn settings() -> Result<Settings, String> {
    let secs = match std::env::var("WHARF_COMPARE_SECS") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
            .ok_or_else(|| format!("WHARF_COMPARE_SECS={v:?}: want seconds in (0, 600]"))?,
        Err(_) => 2.0,
    };
    let rounds = match std::env::var("WHARF_COMPARE_ROUNDS") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|r| (1..=100).contains(r))
            .ok_or_else(|| format!("WHARF_COMPARE_ROUNDS={v:?}: want 1..=100"))?,
        Err(_) => 3,
    };
    Ok(Settings {
        rounds,
        warmup: Duration::from_secs_f64((secs / 4.0).min(0.5)),
        duration: Duration::from_secs_f64(secs),
    })
}

fn measure(kind: Kind, scenario: &Scenario, settings: &Settings) -> Result<BenchPoint, String> {
    let server = Running::start(kind, scenario.delay)?;
    let options = BenchOptions {
        clients: scenario.clients,
        payload: scenario.payload,
        pipeline: scenario.pipeline,
        batches_per_connection: scenario.batches_per_connection,
        warmup: settings.warmup,
        duration: settings.duration,
        ..BenchOptions::default()
    };
    let result = load(server.addr(), &options);
    server.stop();
    result.map_err(|e| format!("{}: {}: {e}", scenario.label, kind.name()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".into();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn machine() -> String {
    let nproc = std::process::Command::new("nproc")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or("?".into(), |n| n.get().to_string())
        });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/version")
        .ok()
        .map(|v| v.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown kernel".into());
    format!("Machine: nproc {nproc}, {cpu}, {kernel}")
}

/// Medians of one scenario: per server, throughput and p99.
struct Row {
    rps: [f64; 3],
    p99: [f64; 3],
    /// Lowest and highest throughput over the rounds.
    spread: [(f64, f64); 3],
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn table(scenarios: &[Scenario], rows: &[Row], settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Median of {} rounds; per point {:.1} s warm-up + {:.1} s measured, a fresh server each \
         time, servers interleaved within a round. Load: `wharf::bench::load` closed-loop \
         client threads in the same process, every echo verified. wharf: 64 workers, queue 64. \
         Throughput in requests/s, p99 latency in µs; ratios are wharf / peer (throughput: \
         higher is better for wharf; p99: lower is better for wharf).",
        settings.rounds,
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64(),
    );
    out.push('\n');
    out.push_str(
        "| scenario | wharf req/s | std req/s | tokio req/s | wharf/std | wharf/tokio \
         | wharf p99 µs | std p99 µs | tokio p99 µs | p99 wharf/std | p99 wharf/tokio |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (scenario, row) in scenarios.iter().zip(rows) {
        let [w, s, t] = row.rps;
        let [pw, ps, pt] = row.p99;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            scenario.label,
            thousands(w),
            thousands(s),
            thousands(t),
            ratio(w, s),
            ratio(w, t),
            thousands(pw),
            thousands(ps),
            thousands(pt),
            ratio(pw, ps),
            ratio(pw, pt),
        );
    }
    let _ = writeln!(
        out,
        "\nThroughput range over the {} rounds (lowest - highest req/s), to judge the noise:\n",
        settings.rounds
    );
    out.push_str("| scenario | wharf | std | tokio |\n|---|---:|---:|---:|\n");
    for (scenario, row) in scenarios.iter().zip(rows) {
        let range = |(lo, hi): (f64, f64)| format!("{} - {}", thousands(lo), thousands(hi));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            scenario.label,
            range(row.spread[0]),
            range(row.spread[1]),
            range(row.spread[2]),
        );
    }
    for (scenario, row) in scenarios.iter().zip(rows) {
        if scenario.delay.is_zero() {
            continue;
        }
        let little = scenario.clients as f64 / scenario.delay.as_secs_f64();
        let [w, s, t] = row.rps;
        let _ = writeln!(
            out,
            "\n{}: Little's law allows {} connections / {} ms = {} req/s; wharf reaches {} req/s \
             = {:.1}% of it (std {:.1}%, tokio {:.1}%).",
            scenario.label,
            scenario.clients,
            scenario.delay.as_millis(),
            thousands(little),
            thousands(w),
            100.0 * w / little,
            100.0 * s / little,
            100.0 * t / little,
        );
    }
    if let Some((low, high)) = ephemeral_ports() {
        let ports = high.saturating_sub(low) + 1;
        let window = (settings.warmup + settings.duration).as_secs_f64();
        for (scenario, row) in scenarios.iter().zip(rows) {
            if scenario.batches_per_connection.is_none() {
                continue;
            }
            let most = row.rps.iter().copied().fold(0.0, f64::max);
            if most * window > ports as f64 {
                let _ = writeln!(
                    out,
                    "\n{}: caveat: at these rates one warm-up + window opens up to {} connections \
                     from one client address to one server port, more than the {ports} ephemeral \
                     ports ({low}-{high}). The client closes first, so each port sits in \
                     TIME_WAIT and can be reused only after about 1 s (tcp_tw_reuse): past that \
                     point the client's connect() limits the rate, for every server alike. \
                     Shorter windows (WHARF_COMPARE_SECS=0.4) show the servers' own rates.",
                    scenario.label,
                    thousands(most * window),
                );
            }
        }
    }
    let mut findings = Vec::new();
    for (scenario, row) in scenarios.iter().zip(rows) {
        let [w, s, t] = row.rps;
        if scenario.long_lived && w < 0.95 * s {
            findings.push(format!(
                "{}: wharf has {:.1}% less throughput than thread-per-connection std ({} vs {} \
                 req/s).",
                scenario.label,
                100.0 * (1.0 - w / s),
                thousands(w),
                thousands(s)
            ));
        }
        if w < t {
            findings.push(format!(
                "{}: wharf is slower than tokio ({} vs {} req/s, {:.1}% less).",
                scenario.label,
                thousands(w),
                thousands(t),
                100.0 * (1.0 - w / t)
            ));
        }
    }
    out.push('\n');
    if findings.is_empty() {
        out.push_str(
            "No long-lived scenario where wharf is more than 5% behind std in throughput, and \
             none where it is slower than tokio.\n",
        );
    } else {
        for finding in findings {
            let _ = writeln!(out, "- {finding}");
        }
    }
    let _ = writeln!(out, "\n{}", machine());
    out
}

/// The kernel's ephemeral port range, from which every client connection
/// takes its local port.
fn ephemeral_ports() -> Option<(u32, u32)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut ports = range.split_whitespace().map(|p| p.parse::<u32>().ok());
    Some((ports.next()??, ports.next()??))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and a
    // multi-minute comparison has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare: skipped (run it with `cargo bench --bench compare`)");
        return ExitCode::SUCCESS;
    }
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("compare: {e}");
            return ExitCode::from(2);
        }
    };
    let mut scenarios = scenarios();
    // WHARF_COMPARE_ONLY=ab runs only scenarios a and b (for a quick look).
    if let Ok(only) = std::env::var("WHARF_COMPARE_ONLY") {
        scenarios.retain(|s| s.label.chars().next().is_some_and(|c| only.contains(c)));
    }
    // points[scenario][server] = one BenchPoint per round.
    let mut points: Vec<[Vec<BenchPoint>; 3]> =
        scenarios.iter().map(|_| Default::default()).collect();
    let mut errors = Vec::new();
    let started = Instant::now();
    for round in 1..=settings.rounds {
        for (s, scenario) in scenarios.iter().enumerate() {
            for (k, kind) in KINDS.into_iter().enumerate() {
                match measure(kind, scenario, &settings) {
                    Ok(point) => {
                        eprintln!(
                            "round {round}/{}  {:<48} {:<5} {:>10} req/s  p99 {:>7} µs  \
                             served {}/{}  errors {}",
                            settings.rounds,
                            scenario.label,
                            kind.name(),
                            thousands(point.requests_per_sec),
                            point.p99_us,
                            point.clients_served,
                            scenario.clients,
                            point.errors,
                        );
                        if point.errors > 0 || point.busy > 0 {
                            errors.push(format!(
                                "round {round}, {}, {}: {} error(s), {} BUSY",
                                scenario.label,
                                kind.name(),
                                point.errors,
                                point.busy
                            ));
                        }
                        points[s][k].push(point);
                    }
                    Err(e) => {
                        eprintln!("round {round}: {e}");
                        errors.push(format!("round {round}: {e}"));
                    }
                }
            }
        }
    }
    eprintln!("compare: {:.0} s in all", started.elapsed().as_secs_f64());

    let rows: Vec<Row> = points
        .iter()
        .map(|per_kind| {
            let rps = |k: usize| median(per_kind[k].iter().map(|p| p.requests_per_sec).collect());
            let p99 = |k: usize| median(per_kind[k].iter().map(|p| p.p99_us as f64).collect());
            let spread = |k: usize| {
                per_kind[k]
                    .iter()
                    .map(|p| p.requests_per_sec)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                        (lo.min(r), hi.max(r))
                    })
            };
            Row {
                rps: [rps(0), rps(1), rps(2)],
                p99: [p99(0), p99(1), p99(2)],
                spread: [spread(0), spread(1), spread(2)],
            }
        })
        .collect();
    let mut report = table(&scenarios, &rows, &settings);
    if !errors.is_empty() {
        report.push_str("\nERRORS (the numbers above are not valid):\n");
        for e in &errors {
            let _ = writeln!(report, "- {e}");
        }
    }
    print!("{report}");
    let path = target_dir().join("compare.md");
    if let Err(e) =
        std::fs::create_dir_all(target_dir()).and_then(|()| std::fs::write(&path, &report))
    {
        eprintln!("compare: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("compare: table written to {}", path.display());
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        for e in &errors {
            eprintln!("compare: error: {e}");
        }
        ExitCode::FAILURE
    }
}
