//! One scenario against one server: start the child, connect, run the
//! scheduled driver threads, the busy threads and the stall probe, read the
//! child's and the machine's CPU at both ends of the measured window, stop
//! the child, and gather it all in an [`Outcome`] for the report.

use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wharf::frame::{DATA, PING};

use crate::busy::{busy_loop, BusyResult};
use crate::child::{cpu_secs, machine_cpu, status_kib, thread_count, ProcFigures, ServerProcess};
use crate::common::thousands;
use crate::driver::{drive, stall_probe, DriverResult, Schedule};
use crate::wire::{connect_all, histogram, DATA_PAYLOAD, PING_PAYLOAD};
use crate::{Settings, Spec};

pub(crate) struct Outcome {
    pub(crate) spec: Spec,
    pub(crate) config: String,
    /// The scheduled connections (open loop, or the idle crowd).
    pub(crate) driven: DriverResult,
    /// The busy connections (idle crowd only).
    pub(crate) busy: Option<BusyResult>,
    pub(crate) window: Duration,
    pub(crate) proc: ProcFigures,
    pub(crate) connect_secs: f64,
    /// How late a 1 ms sleep woke up, over the window (µs).
    probe: Histogram<u64>,
}

impl Outcome {
    pub(crate) fn latency(&self) -> &Histogram<u64> {
        self.driven.latency.as_ref().expect("latency histogram")
    }

    fn requests_in_window(&self) -> u64 {
        self.driven.replies_in_window + self.busy.as_ref().map_or(0, |b| b.in_window)
    }

    pub(crate) fn cpu_us_per_request(&self) -> Option<f64> {
        let requests = self.requests_in_window();
        let cpu = self.proc.cpu_in_window?;
        (requests > 0).then(|| cpu * 1e6 / requests as f64)
    }

    /// How late the 1 ms sleeper woke: p99.9 / max, in µs.
    pub(crate) fn stalls(&self) -> String {
        format!(
            "{} / {}",
            thousands(self.probe.value_at_quantile(0.999) as f64),
            thousands(self.probe.max() as f64)
        )
    }

    /// CPU used in the window, in cores: server / client / other
    /// processes / irq+softirq / steal.
    pub(crate) fn cores(&self) -> String {
        let secs = self.window.as_secs_f64();
        let cores = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}", v / secs));
        format!(
            "{} / {} / {} / {} / {}",
            cores(self.proc.cpu_in_window),
            cores(self.proc.client_cpu_in_window),
            cores(self.proc.others_cpu_in_window),
            cores(self.proc.irq_in_window),
            cores(self.proc.steal_in_window),
        )
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.driven.errors.count + self.busy.as_ref().map_or(0, |b| b.errors.count)
    }
}

pub(crate) enum Load {
    /// Open loop over `conns` connections at `rate` requests/s.
    Open,
    /// The idle crowd plus busy connections.
    Idle,
}

