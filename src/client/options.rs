//! How a client connects, how long it waits, and whether it retries.

use std::time::Duration;

use super::ClientTls;
use crate::frame::Framing;

/// How to connect, how long to wait, and whether to retry.
///
/// Plain data with usable defaults (length framing, a 5 s connect timeout,
/// a 30 s read timeout, no retries); fill it with struct-update syntax.
/// Retries are off unless [`retries`](ClientOptions::retries) is above 0;
/// the [module documentation](crate::client) gives the rule they follow and an
/// example of a request that survives a GOAWAY.
///
/// ```
/// use std::time::Duration;
/// use wharf::{Client, ClientOptions, Config, Echo, Server};
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Echo::default())?;
///
/// let options = ClientOptions {
///     read_timeout: Some(Duration::from_secs(5)),
///     // Up to 5 reconnects in a row after GOAWAY 1, 3 or 6, sleeping up to
///     // 50 ms before the first, doubling up to 1 s.
///     retries: 5,
///     retry_backoff: Duration::from_millis(50),
///     retry_backoff_max: Duration::from_secs(1),
///     ..ClientOptions::default()
/// };
/// let mut client = Client::connect(server.local_addr(), options)?;
/// client.on_reconnect(|reconnect| eprintln!("{reconnect}"));
/// assert_eq!(client.request(b"hello")?, b"hello");
/// // Nothing went wrong, so nothing was retried.
/// assert_eq!((client.reconnects(), client.resent()), (0, 0));
///
/// drop(client);
/// server.handle().shutdown();
/// server.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Wire format; must match the server's
    /// [`Config::framing`](crate::Config::framing). A reply that shows the
    /// server uses the other framing is reported as such (a
    /// [`ClientError::Protocol`](crate::client::ClientError::Protocol) or [`ClientError::GoAway`](crate::client::ClientError::GoAway) whose message
    /// names `--framing`), not misread.
    pub framing: Framing,
    /// Longest wait for the TCP connection to be established, for each
    /// address tried and for each reconnect.
    pub connect_timeout: Duration,
    /// Longest wait for a reply before [`ClientError::Timeout`](crate::client::ClientError::Timeout); `None` waits forever.
    /// A timeout is never retried.
    pub read_timeout: Option<Duration>,
    /// Largest reply accepted (kind byte plus payload, or line), as the
    /// server's [`Config::max_frame`](crate::Config::max_frame) bounds
    /// requests. A larger one is a [`ClientError::Protocol`](crate::client::ClientError::Protocol); a length
    /// frame's header alone decides, before any of its payload is read.
    pub max_frame: u32,
    /// How many reconnects [`Client::recv`](crate::client::Client::recv) may make in a row after GOAWAY 1,
    /// 3 or 6 (or, with `idempotent`, a lost connection), each failed
    /// reconnect counting as one; a reply starts the count again. 0 (the
    /// default) turns retries off: every failure is returned at once. See
    /// the [module documentation](crate::client) for the rule.
    pub retries: u32,
    /// The caller's requests are safe to run twice, so a connection lost
    /// without GOAWAY ([`ClientError::Closed`](crate::client::ClientError::Closed)) is retried like GOAWAY 1.
    /// Without it such a loss is returned, since the server may have run the
    /// requests it did not answer. Only used when `retries` is above 0.
    pub idempotent: bool,
    /// The upper bound of the first reconnect's backoff sleep (each sleep is
    /// drawn from `[b/2, b]`); it doubles with each further attempt. After
    /// a GOAWAY 6 the sleep is at least the server's `retry after` hint,
    /// however short the backoff.
    pub retry_backoff: Duration,
    /// The largest backoff bound.
    pub retry_backoff_max: Duration,
    /// Speak TLS, verifying the server as this says (see [`ClientTls`]);
    /// `None` (the default) speaks plain TCP (or plain Unix-socket
    /// streams; over a Unix socket TLS needs [`ClientTls::server_name`]).
    /// The handshake counts against
    /// [`connect_timeout`](ClientOptions::connect_timeout).
    pub tls: Option<ClientTls>,
}

/// The default [`ClientOptions::retry_backoff`]: 100 ms.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The default [`ClientOptions::retry_backoff_max`]: 2 s.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            framing: Framing::Length,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Some(Duration::from_secs(30)),
            max_frame: 1 << 30,
            retries: 0,
            idempotent: false,
            retry_backoff: RETRY_BACKOFF,
            retry_backoff_max: RETRY_BACKOFF_MAX,
            tls: None,
        }
    }
}
