//! `wharf serve`: systemd's environment, logging, signals, the server, the
//! exit summary.
//!
//! Threads: besides the library's, one signal thread; the main thread waits
//! for the server and, under systemd (`NOTIFY_SOCKET`), sends the periodic
//! notifications while it waits (see `systemd`).
//!
//! Signals:
//!
//! - SIGINT/SIGTERM: the first stops the server (`STOPPING=1` under
//!   systemd; with `--drain-delay`, not-ready but still serving for the
//!   delay, then the drain); the second closes every connection now.
//! - SIGHUP: reopens `--log-file` (after logrotate renamed it), and
//!   reloads the TLS certificate set when there is a TLS listener.
//! - SIGUSR1: logs one line with the counters of the exit summary.
//! - SIGUSR2: means nothing here; logged at warn and ignored. Its default
//!   action would kill the server silently, and operators send it by habit
//!   (other servers use it for a binary upgrade).
//! - SIGQUIT keeps its default action (the process dumps core, where core
//!   dumps are enabled, and dies at once, without a drain): it is the
//!   emergency stop for debugging a stuck server. SIGPIPE is ignored (Rust
//!   does that); a client that goes away is an I/O error on its connection.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;
use log::{debug, error, info, warn, LevelFilter};
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use simplelog::{
    format_description, ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger,
    TerminalMode, WriteLogger,
};
use wharf::{Address, Bind, Config, Echo, Listener, Overload, Security, Server};

use crate::cli::{OverloadArg, ServeArgs};
use crate::logfile::LogFile;
use crate::signals::{Running, SignalHandler};
use crate::systemd::{self, Activation, Notifier, Timing};

/// Runs the server until it is drained; exit code 0 after a clean drain, 1
/// when connections had to be closed by force or the server could not
/// start.
///
/// Flag errors (exit 2) are clap's, on stderr, before the log exists. From
/// then on everything goes through the logger, to stderr and `--log-file`
/// alike: a failure to start is logged as an error line there, not printed
/// by `main`, so that it reaches the log file too. Only a log file that
/// cannot be opened is reported on stderr alone.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args);
    // Settings that are wrong together are bad flags too: exit 2, naming them.
    if let Err(wharf::Error::InvalidConfig(why)) = config.clone().validate() {
        crate::cli::Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, format!("--{why}"))
            .exit();
    }
    // systemd's variables first, while this is the only thread, and before
    // the log file takes a descriptor: socket activation looks at which
    // descriptors from 3 up are open. Their errors wait for the log.
    let activation = Activation::take();
    let notifier = Notifier::take();
    let log_file = match init_logging(&args)? {
        Logging::Ready(log_file) => log_file,
        Logging::FileFailed(e) => {
            error!("{e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    match serve(args, config, activation, notifier, log_file) {
        Ok(code) => Ok(code),
        Err(e) => {
            error!("{e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Starts the server, serves until it is drained, and logs the summary.
fn serve(
    args: ServeArgs,
    config: Config,
    activation: anyhow::Result<Option<Activation>>,
    notifier: anyhow::Result<Option<Notifier>>,
    log_file: Option<LogFile>,
) -> anyhow::Result<ExitCode> {
    let activation = activation?;
    let notifier = notifier?.map(Arc::new);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!("file descriptor limit: {limit}"),
        Err(e) => warn!("cannot raise the file descriptor limit: {e}"),
    }
    // Registered, and their thread started, before the server starts: a
    // signal that arrives right after the listening line is never missed,
    // and the process has all its threads by then.
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
        .context("cannot install signal handlers")?;
    let (server_tx, server_rx) = crossbeam_channel::bounded::<Running>(1);
    let timing = Timing {
        stats_interval: config.stats_interval,
        drain_delay: config.drain_delay,
        grace: config.grace,
    };
    let handler = SignalHandler {
        log_file,
        notifier: notifier.clone(),
        timing,
    };
    std::thread::Builder::new()
        .name("wharf-signals".into())
        .spawn(move || {
            // Disconnected if the server failed to start: nothing to stop.
            let Ok(running) = server_rx.recv() else {
                return;
            };
            handler.run(signals, &running);
        })
        .context("cannot start the signal thread")?;

    let echo = Echo {
        delay: args.delay,
        spin: args.spin,
    };
    let server = match activation {
        Some(activation) => {
            let descriptors: Vec<String> = activation
                .listeners
                .iter()
                .map(|l| format!("{} ({})", l.fd, l.name))
                .collect();
            let listeners = activation
                .listeners
                .into_iter()
                .map(|l| (Listener::Inherited(l.socket), l.security))
                .collect();
            let server = Server::from_listeners(listeners, config, echo).with_context(|| {
                format!(
                    "socket activation: descriptor(s) {}",
                    descriptors.join(", ")
                )
            })?;
            // Logged once the descriptors have proved usable, so that a
            // failure stays a one-line error.
            for described in &descriptors {
                info!("socket activation: serving descriptor {described} instead of --bind");
            }
            for (fd, name, why) in &activation.skipped {
                warn!("socket activation: skipping descriptor {fd} ({name}): {why}");
            }
            if !activation.missing.is_empty() {
                warn!(
                    "socket activation: LISTEN_FDS is {} but descriptor(s) {} are not open; \
                     ignored",
                    activation.count,
                    systemd::describe_ranges(&activation.missing)
                );
            }
            if args.reuse_port {
                warn!("--reuse-port does not apply to a socket from socket activation; ignored");
            }
            if !args.bind.is_empty() || !args.tls.bind.is_empty() {
                warn!("socket activation: --bind and --tls-bind are ignored");
            }
            server
        }
        None => Server::start_all(&binds(&args), config, echo)?,
    };
    let _ = server_tx.send(Running {
        handle: server.handle(),
        monitor: server.monitor(),
        tls: server.tls(),
    });
    if let Some(notifier) = &notifier {
        let mut ready = vec![NotifyState::Ready];
        let status = systemd::status(&server.monitor());
        if let Some(text) = &status {
            ready.push(NotifyState::Status(text));
        }
        notifier.send(&ready);
        systemd::supervise(&server, notifier, timing);
    }

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
        reap_interval: args
            .reap_interval
            .unwrap_or_else(|| default_reap_interval(args.heartbeat_timeout)),
        write_timeout: args.write_timeout,
        max_frame: args.max_frame,
        framing: args.framing.into(),
        grace: args.grace,
        drain_delay: args.drain_delay,
        reuse_port: args.reuse_port,
        backlog: args.backlog,
        stats_interval: (!args.stats_interval.is_zero()).then_some(args.stats_interval),
        metrics: args.metrics,
        tls: args.tls.settings(),
        handshake_timeout: args.handshake_timeout,
        unix_mode: args.listen.unix_mode,
        proxy_from: args.listen.proxy_from.clone(),
        per_address: args.listen.per_address(),
    }
}

/// The listeners to bind, in order: every `--bind`, then every
/// `--tls-bind`; `127.0.0.1:7878` when neither is given.
fn binds(args: &ServeArgs) -> Vec<Bind> {
    let plain = args.bind.iter().map(|addr| Bind {
        addr: addr.clone(),
        security: Security::Plain,
    });
    let tls = args.tls.bind.iter().map(|addr| Bind {
        addr: addr.clone(),
        security: Security::Tls,
    });
    let binds: Vec<Bind> = plain.chain(tls).collect();
    if binds.is_empty() {
        vec![Bind {
            addr: Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 7878))),
            security: Security::Plain,
        }]
    } else {
        binds
    }
}

