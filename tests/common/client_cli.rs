//! Helpers of the tests of the `wharf client` binary (`client_cli_*.rs`):
//! the child process with its stdin, its stdout line by line and its
//! stderr, run to its exit within a deadline and killed by its PID past it
//! (or when a test panics), the check of its exit status, the heartbeat the
//! idle tests use, and an echo service that answers ERROR to requests
//! starting with `bad`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wharf::{Response, Server, ServiceError};

/// The longest a child may run before the test kills it and fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The longest a test waits for one line of the child's output.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's heartbeat timeout in the idle tests, and the matching
/// `--heartbeat-timeout` of the client (which PINGs every third of it).
/// Shorter values flake on a heavily loaded 2-core machine: a client or
/// worker thread descheduled for a few hundred ms misses the deadline.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

pub const HEARTBEAT_ARG: &str = "1s";

/// Idle for longer than three heartbeat timeouts.
pub const IDLE: Duration = Duration::from_millis(3200);

/// A running `wharf client`, killed by PID when dropped if still running.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Starts `wharf client <args>` with piped stdin, stdout and stderr.
pub fn spawn_client(args: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf client starts");
    let stdin = child.stdin.take();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, lines) = mpsc::channel();
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let readers = vec![
        {
            let stdout = Arc::clone(&stdout);
            thread::spawn(move || {
                for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                    let mut all = lock(&stdout);
                    all.push_str(&line);
                    all.push('\n');
                    let _ = tx.send(line);
                }
            })
        },
        {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut text = String::new();
                let mut pipe = err_pipe;
                let _ = pipe.read_to_string(&mut text);
                lock(&stderr).push_str(&text);
            })
        },
    ];
    Proc {
        child,
        stdin,
        lines,
        stdout,
        stderr,
        readers,
    }
}

impl Proc {
    /// Writes to the child's stdin.
    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to the client's stdin");
        stdin.flush().unwrap();
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The next stdout line, or a failure (with the output so far) after
    /// LINE_TIMEOUT.
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                // Let the child's stderr arrive before reporting.
                thread::sleep(Duration::from_millis(200));
                let status = self.child.try_wait();
                let stdout = lock(&self.stdout).clone();
                let stderr = lock(&self.stderr).clone();
                panic!("no stdout line ({e}); status {status:?}; stdout so far:\n{stdout}\nstderr:\n{stderr}")
            }
        }
    }

    /// Waits for the child to exit within DEADLINE; on timeout kills it by
    /// PID and fails.
    pub fn finish(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "wharf client still running after {DEADLINE:?}; killed. stdout:\n{}\nstderr:\n{}",
                    lock(&self.stdout),
                    lock(&self.stderr)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The pipes close with the child, so the readers end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = lock(&self.stdout).clone();
        let stderr = lock(&self.stderr).clone();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Locks a mutex even if a panicking test poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `wharf client <args>` with `input` on stdin and waits for it.
pub fn run_client(args: &[&str], input: &[u8]) -> Finished {
    let mut proc = spawn_client(args);
    proc.write(input);
    proc.finish()
}

pub fn addr_arg(server: &Server) -> String {
    server.local_addr().to_string()
}

/// Echoes, except that a request starting with `bad` gets ERROR.
pub fn fail_on_bad(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if request.starts_with(b"bad") {
        return Err(ServiceError::from("no bad requests"));
    }
    response.extend_from_slice(request);
    Ok(())
}

pub fn assert_exit(finished: &Finished, code: i32) {
    assert_eq!(finished.code(), Some(code), "exit status; {finished:#?}");
}
