//! `wharf serve`: logging, signals, the server, the exit summary.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use log::{debug, info, warn, LevelFilter};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};
use wharf::{Config, Echo, Overload, Server, ShutdownHandle};

use crate::cli::{OverloadArg, ServeArgs};

/// Runs the server until it is drained; exit code 0 after a clean drain, 1
/// when connections had to be closed by force.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args)?;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!("file descriptor limit: {limit}"),
        Err(e) => warn!("cannot raise the file descriptor limit: {e}"),
    }
    // Registered before the server starts, so a signal that arrives right
    // after the listening line is never missed.
    // Registered, and their thread started, before the server starts: a
    // signal that arrives right after the listening line is never missed,
    // and the process has all its threads by then.
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    let (handle_tx, handle_rx) = crossbeam_channel::bounded::<ShutdownHandle>(1);
    std::thread::Builder::new()
        .name("wharf-signals".into())
        .spawn(move || {
            // Disconnected if the server failed to start: nothing to stop.
            let Ok(handle) = handle_rx.recv() else { return };
            let mut signals = signals.forever();
            if let Some(signal) = signals.next() {
                info!(
                    "received {}; draining (send it again to close at once)",
                    name(signal)
                );
                handle.shutdown();
            }
            if let Some(signal) = signals.next() {
                info!(
                    "received {} again; closing every connection now",
                    name(signal)
                );
                handle.force();
            }
        })
        .context("cannot start the signal thread")?;

    let config = config(&args);
    // Settings that are wrong together are bad flags too: exit 2, naming them.
    if let Err(wharf::Error::InvalidConfig(why)) = config.clone().validate() {
        crate::cli::Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, format!("--{why}"))
            .exit();
    }
    let echo = Echo {
        delay: args.delay,
        spin: args.spin,
    };
    let server = Server::start(args.bind, config, echo)?;
    let _ = handle_tx.send(server.handle());

    let report = server.join();
    info!("summary: {report}");
    if report.forced {
        warn!("exiting with status 1: connections were closed by force");
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn config(args: &ServeArgs) -> Config {
    let defaults = Config::default();
    Config {
        workers: args.workers.map_or(defaults.workers, |n| n as usize),
        queue: args.queue,
        max_connections: args.max_connections,
        max_buffered: usize::try_from(args.max_buffered).unwrap_or(usize::MAX),
        overload: match args.overload {
            OverloadArg::Reject => Overload::Reject,
            OverloadArg::Block => Overload::Block,
        },
        heartbeat_timeout: args.heartbeat_timeout,
        reap_interval: args.reap_interval,
        write_timeout: args.write_timeout,
        max_frame: args.max_frame,
        framing: args.framing.into(),
        grace: args.grace,
        drain_delay: args.drain_delay,
        reuse_port: args.reuse_port,
        backlog: args.backlog,
        stats_interval: (!args.stats_interval.is_zero()).then_some(args.stats_interval),
        stay_on_quiet: defaults.stay_on_quiet,
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Logs to stderr, and appends to `--log-file` if given.
fn init_logging(args: &ServeArgs) -> anyhow::Result<()> {
    let level = LevelFilter::from(args.log_level);
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_time_format_rfc3339()
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        level,
        config.clone(),
        TerminalMode::Stderr,
        if std::io::stderr().is_terminal() {
            ColorChoice::Auto
        } else {
            ColorChoice::Never
        },
    )];
    if let Some(path) = &args.log_file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        loggers.push(WriteLogger::new(level, config, file));
    }
    CombinedLogger::init(loggers).context("cannot initialise logging")
}
