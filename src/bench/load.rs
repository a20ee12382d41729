//! Loading a server: checking the options, making room for the sockets,
//! and running the event-driven engine (`driver`) over one warm-up and one
//! measured window.
//!
//! Separate from the sweep because this part runs against any server, in
//! process or external ([`load`] is what `--connect` and the comparison
//! with other servers use), while the sweep only decides which servers to
//! start and reads them over the window's [`Edge`]s.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use super::driver::{drive, Edge};
use super::error::BenchError;
use super::options::BenchOptions;
use super::point::BenchPoint;
use super::tls::{server_name, ClientTls};

/// Descriptors kept free besides the clients' sockets (the server's
/// listeners, the epoll set, log files, the test harness).
const SPARE_DESCRIPTORS: u64 = 128;

/// Loads a server that is already running at `addr` for `options.warmup`
/// then `options.duration`, and returns the client-side measurement.
/// Used by `--connect` and by the comparison with other servers.
///
/// With `options.tls` the clients speak TLS, trusting the CA bundle
/// `options.tls_ca` (which it then needs) and verifying
/// `options.tls_server_name`, or else `addr`'s IP address.
pub fn load(addr: SocketAddr, options: &BenchOptions) -> Result<BenchPoint, BenchError> {
    let tls = client_tls(addr, options)?;
    run(
        addr,
        options,
        tls.as_ref(),
        false,
        &AtomicBool::new(false),
        &mut |_| {},
    )
}

/// The client side of a TLS load of a running server, from `tls_ca` and
/// `tls_server_name`; `None` without `tls`.
pub(super) fn client_tls(
    addr: SocketAddr,
    options: &BenchOptions,
) -> Result<Option<ClientTls>, BenchError> {
    if !options.tls {
        return Ok(None);
    }
    let Some(ca) = &options.tls_ca else {
        return Err(BenchError::Invalid(
            "a TLS load of a running server needs tls-ca: the CA bundle its certificate \
             chains to"
                .into(),
        ));
    };
    let name = server_name(options.tls_server_name.as_deref(), addr)?;
    ClientTls::from_file(ca, name).map(Some)
}

/// Loads the server at `addr` as [`load`] does, calling `watch` at both
/// edges of the measured window, and ending the window early when `cancel`
/// is set (`Err(BenchError::Cancelled)` if it was set before the window
/// started). Fills every client-side field; `workers`,
/// `server_cpu_seconds` and `server` are left `None` for the caller.
/// `tls`: the client side of a TLS run (`None`: plain).
pub(super) fn measure(
    addr: SocketAddr,
    options: &BenchOptions,
    tls: Option<&ClientTls>,
    cancel: &AtomicBool,
    watch: &mut dyn FnMut(Edge),
) -> Result<BenchPoint, BenchError> {
    // The sweep's servers run in this process: their ends of the
    // connections take descriptors from the same limit.
    run(addr, options, tls, options.connect.is_none(), cancel, watch)
}

fn run(
    addr: SocketAddr,
    options: &BenchOptions,
    tls: Option<&ClientTls>,
    in_process: bool,
    cancel: &AtomicBool,
    watch: &mut dyn FnMut(Edge),
) -> Result<BenchPoint, BenchError> {
    check(options)?;
    fit_descriptors(options, in_process)?;
    drive(addr, options, tls, cancel, watch)
}

/// The options the engine cannot run with.
fn check(options: &BenchOptions) -> Result<(), BenchError> {
    let invalid = |why: &str| Err(BenchError::Invalid(why.into()));
    if options.clients == 0 || options.pipeline == 0 || options.duration.is_zero() {
        return invalid("clients, pipeline and duration must be greater than 0");
    }
    if let Some(rate) = options.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return invalid("rate must be a number of requests per second greater than 0");
        }
    }
    if options.idle > 0 && options.idle_ping.is_zero() {
        return invalid("idle-ping must be greater than 0");
    }
    if options.payload > crate::config::MAX_FRAME_LIMIT as usize - 1 {
        return invalid("payload is larger than any frame a server accepts");
    }
    Ok(())
}

