//! The server side: the child mode (`many --serve NAME`), which runs one
//! server until its stdin closes, and the parent's handle on that child,
//! [`ServerProcess`], with what is read of it from `/proc` (CPU, RSS, the
//! threads sampled in the background) and the whole machine's CPU from
//! `/proc/stat`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::peers;
use crate::Spec;

/// How often the child's threads and RSS are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for a child to exit after its stdin closed; then SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The child: one server, until its stdin closes.

enum Serving {
    Wharf(wharf::Server),
    Std(peers::StdServer),
    Tokio(peers::TokioServer),
}

/// `many --serve NAME [--workers N] [--queue N] [--max-connections N]
/// [--tls DIR]`: with `--tls`, the server speaks only TLS, serving
/// `DIR/server.pem` with `DIR/server.key`.
pub(crate) fn serve(args: &[String]) -> ExitCode {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let flag = |name: &str| value(name).and_then(|v| v.parse::<usize>().ok());
    let tls = value("--tls").map(PathBuf::from);
    let peers_tls = || {
        let dir = tls.as_ref()?;
        Some(peers::tls_config(
            &dir.join("server.pem"),
            &dir.join("server.key"),
        ))
    };
    let name = args.first().map(String::as_str).unwrap_or("");
    let started = match name {
        "wharf" => {
            let _ = simplelog::WriteLogger::init(
                log::LevelFilter::Warn,
                simplelog::Config::default(),
                io::stderr(),
            );
            let defaults = wharf::Config::default();
            let config = wharf::Config {
                workers: flag("--workers").unwrap_or(defaults.workers),
                queue: flag("--queue").unwrap_or(defaults.queue),
                max_connections: flag("--max-connections").unwrap_or(defaults.max_connections),
                // The settings an operator gets with --tls-cert and
                // --tls-key (and their thread that checks the files).
                tls: tls.as_ref().map(|dir| {
                    wharf::tls::TlsSettings::new(dir.join("server.pem"), dir.join("server.key"))
                }),
                ..defaults
            };
            let security = if tls.is_some() {
                wharf::Security::Tls
            } else {
                wharf::Security::Plain
            };
            let bind = wharf::Bind {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into(),
                security,
            };
            wharf::Server::start_all(&[bind], config, wharf::Echo::default())
                .map(Serving::Wharf)
                .map_err(|e| e.to_string())
        }
        "std" => match peers_tls() {
            None => peers::StdServer::start(Duration::ZERO),
            Some(config) => config.and_then(|c| peers::StdServer::start_tls(Duration::ZERO, c)),
        }
        .map(Serving::Std)
        .map_err(|e| e.to_string()),
        "tokio" => match peers_tls() {
            None => peers::TokioServer::start(Duration::ZERO),
            Some(config) => config.and_then(|c| peers::TokioServer::start_tls(Duration::ZERO, c)),
        }
        .map(Serving::Tokio)
        .map_err(|e| e.to_string()),
        other => Err(format!("unknown server {other:?}")),
    };
    let server = match started {
        Ok(server) => server,
        Err(e) => {
            eprintln!("many --serve {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (addr, config) = match &server {
        Serving::Wharf(s) => {
            let c = s.config();
            (
                s.local_addr(),
                format!(
                    "workers={} queue={} max_connections={}",
                    c.workers, c.queue, c.max_connections
                ),
            )
        }
        Serving::Std(s) => (s.addr, String::new()),
        Serving::Tokio(s) => (s.addr, String::new()),
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{addr} {config}");
    let _ = out.flush();
    // Serve until the parent closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    match server {
        Serving::Wharf(s) => {
            s.handle().shutdown();
            let report = s.join();
            let _ = writeln!(out, "report {report}");
        }
        Serving::Std(s) => s.stop(),
        Serving::Tokio(s) => s.stop(),
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// The parent's view of a child: /proc.

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system, all threads) the process has used.
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// A `kB` line of `/proc/PID/status`, such as `VmHWM` or `VmRSS`.
pub(crate) fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn thread_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

/// Samples a child's thread count in the background; keeps the maximum.
struct Sampler {
    stop: Arc<AtomicBool>,
    max_threads: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_threads = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            let max_threads = Arc::clone(&max_threads);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(n) = thread_count(pid) {
                        max_threads.fetch_max(n, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            }
        });
        Sampler {
            stop,
            max_threads,
            thread,
        }
    }

    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.max_threads.load(Ordering::Relaxed)
    }
}

