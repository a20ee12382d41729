//! Operations (docs/operating.md) through the real binary: socket
//! activation. Every descriptor passed that is a listening stream socket is
//! served instead of `--bind` and left open at exit, others are skipped
//! with a warning (also when they are not open), and a lone descriptor 3
//! that is not a listening socket is a startup failure with one line. A
//! descriptor named `tls` in `LISTEN_FDNAMES` is a TLS listener, and a Unix
//! listening socket is served like a TCP one, its file left in place at
//! exit (it is the holder's). The same-port restarts under load are in
//! `restart.rs`.
//!
//! The test plays systemd: it binds listening sockets and passes them as
//! descriptor 3 (see `common::systemd::activated_command`), and reads the
//! notifications on a datagram socket it names in `NOTIFY_SOCKET`.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::net::{UnixListener, UnixStream};

use common::ops::{exit_code, listening_socket, wait_log};
use common::systemd::activated_command;
use common::tls::{Certs, ClientSetup};
use common::unix::{bind_arg, SocketDir, UnixClient};
use common::{serve_command, spawn_wharf_command, Client};
use wharf::GoAwayCode;

/// Operations: with `LISTEN_PID` this process and `LISTEN_FDS` >= 1, the
/// server serves every listening descriptor instead of `--bind`, the
/// listening lines show their addresses, a descriptor that is not a
/// listening socket is skipped with a warning, and the drain leaves the
/// sockets open: after wharf has exited, the holder's socket still takes
/// connections into its backlog.
#[test]
fn socket_activation_serves_every_listening_descriptor_and_leaves_them_open() {
    let listener = listening_socket();
    let addr = listener.local_addr().unwrap();
    let extra = listening_socket();
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut command = activated_command(
        &[listener.as_raw_fd(), extra.as_raw_fd(), udp.as_raw_fd()],
        // --bind would fail: the address is taken (by the test's socket).
        &["--workers", "2", "--bind", &addr.to_string()],
    );
    command.env("LISTEN_FDNAMES", "web:spare:dns");
    let mut wharf = spawn_wharf_command(command);
    assert_eq!(wharf.addr, addr, "{}", wharf.log());
    wait_log(&wharf, "serving descriptor 3 (web)");
    wait_log(&wharf, "serving descriptor 4 (spare)");
    wait_log(&wharf, "skipping descriptor 5 (dns)");
    let warning = wharf.log();
    assert!(
        warning
            .lines()
            .any(|l| l.contains("WARN") && l.contains("skipping descriptor 5")),
        "{warning}"
    );
    Client::connect(extra.local_addr().unwrap()).echo(b"served on the second descriptor");

    let mut client = Client::connect(addr);
    client.echo(b"served on an inherited socket");
    wharf.signal(libc::SIGTERM);
    client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
    let log = wharf.log();
    assert!(
        log.contains("inherited listening socket stays open"),
        "{log}"
    );

    // The holder's socket was not shut down: a new connection waits in its
    // backlog, where the next instance (here, the test) accepts it.
    let waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("the inherited socket still takes connections");
    listener.set_nonblocking(false).unwrap();
    let (accepted, peer) = listener.accept().expect("accept from the backlog");
    assert_eq!(peer, waiting.local_addr().unwrap());
    drop(accepted);
}

/// Runs a command to its exit (at most 10 s); its status code and stderr.
fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code(), reader.join().unwrap_or_default())
}

