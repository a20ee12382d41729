//! Helpers of the tests of the library's blocking [`wharf::Client`]
//! (`client_*.rs`): client options with a read timeout in both framings,
//! server configs for line framing and a short heartbeat, the check of a
//! GOAWAY as a typed error, and stopping a server.

use std::net::SocketAddr;
use std::time::Duration;

use wharf::{Client, ClientError, ClientOptions, Config, Framing, GoAwayCode, Server};

use super::config;

/// The longest a test waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Length framing, with a read timeout so that nothing hangs.
pub fn options() -> ClientOptions {
    ClientOptions {
        read_timeout: Some(REPLY_TIMEOUT),
        ..ClientOptions::default()
    }
}

/// Line framing, with a read timeout.
pub fn line_options() -> ClientOptions {
    ClientOptions {
        framing: Framing::Line,
        ..options()
    }
}

pub fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, options()).expect("client connects")
}

pub fn connect_line(addr: SocketAddr) -> Client {
    Client::connect(addr, line_options()).expect("client connects (line framing)")
}

pub fn line_config() -> Config {
    Config {
        framing: Framing::Line,
        ..config()
    }
}

/// A short heartbeat (600 ms), for the idle tests. The reap interval is the
/// largest allowed: the server shuts a reaped socket down completely if its
/// worker has not sent the GOAWAY within about `reap_interval + LINGER`, and
/// on a loaded machine a worker can be descheduled that long.
pub fn short_heartbeat(framing: Framing) -> Config {
    Config {
        heartbeat_timeout: HEARTBEAT,
        reap_interval: HEARTBEAT / 4,
        framing,
        ..config()
    }
}

pub const HEARTBEAT: Duration = Duration::from_millis(600);

/// Comfortably more than three heartbeat timeouts.
pub const IDLE: Duration = Duration::from_millis(2100);

/// Asserts that `result` is a GOAWAY with `code`, and that it reads like
/// `GOAWAY <code> <NAME>: <reason>` with the server's reason text.
pub fn assert_goaway<T: std::fmt::Debug>(result: Result<T, ClientError>, code: GoAwayCode) {
    let err = result.expect_err("expected a GOAWAY error");
    match &err {
        ClientError::GoAway { code: got, reason } => {
            assert_eq!(*got, code.as_u16(), "GOAWAY code ({err:?})");
            assert_eq!(reason, code.reason(), "GOAWAY reason text");
        }
        other => panic!("expected GOAWAY {code}, got {other:?}"),
    }
    assert_eq!(err.goaway_code(), Some(code.as_u16()));
    assert_eq!(
        err.to_string(),
        format!(
            "GOAWAY {} {}: {}",
            code.as_u16(),
            code.name(),
            code.reason()
        )
    );
}

/// Stops a server and waits for its drain.
pub fn stop(server: Server) {
    server.handle().shutdown();
    server.join();
}
