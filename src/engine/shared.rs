//! What every thread of a running server shares: settings, the service, and
//! the server's state, each in the module that owns it. One `Arc<Shared>`
//! is handed to each thread at start; nothing in it is per request.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::config::Config;
use crate::engine::budget::Budget;
use crate::engine::closer::Closer;
use crate::engine::conn::{Clock, Conn};
use crate::engine::limits::Limits;
use crate::engine::line::Line;
use crate::engine::per_address::PerAddress;
use crate::engine::registry::Registry;
use crate::engine::shutdown::Shutdown;
use crate::observe::alive::Alive;
use crate::observe::refused::Refused;
use crate::observe::stats::Stats;
use crate::observe::turned_away::TurnedAway;
use crate::service::ErasedService;
use crate::tls::reload::Tls;

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) service: Arc<dyn ErasedService>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) line: Line,
    /// Whether the latency histograms are recorded (the metrics endpoint is
    /// on, or the in-process benchmark reads them).
    pub(crate) timed: bool,
    pub(crate) limits: Arc<Limits>,
    /// `--max-connections-per-address` and `--connect-rate-per-address`.
    pub(crate) per_address: Arc<PerAddress>,
    pub(crate) budget: Arc<Budget>,
    /// Resting connections held unarmed while the budget is spent (see
    /// `resting`). Weak, so a held connection that is reaped meanwhile closes
    /// at once instead of waiting here for room.
    pub(crate) held: Mutex<VecDeque<Weak<Conn>>>,
    pub(crate) shutdown: Arc<Shutdown>,
    /// Shared with the metrics thread, which must not hold `Shared` (its
    /// closer handle keeps the closer thread alive).
    pub(crate) stats: Arc<Stats>,
    /// Turn-aways with BUSY not yet reported at warn level.
    pub(crate) turned_away: TurnedAway,
    /// The TLS set of the TLS listeners, if there are any.
    pub(crate) tls: Option<Arc<Tls>>,
    /// Failed TLS handshakes not yet reported at warn level.
    pub(crate) refused: Refused,
    pub(crate) clock: Clock,
    pub(crate) closer: Closer,
    /// Loop turns of the acceptor and the reaper, for a watchdog.
    pub(crate) alive: Arc<Alive>,
}
