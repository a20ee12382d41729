//! The `wharf` command: a thin layer over the library that turns flags into
//! a [`wharf::Config`], signals into drain calls and the report into a log
//! line and an exit code.

mod bench;
mod cli;
mod client;
mod dev_certs;
mod docs;
mod logfile;
mod serve;
mod signals;
mod systemd;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Client(args) => return client::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::DevCerts(args) => dev_certs::run(args),
        cli::Command::Completions(args) => docs::completions(args.shell),
        cli::Command::Manpage => docs::manpage(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
