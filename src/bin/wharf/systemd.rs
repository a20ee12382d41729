//! systemd integration: socket activation, and the notification protocol
//! (`READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`,
//! `EXTEND_TIMEOUT_USEC=`).
//!
//! Everything systemd passes in the environment (`LISTEN_PID`,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, `NOTIFY_SOCKET`, `WATCHDOG_USEC`,
//! `WATCHDOG_PID`) is read once, by [`Activation::take`] and
//! [`Notifier::take`], before the process starts any thread, and removed,
//! so no child inherits it. The socket-activation variables are parsed
//! here (`activation`), so that a `LISTEN_FDS` counting descriptors that
//! are not open is a warning rather than a failure; the `sd-notify` crate
//! parses the watchdog variables and formats the messages; sending is done
//! here (`notify`), to a pathname or an abstract (`@name`) socket, from one
//! unbound datagram socket.
//!
//! The periodic messages come from the main thread
//! ([`supervise`](fn@supervise)), which otherwise only waits for the server
//! to finish: no thread is added.
//!
//! The modules: `activation` takes the passed socket; `notify` sends the
//! messages; `supervise` sends the periodic ones, deciding with `watchdog`
//! whether to vouch for the server and with `stop_timeout` how long a stop
//! may still take.

mod activation;
mod notify;
mod stop_timeout;
mod supervise;
mod watchdog;

pub use activation::{describe_ranges, Activation};
pub use notify::Notifier;
pub use stop_timeout::extend;
pub use supervise::{status, supervise, Timing};
