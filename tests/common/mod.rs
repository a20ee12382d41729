//! Helpers shared by the integration tests: a raw protocol client, servers
//! started through the library on 127.0.0.1:0, the real `wharf` binary
//! run as a child process (killed by PID if a test fails midway), and (in
//! [`gate`]) a service that keeps a worker busy until the test lets it go.
//! Most other submodules hold what one group of test files shares, named
//! after it: [`client`] for `client_*.rs` (the library's client),
//! [`client_cli`] for `client_cli_*.rs` (the binary's), [`client_tls`] for
//! `client_tls_*.rs`, [`unix`] for `unix_*.rs`, [`hostile`] for
//! `hostile_*.rs`, [`metrics`] for `metrics_*.rs`, [`fake`] and [`proxy`]
//! for `retry_*.rs`, [`proxy_header`] for `proxy_protocol.rs` and
//! `per_address_limits.rs`, [`ops`] for `systemd_*.rs` and `signals.rs`,
//! [`haproxy`] for `haproxy*.rs` and `tls_haproxy.rs`, and so on.
//!
//! Every blocking read has a timeout, so a broken server fails a test
//! instead of hanging it. Timing bounds are generous: CI is a busy 2-core
//! machine.

#![allow(dead_code)]

pub mod client;
pub mod client_cli;
pub mod client_tls;
pub mod fake;
pub mod faults;
pub mod gate;
pub mod haproxy;
pub mod hostile;
pub mod metrics;
pub mod netns;
pub mod ops;
pub mod overload;
pub mod pki;
pub mod protocol;
pub mod proxy;
pub mod proxy_header;
pub mod resting;
pub mod scrape;
pub mod shutdown;
pub mod systemd;
pub mod tls;
pub mod unix;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf::frame::{GoAway, DATA, GOAWAY, PING};
use wharf::{Config, Echo, Framing, GoAwayCode, Server, Service};

/// The longest any single read waits before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A small, fast configuration for tests: 2 workers, short heartbeat.
pub fn config() -> Config {
    Config {
        workers: 2,
        queue: 8,
        heartbeat_timeout: Duration::from_secs(5),
        reap_interval: Duration::from_millis(100),
        max_frame: 1024 * 1024,
        grace: Duration::from_secs(5),
        ..Config::default()
    }
}

/// Starts an echo server on 127.0.0.1:0.
pub fn start(config: Config) -> Server {
    start_with(config, Echo::default())
}

/// Starts a server with any service on 127.0.0.1:0.
pub fn start_with<S: Service>(config: Config, service: S) -> Server {
    Server::start("127.0.0.1:0", config, service).expect("server starts")
}

/// A raw protocol client over a real socket.
pub struct Client {
    pub stream: TcpStream,
    pub framing: Framing,
    reader: BufReader<TcpStream>,
}

/// One frame as received: kind and payload. Line framing maps `PONG`,
/// `ERROR ...` and `GOAWAY ...` lines to those kinds and anything else to DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub kind: u8,
    pub payload: Vec<u8>,
}

impl Received {
    /// The GOAWAY this frame carries, if it is one.
    pub fn goaway(&self, framing: Framing) -> Option<GoAway> {
        (self.kind == GOAWAY)
            .then(|| GoAway::parse(framing, &self.payload))
            .flatten()
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::connect_with(addr, Framing::Length)
    }

    pub fn connect_with(addr: SocketAddr, framing: Framing) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        Client::from_stream(stream, framing)
    }

    pub fn from_stream(stream: TcpStream, framing: Framing) -> Client {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client {
            stream,
            framing,
            reader,
        }
    }

    /// Sends one frame of any kind.
    pub fn send(&mut self, kind: u8, payload: &[u8]) {
        let mut buf = Vec::new();
        self.framing.encode(kind, payload, &mut buf);
        self.stream.write_all(&buf).expect("send");
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send raw");
    }

    /// Receives one frame; `None` at end-of-stream. Panics on timeout.
    pub fn recv(&mut self) -> Option<Received> {
        self.try_recv().expect("recv")
    }

    /// Receives one frame; `Ok(None)` at end-of-stream (or reset).
    pub fn try_recv(&mut self) -> io::Result<Option<Received>> {
        match self.framing {
            Framing::Length => {
                let mut header = [0u8; 5];
                if let Err(e) = self.reader.read_exact(&mut header) {
                    return eof_or(e);
                }
                let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                let mut payload = vec![0; len as usize - 1];
                if let Err(e) = self.reader.read_exact(&mut payload) {
                    return eof_or(e);
                }
                Ok(Some(Received {
                    kind: header[4],
                    payload,
                }))
            }
            Framing::Line => {
                let mut line = Vec::new();
                match self.reader.read_until(b'\n', &mut line) {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(e) => return eof_or(e),
                }
                if line.pop() != Some(b'\n') {
                    return Ok(None);
                }
                let (kind, payload) = if line == b"PONG" {
                    (wharf::frame::PONG, Vec::new())
                } else if let Some(rest) = line.strip_prefix(b"ERROR ") {
                    (wharf::frame::ERROR, rest.to_vec())
                } else if let Some(rest) = line.strip_prefix(b"GOAWAY ") {
                    (GOAWAY, rest.to_vec())
                } else {
                    (DATA, line)
                };
                Ok(Some(Received { kind, payload }))
            }
        }
    }

    /// Sends a DATA request and returns the reply.
    pub fn request(&mut self, payload: &[u8]) -> Received {
        self.send(DATA, payload);
        self.recv().expect("a reply, not end-of-stream")
    }

    /// Asserts that an echo of `payload` comes back.
    pub fn echo(&mut self, payload: &[u8]) {
        let reply = self.request(payload);
        assert_eq!(reply.kind, DATA, "reply kind to DATA");
        assert_eq!(reply.payload, payload, "echoed payload");
    }

    /// Sends PING and expects PONG with the same payload.
    pub fn ping(&mut self, payload: &[u8]) {
        self.send(PING, payload);
        let reply = self.recv().expect("PONG");
        assert_eq!(reply.kind, wharf::frame::PONG);
        assert_eq!(reply.payload, payload);
    }

    /// Reads until a GOAWAY arrives and asserts its code; returns the frames
    /// received before it. Then expects end-of-stream.
    pub fn expect_goaway(&mut self, code: GoAwayCode) -> Vec<Received> {
        let mut before = Vec::new();
        loop {
            let frame = self
                .recv()
                .unwrap_or_else(|| panic!("connection closed without GOAWAY {code}"));
            if let Some(goaway) = frame.goaway(self.framing) {
                assert_eq!(goaway.code, code.as_u16(), "GOAWAY code ({goaway:?})");
                self.expect_closed();
                return before;
            }
            before.push(frame);
        }
    }

    /// Asserts that the server closes the connection with nothing more sent.
    pub fn expect_closed(&mut self) {
        match self.try_recv() {
            Ok(None) => {}
            Ok(Some(frame)) => panic!("expected close, got {frame:?}"),
            Err(e) => panic!("expected close, got {e}"),
        }
    }
}

