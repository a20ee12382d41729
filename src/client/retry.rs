//! Safe retries (docs/protocol.md, "Retrying safely"): after GOAWAY 1 (SHUTDOWN),
//! GOAWAY 3 (BUSY) or GOAWAY 6 (LIMITED) the server promises that no request after
//! its last reply was started, so the client reconnects and resends exactly those,
//! in order; after GOAWAY 6 not before the time its reason hints at.
//!
//! Separate from the reading half, which only decides *that* a failure is
//! retried; this file holds *how*: the backoff, the reconnect loop, putting
//! the new connection in place of the old one under the writer's lock, and
//! the [`Reconnect`] report a caller can print. Retries are off unless
//! [`ClientOptions::retries`](super::ClientOptions::retries) is above 0.

use std::fmt;
use std::io::BufReader;
use std::net::{Shutdown, TcpStream};

use super::socket::{self, ServerAddr, Socket};

use super::transport::{self, ReadHalf, WriteHalf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::writer::{Link, Pending};
use super::{Client, ClientError};
use crate::frame::GoAwayCode;

/// One reconnect about to happen, as given to the hook set with
/// [`Client::on_reconnect`] before the backoff sleep.
///
/// Its `Display` is the line `wharf client` prints on stderr, e.g.
/// `reconnecting after GOAWAY 1 SHUTDOWN (attempt 2 of 5), 3 request(s) to resend`.
/// It borrows the failure, so a hook that wants to keep it keeps that line
/// or the fields it needs; the [module documentation](super) has an
/// example. It is `#[non_exhaustive]`: only the client makes one.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reconnect<'a> {
    /// The failure being retried: a GOAWAY 1, 3 or 6, a reconnect that
    /// failed ([`ClientError::Connect`]), or, with [`ClientOptions::idempotent`](super::ClientOptions::idempotent),
    /// [`ClientError::Closed`].
    pub cause: &'a ClientError,
    /// This attempt's number, from 1; it starts again at 1 after a reply.
    pub attempt: u32,
    /// The most attempts allowed in a row:
    /// [`ClientOptions::retries`](super::ClientOptions::retries).
    pub retries: u32,
    /// How many requests will be resent (heartbeat PINGs are not counted:
    /// they are dropped, not resent).
    pub resend: usize,
    /// How long the client sleeps before connecting again: the backoff,
    /// or the server's hint when that is longer.
    pub delay: Duration,
    /// The server's hint, from a GOAWAY 6 (LIMITED): the least time to
    /// wait before its address is let in again. `delay` is never shorter.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Reconnect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reconnecting after ")?;
        match self.cause {
            ClientError::GoAway { code, .. } => {
                let name = GoAwayCode::from_u16(*code).map_or("UNKNOWN", GoAwayCode::name);
                write!(f, "GOAWAY {code} {name}")?;
                if let Some(hint) = self.retry_after {
                    write!(f, ", retry after {} ms", hint.as_millis())?;
                }
            }
            other => write!(f, "{other}")?,
        }
        write!(
            f,
            " (attempt {} of {}), {} request(s) to resend",
            self.attempt, self.retries, self.resend
        )
    }
}

