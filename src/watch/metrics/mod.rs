//! `--metrics`: Prometheus metrics and the `/ready` and `/live` probes over
//! HTTP/1.1, on one thread of its own.
//!
//! The endpoint is for operators and load balancers, and it must never cost
//! the clients anything. That decides its shape:
//!
//! - **One thread, one request at a time.** A wharf server runs a fixed,
//!   known set of threads, started before its listening line; the metrics
//!   endpoint adds exactly one. It accepts a connection, reads one request
//!   head, answers, and closes (`Connection: close` on every response), then
//!   accepts the next. HTTP servers such as `tiny_http` start an accept
//!   thread and a thread per connection, which breaks the fixed count and
//!   leaves the head's time and size limits to them; `hyper` needs an async
//!   runtime. So the accept loop is ours, on std sockets with read and write
//!   timeouts, and the head is parsed by `httparse` (the parser behind
//!   `hyper`; see `http`).
//! - **Bounded.** A request head must arrive within [`http::HEAD_TIMEOUT`]
//!   (5 s) of the accept and fit in [`http::MAX_HEAD`] (16 KiB), or the
//!   client gets 408, 431 or 400 and is closed; the response must be taken
//!   within [`http::WRITE_TIMEOUT`]. A client therefore holds the thread for
//!   a few seconds at most: a silent one delays the next scrape (which waits
//!   in the listener's backlog), never the data path.
//! - **Out of the data path's way.** The thread does not hold the server's
//!   shared state: it reads the workers' own counters and histograms (plain
//!   atomic loads, see `stats`), the workers' hand-off states, the buffer
//!   budget and the shutdown flags, and takes no lock a worker takes per
//!   request. The one lock it takes is the registry's, to count where the
//!   connections are (a walk over them, as each reaper scan does); it does
//!   that at most every [`exposition::CENSUS_EVERY`], however often it is
//!   scraped, so a scraper in a loop cannot hold up accepts and closes.
//! - **Up through the whole drain.** The thread is stopped by the drain's
//!   coordinator after everything else has finished, just before
//!   [`crate::Server::join`] returns (in the binary: just before the
//!   process exits). So `/ready` answers 503 and `/live` 200 throughout a
//!   drain.
//!
//! What is exported, and in which format, is in `exposition`.

mod exposition;
mod http;
mod process;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;

use crate::engine::budget::Budget;
use crate::engine::line::WorkerStates;
use crate::engine::per_address::PerAddress;
use crate::engine::registry::Registry;
use crate::engine::shared::Shared;
use crate::engine::shutdown::Shutdown;
use crate::error::Error;
use crate::observe::stats::Stats;

use exposition::Exposition;
use http::{Method, Request, Status};

/// Longest pause after a failed `accept` (out of descriptors, ...).
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// What the endpoint reads: the parts of the server's state it needs, never
/// the whole (whose closer handle would keep the closer thread alive after
/// the drain).
#[derive(Debug)]
struct Sources {
    stats: Arc<Stats>,
    registry: Arc<Registry>,
    budget: Arc<Budget>,
    shutdown: Arc<Shutdown>,
    workers: WorkerStates,
    /// `--workers`.
    pool_size: usize,
    /// `--max-connections`, as fitted to the descriptor limit.
    max_connections: usize,
    /// Whether a TLS listener exists: the TLS metrics are exported then.
    tls: bool,
    /// The per-address limits' table: exported when a limit is on.
    per_address: Arc<PerAddress>,
}

