//! Operations (docs/operating.md, "Several listeners" and "Unix sockets"):
//! `--bind unix:PATH` beside TCP, through the real binary and the library.
//! The socket file gets `--unix-mode` (0660 by default) and is removed at
//! exit; a stale socket file is replaced, a live one or any other file is a
//! startup failure that leaves the file alone; a Unix client is known by its
//! credentials, in the access log and in `ConnInfo::peer`; `socat` speaks to
//! a line-framing listener; a TLS listener works over a Unix socket too.
//!
//! Each test keeps its socket files in a directory of its own
//! (`common::unix::SocketDir`), removed at the end.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ops::{exit_code, wait_log};
use common::tls::{Certs, ClientSetup};
use common::unix::{bind_arg, listening_addrs, mode, SocketDir, TlsUnixClient, UnixClient};
use common::{
    bare_serve_command, config, eventually, run_to_exit, serve_command, spawn_wharf_command, Client,
};
use wharf::{
    Address, Bind, ConnInfo, Credentials, Listener, Peer, Response, Security, Server, Service,
    ServiceError,
};

/// Operations: a Unix listener beside a TCP one, one listening line each in
/// the order given (`listening on unix:PATH`), both echo; the socket file
/// has mode 0660 by default, and is gone once the server has exited 0 after
/// SIGTERM.
#[test]
fn a_unix_listener_beside_tcp_serves_both_and_its_file_goes_at_exit() {
    let dir = SocketDir::new("both");
    let path = dir.path("w.sock");
    let mut command = bare_serve_command();
    command.args(["--workers", "2", "--bind", &bind_arg(&path)]);
    command.args(["--bind", "127.0.0.1:0"]);
    let mut wharf = spawn_wharf_command(command);
    assert!(
        eventually(Duration::from_secs(10), || listening_addrs(&wharf.log())
            .len()
            == 2),
        "{}",
        wharf.log()
    );
    let addrs = listening_addrs(&wharf.log());
    assert_eq!(addrs[0], bind_arg(&path), "{}", wharf.log());
    let tcp: std::net::SocketAddr = addrs[1].parse().expect("a TCP address second");

    UnixClient::connect(&path).echo(b"over a Unix socket");
    Client::connect(tcp).echo(b"over TCP, same pool");
    assert_eq!(mode(&path), 0o660, "the default --unix-mode");

    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
    assert!(
        !path.exists(),
        "the socket file outlived the server:\n{}",
        wharf.log()
    );
}

/// Operations: `--unix-mode 0600` is the socket file's mode.
#[test]
fn unix_mode_sets_the_socket_files_permissions() {
    let dir = SocketDir::new("mode");
    let path = dir.path("w.sock");
    let mut wharf = spawn_wharf_command(serve_command(
        "127.0.0.1:0",
        &[
            "--workers",
            "1",
            "--bind",
            &bind_arg(&path),
            "--unix-mode",
            "0600",
        ],
    ));
    wait_log(&wharf, &format!("listening on {}", bind_arg(&path)));
    assert_eq!(mode(&path), 0o600);
    UnixClient::connect(&path).echo(b"the owner may connect");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
    assert!(!path.exists());
}

/// Operations: a socket file nobody accepts on (left by a server that
/// died) is replaced, and the new socket is served.
#[test]
fn a_stale_socket_file_is_replaced_and_served() {
    let dir = SocketDir::new("stale");
    let path = dir.path("w.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a closed listener leaves its file behind");

    let mut wharf = spawn_wharf_command(serve_command(
        "127.0.0.1:0",
        &["--workers", "1", "--bind", &bind_arg(&path)],
    ));
    wait_log(&wharf, &format!("listening on {}", bind_arg(&path)));
    wait_log(&wharf, "removed a stale socket file");
    UnixClient::connect(&path).echo(b"served on the replacement");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
    assert!(!path.exists());
}