/// Raises the soft descriptor limit as far as the hard limit allows (as
/// the server does), and fails if the clients still cannot fit.
fn fit_descriptors(options: &BenchOptions, in_process: bool) -> Result<(), BenchError> {
    let sockets = (options.clients + options.idle) as u64;
    let needed = sockets * if in_process { 2 } else { 1 } + SPARE_DESCRIPTORS;
    let soft = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft >= needed => return Ok(()),
        _ => rlimit::increase_nofile_limit(u64::MAX),
    };
    match soft {
        Ok(soft) if soft >= needed => Ok(()),
        Ok(soft) => Err(BenchError::Invalid(format!(
            "{} clients and {} idle clients need about {needed} file descriptors{}, but the \
             limit is {soft} and cannot be raised further (raise the hard limit, e.g. \
             `ulimit -Hn`, LimitNOFILE= in systemd, or use fewer clients)",
            options.clients,
            options.idle,
            if in_process {
                " (both ends of each connection are in this process)"
            } else {
                ""
            }
        ))),
        Err(e) => Err(BenchError::Invalid(format!(
            "cannot raise the file descriptor limit for {sockets} connections: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{Config, Echo, Server};

    fn options(warmup_ms: u64, duration_ms: u64) -> BenchOptions {
        BenchOptions {
            clients: 2,
            warmup: Duration::from_millis(warmup_ms),
            duration: Duration::from_millis(duration_ms),
            ..BenchOptions::default()
        }
    }

    fn server() -> Server {
        let config = Config {
            workers: 2,
            ..Config::default()
        };
        Server::start("127.0.0.1:0", config, Echo::default()).expect("server starts")
    }

    #[test]
    fn the_window_edges_come_in_order_around_the_window() {
        let server = server();
        let mut edges = Vec::new();
        let started = Instant::now();
        let point = measure(
            server.local_addr(),
            &options(100, 300),
            None,
            &AtomicBool::new(false),
            &mut |edge| edges.push((edge, started.elapsed())),
        )
        .expect("measured");
        server.handle().shutdown();
        server.join();
        assert_eq!(edges.len(), 2, "{edges:?}");
        assert_eq!((edges[0].0, edges[1].0), (Edge::Start, Edge::End));
        assert!(edges[0].1 >= Duration::from_millis(100), "{edges:?}");
        let window = edges[1].1 - edges[0].1;
        assert!((point.seconds - window.as_secs_f64()).abs() < 0.05);
        assert!(point.seconds >= 0.3, "{point:?}");
        assert!(point.requests > 0 && point.workers.is_none());
    }

    #[test]
    fn cancelling_ends_the_window_early_or_fails_before_it() {
        let server = server();
        let cancel = AtomicBool::new(true);
        let result = measure(
            server.local_addr(),
            &options(100, 300),
            None,
            &cancel,
            &mut |_| {},
        );
        assert!(matches!(result, Err(BenchError::Cancelled)), "{result:?}");

        let cancel = AtomicBool::new(false);
        let mut edges = Vec::new();
        let point = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(400));
                cancel.store(true, Ordering::Relaxed);
            });
            measure(
                server.local_addr(),
                &options(100, 60_000),
                None,
                &cancel,
                &mut |e| edges.push(e),
            )
        })
        .expect("what was measured before the cancel");
        server.handle().shutdown();
        server.join();
        assert_eq!(edges, [Edge::Start, Edge::End]);
        assert!(point.seconds > 0.1 && point.seconds < 5.0, "{point:?}");
        assert!(point.requests > 0, "{point:?}");
    }

    #[test]
    fn options_the_engine_cannot_run_are_refused() {
        let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
        for bad in [
            BenchOptions {
                rate: Some(0.0),
                ..options(0, 10)
            },
            BenchOptions {
                rate: Some(f64::NAN),
                ..options(0, 10)
            },
            BenchOptions {
                idle: 3,
                idle_ping: Duration::ZERO,
                ..options(0, 10)
            },
            BenchOptions {
                pipeline: 0,
                ..options(0, 10)
            },
        ] {
            assert!(matches!(load(addr, &bad), Err(BenchError::Invalid(_))));
        }
    }
}