/// A server running in a child process.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) config: String,
    stdout: BufReader<ChildStdout>,
    sampler: Sampler,
}

/// What the child did, read from /proc and from its own report.
#[derive(Default)]
pub(crate) struct ProcFigures {
    pub(crate) cpu_in_window: Option<f64>,
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) rss_window_start_kib: Option<u64>,
    pub(crate) rss_window_end_kib: Option<u64>,
    pub(crate) threads_max: usize,
    pub(crate) threads_in_window: Option<usize>,
    /// CPU seconds of this (client) process in the window.
    pub(crate) client_cpu_in_window: Option<f64>,
    /// CPU seconds of other processes in the window.
    pub(crate) others_cpu_in_window: Option<f64>,
    /// irq + softirq seconds in the window (no process is charged).
    pub(crate) irq_in_window: Option<f64>,
    /// Steal seconds in the window.
    pub(crate) steal_in_window: Option<f64>,
    /// wharf's exit report.
    pub(crate) report: Option<String>,
    /// Anything wrong with stopping it.
    pub(crate) stop_note: Option<String>,
}

impl ServerProcess {
    /// `tls`: the directory of the certificate to serve over TLS.
    pub(crate) fn spawn(
        spec: Spec,
        queue: usize,
        max_connections: usize,
        tls: Option<&Path>,
    ) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        command.arg("--serve");
        match spec {
            Spec::Wharf { workers } => {
                command.args([
                    "wharf".to_string(),
                    "--workers".into(),
                    workers.to_string(),
                    "--queue".into(),
                    queue.to_string(),
                    "--max-connections".into(),
                    max_connections.to_string(),
                ]);
            }
            Spec::Std => {
                command.arg("std");
            }
            Spec::Tokio => {
                command.arg("tokio");
            }
        }
        if let Some(dir) = tls {
            command.arg("--tls").arg(dir);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the child: {e}"))?;
        let pid = child.id();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let parsed = line
            .split_whitespace()
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok());
        let Some(addr) = parsed else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{}: the child did not print its address ({read:?}, {line:?})",
                spec.label()
            ));
        };
        let config = line
            .trim()
            .split_once(' ')
            .map(|(_, c)| c.to_owned())
            .unwrap_or_default();
        Ok(ServerProcess {
            child,
            pid,
            addr,
            config,
            stdout,
            sampler: Sampler::start(pid),
        })
    }

    /// Closes the child's stdin, waits for it to exit (SIGKILL after
    /// [`STOP_WAIT`]) and reads its report. The clients must be closed first.
    pub(crate) fn stop(mut self, figures: &mut ProcFigures) {
        figures.peak_rss_kib = status_kib(self.pid, "VmHWM");
        figures.threads_max = self.sampler.finish();
        drop(self.child.stdin.take());
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        figures.stop_note = Some(format!("the child exited with {status}"));
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // PID is our own child, not yet reaped.
                    unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
                    let _ = self.child.wait();
                    figures.stop_note = Some(format!(
                        "did not exit within {} s of its stdin closing: killed (SIGKILL)",
                        STOP_WAIT.as_secs()
                    ));
                    break;
                }
            }
        }
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        figures.report = rest
            .lines()
            .find_map(|l| l.strip_prefix("report "))
            .map(str::to_owned);
    }
}

/// CPU seconds of the whole machine (all cores), from `/proc/stat`.
#[derive(Clone, Copy)]
pub(crate) struct MachineCpu {
    /// user + nice + system: time charged to processes.
    pub(crate) tasks: f64,
    /// irq + softirq: interrupt work, charged to no process (on loopback
    /// that is mostly the TCP receive path of these very connections).
    pub(crate) irq: f64,
    /// Time the hypervisor ran something else while this VM wanted to run.
    pub(crate) steal: f64,
}

pub(crate) fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let t: Vec<f64> = cpu
        .split_whitespace()
        .map(|t| t.parse::<u64>().unwrap_or(0) as f64 / clock_ticks())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    Some(MachineCpu {
        tasks: t.first()? + t.get(1)? + t.get(2)?,
        irq: t.get(5)? + t.get(6)?,
        steal: *t.get(7)?,
    })
}