/// The running endpoint. Stopping it (or dropping it) closes the listener,
/// cuts the request in progress short, and joins the thread.
#[derive(Debug)]
pub(crate) struct Metrics {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

/// What the thread and whoever stops it share.
#[derive(Debug)]
struct Control {
    stopping: AtomicBool,
    listener: TcpListener,
    /// The connection being served, so that a stop need not wait for it.
    current: Mutex<Option<Arc<TcpStream>>>,
}

impl Control {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Starts the endpoint's thread on `listener`, if there is one, with the
/// parts of `shared` it reads.
pub(crate) fn start(
    listener: Option<TcpListener>,
    shared: &Shared,
) -> Result<Option<Metrics>, Error> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let sources = Sources {
        stats: Arc::clone(&shared.stats),
        registry: Arc::clone(&shared.registry),
        budget: Arc::clone(&shared.budget),
        shutdown: Arc::clone(&shared.shutdown),
        workers: shared.line.worker_states(),
        pool_size: shared.config.workers,
        max_connections: shared.config.max_connections,
        tls: shared.tls.is_some(),
        per_address: Arc::clone(&shared.per_address),
    };
    spawn(listener, sources).map(Some)
}

fn spawn(listener: TcpListener, sources: Sources) -> Result<Metrics, Error> {
    let control = Arc::new(Control {
        stopping: AtomicBool::new(false),
        listener,
        current: Mutex::new(None),
    });
    let thread = std::thread::Builder::new()
        .name("wharf-metrics".into())
        .spawn({
            let control = Arc::clone(&control);
            move || run(&control, sources)
        })
        .map_err(|source| Error::Spawn {
            what: "metrics",
            source,
        })?;
    Ok(Metrics {
        control,
        thread: Some(thread),
    })
}

impl Metrics {
    /// Stops the endpoint and waits for its thread (a few milliseconds at
    /// most: the listener and any connection in progress are shut down).
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let control = &self.control;
        control.stopping.store(true, Ordering::SeqCst);
        // As for the data listener: shutting a listening socket down wakes
        // the thread blocked in accept().
        let _ = socket2::SockRef::from(&control.listener).shutdown(std::net::Shutdown::Read);
        if let Some(stream) = &*control.current.lock() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The thread: accept, answer one request, close; until stopped.
fn run(control: &Control, sources: Sources) {
    let shutdown = Arc::clone(&sources.shutdown);
    let mut exposition = Exposition::new(sources);
    let mut buf = vec![0; http::MAX_HEAD];
    let mut backoff: Option<Duration> = None;
    let mut last_warning: Option<Instant> = None;
    while !control.stopping() {
        let (stream, peer) = match control.listener.accept() {
            Ok(accepted) => accepted,
            Err(_) if control.stopping() => break,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset
                ) =>
            {
                continue
            }
            Err(e) => {
                // Out of descriptors, most likely: the data path's acceptor
                // says so too. Back off, say so about once a second.
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    warn!("metrics: accept failed: {e}; backing off");
                    last_warning = Some(Instant::now());
                }
                let pause = backoff.map_or(Duration::from_millis(1), |p| (p * 2).min(BACKOFF_MAX));
                backoff = Some(pause);
                std::thread::sleep(pause);
                continue;
            }
        };
        backoff = None;
        let stream = Arc::new(stream);
        *control.current.lock() = Some(Arc::clone(&stream));
        // A stop that came before the connection was published did not
        // shut it down: look again.
        if control.stopping() {
            break;
        }
        serve(&stream, peer, &mut buf, &mut exposition, &shutdown);
        *control.current.lock() = None;
    }
    debug!("metrics endpoint stopped");
}

/// Reads one request head from `stream`, answers it and closes.
fn serve(
    stream: &TcpStream,
    peer: SocketAddr,
    buf: &mut [u8],
    exposition: &mut Exposition,
    shutdown: &Shutdown,
) {
    let request = match http::read_head(stream, buf) {
        Ok(Some(request)) => request,
        Ok(None) => return, // closed or reset before a whole head
        Err(status) => {
            debug!("metrics: {peer}: {} {}", status.code(), status.reason());
            http::respond(stream, status, http::TEXT, status.body(), false, &[]);
            http::finish(stream, buf);
            return;
        }
    };
    answer(stream, &request, exposition, shutdown);
    http::finish(stream, buf);
}

/// Routes a parsed request: `/metrics`, `/ready`, `/live`, or 404.
fn answer(stream: &TcpStream, request: &Request, exposition: &mut Exposition, shutdown: &Shutdown) {
    let head_only = match request.method {
        Method::Get => false,
        Method::Head => true,
        Method::Other => {
            let status = Status::MethodNotAllowed;
            let allow = [("Allow", "GET, HEAD")];
            http::respond(stream, status, http::TEXT, status.body(), false, &allow);
            return;
        }
    };
    let (status, content_type, body): (Status, &str, &[u8]) = match request.path() {
        "/metrics" => (
            Status::Ok,
            exposition::CONTENT_TYPE,
            exposition.render().as_bytes(),
        ),
        "/ready" if shutdown.is_stopping() => {
            (Status::Unavailable, http::TEXT, b"not ready: stopping\n")
        }
        "/ready" => (Status::Ok, http::TEXT, b"ready\n"),
        "/live" => (Status::Ok, http::TEXT, b"live\n"),
        _ => (Status::NotFound, http::TEXT, Status::NotFound.body()),
    };
    http::respond(stream, status, content_type, body, head_only, &[]);
}
