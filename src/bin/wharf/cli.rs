//! Command-line flags: the `wharf` command and its subcommands, parsed by
//! clap from the command line and the `WHARF_*` environment variables.
//!
//! Every `serve` flag maps onto one [`wharf::Config`] field; durations read
//! `250ms`, `2s`, `1m` or a bare `0`. Each subcommand's flags have a module
//! of their own (`serve_args` with `tls_args`, `client_args` with
//! `client_tls_args`, `bench_args`), and what a
//! flag's value may be (durations, byte sizes, addresses, counts) is in
//! `values`, which they all share. This file holds the command, and names
//! the environment variable when a bad value came from one.

mod bench_args;
mod client_args;
mod client_tls_args;
mod listen_args;
mod serve_args;
mod tls_args;
mod values;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};

pub use bench_args::BenchArgs;
pub use client_args::ClientArgs;
pub use serve_args::{OverloadArg, ServeArgs};

/// A TCP server with a fixed worker pool, heartbeats and graceful shutdown.
#[derive(Debug, Parser)]
#[command(name = "wharf", version = wharf::build_info::LONG_VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line and the `WHARF_*` environment variables (a
/// flag wins over its variable), or exits 2 with clap's message, naming the
/// variable when the bad value came from one.
pub fn parse() -> Cli {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => name_the_variable(e).exit(),
    };
    // The rules between flags that clap cannot state.
    if let Command::Client(args) = &cli.command {
        if let Err(e) = args.check() {
            e.exit();
        }
    }
    cli
}

/// clap says `invalid value 'x' for '--workers <N>'` whether the value came
/// from the flag or from `WHARF_WORKERS`; an operator who never typed
/// `--workers` needs to be told which variable to fix.
fn name_the_variable(error: clap::Error) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return error;
    };
    let command = Cli::command();
    let found = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .find_map(|candidate| {
            let long = candidate.get_long()?;
            let variable = candidate.get_env()?.to_str()?;
            let flag = format!("--{long}");
            let named = arg == &flag || arg.starts_with(&format!("{flag} "));
            (named && std::env::var_os(variable).is_some_and(|v| v == value.as_str()))
                .then(|| (flag, variable.to_owned()))
        });
    let Some((flag, variable)) = found else {
        return error;
    };
    let on_command_line = std::env::args_os().skip(1).any(|given| {
        given == flag.as_str()
            || given
                .to_str()
                .is_some_and(|given| given.starts_with(&format!("{flag}=")))
    });
    if on_command_line {
        return error;
    }
    let mut message =
        format!("invalid value '{value}' in the environment variable {variable} (for '{arg}')");
    if let Some(why) = std::error::Error::source(&error) {
        message.push_str(&format!(": {why}"));
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        message.push_str(&format!("\n  [possible values: {}]", valid.join(", ")));
    }
    message.push('\n');
    clap::Error::raw(error.kind(), message)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Send requests to a server: lines from stdin, --send TEXT, or --ping.
    Client(ClientArgs),
    /// Measure throughput and latency across pool sizes and recommend one.
    Bench(BenchArgs),
    /// Write a development CA and a server and a client certificate into DIR, to try TLS.
    DevCerts(DevCertsArgs),
    /// Print a completion script for SHELL to stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff, section 1) to stdout.
    Manpage,
}

#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// Directory to write ca.pem, server.pem, server.key, client.pem and client.key into (created if missing; existing files are never overwritten).
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// A DNS name for the server certificate (repeatable) [default: localhost]; it also names 127.0.0.1 and ::1.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