/// The non-empty lines of a failed start's output.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Operations: a socket a live server accepts on is "address in use" (exit
/// 1, one line), and the holder keeps its socket file and its clients.
#[test]
fn a_live_socket_is_address_in_use_and_stays_with_its_holder() {
    let dir = SocketDir::new("live");
    let path = dir.path("w.sock");
    let holder = UnixListener::bind(&path).unwrap();

    let finished = run_to_exit(
        serve_command(&bind_arg(&path), &["--workers", "1"]),
        Duration::from_secs(20),
    );
    let output = format!("{}{}", finished.stdout, finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{output}");
    let lines = lines(&output);
    assert_eq!(lines.len(), 1, "not one line:\n{output}");
    assert!(lines[0].contains("address in use"), "{output}");
    assert!(!output.contains("panicked"), "{output}");

    assert!(path.exists(), "the holder's socket file was removed");
    // Still the holder's: a client reaches it.
    let _client = UnixStream::connect(&path).expect("the holder still listens");
    holder.set_nonblocking(false).unwrap();
    holder.accept().expect("the holder accepts");
}

/// Operations: a file that is not a socket is in the way: exit 1 with one
/// line, and the file is left as it was.
#[test]
fn a_regular_file_at_the_path_is_a_failure_and_left_alone() {
    let dir = SocketDir::new("file");
    let path = dir.path("w.sock");
    std::fs::write(&path, "not a socket; keep me").unwrap();

    let finished = run_to_exit(
        serve_command(&bind_arg(&path), &["--workers", "1"]),
        Duration::from_secs(20),
    );
    let output = format!("{}{}", finished.stdout, finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{output}");
    let lines = lines(&output);
    assert_eq!(lines.len(), 1, "not one line:\n{output}");
    assert!(lines[0].contains(&bind_arg(&path)), "{output}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not a socket; keep me"
    );
}

/// Operations: at debug level the access log names a Unix client by the
/// credentials the kernel recorded: this process's pid and user.
#[test]
fn the_access_log_names_a_unix_client_by_pid_and_uid() {
    let dir = SocketDir::new("creds");
    let path = dir.path("w.sock");
    let mut wharf = spawn_wharf_command(serve_command(
        &bind_arg(&path),
        &["--workers", "1", "--log-level", "debug"],
    ));
    UnixClient::connect(&path).echo(b"who am I");
    // SAFETY: getuid(2) and getgid(2) cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let who = format!(
        "from unix pid {} uid {uid} gid {gid}: opened",
        std::process::id()
    );
    wait_log(&wharf, &who);
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
}

/// An echo service that records who each connection comes from.
#[derive(Clone, Default)]
struct Recording {
    peers: Arc<Mutex<Vec<Peer>>>,
}

impl Service for Recording {
    type Session = ();

    fn open(&self, conn: &ConnInfo) {
        self.peers.lock().unwrap().push(conn.peer);
    }

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        response.extend_from_slice(request);
        Ok(())
    }
}

/// The library: `Server::start_all` with a Unix `Bind` reports the path in
/// `local_addrs`, serves it, gives the service the client's credentials
/// as `Peer::Unix`, and removes the file it made when it stops.
#[test]
fn the_service_sees_a_unix_clients_credentials() {
    let dir = SocketDir::new("lib");
    let path = dir.path("w.sock");
    let service = Recording::default();
    let server = Server::start_all(
        &[Bind {
            addr: Address::Unix(path.clone()),
            security: Security::Plain,
        }],
        config(),
        service.clone(),
    )
    .expect("server starts");
    assert_eq!(
        server.local_addrs(),
        &[(Address::Unix(path.clone()), Security::Plain)]
    );
    UnixClient::connect(&path).echo(b"known by my credentials");

    // SAFETY: getuid(2) and getgid(2) cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let expected = Peer::Unix(Credentials {
        pid: std::process::id(),
        uid,
        gid,
    });
    assert_eq!(*service.peers.lock().unwrap(), vec![expected]);
    assert_eq!(expected.credentials().map(|c| c.uid), Some(uid));
    assert_eq!(expected.ip(), None);

    server.handle().shutdown();
    server.join();
    assert!(!path.exists(), "the file the server made outlived it");
}

