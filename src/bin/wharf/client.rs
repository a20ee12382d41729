//! `wharf client`: talk to a server from the terminal or a script.
//!
//! Three modes: lines from stdin (each line one DATA request, each reply
//! printed as it arrives, PINGs while stdin is idle), `--send TEXT`
//! (repeatable: send, print, exit) and `--ping` (round-trip times).
//!
//! `--connect` takes `host:port` or `unix:PATH` (a Unix socket listener).
//!
//! Exit codes: 0 success; 1 other failure (a TLS file among them); 2 bad
//! flags; 3 cannot connect, or the TLS handshake failed;
//! 4 the server closed without GOAWAY or a reply timed out; 5 a request got
//! ERROR; 10 + code for a GOAWAY (11 SHUTDOWN, 12 HEARTBEAT_TIMEOUT, 13 BUSY,
//! 14 PROTOCOL_ERROR, 15 FRAME_TOO_LARGE, 16 LIMITED).
//!
//! With `--retries N` the library's [`Client`] reconnects after GOAWAY 1,
//! 3 or 6 (and, with `--idempotent`, after a connection lost without
//! GOAWAY) and resends the unanswered requests, in every mode; after
//! GOAWAY 6 it waits at least the server's `retry after N ms` hint. Each
//! reconnect is one line on stderr, and when retries run out the exit
//! status is the last failure's (11, 13, 16, 3, or 4).
//!
//! A GOAWAY 6 is described in words, with its hint ("turned away:
//! per-address limit ..."). After a GOAWAY 1, 3 or 6 that leaves requests
//! unanswered, a second line says how many, and that they were never
//! started. A reply
//! timeout before any reply in length framing asks whether the server uses
//! line framing: such a server waits for a newline that never comes.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wharf::client::TlsFailure;
use wharf::{Client, ClientError, ClientOptions, Framing, GoAwayCode, Reply};

use crate::cli::ClientArgs;

/// Exit status when a request was answered with ERROR.
const EXIT_SERVER_ERROR: u8 = 5;

/// Requests sent and replies received, to say how many were left
/// unanswered when the connection ends early.
#[derive(Debug, Default)]
struct Tally {
    /// Requests handed to the connection (the stdin thread adds to it).
    sent: Arc<AtomicU64>,
    /// Replies received, ERROR replies included.
    answered: u64,
}