/// A function the caller wants called before each reconnect.
type HookFn = Box<dyn FnMut(&Reconnect<'_>) + Send>;

/// The caller's reconnect hook, if any.
pub(super) struct Hook(Option<HookFn>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

/// What the retry rule needs to remember between calls, and the counts.
#[derive(Debug)]
pub(super) struct RetryState {
    /// Attempts since the last reply (the retry count N counts these).
    pub(super) attempt: u32,
    /// Reconnects that succeeded.
    pub(super) reconnects: u64,
    /// Requests written again on a new connection.
    pub(super) resent: u64,
    /// When the latest reconnect put its new connection in place.
    pub(super) reconnected_at: Option<Instant>,
    pub(super) hook: Hook,
}

impl RetryState {
    pub(super) fn new() -> RetryState {
        RetryState {
            attempt: 0,
            reconnects: 0,
            resent: 0,
            reconnected_at: None,
            hook: Hook(None),
        }
    }
}

/// The upper bound `b` of the sleep before attempt `attempt` (from 1):
/// `base`, doubled for each attempt after the first, at most `max`.
pub(super) fn backoff_bound(base: Duration, max: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    base.checked_mul(1 << doublings).unwrap_or(max).min(max)
}

/// A sleep drawn uniformly from `[b/2, b]`, so that clients turned away
/// together do not all come back together.
pub(super) fn jitter(b: Duration) -> Duration {
    let low = b / 2;
    let span = u64::try_from((b - low).as_nanos()).unwrap_or(u64::MAX);
    low + Duration::from_nanos(fastrand::u64(0..=span))
}

impl Client {
    /// Whether `failure` may be retried under the retry rule: GOAWAY 1, 3
    /// and 6 (nothing after the last reply was started:
    /// [`GoAwayCode::retryable`]), a reconnect that failed, and a
    /// connection lost without GOAWAY only when the caller declared its
    /// requests idempotent.
    fn retryable(&self, failure: &ClientError) -> bool {
        match failure {
            ClientError::GoAway { .. } => failure.goaway_retryable(),
            ClientError::Closed => self.options.idempotent,
            _ => false,
        }
    }

    /// Called by `recv` with a failure of the connection. With retries on
    /// and a retryable failure, reconnects and resends (returning `Ok`, so
    /// `recv` reads on); otherwise returns the failure. A failure that ends
    /// the connection ends the writers too, so a `RequestSender` does not go
    /// on queueing requests nobody will send.
    pub(super) fn recover(&mut self, failure: ClientError) -> Result<(), ClientError> {
        if self.options.retries == 0 {
            return Err(failure);
        }
        if !self.retryable(&failure) {
            if !matches!(failure, ClientError::Timeout(_)) {
                self.writer.lock().link = Link::Gone;
            }
            return Err(failure);
        }
        self.reconnect(failure)
    }

    /// Reconnects to the same address, with backoff, until a connection is
    /// in place (then the unanswered requests are being resent) or the
    /// attempts run out (then the last failure is returned).
    fn reconnect(&mut self, mut failure: ClientError) -> Result<(), ClientError> {
        // Nothing more goes to the old connection. Shutting it down first
        // makes a writer blocked on it fail now and release the lock.
        let _ = self.reader.get_ref().socket().shutdown(Shutdown::Both);
        self.writer.lock().link = Link::Down;
        loop {
            let write_shut = self.writer.lock().write_shut;
            let resend = self.resend_count();
            // Half-closed and everything answered: the conversation is over.
            if write_shut && resend == 0 {
                self.writer.lock().link = Link::Gone;
                return Err(failure);
            }
            self.retry.attempt = self.retry.attempt.saturating_add(1);
            if self.retry.attempt > self.options.retries {
                self.writer.lock().link = Link::Gone;
                return Err(failure);
            }
            let bound = backoff_bound(
                self.options.retry_backoff,
                self.options.retry_backoff_max,
                self.retry.attempt,
            );
            // A GOAWAY 6 says when the address is let in again: not before.
            let retry_after = failure.retry_after();
            let delay = jitter(bound).max(retry_after.unwrap_or_default());
            let report = Reconnect {
                cause: &failure,
                attempt: self.retry.attempt,
                retries: self.options.retries,
                resend,
                delay,
                retry_after,
            };
            log::debug!("wharf client: {report}");
            if let Some(hook) = self.retry.hook.0.as_mut() {
                hook(&report);
            }
            std::thread::sleep(delay);
            match self.open() {
                Ok((stream, reader)) => {
                    self.install(stream, reader);
                    return Ok(());
                }
                Err(e) => failure = e,
            }
        }
    }

    /// Requests owed that a reconnect would resend.
    fn resend_count(&self) -> usize {
        self.owed
            .lock()
            .iter()
            .filter(|o| o.pending != Pending::Heartbeat)
            .count()
    }

    /// A new connection to the same address, set up like the first (its
    /// TLS handshake included).
    fn open(&self) -> Result<(WriteHalf, ReadHalf), ClientError> {
        let connect_error = |source| ClientError::Connect {
            addr: self.peer.to_string(),
            source,
        };
        let timeout = self.options.connect_timeout;
        let stream = match &self.peer {
            ServerAddr::Tcp(addr) => TcpStream::connect_timeout(addr, timeout).map(Socket::Tcp),
            ServerAddr::Unix(path) => socket::connect_unix(path, timeout).map(Socket::Unix),
        }
        .map_err(connect_error)?;
        transport::split(stream, &self.peer, self.tls.as_deref(), &self.options).map_err(
            |e| match e {
                ClientError::Io(source) => connect_error(source),
                e => e,
            },
        )
    }

    /// Puts the new connection in place: under the writer's lock the
    /// heartbeat PINGs still owed are dropped (nobody waits for their
    /// PONGs) and every other request owed is encoded again, in order,
    /// ahead of anything a writer queues after. The write itself happens on
    /// a short-lived thread, so this thread goes back to reading at once: a
    /// large resend cannot stall against a server that is blocked writing
    /// replies nobody reads.
    fn install(&mut self, stream: WriteHalf, reader: ReadHalf) {
        let framing = self.options.framing;
        let resent = {
            let mut w = self.writer.lock();
            let mut owed = self.owed.lock();
            owed.retain(|o| o.pending != Pending::Heartbeat);
            w.buf.clear();
            for o in owed.iter() {
                let payload = o.payload.as_deref().unwrap_or_default();
                framing.encode(o.pending.kind(), payload, &mut w.buf);
            }
            w.stream = stream;
            w.link = Link::Up;
            w.last_write = Instant::now();
            owed.len()
        };
        self.reader = BufReader::with_capacity(64 * 1024, reader);
        self.retry.reconnects += 1;
        self.retry.resent += resent as u64;
        self.retry.reconnected_at = Some(Instant::now());
        let writer = Arc::clone(&self.writer);
        let resend = move || {
            let mut w = writer.lock();
            // A failed write leaves the link down; `recv` sees why.
            let _ = w.flush();
            if w.write_shut {
                let _ = w.shut_stream();
            }
        };
        if std::thread::Builder::new()
            .name("wharf-client-resend".into())
            .spawn(resend.clone())
            .is_err()
        {
            // No thread to spare: write from here instead.
            resend();
        }
    }

    /// Sets a hook called before each reconnect (before its backoff sleep),
    /// for example to print [`Reconnect`]'s line. Replaces any earlier hook.
    /// Only called when [`ClientOptions::retries`](super::ClientOptions::retries)
    /// is above 0.
    pub fn on_reconnect(&mut self, hook: impl FnMut(&Reconnect<'_>) + Send + 'static) {
        self.retry.hook = Hook(Some(Box::new(hook)));
    }

    /// Reconnects that succeeded since this client was made.
    pub fn reconnects(&self) -> u64 {
        self.retry.reconnects
    }

    /// Requests written again on a new connection since this client was
    /// made (heartbeat PINGs are never resent; a request resent twice counts
    /// twice).
    pub fn resent(&self) -> u64 {
        self.retry.resent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_starts_at_100ms_doubles_and_stops_at_2s() {
        let bounds: Vec<Duration> = (1..=8)
            .map(|attempt| backoff_bound(100 * MS, 2000 * MS, attempt))
            .collect();
        let expected: Vec<Duration> = [100, 200, 400, 800, 1600, 2000, 2000, 2000]
            .iter()
            .map(|&ms| ms * MS)
            .collect();
        assert_eq!(bounds, expected);
        // No overflow however long the run of failures.
        assert_eq!(backoff_bound(100 * MS, 2000 * MS, u32::MAX), 2000 * MS);
        assert_eq!(backoff_bound(Duration::MAX, 2000 * MS, 3), 2000 * MS);
    }

    #[test]
    fn jitter_is_within_half_to_whole_bound_and_spread() {
        for b in [100 * MS, 2000 * MS, Duration::from_nanos(3), Duration::ZERO] {
            let samples: Vec<Duration> = (0..2000).map(|_| jitter(b)).collect();
            for s in &samples {
                assert!(*s >= b / 2 && *s <= b, "{s:?} outside [{:?}, {b:?}]", b / 2);
            }
            if b >= 100 * MS {
                // Spread over the range, not stuck at one end.
                let low = samples.iter().filter(|s| **s < b * 3 / 4).count();
                assert!(
                    (600..=1400).contains(&low),
                    "{low} of 2000 in the lower half"
                );
            }
        }
    }

    #[test]
    fn reconnect_line_names_the_goaway_and_the_counts() {
        let cause = ClientError::GoAway {
            code: 1,
            reason: "server is shutting down".into(),
        };
        let report = Reconnect {
            cause: &cause,
            attempt: 2,
            retries: 5,
            resend: 3,
            delay: 150 * MS,
            retry_after: None,
        };
        assert_eq!(
            report.to_string(),
            "reconnecting after GOAWAY 1 SHUTDOWN (attempt 2 of 5), 3 request(s) to resend"
        );
        let cause = ClientError::GoAway {
            code: 6,
            reason: "retry after 300 ms: connections per address".into(),
        };
        let report = Reconnect {
            cause: &cause,
            attempt: 1,
            retries: 2,
            resend: 4,
            delay: 300 * MS,
            retry_after: cause.retry_after(),
        };
        assert_eq!(
            report.to_string(),
            "reconnecting after GOAWAY 6 LIMITED, retry after 300 ms (attempt 1 of 2), 4 request(s) to resend"
        );
        let cause = ClientError::Closed;
        let report = Reconnect {
            cause: &cause,
            attempt: 1,
            retries: 1,
            resend: 0,
            delay: MS,
            retry_after: None,
        };
        assert_eq!(
            report.to_string(),
            "reconnecting after connection closed by the server (attempt 1 of 1), 0 request(s) to resend"
        );
    }
}