pub(crate) fn run(spec: Spec, load: &Load, s: &Settings) -> Result<Outcome, String> {
    let (conns, busy, warmup, window) = match load {
        Load::Open => (s.conns, 0, s.warmup, s.window),
        Load::Idle => (s.idle_conns, s.busy, s.idle_warmup, s.idle_window),
    };
    let max_connections = s
        .max_connections
        .unwrap_or_else(|| 10_000.max(conns + busy + 64));
    let server = ServerProcess::spawn(spec, s.queue, max_connections, None)?;
    let pid = server.pid;
    let connect_started = Instant::now();
    let connected = connect_all(server.addr, conns, 0)
        .and_then(|c| connect_all(server.addr, busy, conns as u64).map(|b| (c, b)));
    let (streams, busy_streams) = match connected {
        Ok(c) => c,
        Err(e) => {
            let mut figures = ProcFigures::default();
            server.stop(&mut figures);
            return Err(format!("{}: {e}", spec.label()));
        }
    };
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + warmup;
    let measure_to = measure_from + window;

    // The scheduled connections, split over the client threads.
    let threads = match load {
        Load::Open => s.client_threads,
        Load::Idle => 1,
    };
    let (kind, len, total_rate) = match load {
        Load::Open => (DATA, DATA_PAYLOAD, s.rate),
        Load::Idle => (
            PING,
            PING_PAYLOAD,
            conns as f64 / s.ping_every.as_secs_f64(),
        ),
    };
    let mut parts: Vec<Vec<(u64, TcpStream)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, stream) in streams.into_iter().enumerate() {
        parts[i % threads].push((i as u64, stream));
    }
    let drivers: Vec<JoinHandle<DriverResult>> = parts
        .into_iter()
        .enumerate()
        .map(|(j, part)| {
            let schedule = Schedule {
                nice: s.client_nice,
                kind,
                len,
                start,
                offset: Duration::from_secs_f64(j as f64 / total_rate),
                interval: Duration::from_secs_f64(threads as f64 / total_rate),
                measure_from,
                measure_to,
            };
            std::thread::spawn(move || drive(part, schedule))
        })
        .collect();
    let probe = {
        let nice = s.client_nice;
        std::thread::spawn(move || stall_probe(nice, measure_from, measure_to))
    };
    let busy_threads: Vec<JoinHandle<BusyResult>> = busy_streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let id = (conns + i) as u64;
            std::thread::spawn(move || busy_loop(id, stream, measure_from, measure_to))
        })
        .collect();

    // The child's resources at both ends of the window.
    let mut figures = ProcFigures::default();
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let me = std::process::id();
    let cpu_start = (cpu_secs(pid), cpu_secs(me), machine_cpu());
    figures.rss_window_start_kib = status_kib(pid, "VmRSS");
    std::thread::sleep(measure_to.saturating_duration_since(Instant::now()));
    let cpu_end = (cpu_secs(pid), cpu_secs(me), machine_cpu());
    figures.rss_window_end_kib = status_kib(pid, "VmRSS");
    figures.threads_in_window = thread_count(pid);
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    figures.cpu_in_window = delta(cpu_start.0, cpu_end.0);
    figures.client_cpu_in_window = delta(cpu_start.1, cpu_end.1);
    if let (Some(server), Some(client), Some(a), Some(b)) = (
        figures.cpu_in_window,
        figures.client_cpu_in_window,
        cpu_start.2,
        cpu_end.2,
    ) {
        figures.others_cpu_in_window = Some((b.tasks - a.tasks - server - client).max(0.0));
        figures.irq_in_window = Some(b.irq - a.irq);
        figures.steal_in_window = Some(b.steal - a.steal);
    }

    let mut driven = DriverResult {
        latency: Some(histogram()),
        from_send: Some(histogram()),
        lag: Some(histogram()),
        ..DriverResult::default()
    };
    for handle in drivers {
        let part = handle.join().expect("driver thread");
        driven.sent += part.sent;
        driven.answered += part.answered;
        driven.missed += part.missed;
        driven.replies_in_window += part.replies_in_window;
        driven.not_reniced |= part.not_reniced;
        driven.errors.merge(part.errors);
        for (all, one) in [
            (&mut driven.latency, part.latency),
            (&mut driven.from_send, part.from_send),
            (&mut driven.lag, part.lag),
        ] {
            if let (Some(all), Some(one)) = (all.as_mut(), one) {
                let _ = all.add(one);
            }
        }
    }
    let busy_result = (busy > 0).then(|| {
        let mut all = BusyResult {
            latency: Some(histogram()),
            ..BusyResult::default()
        };
        for handle in busy_threads {
            let one = handle.join().expect("busy thread");
            all.in_window += one.in_window;
            all.errors.merge(one.errors);
            if let (Some(a), Some(o)) = (all.latency.as_mut(), one.latency) {
                let _ = a.add(o);
            }
        }
        all
    });
    let probe = probe.join().expect("stall probe thread");
    // The client threads have dropped their streams: every connection is
    // closed. Now stop the server.
    let config = server.config.clone();
    server.stop(&mut figures);
    Ok(Outcome {
        spec,
        config,
        driven,
        busy: busy_result,
        window,
        proc: figures,
        connect_secs,
        probe,
    })
}