impl Tally {
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

pub fn run(args: ClientArgs) -> ExitCode {
    let framing = Framing::from(args.framing);
    let mut tally = Tally::default();
    let options = ClientOptions {
        framing: args.framing.into(),
        connect_timeout: args.connect_timeout,
        read_timeout: Some(args.reply_timeout),
        retries: args.retries,
        idempotent: args.idempotent,
        tls: args.tls.settings(&args.connect),
        ..ClientOptions::default()
    };
    let outcome = Client::connect_to(&args.connect, options).and_then(|mut client| {
        client.on_reconnect(|reconnect| eprintln!("{reconnect}"));
        let outcome = if args.ping {
            ping(&mut client, &args, &mut tally)
        } else if !args.send.is_empty() {
            send_all(&mut client, &args.send, &mut tally)
        } else {
            interactive(&mut client, &args, &mut tally)
        };
        if client.reconnects() > 0 {
            eprintln!(
                "wharf client: {} reconnect(s), {} request(s) resent",
                client.reconnects(),
                client.resent()
            );
        }
        outcome
    });
    match outcome {
        Ok(errors) if errors > 0 => ExitCode::from(EXIT_SERVER_ERROR),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", describe(&e, framing, &tally));
            if let Some(line) = unanswered(&e, &tally) {
                eprintln!("{line}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The line printed on stderr for a failure.
fn describe(e: &ClientError, framing: Framing, tally: &Tally) -> String {
    match e {
        ClientError::GoAway { code, reason } if *code == GoAwayCode::Limited.as_u16() => {
            turned_away(e, reason)
        }
        ClientError::GoAway { .. } => e.to_string(),
        ClientError::Tls { failure, .. } => format!("wharf client: {e}{}", tls_hint(failure)),
        // A `--framing line` server waits for a newline that length frames
        // do not contain, so it never answers: the likeliest cause when
        // nothing at all has been answered.
        ClientError::Timeout(_) if framing == Framing::Length && tally.answered == 0 => {
            format!("wharf client: {e} (no reply at all yet: is the server using --framing line?)")
        }
        _ => format!("wharf client: {e}"),
    }
}

/// The line for a GOAWAY 6 (LIMITED): the server turned this client's
/// address away, and when it may come back, e.g. `wharf client: turned
/// away: per-address limit (GOAWAY 6 LIMITED), retry after 250 ms
/// (connections per address)`.
fn turned_away(e: &ClientError, reason: &str) -> String {
    let head = "wharf client: turned away: per-address limit (GOAWAY 6 LIMITED)";
    let Some(hint) = e.retry_after() else {
        return format!("{head}: {reason}");
    };
    // The reason's words after the hint, if any.
    let detail = reason
        .split_once(" ms")
        .map(|(_, rest)| rest.trim_start_matches(':').trim())
        .unwrap_or_default();
    let ms = hint.as_millis();
    if detail.is_empty() {
        format!("{head}, retry after {ms} ms")
    } else {
        format!("{head}, retry after {ms} ms ({detail})")
    }
}

/// What the operator can do about a failed handshake, where a flag helps.
fn tls_hint(failure: &TlsFailure) -> &'static str {
    match failure {
        TlsFailure::Untrusted(_) => " (is --tls-ca the CA that signed it?)",
        TlsFailure::NameMismatch { .. } => " (--tls-server-name sets the name verified)",
        TlsFailure::ClientCertRequired => " (give --tls-cert and --tls-key)",
        TlsFailure::NotTls(_) | TlsFailure::Closed => " (is it a TLS listener, --tls-bind?)",
        _ => "",
    }
}

/// After a GOAWAY 1, 3 or 6 that cut a batch short (a drain, a busy
/// server, a per-address limit), the line saying how many requests were
/// not answered, e.g. `wharf client: GOAWAY 1 SHUTDOWN: 3 of 10 request(s)
/// not answered (never started; safe to resend)`. Those codes carry the
/// server's promise that nothing after the last reply was started
/// (docs/protocol.md, "Retrying safely"); the others end a connection the
/// client got wrong, not a batch.
fn unanswered(e: &ClientError, tally: &Tally) -> Option<String> {
    let code = GoAwayCode::from_u16(e.goaway_code()?)?;
    if !code.retryable() {
        return None;
    }
    let sent = tally.sent();
    let missing = sent.checked_sub(tally.answered).filter(|&n| n > 0)?;
    Some(format!(
        "wharf client: GOAWAY {code}: {missing} of {sent} request(s) not answered \
         (never started; safe to resend)"
    ))
}

/// The documented exit status for each cause.
pub fn exit_code(e: &ClientError) -> u8 {
    match e {
        // 11 to 16 for the codes 1 to 6; a code this client does not know
        // is another failure.
        ClientError::GoAway { code, .. } => GoAwayCode::from_u16(*code)
            .and_then(|c| u8::try_from(c.as_u16()).ok())
            .map_or(1, |c| 10 + c),
        ClientError::Connect { .. } | ClientError::Tls { .. } => 3,
        ClientError::TlsServerName(_) | ClientError::TlsNeedsServerName { .. } => 2,
        ClientError::TlsFile(_) => 1,
        ClientError::Closed | ClientError::Timeout(_) => 4,
        ClientError::Server(_) => EXIT_SERVER_ERROR,
        ClientError::Protocol(_) | ClientError::Io(_) => 1,
    }
}

/// Prints one reply on stdout; returns whether it was an ERROR.
fn print_reply(out: &mut impl Write, reply: &Reply) -> io::Result<bool> {
    match reply {
        Reply::Data(data) => {
            out.write_all(data)?;
            out.write_all(b"\n")?;
        }
        Reply::Pong(_) => writeln!(out, "PONG")?,
        Reply::Error(message) => writeln!(out, "ERROR {message}")?,
    }
    out.flush()?;
    Ok(matches!(reply, Reply::Error(_)))
}

/// `--send`: pipeline every request, then print the replies in order.
fn send_all(
    client: &mut Client,
    requests: &[String],
    tally: &mut Tally,
) -> Result<u64, ClientError> {
    for request in requests {
        client.send(request.as_bytes())?;
        tally.sent.fetch_add(1, Ordering::Relaxed);
    }
    client.flush()?;
    let mut out = io::stdout().lock();
    let mut errors = 0;
    for _ in requests {
        let reply = client.recv()?;
        tally.answered += 1;
        errors += u64::from(print_reply(&mut out, &reply)?);
    }
    Ok(errors)
}

/// stdin mode: a sender thread turns lines into requests while this thread
/// prints replies; PINGs keep the connection alive while stdin is idle.
fn interactive(
    client: &mut Client,
    args: &ClientArgs,
    tally: &mut Tally,
) -> Result<u64, ClientError> {
    client.start_heartbeat(args.heartbeat_timeout / 3)?;
    let sender = client.sender();
    let sent = Arc::clone(&tally.sent);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Result<(), ClientError>>(1);
    std::thread::Builder::new()
        .name("wharf-client-stdin".into())
        .spawn(move || {
            let result = (|| {
                for line in io::stdin().lock().split(b'\n') {
                    let line = line?;
                    sender.request(line.strip_suffix(b"\r").unwrap_or(&line))?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                sender.shutdown_write()
            })();
            let _ = done_tx.send(result);
        })?;

    let mut out = io::stdout().lock();
    let mut errors = 0;
    // How stdin ended, once it has: a failed send is reported only after the
    // replies still owed, so a GOAWAY that explains it wins.
    let mut stdin_end: Option<Result<(), ClientError>> = None;
    loop {
        if stdin_end.is_none() {
            stdin_end = done_rx.try_recv().ok();
        }
        if stdin_end.is_some() && client.outstanding() == 0 {
            return stdin_end.unwrap_or(Ok(())).map(|()| errors);
        }
        match client.recv() {
            Ok(reply) => {
                tally.answered += 1;
                errors += u64::from(print_reply(&mut out, &reply)?);
            }
            // After stdin's end the server closes once everything is
            // answered; the stdin thread may not have reported that end yet.
            Err(ClientError::Closed) if client.outstanding() == 0 => {
                let end = stdin_end.or_else(|| done_rx.recv_timeout(Duration::from_secs(1)).ok());
                return match end {
                    Some(Ok(())) => Ok(errors),
                    Some(Err(e)) => Err(e),
                    None => Err(ClientError::Closed),
                };
            }
            // A timeout while nothing is owed just means stdin is idle.
            Err(ClientError::Timeout(_)) if client.outstanding() == 0 && stdin_end.is_none() => {}
            Err(e) => return Err(e),
        }
    }
}

/// `--ping`: round-trip times like ping(8), then a summary.
fn ping(client: &mut Client, args: &ClientArgs, tally: &mut Tally) -> Result<u64, ClientError> {
    let peer = client.server_addr().clone();
    let mut times = Vec::new();
    let mut out = io::stdout().lock();
    for seq in 0..args.count {
        if seq > 0 {
            std::thread::sleep(args.interval);
        }
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let rtt = client.ping()?;
        tally.answered += 1;
        writeln!(out, "PONG from {peer}: seq={seq} time={:.3} ms", ms(rtt))?;
        times.push(rtt);
    }
    if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
        let avg = times.iter().sum::<Duration>() / times.len() as u32;
        writeln!(
            out,
            "{} pings, {} pongs; rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            args.count,
            times.len(),
            ms(*min),
            ms(avg),
            ms(*max)
        )?;
    }
    Ok(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
