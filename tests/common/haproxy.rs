//! A real HAProxy for `haproxy.rs`, `haproxy_proxy_protocol.rs` and
//! `tls_haproxy.rs`: found or reported `SKIPPED:`, started in the
//! foreground (`-db`) with a config file, its output kept (for failure
//! messages, and line by line for tests that follow its log), queried on
//! its stats socket, and stopped by PID when dropped.
//!
//! The tests' configs name their one backend `wharf` and its server `s1`
//! (the shipped `deploy/haproxy.cfg` names its own); [`Haproxy::server_stat`]
//! reads `wharf/s1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::netns::skipped;
use super::pki::Dir;

/// How long a server may take to reach the state a test waits for.
pub const SETTLE: Duration = Duration::from_secs(30);

/// `haproxy -vv`'s output, or `None` after saying `SKIPPED:` loudly when
/// HAProxy is not installed.
pub fn version(test: &str) -> Option<String> {
    match Command::new("haproxy").arg("-vv").output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(e) => {
            skipped(&format!(
                "{test}: haproxy is not installed ({e}; bash .ci/run installs it)"
            ));
            None
        }
    }
}

/// One `show stat` row: fields by name.
pub struct Stat(Vec<(String, String)>);

impl Stat {
    /// One field ("" if absent).
    pub fn field(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// `name="value"` for each of `names`, for failure messages.
    pub fn summary(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|name| format!("{name}={:?}", self.field(name)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// HAProxy in the foreground, stopped by PID when dropped.
pub struct Haproxy {
    child: Child,
    /// The stats socket, for configs that declare one.
    socket: Option<PathBuf>,
    output: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Haproxy {
    /// Writes a config to `haproxy.cfg` in `dir` and starts HAProxy with
    /// it: a stats socket in `dir` (for [`Haproxy::server_stat`]), TCP mode,
    /// a frontend bound to `front` and the backend `wharf`, whose lines
    /// (health check, `server s1 ...`) are `backend`.
    pub fn with_backend(dir: &Dir, front: &str, backend: &str) -> Haproxy {
        let socket = dir.path("haproxy.sock");
        let config = format!(
            "global
    stats socket {socket} level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 5s
frontend front
    bind {front}
    default_backend wharf
backend wharf
{backend}",
            socket = socket.display(),
        );
        let path = dir.path("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let mut haproxy = Haproxy::start(&path);
        haproxy.socket = Some(socket);
        haproxy
    }

    /// Starts HAProxy with the config file at `path`.
    pub fn start(path: &Path) -> Haproxy {
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    {
                        let mut output = output.lock().unwrap();
                        output.push_str(&line);
                        output.push('\n');
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Haproxy {
            child,
            socket: None,
            output,
            lines,
        }
    }

    /// Everything HAProxy printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The output lines not yet taken: waits up to `wait` for the first,
    /// then takes those already there.
    pub fn new_lines(&self, wait: Duration) -> Vec<String> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => std::iter::once(line).chain(self.lines.try_iter()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// `show stat` on the stats socket: server `wharf/s1`'s row. `None`
    /// while the socket is not up yet.
    pub fn server_stat(&mut self) -> Option<Stat> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("haproxy exited ({status}):\n{}", self.output());
        }
        let mut socket = UnixStream::connect(self.socket.as_ref()?).ok()?;
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut text = String::new();
        socket.read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let header = lines.next()?.trim_start_matches("# ");
        let row = lines.find(|l| l.starts_with("wharf,s1,"))?;
        Some(Stat(
            header
                .split(',')
                .zip(row.split(','))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ))
    }

    /// Waits up to [`SETTLE`] until `wharf/s1`'s row passes `until`;
    /// returns it. On timeout, fails naming `what` it never was, with the
    /// last row's `names` and HAProxy's output.
    pub fn wait_server(
        &mut self,
        what: &str,
        names: &[&str],
        until: impl Fn(&Stat) -> bool,
    ) -> Stat {
        let deadline = Instant::now() + SETTLE;
        let mut last = None;
        loop {
            if let Some(stat) = self.server_stat() {
                if until(&stat) {
                    return stat;
                }
                last = Some(stat);
            }
            assert!(
                Instant::now() < deadline,
                "wharf/s1 never {what}; last: {}\nhaproxy:\n{}",
                last.as_ref().map(|s| s.summary(names)).unwrap_or_default(),
                self.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM by PID, then SIGKILL if it has not exited within 10 s;
    /// returns everything it printed.
    pub fn stop(&mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) with the PID of a child we started and have not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() >= deadline {
                    let _ = self.child.kill();
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.wait();
        }
        // The last lines, read by the pipe threads after the exit.
        thread::sleep(Duration::from_millis(100));
        self.output()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