/// Operations: "a descriptor 3 that is not a listening TCP socket is a
/// startup failure (exit 1)", with a one-line cause.
#[test]
fn socket_activation_with_a_wrong_descriptor_3_exits_1_with_one_line() {
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let not_listening =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let cases = [
        ("a UDP socket", udp.as_raw_fd()),
        (
            "a TCP socket that does not listen",
            not_listening.as_raw_fd(),
        ),
        ("a file", file.as_raw_fd()),
    ];
    for (what, fd) in cases {
        let (code, stderr) = run_to_exit(activated_command(&[fd], &["--workers", "1"]));
        assert_eq!(code, Some(1), "{what}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: not one line:\n{stderr}");
        assert!(lines[0].contains("descriptor 3"), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    // Without LISTEN_PID naming this process, LISTEN_FDS is not for us.
    let mut command = serve_command("127.0.0.1:0", &["--workers", "1"]);
    command
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .stdin(Stdio::null());
    let mut wharf = spawn_wharf_command(command);
    assert!(
        !wharf.log().contains("socket activation"),
        "{}",
        wharf.log()
    );
    Client::connect(wharf.addr).echo(b"bound --bind as usual");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// Operations: "further descriptors are ignored with a warning", also
/// when `LISTEN_FDS` counts more descriptors than are open: here
/// `LISTEN_FDS=3` with only descriptor 3 passed, so 4 and 5 are not open.
/// Descriptor 3 itself must be open: `LISTEN_FDS=1` with nothing passed
/// is a startup failure (exit 1) with one line.
#[test]
fn socket_activation_ignores_counted_descriptors_that_are_not_open() {
    let listener = listening_socket();
    let addr = listener.local_addr().unwrap();
    let mut command = activated_command(&[listener.as_raw_fd()], &["--workers", "1"]);
    command.env("LISTEN_FDS", "3");
    let mut wharf = spawn_wharf_command(command);
    assert_eq!(wharf.addr, addr, "{}", wharf.log());
    wait_log(&wharf, "descriptor(s) 4-5 are not open");
    let log = wharf.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("LISTEN_FDS is 3")),
        "{log}"
    );
    Client::connect(addr).echo(b"served although LISTEN_FDS says 3");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);

    // Nothing passed: activated_command sets LISTEN_FDS=0; say 1.
    let mut nothing = activated_command(&[], &["--workers", "1"]);
    nothing.env("LISTEN_FDS", "1");
    let (code, stderr) = run_to_exit(nothing);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    assert!(lines[0].contains("descriptor 3 is not open"), "{stderr}");
}

/// Operations: "Socket activation with several sockets": a descriptor
/// named `tls` (systemd's `FileDescriptorName=tls`) is a TLS listener
/// serving `--tls-cert`, beside a plain one (`web`) and a Unix one
/// (`local`). At exit the inherited Unix socket's file stays: it belongs to
/// the holder, whose socket still takes connections.
#[test]
fn socket_activation_serves_a_tls_descriptor_and_a_unix_one() {
    let certs = Certs::new();
    let dir = SocketDir::new("act");
    let path = dir.path("local.sock");
    let web = listening_socket();
    let tls = listening_socket();
    let local = UnixListener::bind(&path).unwrap();
    let cert = certs.path("server.pem");
    let key = certs.path("server.key");
    let mut command = activated_command(
        &[web.as_raw_fd(), tls.as_raw_fd(), local.as_raw_fd()],
        &[
            "--workers",
            "2",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    command.env("LISTEN_FDNAMES", "web:tls:local");
    let mut wharf = spawn_wharf_command(command);
    assert_eq!(wharf.addr, web.local_addr().unwrap(), "{}", wharf.log());
    wait_log(&wharf, "serving descriptor 3 (web)");
    wait_log(&wharf, "serving descriptor 4 (tls)");
    wait_log(&wharf, "serving descriptor 5 (local)");
    wait_log(
        &wharf,
        &format!("listening on {} (tls, ", tls.local_addr().unwrap()),
    );
    wait_log(&wharf, &format!("listening on {} (", bind_arg(&path)));

    Client::connect(web.local_addr().unwrap()).echo(b"plain on web");
    let mut secure = ClientSetup::new(&certs)
        .connect(tls.local_addr().unwrap())
        .unwrap_or_else(|e| panic!("TLS handshake on the tls descriptor: {e}\n{}", wharf.log()));
    secure.echo(b"inside TLS on the tls descriptor");
    drop(secure);
    UnixClient::connect(&path).echo(b"plain on the inherited Unix socket");

    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(20)), 0);
    assert!(
        path.exists(),
        "the inherited socket's file was removed:\n{}",
        wharf.log()
    );
    // Still the holder's socket, listening: a client waits in its backlog.
    let _waiting = UnixStream::connect(&path).expect("the holder's socket still listens");
    local.set_nonblocking(false).unwrap();
    local.accept().expect("accept from the backlog");
}

/// Operations: a descriptor named `tls` without `--tls-cert`/`--tls-key`
/// cannot be served: exit 1 with one line.
#[test]
fn socket_activation_with_a_tls_descriptor_needs_a_certificate() {
    let tls = listening_socket();
    let mut command = activated_command(&[tls.as_raw_fd()], &["--workers", "1"]);
    command.env("LISTEN_FDNAMES", "tls");
    let (code, stderr) = run_to_exit(command);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    assert!(lines[0].contains("certificate"), "{stderr}");
}
