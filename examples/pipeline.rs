//! A client that pipelines: send a batch of requests in one write, then read
//! the replies, which arrive in the order the requests were sent.
//!
//! Run a server first (`cargo run --release -- serve`), then
//! `cargo run --example pipeline [ADDR]` (default 127.0.0.1:7878). Without
//! a server it says so, with that hint, and exits 1.

use std::error::Error;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Instant;

use wharf::{Client, ClientError, ClientOptions, Reply};

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".to_owned());
    match run(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline: {e}");
            if matches!(e.downcast_ref(), Some(ClientError::Connect { .. })) {
                eprintln!(
                    "hint: start a server first (`cargo run --release -- serve`), \
                     or pass its address: `cargo run --example pipeline ADDR`"
                );
            }
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str) -> Result<(), Box<dyn Error>> {
    // Resolved here, so that a bad address is named in the message.
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    let mut client = Client::connect(&addrs[..], ClientOptions::default())?;

    let batch = 1000;
    let start = Instant::now();
    for i in 0..batch {
        client.send(format!("request {i}").as_bytes())?;
    }
    client.send_ping(b"end of batch")?;
    client.flush()?;

    for i in 0..batch {
        match client.recv()? {
            Reply::Data(data) if data == format!("request {i}").as_bytes() => {}
            Reply::Data(data) => {
                let data = String::from_utf8_lossy(&data);
                return Err(format!("request {i}: the reply was {data:?}").into());
            }
            Reply::Pong(_) => return Err(format!("request {i}: the reply was a PONG").into()),
            Reply::Error(message) => {
                return Err(format!("request {i}: the reply was ERROR {message}").into())
            }
        }
    }
    let Reply::Pong(payload) = client.recv()? else {
        return Err("the PING's reply was not a PONG".into());
    };
    println!(
        "{batch} pipelined requests answered in order in {:.3} ms; then PONG \"{}\"",
        ms(start.elapsed()),
        payload.escape_ascii()
    );
    println!(
        "one round trip without pipelining: {:.3} ms",
        ms(client.ping()?)
    );
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
