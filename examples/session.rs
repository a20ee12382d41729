//! A service that keeps state per client: a tiny key-value session.
//!
//! Each connection has its own store, created when its first request
//! arrives and dropped when it closes. Between requests a connection may
//! rest in the poller and come back on another worker; its session comes
//! with it. Requests are text:
//!
//! ```text
//! SET key value   ->  OK
//! GET key         ->  the value (ERROR if unset)
//! COUNT           ->  requests this connection has made, this one included
//! WHO             ->  this connection's id and address
//! ```
//!
//! Run with `cargo run --example session`; it starts a server on a free port
//! in line framing (so `nc` works too while it runs), talks to it over two
//! connections and drains it. Pass `--hold` to keep it running until Ctrl-C.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use wharf::{Config, ConnInfo, Framing, Response, Server, Service, ServiceError};

/// The service itself holds nothing per client: that is the session's job.
struct KeyValue;

/// One connection's state.
struct Session {
    who: ConnInfo,
    store: HashMap<String, String>,
    requests: u64,
}

impl Service for KeyValue {
    type Session = Session;

    fn open(&self, conn: &ConnInfo) -> Session {
        Session {
            who: conn.clone(),
            store: HashMap::new(),
            requests: 0,
        }
    }

    fn call(
        &self,
        session: &mut Session,
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        session.requests += 1;
        let text = std::str::from_utf8(request).map_err(|_| "request is not UTF-8")?;
        let mut words = text.splitn(3, ' ');
        let reply = match (words.next(), words.next(), words.next()) {
            (Some("SET"), Some(key), Some(value)) => {
                session.store.insert(key.to_owned(), value.to_owned());
                "OK".to_owned()
            }
            (Some("GET"), Some(key), None) => session
                .store
                .get(key)
                .cloned()
                .ok_or_else(|| format!("{key} is not set"))?,
            (Some("COUNT"), None, None) => session.requests.to_string(),
            (Some("WHO"), None, None) => format!("#{} {}", session.who.id, session.who.peer),
            _ => return Err("expected SET key value, GET key, COUNT or WHO".into()),
        };
        response.extend_from_slice(reply.as_bytes());
        Ok(())
    }
}

/// Sends one line and returns the reply line.
fn ask(stream: &mut BufReader<TcpStream>, line: &str) -> std::io::Result<String> {
    writeln!(stream.get_mut(), "{line}")?;
    let mut reply = String::new();
    stream.read_line(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        workers: 2,
        framing: Framing::Line,
        ..Config::default()
    };
    let server = Server::start("127.0.0.1:0", config, KeyValue)?;
    let addr = server.local_addr();
    println!("key-value sessions on {addr} (line framing)");

    let mut clients = [
        ("alice", BufReader::new(TcpStream::connect(addr)?)),
        ("bob", BufReader::new(TcpStream::connect(addr)?)),
    ];
    for (who, line) in [
        (0, "SET colour blue"),
        (1, "SET colour green"),
        (0, "GET colour"),
        (1, "GET colour"),
        (1, "GET size"),
        (0, "COUNT"),
        (0, "WHO"),
    ] {
        let (name, stream) = &mut clients[who];
        println!("{name:>5}: {line:<16} -> {}", ask(stream, line)?);
    }

    if std::env::args().any(|a| a == "--hold") {
        println!(
            "holding; try: nc {} {}   (Ctrl-C to stop)",
            addr.ip(),
            addr.port()
        );
        let handle = server.handle();
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
        if signals.forever().next().is_some() {
            handle.shutdown();
        }
    } else {
        server.handle().shutdown();
    }
    println!("drained: {}", server.join());
    Ok(())
}