fn eof_or(e: io::Error) -> io::Result<Option<Received>> {
    match e.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => Ok(None),
        _ => Err(e),
    }
}

/// Polls `check` every 10 ms until it holds or `within` passes.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The real `wharf` binary, running as a child process. Dropping it kills
/// the child (by its PID) if it is still running.
pub struct Wharf {
    pub child: Child,
    /// The first listener's address; `0.0.0.0:0` when the first is a Unix
    /// socket.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// Starts `wharf serve --bind 127.0.0.1:0 <args>` and waits for its
/// listening line.
pub fn spawn_wharf(args: &[&str]) -> Wharf {
    spawn_wharf_bound("127.0.0.1:0", args)
}

/// Starts `wharf serve --bind <bind> <args>` and waits for its listening line.
pub fn spawn_wharf_bound(bind: &str, args: &[&str]) -> Wharf {
    spawn_wharf_command(serve_command(bind, args))
}

/// The command `wharf serve --bind <bind> <args>`, for a test that needs to
/// adjust it (limits, environment) before [`spawn_wharf_command`].
pub fn serve_command(bind: &str, args: &[&str]) -> Command {
    let mut command = bare_serve_command();
    command.args(["--bind", bind]).args(args);
    command
}

/// The command `wharf serve` with no listener yet, for a test that gives
/// only `--tls-bind` (see `tls::spawn_tls_wharf`).
pub fn bare_serve_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command.arg("serve");
    // `WHARF_*` variables set where the tests run would change the
    // settings of every server they start.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WHARF_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs a prepared `wharf serve` command with its output captured, and waits
/// for its listening line.
pub fn spawn_wharf_command(mut command: Command) -> Wharf {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf starts");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = Arc::clone(&log);
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                // In the log before the address is announced, so that a test
                // reading the log after `spawn_wharf` returns sees the line.
                {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
    }
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        // A Unix listener first: no TCP address to offer (as
        // `Server::local_addr` says it); see `unix::listening_addrs`.
        Ok(addr) if addr.starts_with("unix:") => SocketAddr::from(([0, 0, 0, 0], 0)),
        Ok(addr) => addr.parse().expect("listening address parses"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no listening line; log:\n{}", log.lock().unwrap());
        }
    };
    Wharf { child, addr, log }
}

impl Wharf {
    /// The child's PID.
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends a signal to the child by PID.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with the PID of a child we started and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits up to `within` for the child to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Give the output threads a moment to drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the child has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished child process left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (stdin closed, output captured) and waits up to `within`
/// for it to exit; kills it (by its PID, through `Child::kill`) and fails
/// the test if it does not.
pub fn run_to_exit(mut command: Command, within: Duration) -> Finished {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} still running after {within:?}; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// `wharf <args>`, run to its exit within `within` (see [`run_to_exit`]).
pub fn run_wharf(args: &[&str], within: Duration) -> Finished {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command.args(args);
    run_to_exit(command, within)
}

/// A log file's path under the temp dir, unique to this test run, removed
/// (with its rotated copy, see [`TempLog::rotated`]) when dropped.
pub struct TempLog(PathBuf);

impl TempLog {
    pub fn new(tag: &str) -> TempLog {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TempLog(std::env::temp_dir().join(format!(
            "wharf-test-{tag}-{}-{nanos}.log",
            std::process::id()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }

    /// What the file holds now ("" if it does not exist).
    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    /// Where logrotate would have renamed it.
    pub fn rotated(&self) -> PathBuf {
        self.0.with_extension("log.1")
    }
}

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.rotated());
    }
}
