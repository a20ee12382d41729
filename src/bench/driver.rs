//! The load engine: every client connection on the calling thread, driven
//! by readiness from epoll, so ten thousand clients cost ten thousand
//! sockets and no threads.
//!
//! Three kinds of traffic share the loop:
//!
//! - **closed loop** (no `rate`): each busy client sends `pipeline`
//!   requests, waits for every reply, and sends the next batch, closing
//!   and reconnecting after `batches_per_connection` batches; latency
//!   counts from the send;
//! - **open loop** (`rate` R): one global schedule, request `k` due at
//!   `start + k / R` on busy client `k mod clients`, sent when due whether
//!   or not earlier replies are back (they pipeline on the connection), or
//!   as soon as the loop can when it is late; latency counts from the due
//!   time, so it includes every wait a real client would see;
//! - **idle clients** (`idle` N): PING `k` due at `start + k * idle_ping / N`
//!   on idle client `k mod N`, so each PINGs every `idle_ping`, staggered;
//!   PONG latency from the due time goes to a histogram of its own.
//!
//! Connections open first (at most [`CONNECTING_AT_ONCE`] at a time, so a
//! listen backlog is never flooded); if none can be opened, the run fails
//! with the first cause. Then comes the warm-up and the measured window:
//! latency counts the requests sent (closed loop) or due (open loop, PINGs)
//! inside it whose replies arrive inside it, and throughput every reply that
//! arrives inside it. At the end of the window
//! every request still unanswered records its wait so far, so clients the
//! server never served show in the percentiles; PINGs due in the window get
//! a short grace ([`PING_GRACE`]) for their PONG, then count as missed.
//!
//! Every reply is checked against the request it answers (payloads name
//! their connection and sequence number). A connection that is turned away
//! (GOAWAY 3), fails or answers wrongly is closed and opened again after a
//! pause; the requests it owed are sent again on the new connection and
//! keep their original time, so a rejection shows as latency.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::Timespec;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::error::BenchError;
use super::options::BenchOptions;
use super::point::{BenchPoint, IdleFigures, Percentiles};
use crate::frame::{Framing, GoAwayCode, DATA, ERROR, GOAWAY, HEADER_LEN, PING, PONG};

/// The edges of the measured window, so the caller can read the server
/// (CPU time, counters, histograms) exactly over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The warm-up is over: the window starts now.
    Start,
    /// The window is over (the clients are still connected).
    End,
}

/// Connection attempts in progress at once.
const CONNECTING_AT_ONCE: usize = 256;
/// The longest the connections may take to open before the warm-up starts
/// anyway.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Pause before a client turned away with GOAWAY 3 connects again.
const BUSY_PAUSE: Duration = Duration::from_millis(5);
/// Pause before a client whose connection failed connects again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long PINGs due in the window may wait for their PONG after it ends.
pub(super) const PING_GRACE: Duration = Duration::from_millis(200);
/// The longest one wait for readiness lasts, so a cancel is seen soon.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Scheduled requests sent before the loop reads replies again, when late.
const SENDS_PER_TURN: usize = 4096;
/// Events taken from the kernel per wait.
const EVENTS: usize = 1024;
/// Bytes of a PING payload: connection and sequence number.
const PING_PAYLOAD: usize = 16;
/// Bytes read per read call.
const READ_CHUNK: usize = 64 * 1024;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Opening the connections; nothing is sent.
    Connect,
    /// Sending, counting nothing.
    Warmup,
    /// Sending and counting.
    Window,
    /// The window is over: waiting out the PING grace, sending nothing.
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket: waiting to connect (in the queue or paused).
    Closed,
    Connecting,
    Open,
}

/// A request sent, or to be sent when the connection opens.
struct Owed {
    seq: u64,
    /// Due time (open loop, PINGs) or send time (closed loop).
    from: Instant,
    /// Due or sent inside the window.
    measured: bool,
}

struct Conn {
    /// The number in its payloads; its index in the driver.
    id: u64,
    idle: bool,
    socket: Option<Socket>,
    /// Bumped for every new socket, so readiness of an old one is ignored.
    generation: u32,
    state: State,
    /// Whether its first connection attempt has had an outcome.
    tried: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    watching_writes: bool,
    owed: VecDeque<Owed>,
    next_seq: u64,
    /// Closed loop: batches sent on the current connection.
    batches: usize,
    /// A verified reply arrived in the window.
    served: bool,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Closed loop churn: reconnect at once.
    Churn,
    /// GOAWAY 3: reconnect after [`BUSY_PAUSE`].
    Busy,
    /// Failed: reconnect after [`RETRY_PAUSE`].
    Failed,
    /// The server is shutting down after the window: do not reconnect.
    Done,
}

