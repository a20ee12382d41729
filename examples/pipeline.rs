//! A client that pipelines: send a batch of requests in one write, then read
//! the replies, which arrive in the order the requests were sent.
//!
//! Run a server first (`cargo run --release -- serve`), then
//! `cargo run --example pipeline [ADDR]` (default 127.0.0.1:7878).

use std::time::Instant;

use wharf::{Client, ClientOptions, Reply};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".to_owned());
    let mut client = Client::connect(addr.as_str(), ClientOptions::default())?;

    let batch = 1000;
    let start = Instant::now();
    for i in 0..batch {
        client.send(format!("request {i}").as_bytes())?;
    }
    client.send_ping(b"end of batch")?;
    client.flush()?;

    for i in 0..batch {
        match client.recv()? {
            Reply::Data(data) => assert_eq!(data, format!("request {i}").as_bytes()),
            other => return Err(format!("request {i}: unexpected reply {other:?}").into()),
        }
    }
    let Reply::Pong(payload) = client.recv()? else {
        return Err("the PING's reply was not a PONG".into());
    };
    println!(
        "{batch} pipelined requests answered in order in {:?}; then PONG {:?}",
        start.elapsed(),
        String::from_utf8_lossy(&payload)
    );
    println!("one round trip without pipelining: {:?}", client.ping()?);
    Ok(())
}
