//! `wharf client`'s flags: where to connect, what to send (lines from
//! stdin, `--send`, or `--ping`), how long to wait, and when to retry;
//! with the exit statuses its `--help` lists. The TLS flags are in
//! `client_tls_args`.

use std::time::Duration;

use clap::Args;

use super::client_tls_args::ClientTlsArgs;
use super::values::{connect_addr, duration, positive_duration, FramingArg};
use crate::cli::Cli;

/// The exit statuses of `wharf client`, as docs/protocol.md documents them.
const CLIENT_EXIT_STATUS: &str = "\
Exit status:
  0         every request answered
  1         another failure (I/O, malformed reply, a --tls-ca/--tls-cert/--tls-key file)
  2         bad flags, including a --connect address that does not parse or resolve
  3         cannot connect (refused, unreachable, timed out), or the TLS handshake failed
            (untrusted certificate, name mismatch, a client certificate required or
            rejected, no common protocol)
  4         the server closed without GOAWAY, or a reply did not come within --reply-timeout
  5         at least one request was answered with ERROR
  11 to 16  GOAWAY 1 to 6 (11 SHUTDOWN, 12 HEARTBEAT_TIMEOUT, 13 BUSY, 14 PROTOCOL_ERROR, 15 FRAME_TOO_LARGE, 16 LIMITED)
With --retries, the status is that of the last failure once the retries run out.";

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUS)]
pub struct ClientArgs {
    /// Server address: host:port (a name is resolved again on each connect), or unix:PATH for a Unix socket.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR", value_parser = connect_addr)]
    pub connect: String,
    /// Wire format; must match the server's.
    #[arg(long, value_enum, default_value_t = FramingArg::Length)]
    pub framing: FramingArg,
    /// The server's heartbeat timeout: while stdin is idle a PING is sent every third of it.
    #[arg(long, default_value = "30s", value_name = "D", value_parser = positive_duration)]
    pub heartbeat_timeout: Duration,
    /// Send this request (repeatable), print the replies and exit.
    #[arg(long, value_name = "TEXT", conflicts_with = "ping")]
    pub send: Vec<String>,
    /// Measure round-trip times with PING.
    #[arg(long)]
    pub ping: bool,
    /// How many PINGs to send with --ping.
    // `requires` alone lets `--count 3 --send x` through: clap waives a
    // requirement whose target (--ping) conflicts with a flag that is
    // present (--send), so the conflict is stated here too.
    #[arg(long, default_value_t = 4, value_name = "N", requires = "ping", conflicts_with = "send",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Pause between PINGs with --ping.
    #[arg(long, default_value = "1s", value_name = "D", requires = "ping", conflicts_with = "send",
          value_parser = duration)]
    pub interval: Duration,
    /// Longest wait for the connection to be established.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = positive_duration)]
    pub connect_timeout: Duration,
    /// Longest wait for a reply that is owed.
    #[arg(long, default_value = "30s", value_name = "D", value_parser = positive_duration)]
    pub reply_timeout: Duration,
    /// Reconnect up to N times in a row after GOAWAY 1 (SHUTDOWN), 3 (BUSY) or 6 (LIMITED: waiting at least its "retry after" hint), resending the unanswered requests; 0 = never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// The requests are safe to run twice: also retry a connection lost without GOAWAY (needs --retries).
    #[arg(long, requires = "retries")]
    pub idempotent: bool,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

impl ClientArgs {
    /// The rules between flags that clap cannot state: `--tls` to a
    /// `unix:` address needs `--tls-server-name`, since a path names no
    /// host to verify the certificate for. A broken rule is a flag error
    /// (exit 2), worded like clap's.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.connect.starts_with("unix:") && self.tls.enabled && self.tls.server_name.is_none() {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Built, so the usage line names `wharf client`.
            command.build();
            let client = command.find_subcommand_mut("client").map(|c| c.clone());
            let mut command = client.unwrap_or(command);
            return Err(command.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--tls with --connect unix:PATH needs --tls-server-name NAME \
                 (the name the server's certificate must carry: a path names no host)",
            ));
        }
        Ok(())
    }
}