/// The reap interval when `--reap-interval` is not given: the library's
/// default, lowered without a word to what the heartbeat timeout allows
/// (the library warns about a reap interval it has to lower, which is right
/// only for a value the operator chose).
fn default_reap_interval(heartbeat_timeout: Duration) -> Duration {
    Config::default()
        .reap_interval
        .min(heartbeat_timeout / 4)
        .max(Duration::from_nanos(1))
}

/// What [`init_logging`] set up.
enum Logging {
    /// Logging to stderr, and to the log file if one was asked for (its
    /// handle, for SIGHUP).
    Ready(Option<LogFile>),
    /// `--log-file` cannot be opened: logging to stderr only, to say so.
    FileFailed(anyhow::Error),
}

/// Logs to stderr, and appends to `--log-file` if given. Fails only if a
/// logger is installed already.
fn init_logging(args: &ServeArgs) -> anyhow::Result<Logging> {
    let level = LevelFilter::from(args.log_level);
    // UTC to the millisecond, e.g. 2025-01-31T09:15:02.345Z, on every line;
    // no module path, thread or source location.
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_format_custom(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
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
    let setup = match &args.log_file {
        None => Logging::Ready(None),
        Some(path) => match LogFile::open(path) {
            Ok((file, writer)) => {
                loggers.push(WriteLogger::new(level, config, writer));
                Logging::Ready(Some(file))
            }
            Err(e) => Logging::FileFailed(
                anyhow::Error::new(e).context(format!("cannot open log file {}", path.display())),
            ),
        },
    };
    CombinedLogger::init(loggers).context("cannot initialise logging")?;
    Ok(setup)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve_config(flags: &[&str]) -> Config {
        let cli = Cli::try_parse_from(["wharf", "serve"].iter().chain(flags)).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        config(&args)
    }

    #[test]
    fn the_default_reap_interval_follows_a_short_heartbeat_silently() {
        let ms = Duration::from_millis;
        let config = serve_config(&["--heartbeat-timeout", "3s"]);
        assert_eq!(config.reap_interval, ms(750));
        // Nothing left for the library to lower, so nothing to warn about.
        assert_eq!(config.validate().unwrap().1, None);
        assert_eq!(serve_config(&[]).reap_interval, ms(1000));
        let explicit = serve_config(&["--heartbeat-timeout", "3s", "--reap-interval", "1s"]);
        assert_eq!(explicit.reap_interval, ms(1000));
        assert!(explicit.validate().unwrap().1.is_some());
    }
}