/// A global schedule: event `k` due at `start + k * interval`.
struct Schedule {
    interval: f64,
    next: u64,
}

impl Schedule {
    fn due(&self, start: Instant) -> Instant {
        start + Duration::from_secs_f64(self.next as f64 * self.interval)
    }
}

struct Driver<'a> {
    addr: SocketAddr,
    options: &'a BenchOptions,
    epoll: OwnedFd,
    conns: Vec<Conn>,
    to_connect: VecDeque<usize>,
    connecting: usize,
    /// Conns whose first attempt has not had an outcome yet.
    untried: usize,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    phase: Phase,
    /// Schedule origin (the warm-up start) and the planned window.
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    busy_schedule: Option<Schedule>,
    idle_schedule: Option<Schedule>,
    latency: Histogram<u64>,
    idle_latency: Histogram<u64>,
    requests: u64,
    pongs: u64,
    busy: u64,
    errors: u64,
    first_error: Option<String>,
    first_connect_error: Option<io::Error>,
    ever_connected: bool,
    scratch: Vec<u8>,
    expected: Vec<u8>,
    buf: Vec<u8>,
}

/// Runs the whole load: connect, warm up, measure, close everything.
pub(super) fn drive(
    addr: SocketAddr,
    options: &BenchOptions,
    cancel: &AtomicBool,
    watch: &mut dyn FnMut(Edge),
) -> Result<BenchPoint, BenchError> {
    let epoll =
        epoll::create(CreateFlags::CLOEXEC).map_err(|e| BenchError::Driver(io::Error::from(e)))?;
    let total = options.clients + options.idle;
    let now = Instant::now();
    let mut driver = Driver {
        addr,
        options,
        epoll,
        conns: (0..total)
            .map(|i| Conn {
                id: i as u64,
                idle: i >= options.clients,
                socket: None,
                generation: 0,
                state: State::Closed,
                tried: false,
                input: Vec::new(),
                output: Vec::new(),
                watching_writes: false,
                owed: VecDeque::new(),
                next_seq: 1,
                batches: 0,
                served: false,
            })
            .collect(),
        to_connect: (0..total).collect(),
        connecting: 0,
        untried: total,
        timers: BinaryHeap::new(),
        phase: Phase::Connect,
        start: now,
        window_start: now,
        window_end: now,
        busy_schedule: options.rate.map(|rate| Schedule {
            interval: 1.0 / rate,
            next: 0,
        }),
        idle_schedule: (options.idle > 0).then(|| Schedule {
            interval: options.idle_ping.as_secs_f64() / options.idle as f64,
            next: 0,
        }),
        latency: histogram(),
        idle_latency: histogram(),
        requests: 0,
        pongs: 0,
        busy: 0,
        errors: 0,
        first_error: None,
        first_connect_error: None,
        ever_connected: false,
        scratch: Vec::new(),
        expected: Vec::new(),
        buf: vec![0; READ_CHUNK],
    };
    let result = driver.run(cancel, watch);
    // Every connection is closed here, whatever the server does next.
    driver.conns.clear();
    result
}

