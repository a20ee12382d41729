//! The sweep: for each pool size, start an in-process server, load it
//! (`load`), read the server over exactly the measured window (`server`,
//! and `cpu` for its threads' CPU time), drain it and move on; or, with
//! `connect`, measure the one external server.
//!
//! With `tls`, every in-process server serves one throwaway certificate
//! made for the sweep (and removed after it) on a TLS listener, and the
//! clients trust its CA; with `connect` too, they trust `tls_ca`.
//!
//! What the sweep is doing goes to the caller as [`Event`]s, for a
//! progress display; a cancel (Ctrl-C) drops the point under way and keeps
//! the points measured so far.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::driver::Edge;
use super::error::BenchError;
use super::load::measure;
use super::options::{check, BenchOptions};
use super::point::{BenchPoint, ServerFigures};
use super::tls::{server_name, ClientTls, Throwaway};
use super::{cpu, server};
use crate::server::Security;
use crate::{Config, Echo, Server};

/// What the sweep is doing, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Step `step` (from 0) of `steps` starts its warm-up; `workers` is
    /// `None` for an external server.
    Warmup {
        /// Which step, from 0.
        step: usize,
        /// How many steps in all.
        steps: usize,
        /// The pool size measured.
        workers: Option<usize>,
    },
    /// The same step starts its measured window.
    Measure {
        /// Which step, from 0.
        step: usize,
        /// How many steps in all.
        steps: usize,
        /// The pool size measured.
        workers: Option<usize>,
    },
    /// A point was measured.
    Done(&'a BenchPoint),
}

/// Runs the sweep (or, with `connect`, one point), telling `on` what it is
/// doing and each point it measured. When `cancel` is set (Ctrl-C), the
/// point under way is dropped and the points measured so far are returned.
pub fn sweep(
    options: &BenchOptions,
    cancel: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Result<Vec<BenchPoint>, BenchError> {
    check(options)?;
    let mut points = Vec::new();
    if let Some(addr) = options.connect {
        // The real cause, before any client thread counts it as an error.
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|source| BenchError::Connect { addr, source })?;
        let source = match options.metrics {
            Some(metrics) => {
                // Fail now, not after the run, on an address that is not one.
                let source = server::Source::Endpoint(metrics);
                source.check().map_err(BenchError::Metrics)?;
                Some(source)
            }
            None => None,
        };
        let every = (options.duration / 20).max(Duration::from_millis(50));
        let tls = super::load::client_tls(addr, options)?;
        let run = Run {
            addr,
            options,
            tls: tls.as_ref(),
            cancel,
            source,
            every,
            step: 0,
            steps: 1,
        };
        let mut point = match run.measure(&mut on, &mut |_| {}) {
            Err(BenchError::Cancelled) => return Ok(points),
            other => other?,
        };
        point.workers = None;
        tls_figures(&mut point);
        on(Event::Done(&point));
        points.push(point);
        return Ok(points);
    }
    // One throwaway certificate for the whole sweep, removed when it ends.
    let throwaway = if options.tls {
        let names: Vec<String> = options.tls_server_name.iter().cloned().collect();
        let throwaway = Throwaway::new(&names)?;
        let localhost = ([127, 0, 0, 1], 0).into();
        let name = server_name(options.tls_server_name.as_deref(), localhost)?;
        let tls = ClientTls::new(
            throwaway.ca_pem.as_bytes(),
            "(the run's throwaway CA)",
            name,
        )?;
        Some((throwaway, tls))
    } else {
        None
    };
    let steps = options.workers.len();
    for (step, &workers) in options.workers.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let config = Config {
            workers,
            queue: options.queue,
            max_connections: (options.clients + options.idle + 64).clamp(
                Config::default().max_connections,
                crate::config::MAX_CONNECTIONS,
            ),
            tls: throwaway.as_ref().map(|(t, _)| t.settings()),
            ..Config::default()
        };
        let echo = Echo {
            delay: options.delay,
            spin: options.spin,
        };
        let security = if options.tls {
            Security::Tls
        } else {
            Security::Plain
        };
        let server = Server::start_timed(config, security, echo)?;
        let source = server.probe().map(server::Source::InProcess);
        let mut cpu = None;
        let run = Run {
            addr: server.local_addr(),
            options,
            tls: throwaway.as_ref().map(|(_, tls)| tls),
            cancel,
            source,
            every: Duration::from_millis(1),
            step,
            steps,
        };
        let result = run.measure(&mut on, &mut |edge| {
            cpu = match edge {
                Edge::Start => Some(cpu::server_cpu_seconds()),
                Edge::End => cpu.map(|before| cpu::server_cpu_seconds() - before),
            }
        });
        server.handle().shutdown();
        server.join();
        let mut point = match result {
            Err(BenchError::Cancelled) => break,
            other => other?,
        };
        point.workers = Some(workers);
        point.server_cpu_seconds = cpu;
        tls_figures(&mut point);
        on(Event::Done(&point));
        points.push(point);
    }
    Ok(points)
}

/// One point to measure: the engine's measurement, with the server's
/// figures read at the window's edges from `source` (sampling busy
/// workers every `every`).
struct Run<'a> {
    addr: SocketAddr,
    options: &'a BenchOptions,
    tls: Option<&'a ClientTls>,
    cancel: &'a AtomicBool,
    source: Option<server::Source>,
    every: Duration,
    step: usize,
    steps: usize,
}

impl Run<'_> {
    /// Measures, telling `on` the phases and `edge` the window's edges.
    fn measure(
        self,
        on: &mut dyn FnMut(Event<'_>),
        edge: &mut dyn FnMut(Edge),
    ) -> Result<BenchPoint, BenchError> {
        let (step, steps) = (self.step, self.steps);
        let workers = self
            .options
            .connect
            .is_none()
            .then(|| self.options.workers[step]);
        on(Event::Warmup {
            step,
            steps,
            workers,
        });
        let mut window: Option<Result<server::Window, String>> = None;
        let mut figures: Option<Result<ServerFigures, String>> = None;
        let result = measure(self.addr, self.options, self.tls, self.cancel, &mut |at| {
            edge(at);
            match at {
                Edge::Start => {
                    on(Event::Measure {
                        step,
                        steps,
                        workers,
                    });
                    let every = self.every;
                    window = self.source.clone().map(|s| server::Window::start(s, every));
                }
                Edge::End => {
                    figures = window.take().map(|w| w.and_then(server::Window::finish));
                }
            }
        });
        let mut point = result?;
        point.server = match figures {
            Some(Ok(figures)) => Some(figures),
            Some(Err(e)) if self.options.metrics.is_some() => return Err(BenchError::Metrics(e)),
            _ => None,
        };
        Ok(point)
    }
}

/// Over TLS, the server's side of the handshakes: its own count, and its
/// threads' CPU per handshake (in process).
fn tls_figures(point: &mut BenchPoint) {
    let server_handshakes = point.server.and_then(|s| s.tls_handshakes);
    let cpu = point.server_cpu_seconds;
    if let Some(tls) = point.tls.as_mut() {
        tls.server_handshakes = server_handshakes;
        tls.server_cpu_us_per_handshake = cpu
            .zip(server_handshakes)
            .filter(|&(_, n)| n > 0)
            .map(|(cpu, n)| cpu * 1e6 / n as f64);
    }
}