/// The library: `Server::from_listeners` serves a `UnixListener` handed to
/// it as `Listener::Own`; the file is the caller's, so the server leaves it.
#[test]
fn from_listeners_serves_an_own_unix_listener() {
    let dir = SocketDir::new("own");
    let path = dir.path("w.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = Server::from_listeners(
        vec![(Listener::Own(listener.into()), Security::Plain)],
        config(),
        wharf::Echo::default(),
    )
    .expect("server starts");
    assert_eq!(server.local_addrs()[0].0, Address::Unix(path.clone()));
    UnixClient::connect(&path).echo(b"served on a socket handed over");
    server.handle().shutdown();
    server.join();
    assert!(
        path.exists(),
        "a file the server did not make is not its own"
    );
}

/// Operations: `socat` as a Unix-socket client of a line-framing listener:
/// `PING` gets `PONG`.
#[test]
fn socat_pings_a_line_framing_unix_listener() {
    if Command::new("socat").arg("-V").output().is_err() {
        println!("SKIPPED: socat not installed");
        return;
    }
    let dir = SocketDir::new("socat");
    let path = dir.path("w.sock");
    let mut wharf = spawn_wharf_command(serve_command(
        &bind_arg(&path),
        &["--workers", "1", "--framing", "line"],
    ));
    let mut socat = Command::new("socat")
        // Waits up to 10 s for the reply after its input ends; the server
        // closes the connection sooner, once it has answered.
        .args(["-t", "10", "-"])
        .arg(format!("UNIX-CONNECT:{}", path.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat starts");
    socat
        .stdin
        .take()
        .unwrap()
        .write_all(b"PING\n")
        .expect("to socat");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = socat.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = socat.kill();
            let _ = socat.wait();
            panic!("socat still running after 20 s; log:\n{}", wharf.log());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    socat
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    socat
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "socat: {status:?}\n{err}");
    assert_eq!(out, "PONG\n", "{err}");

    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
}

/// Operations: `--tls-bind unix:PATH` is a TLS listener on a Unix socket:
/// a client that checks the certificate gets its echo.
#[test]
fn a_tls_listener_on_a_unix_socket_speaks_tls() {
    let certs = Certs::new();
    let dir = SocketDir::new("tls");
    let path = dir.path("w.sock");
    let mut command = bare_serve_command();
    command
        .args(["--workers", "1", "--tls-bind", &bind_arg(&path)])
        .arg("--tls-cert")
        .arg(certs.path("server.pem"))
        .arg("--tls-key")
        .arg(certs.path("server.key"));
    let mut wharf = spawn_wharf_command(command);
    wait_log(&wharf, &format!("listening on {} (tls, ", bind_arg(&path)));
    let mut client = TlsUnixClient::connect(&ClientSetup::new(&certs), &path)
        .unwrap_or_else(|e| panic!("handshake: {e}\n{}", wharf.log()));
    client.echo(b"inside TLS, over a Unix socket");
    drop(client);
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
    assert!(!path.exists());
}

/// Operations: when one listener cannot be set up the server does not
/// start, and removes the socket file it had already made for another.
#[test]
fn a_failed_start_removes_the_socket_files_it_made() {
    let dir = SocketDir::new("undo");
    let made = dir.path("made.sock");
    let taken = dir.path("taken.sock");
    let _holder = UnixListener::bind(&taken).unwrap();
    let finished = run_to_exit(
        serve_command(
            &bind_arg(&made),
            &["--workers", "1", "--bind", &bind_arg(&taken)],
        ),
        Duration::from_secs(20),
    );
    let output = format!("{}{}", finished.stdout, finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{output}");
    assert!(output.contains("address in use"), "{output}");
    assert!(
        !made.exists(),
        "the file made for the first listener stayed"
    );
    assert!(taken.exists(), "the holder's file was removed");
}
