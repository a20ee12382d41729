//! Embeds wharf with a custom service and stops it programmatically.
//!
//! The service upper-cases ASCII and refuses empty requests with an ERROR.
//! Run with `cargo run --example uppercase`; it starts a server on a free
//! port, sends three requests over one connection (pipelined), prints the
//! replies, then drains the server and prints its report.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use wharf::frame::{DATA, ERROR};
use wharf::{Config, Framing, Response, Server, ServiceError};

fn uppercase(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if request.is_empty() {
        return Err("empty request".into());
    }
    response.extend_from_slice(&request.to_ascii_uppercase());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uppercase: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        workers: 2,
        ..Config::default()
    };
    let server = Server::start("127.0.0.1:0", config, uppercase)?;
    println!("uppercase service on {}", server.local_addr());

    let stream = TcpStream::connect(server.local_addr())?;
    let mut requests = Vec::new();
    for text in ["hello", "", "wharf"] {
        Framing::Length.encode_data(text.as_bytes(), &mut requests);
    }
    (&stream).write_all(&requests)?;

    let mut reader = BufReader::new(&stream);
    for _ in 0..3 {
        let mut header = [0u8; 5];
        reader.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut payload = vec![0; len.checked_sub(1).ok_or("a reply of length 0")?];
        reader.read_exact(&mut payload)?;
        let text = String::from_utf8_lossy(&payload);
        match header[4] {
            DATA => println!("DATA  {text}"),
            ERROR => println!("ERROR {text}"),
            kind => println!("kind {kind}: {text}"),
        }
    }

    server.handle().shutdown();
    let report = server.join();
    println!("drained: {report}");
    Ok(())
}