impl Driver<'_> {
    fn run(
        &mut self,
        cancel: &AtomicBool,
        watch: &mut dyn FnMut(Edge),
    ) -> Result<BenchPoint, BenchError> {
        let began = Instant::now();
        let mut events: Vec<Event> = Vec::with_capacity(EVENTS);
        let mut real_start = began;
        let mut real_end = began;
        let mut drain_until = began;
        // Bounded: every phase ends by the clock; this is the backstop.
        let backstop = began
            + CONNECT_LIMIT
            + self.options.warmup
            + self.options.duration
            + PING_GRACE
            + Duration::from_secs(10);
        loop {
            let now = Instant::now();
            if now >= backstop {
                break;
            }
            if cancel.load(Ordering::Relaxed) {
                match self.phase {
                    Phase::Connect | Phase::Warmup => return Err(BenchError::Cancelled),
                    Phase::Window => {
                        real_end = self.end_window(now, watch);
                        drain_until = now;
                    }
                    Phase::Drain => break,
                }
            }
            match self.phase {
                Phase::Connect => {
                    if self.untried == 0 || now >= began + CONNECT_LIMIT {
                        if !self.ever_connected {
                            return Err(self.connect_error());
                        }
                        self.start = now;
                        self.window_start = now + self.options.warmup;
                        self.window_end = self.window_start + self.options.duration;
                        self.phase = Phase::Warmup;
                        for i in 0..self.options.clients {
                            self.next_batch(i, now);
                        }
                    }
                }
                Phase::Warmup => {
                    if now >= self.window_start {
                        self.phase = Phase::Window;
                        real_start = Instant::now();
                        watch(Edge::Start);
                        // The window lasts `duration` from when the caller
                        // was told it started, however late that was.
                        self.window_end = real_start + self.options.duration;
                    }
                }
                Phase::Window => {
                    if now >= self.window_end {
                        real_end = self.end_window(now, watch);
                        drain_until = now + self.ping_grace();
                    }
                }
                Phase::Drain => {
                    if now >= drain_until || !self.pings_outstanding() {
                        break;
                    }
                }
            }
            self.fire_timers(now);
            self.start_connects();
            let mut next = now + MAX_WAIT;
            if matches!(self.phase, Phase::Warmup | Phase::Window) {
                next = next.min(self.send_scheduled(now));
            }
            next = match self.phase {
                Phase::Connect => next,
                Phase::Warmup => next.min(self.window_start),
                Phase::Window => next.min(self.window_end),
                Phase::Drain => next.min(drain_until),
            };
            if let Some(Reverse((at, _))) = self.timers.peek() {
                next = next.min(*at);
            }
            self.wait(&mut events, next.saturating_duration_since(Instant::now()))?;
            for event in &events {
                self.on_event(event.data.u64(), event.flags);
            }
        }
        if self.phase == Phase::Window {
            real_end = self.end_window(Instant::now(), watch);
        }
        Ok(self.outcome(real_start, real_end))
    }

    fn ping_grace(&self) -> Duration {
        if self.options.idle == 0 {
            Duration::ZERO
        } else {
            PING_GRACE.min(self.options.idle_ping)
        }
    }

    fn pings_outstanding(&self) -> bool {
        self.conns
            .iter()
            .filter(|c| c.idle)
            .any(|c| c.owed.iter().any(|o| o.measured))
    }

    /// Ends the window: tells the caller, then every busy request still
    /// unanswered records its wait so far.
    fn end_window(&mut self, now: Instant, watch: &mut dyn FnMut(Edge)) -> Instant {
        watch(Edge::End);
        self.phase = Phase::Drain;
        for c in self.conns.iter().filter(|c| !c.idle) {
            for owed in &c.owed {
                self.latency
                    .saturating_record(micros(now.saturating_duration_since(owed.from)));
            }
        }
        now
    }

    fn connect_error(&mut self) -> BenchError {
        let source = self.first_connect_error.take().unwrap_or_else(|| {
            io::Error::new(
                ErrorKind::TimedOut,
                format!("no connection opened within {CONNECT_LIMIT:?}"),
            )
        });
        BenchError::Connect {
            addr: self.addr,
            source,
        }
    }

    fn outcome(&self, real_start: Instant, real_end: Instant) -> BenchPoint {
        let seconds = real_end.saturating_duration_since(real_start).as_secs_f64();
        let h = &self.latency;
        let at = |q: f64| h.value_at_quantile(q);
        let idle = (self.options.idle > 0).then(|| IdleFigures {
            pongs: self.pongs,
            missed: self
                .conns
                .iter()
                .filter(|c| c.idle)
                .map(|c| c.owed.iter().filter(|o| o.measured).count() as u64)
                .sum(),
            latency: percentiles(&self.idle_latency),
        });
        BenchPoint {
            workers: None,
            requests: self.requests,
            seconds,
            requests_per_sec: if seconds > 0.0 {
                self.requests as f64 / seconds
            } else {
                0.0
            },
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: h.max(),
            clients_served: self.conns.iter().filter(|c| !c.idle && c.served).count(),
            busy: self.busy,
            errors: self.errors,
            first_error: self.first_error.clone(),
            server_cpu_seconds: None,
            clients: self.options.clients,
            offered_rps: self.options.rate,
            idle,
            server: None,
        }
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> Result<(), BenchError> {
        events.clear();
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        match epoll::wait(&self.epoll, spare_capacity(events), Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(BenchError::Driver(io::Error::from(e))),
        }
    }

    /// Counts an error seen in the window, keeping the first one's words.
    fn error(&mut self, what: impl FnOnce() -> String) {
        if self.phase == Phase::Window {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(what());
            }
        }
    }

    // -- connecting ----------------------------------------------------

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.conns[i].state == State::Closed && self.phase < Phase::Drain {
                self.to_connect.push_back(i);
            }
        }
    }

    fn start_connects(&mut self) {
        while self.connecting < CONNECTING_AT_ONCE && self.phase < Phase::Drain {
            let Some(i) = self.to_connect.pop_front() else {
                break;
            };
            if self.conns[i].state != State::Closed {
                continue;
            }
            match self.open_socket(i) {
                Ok(true) => self.on_connected(i),
                Ok(false) => {
                    self.conns[i].state = State::Connecting;
                    self.connecting += 1;
                }
                Err(e) => self.connect_failed(i, e),
            }
        }
    }

    /// Starts a connection; `Ok(true)` if it is already open.
    fn open_socket(&mut self, i: usize) -> io::Result<bool> {
        let socket = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        let c = &mut self.conns[i];
        c.generation = c.generation.wrapping_add(1);
        let open = match socket.connect(&SockAddr::from(self.addr)) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
            Err(e) => return Err(e),
        };
        let key = EventData::new_u64((u64::from(c.generation) << 32) | i as u64);
        epoll::add(&self.epoll, &socket, key, EventFlags::IN | EventFlags::OUT)?;
        c.watching_writes = true;
        c.socket = Some(socket);
        Ok(open)
    }

    fn connect_failed(&mut self, i: usize, e: io::Error) {
        let addr = self.addr;
        self.error(|| format!("cannot connect to {addr}: {e}"));
        if self.first_connect_error.is_none() {
            self.first_connect_error = Some(e);
        }
        self.close(i, Lost::Failed);
    }

    fn on_connected(&mut self, i: usize) {
        self.ever_connected = true;
        let c = &mut self.conns[i];
        if !c.tried {
            c.tried = true;
            self.untried -= 1;
        }
        c.state = State::Open;
        c.batches = 0;
        // What it owed on a connection that was lost goes again.
        c.output.clear();
        let kind = if c.idle { PING } else { DATA };
        let len = if c.idle {
            PING_PAYLOAD
        } else {
            self.options.payload
        };
        for owed in &c.owed {
            payload(c.id, owed.seq, len, &mut self.scratch);
            Framing::Length.encode(kind, &self.scratch, &mut c.output);
        }
        if self.phase >= Phase::Warmup {
            self.next_batch(i, Instant::now());
        }
        self.flush(i);
    }

    /// Drops a connection's socket (closing it) and decides when it opens
    /// again. What it owed stays owed.
    fn close(&mut self, i: usize, why: Lost) {
        let c = &mut self.conns[i];
        if c.state == State::Connecting {
            self.connecting -= 1;
        }
        if !c.tried {
            c.tried = true;
            self.untried -= 1;
        }
        c.socket = None;
        c.state = State::Closed;
        c.input.clear();
        c.output.clear();
        c.watching_writes = false;
        if self.phase >= Phase::Drain {
            return;
        }
        let now = Instant::now();
        match why {
            Lost::Churn => self.to_connect.push_back(i),
            Lost::Busy => self.timers.push(Reverse((now + BUSY_PAUSE, i))),
            Lost::Failed => self.timers.push(Reverse((now + RETRY_PAUSE, i))),
            Lost::Done => {}
        }
    }

    // -- sending ---------------------------------------------------------

    /// Queues request `seq` (sent at once if the connection is open).
    fn enqueue(&mut self, i: usize, from: Instant, measured: bool) {
        let c = &mut self.conns[i];
        let seq = c.next_seq;
        c.next_seq += 1;
        c.owed.push_back(Owed {
            seq,
            from,
            measured,
        });
        if c.state == State::Open {
            let (kind, len) = if c.idle {
                (PING, PING_PAYLOAD)
            } else {
                (DATA, self.options.payload)
            };
            payload(c.id, seq, len, &mut self.scratch);
            Framing::Length.encode(kind, &self.scratch, &mut c.output);
        }
    }

    /// Closed loop: the next batch of busy client `i`, if it is open,
    /// owes nothing and the window is not over.
    fn next_batch(&mut self, i: usize, now: Instant) {
        if self.options.rate.is_some()
            || !matches!(self.phase, Phase::Warmup | Phase::Window)
            || now >= self.window_end
        {
            return;
        }
        let c = &self.conns[i];
        if c.idle || c.state != State::Open || !c.owed.is_empty() {
            return;
        }
        if self
            .options
            .batches_per_connection
            .is_some_and(|limit| c.batches >= limit)
        {
            self.close(i, Lost::Churn);
            return;
        }
        let measured = now >= self.window_start;
        for _ in 0..self.options.pipeline {
            self.enqueue(i, now, measured);
        }
        self.conns[i].batches += 1;
        self.flush(i);
    }

    /// Sends every scheduled request and PING due by `now` (a bounded
    /// number per turn); returns when the next one is due.
    fn send_scheduled(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_WAIT;
        let mut sent = 0;
        let mut touched = Vec::new();
        for idle in [false, true] {
            loop {
                let schedule = if idle {
                    self.idle_schedule.as_mut()
                } else {
                    self.busy_schedule.as_mut()
                };
                let Some(schedule) = schedule else { break };
                let due = schedule.due(self.start);
                if due >= self.window_end {
                    break;
                }
                if due > now || sent >= SENDS_PER_TURN {
                    next = next.min(due);
                    break;
                }
                let k = schedule.next;
                schedule.next += 1;
                let i = if idle {
                    self.options.clients + (k % self.options.idle as u64) as usize
                } else {
                    (k % self.options.clients as u64) as usize
                };
                self.enqueue(i, due, due >= self.window_start);
                touched.push(i);
                sent += 1;
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            self.flush(i);
        }
        next
    }

    /// Writes what connection `i` has pending; watches for writability
    /// while some is left.
    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state != State::Open {
            return;
        }
        let Some(socket) = c.socket.as_ref() else {
            return;
        };
        let mut written = 0;
        let mut failure = None;
        while written < c.output.len() {
            match (&*socket).write(&c.output[written..]) {
                Ok(0) => {
                    failure = Some(io::Error::new(ErrorKind::WriteZero, "wrote nothing"));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        c.output.drain(..written);
        let want_writes = !c.output.is_empty();
        if failure.is_none() && want_writes != c.watching_writes {
            let flags = if want_writes {
                EventFlags::IN | EventFlags::OUT
            } else {
                EventFlags::IN
            };
            let key = EventData::new_u64((u64::from(c.generation) << 32) | i as u64);
            match epoll::modify(&self.epoll, socket, key, flags) {
                Ok(()) => c.watching_writes = want_writes,
                Err(e) => failure = Some(io::Error::from(e)),
            }
        }
        if let Some(e) = failure {
            let id = c.id;
            self.error(|| format!("connection {id}: write: {e}"));
            self.close(i, Lost::Failed);
        }
    }

    // -- receiving -------------------------------------------------------

    fn on_event(&mut self, key: u64, flags: EventFlags) {
        let i = (key & u64::from(u32::MAX)) as usize;
        let generation = (key >> 32) as u32;
        let Some(c) = self.conns.get(i) else { return };
        if c.generation != generation || c.socket.is_none() {
            return;
        }
        match c.state {
            State::Closed => {}
            State::Connecting => {
                let outcome = match c.socket.as_ref().map(Socket::take_error) {
                    Some(Ok(None)) if flags.contains(EventFlags::OUT) => Ok(()),
                    Some(Ok(Some(e))) | Some(Err(e)) => Err(e),
                    _ if flags.intersects(EventFlags::ERR | EventFlags::HUP) => Err(
                        io::Error::new(ErrorKind::ConnectionAborted, "closed while connecting"),
                    ),
                    _ => return,
                };
                self.connecting -= 1;
                match outcome {
                    Ok(()) => self.on_connected(i),
                    Err(e) => {
                        // `close` must not count it as connecting again.
                        self.conns[i].state = State::Closed;
                        self.connect_failed(i, e);
                    }
                }
            }
            State::Open => {
                if flags.contains(EventFlags::OUT) {
                    self.flush(i);
                }
                if self.conns[i].state == State::Open
                    && flags.intersects(EventFlags::IN | EventFlags::ERR | EventFlags::HUP)
                {
                    self.read(i);
                }
            }
        }
    }

    fn read(&mut self, i: usize) {
        let c = &self.conns[i];
        let id = c.id;
        let Some(socket) = c.socket.as_ref() else {
            return;
        };
        let got = match (&*socket).read(&mut self.buf) {
            Ok(0) => {
                let lost = if self.phase >= Phase::Drain {
                    Lost::Done
                } else {
                    Lost::Failed
                };
                self.error(|| format!("connection {id}: closed by the server"));
                self.close(i, lost);
                return;
            }
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            Err(e) => {
                self.error(|| format!("connection {id}: read: {e}"));
                self.close(i, Lost::Failed);
                return;
            }
        };
        let now = Instant::now();
        let mut input = std::mem::take(&mut self.conns[i].input);
        input.extend_from_slice(&self.buf[..got]);
        // `None`: the connection was closed, and its input is gone with it.
        if let Some(used) = self.replies(i, &input, now) {
            input.drain(..used);
            self.conns[i].input = input;
            self.next_batch(i, now);
            self.flush(i);
        }
    }

    /// Handles every whole reply in `input`; returns the bytes used, or
    /// `None` if the connection had to be closed.
    fn replies(&mut self, i: usize, input: &[u8], now: Instant) -> Option<usize> {
        let limit = self.options.payload.max(PING_PAYLOAD) + 64 * 1024;
        let mut at = 0;
        while input.len() - at >= HEADER_LEN {
            let head = &input[at..];
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let id = self.conns[i].id;
            if len == 0 || len > limit {
                self.error(|| format!("connection {id}: a reply with a bad length ({len})"));
                self.close(i, Lost::Failed);
                return None;
            }
            if head.len() < 4 + len {
                break;
            }
            let kind = head[4];
            let body = &head[HEADER_LEN..4 + len];
            at += 4 + len;
            if kind == GOAWAY {
                let code = match body {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 0,
                };
                if code == GoAwayCode::Busy.as_u16() {
                    if self.phase == Phase::Window {
                        self.busy += 1;
                    }
                    self.close(i, Lost::Busy);
                } else if code == GoAwayCode::Shutdown.as_u16() && self.phase >= Phase::Drain {
                    self.close(i, Lost::Done);
                } else {
                    let reason = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                    self.error(|| format!("connection {id}: GOAWAY {code} {reason}"));
                    self.close(i, Lost::Failed);
                }
                return None;
            }
            let c = &mut self.conns[i];
            let Some(owed) = c.owed.pop_front() else {
                self.error(|| format!("connection {id}: a reply to no request (kind {kind})"));
                self.close(i, Lost::Failed);
                return None;
            };
            if kind == ERROR {
                let text = String::from_utf8_lossy(body);
                self.error(|| format!("connection {id}: ERROR {text}"));
                continue;
            }
            let (want_kind, len) = if c.idle {
                (PONG, PING_PAYLOAD)
            } else {
                (DATA, self.options.payload)
            };
            payload(c.id, owed.seq, len, &mut self.expected);
            if kind != want_kind || body != self.expected.as_slice() {
                let seq = owed.seq;
                self.error(|| {
                    format!("connection {id}: the reply to request {seq} is not what was sent")
                });
                self.close(i, Lost::Failed);
                return None;
            }
            let wait = micros(now.saturating_duration_since(owed.from));
            if c.idle {
                if owed.measured && self.phase >= Phase::Window {
                    self.pongs += 1;
                    self.idle_latency.saturating_record(wait);
                }
            } else if self.phase == Phase::Window {
                // Throughput counts every reply the window saw, also to a
                // request sent before it: under overload, requests wait in
                // line longer than a window, and counting only those sent
                // inside it would understate what the server delivered.
                // Latency keeps to requests sent (or due) in the window.
                c.served = true;
                self.requests += 1;
                if owed.measured {
                    self.latency.saturating_record(wait);
                }
            }
        }
        Some(at)
    }
}

/// The payload of request `seq` on connection `id`: both numbers, then a
/// pattern of both, cut to `len`, so a reply to another request or from
/// another connection does not pass.
fn payload(id: u64, seq: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend(
        (16..len).map(|i| (id.wrapping_mul(31) ^ seq.wrapping_mul(7)).wrapping_add(i as u64) as u8),
    );
    out.truncate(len);
}

/// A latency histogram: 1 µs to an hour, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_connection_and_request() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        payload(1, 2, 64, &mut a);
        payload(1, 3, 64, &mut b);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        payload(2, 2, 64, &mut b);
        assert_ne!(a, b);
        payload(1, 2, 3, &mut b);
        assert_eq!(b, a[..3]);
        payload(1, 2, 0, &mut b);
        assert!(b.is_empty());
    }

    #[test]
    fn a_schedule_spreads_events_evenly() {
        let start = Instant::now();
        let mut s = Schedule {
            interval: 0.001,
            next: 0,
        };
        assert_eq!(s.due(start), start);
        s.next = 1500;
        assert_eq!(s.due(start) - start, Duration::from_millis(1500));
    }
}
