//! The client over a Unix socket (docs/protocol.md, "`wharf client`"):
//! `Client::connect_unix`, `Client::connect_to("unix:PATH")` and `wharf
//! client --connect unix:PATH` reach a Unix stream listener; retries
//! reconnect to the same path; TLS works over it when a server name is
//! given, and without one is refused before connecting (a flag error in
//! the binary).
//!
//! The servers are fakes on a `UnixListener` in a fresh temporary
//! directory (removed at the end), so these tests do not depend on the
//! server's Unix listeners. Every read has a timeout and every child a
//! deadline.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use common::client_cli::{assert_exit, run_client};
use common::client_tls::{rustls_server, Pki};
use common::pki::Dir;
use common::READ_TIMEOUT;
use rustls::{ServerConfig, ServerConnection};
use wharf::client::{ClientTls, ServerAddr};
use wharf::frame::{DATA, PING, PONG};
use wharf::{Client, ClientError, ClientOptions, Framing, GoAwayCode, Reply};

/// What one accepted connection does.
type Script = Box<dyn FnOnce(UnixStream) + Send>;

/// A fake server on a Unix socket in its own temporary directory: it runs
/// one script per accepted connection, in order; joining it returns the
/// DATA payloads each connection received.
struct UnixFake {
    dir: Dir,
    path: PathBuf,
    listener: UnixListener,
    thread: Option<JoinHandle<()>>,
}

impl UnixFake {
    fn start(tag: &str, scripts: Vec<Script>) -> UnixFake {
        let dir = Dir::new(tag);
        let path = dir.path("wharf.sock");
        let listener = UnixListener::bind(&path).expect("bind the fake's Unix socket");
        let accepting = listener.try_clone().unwrap();
        let thread = thread::spawn(move || {
            for script in scripts {
                let (stream, _) = accepting.accept().expect("the fake accepts");
                stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                script(stream);
            }
        });
        UnixFake {
            dir,
            path,
            listener,
            thread: Some(thread),
        }
    }

    fn arg(&self) -> String {
        format!("unix:{}", self.path.display())
    }

    /// Waits for the scripts (a failed one fails the test), then checks
    /// that nobody else connected.
    fn finish(mut self) {
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        self.listener.set_nonblocking(true).unwrap();
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(_) => panic!("an unexpected connection"),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

impl Drop for UnixFake {
    fn drop(&mut self) {
        // A script still waiting to accept is let go (it fails at once).
        if self.thread.is_some() {
            let _ = UnixStream::connect(&self.path);
        }
        let _ = std::fs::remove_dir_all(&self.dir.0);
    }
}

/// Reads one length frame: (kind, payload); `None` at the end.
fn read_frame(stream: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("fake: {e}"),
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0; len - 1];
    stream
        .read_exact(&mut payload)
        .expect("the frame's payload");
    Some((header[4], payload))
}

/// Answers a frame like the echo service.
fn answer(stream: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut out = Vec::new();
    let kind = if kind == PING { PONG } else { DATA };
    Framing::Length.encode(kind, payload, &mut out);
    stream.write_all(&out)
}

/// Echoes every frame until the client closes; `record` gets the payloads.
fn echo(record: Option<Arc<std::sync::Mutex<Vec<Vec<u8>>>>>) -> Script {
    Box::new(move |mut stream| {
        while let Some((kind, payload)) = read_frame(&mut stream) {
            if let Some(record) = &record {
                common::fake::lock(record).push(payload.clone());
            }
            if answer(&mut stream, kind, &payload).is_err() {
                break;
            }
        }
    })
}

fn options() -> ClientOptions {
    ClientOptions {
        read_timeout: Some(READ_TIMEOUT),
        ..ClientOptions::default()
    }
}

#[test]
fn library_reaches_a_unix_socket_by_path_and_by_its_unix_address() {
    let fake = UnixFake::start("client-unix-reach", vec![echo(None), echo(None)]);
    let mut client = Client::connect_unix(&fake.path, options()).unwrap();
    assert_eq!(client.request(b"hello").unwrap(), b"hello");
    client.ping().unwrap();
    assert_eq!(client.peer_addr(), None);
    assert_eq!(client.server_addr(), &ServerAddr::Unix(fake.path.clone()));
    assert_eq!(client.server_addr().to_string(), fake.arg());
    drop(client);

    let mut client = Client::connect_to(&fake.arg(), options()).unwrap();
    client.send(b"one").unwrap();
    client.send(b"two").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"one".to_vec()));
    assert_eq!(client.recv().unwrap(), Reply::Data(b"two".to_vec()));
    drop(client);
    fake.finish();
}

#[test]
fn library_retries_a_goaway_6_over_the_same_unix_socket() {
    let resent = Arc::default();
    let fake = UnixFake::start(
        "client-unix-retry",
        vec![
            Box::new(|mut stream: UnixStream| {
                let first = read_frame(&mut stream).expect("first request");
                read_frame(&mut stream).expect("second request");
                answer(&mut stream, first.0, &first.1).unwrap();
                let mut out = Vec::new();
                let reason = "retry after 100 ms: connections per address";
                Framing::Length.encode_goaway(GoAwayCode::Limited, reason, &mut out);
                stream.write_all(&out).unwrap();
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.read_to_end(&mut Vec::new());
            }),
            echo(Some(Arc::clone(&resent))),
        ],
    );
    let options = ClientOptions {
        retries: 2,
        ..options()
    };
    let mut client = Client::connect_unix(&fake.path, options).unwrap();
    client.send(b"a").unwrap();
    client.send(b"b").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"a".to_vec()));
    assert_eq!(client.recv().unwrap(), Reply::Data(b"b".to_vec()));
    assert_eq!(client.reconnects(), 1);
    drop(client);
    fake.finish();
    assert_eq!(*common::fake::lock(&resent), [b"b".to_vec()]);
}

#[test]
fn library_connect_to_a_missing_socket_names_it() {
    let dir = Dir::new("client-unix-missing");
    let path = dir.path("nobody.sock");
    let e = Client::connect_unix(&path, options()).unwrap_err();
    match &e {
        ClientError::Connect { addr, source } => {
            assert_eq!(addr, &format!("unix:{}", path.display()));
            assert_eq!(source.kind(), ErrorKind::NotFound, "{e}");
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir.0);
}

/// A script that runs a rustls server handshake on the connection, then
/// echoes frames inside TLS until the client closes.
fn tls_echo(config: Arc<ServerConfig>) -> Script {
    Box::new(move |mut stream| {
        let mut conn = ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut stream).expect("the TLS handshake");
        }
        let mut tls = rustls::StreamOwned::new(conn, stream);
        while let Some((kind, payload)) = read_frame(&mut tls) {
            if answer(&mut tls, kind, &payload).is_err() {
                break;
            }
            let _ = tls.flush();
        }
    })
}

fn tls_pki_and_config(tag: &str) -> (Pki, Arc<ServerConfig>) {
    let pki = Pki::new(tag);
    let config = rustls_server(&pki, rustls::DEFAULT_VERSIONS, b"wharf", false);
    (pki, config)
}

#[test]
fn library_speaks_tls_over_a_unix_socket_with_a_server_name() {
    let (pki, config) = tls_pki_and_config("client-unix-tls");
    let fake = UnixFake::start("client-unix-tls-sock", vec![tls_echo(config)]);
    // Without a server name: refused before connecting (the fake would
    // otherwise see a connection).
    let no_name = ClientOptions {
        tls: Some(ClientTls {
            ca: Some(pki.path("ca.pem")),
            ..ClientTls::default()
        }),
        ..options()
    };
    let e = Client::connect_unix(&fake.path, no_name).unwrap_err();
    assert!(
        matches!(&e, ClientError::TlsNeedsServerName { addr } if *addr == fake.arg()),
        "{e:?}"
    );
    let named = ClientOptions {
        tls: Some(ClientTls {
            ca: Some(pki.path("ca.pem")),
            server_name: Some("localhost".to_owned()),
            ..ClientTls::default()
        }),
        ..options()
    };
    let mut client = Client::connect_to(&fake.arg(), named).unwrap();
    assert_eq!(client.request(b"sealed").unwrap(), b"sealed");
    drop(client);
    fake.finish();
}

#[test]
fn binary_sends_over_a_unix_socket() {
    let fake = UnixFake::start("client-unix-cli", vec![echo(None)]);
    let done = run_client(
        &[
            "--connect",
            &fake.arg(),
            "--send",
            "hello",
            "--send",
            "world",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "hello\nworld\n");
    fake.finish();
}

#[test]
fn binary_speaks_tls_over_a_unix_socket_given_a_server_name() {
    let (pki, config) = tls_pki_and_config("client-unix-cli-tls");
    let fake = UnixFake::start("client-unix-cli-tls-sock", vec![tls_echo(config)]);
    let ca = pki.arg("ca.pem");
    // Without --tls-server-name: a flag error, and no connection.
    let done = run_client(
        &[
            "--connect",
            &fake.arg(),
            "--tls",
            "--tls-ca",
            &ca,
            "--send",
            "x",
        ],
        b"",
    );
    assert_exit(&done, 2);
    assert!(
        done.stderr
            .starts_with("error: --tls with --connect unix:PATH needs --tls-server-name NAME"),
        "{done:#?}"
    );
    let done = run_client(
        &[
            "--connect",
            &fake.arg(),
            "--tls",
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "localhost",
            "--send",
            "sealed",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "sealed\n");
    fake.finish();
}

#[test]
fn binary_exits_3_for_a_missing_socket_and_2_for_an_empty_path() {
    let dir = Dir::new("client-unix-cli-missing");
    let missing = format!("unix:{}", dir.path("nobody.sock").display());
    let done = run_client(&["--connect", &missing, "--send", "x"], b"");
    assert_exit(&done, 3);
    assert_eq!(
        done.stderr.trim_end(),
        format!(
            "wharf client: cannot connect to {missing}: No such file or directory (os error 2)"
        )
    );
    let done = run_client(&["--connect", "unix:", "--send", "x"], b"");
    assert_exit(&done, 2);
    assert!(
        done.stderr.contains("unix: needs the socket's path"),
        "{done:#?}"
    );
    let _ = std::fs::remove_dir_all(Path::new(&dir.0));
}
