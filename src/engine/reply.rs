//! The one reply every complete frame gets, appended to the worker's output.
//!
//! DATA goes to the service; PING gets PONG (or ERROR past 64 bytes); any
//! other kind gets ERROR. A service's response is framed in place: a length
//! header is reserved first and filled in afterwards, so the response is
//! never copied. A service that fails or panics yields ERROR in its
//! request's place, so replies stay in order and the connection usable.
//!
//! DATA requests are counted for the batch (the worker adds them to its own
//! slot once per batch). With the metrics endpoint on, the time each one
//! spends in the service (opening the session included, whatever the
//! outcome) also goes into the worker's own histogram (see `stats`): two
//! clock reads and two plain stores per request, which is why it is off
//! otherwise.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::error;

use crate::frame::{self, Frame, Framing};
use crate::observe::access::Who;
use crate::observe::stats::Stats;
use crate::service::{ConnInfo, ErasedService, Response};

/// What answering a DATA frame needs besides the frame itself.
pub(crate) struct Context<'a> {
    pub(crate) framing: Framing,
    pub(crate) service: &'a dyn ErasedService,
    pub(crate) stats: &'a Stats,
    /// The worker answering, for its own histogram slot.
    pub(crate) worker: usize,
    /// Whether to time the service (the metrics endpoint is on).
    pub(crate) timed: bool,
    /// DATA requests answered so far with this context.
    pub(crate) data: u64,
    pub(crate) conn: &'a ConnInfo,
    pub(crate) session: &'a mut Option<Box<dyn Any + Send>>,
}

/// Appends the one reply that `frame` gets.
pub(crate) fn answer(cx: &mut Context<'_>, frame: Frame<'_>, out: &mut Vec<u8>) {
    let framing = cx.framing;
    match frame.kind {
        frame::DATA => {
            cx.data += 1;
            call_service(cx, frame.payload, out)
        }
        frame::PING if frame.payload.len() <= frame::MAX_PING_PAYLOAD => {
            framing.encode(frame::PONG, frame.payload, out)
        }
        frame::PING => framing.encode_error("PING payload longer than 64 bytes", out),
        frame::PONG => framing.encode_error("unexpected PONG from client", out),
        frame::GOAWAY => framing.encode_error("unexpected GOAWAY from client", out),
        frame::ERROR => framing.encode_error("unexpected ERROR from client", out),
        kind => framing.encode_error(&format!("unknown frame kind 0x{kind:02x}"), out),
    }
}

/// Runs the service (opening the connection's session first if it has none)
/// and frames its response in place.
fn call_service(cx: &mut Context<'_>, request: &[u8], out: &mut Vec<u8>) {
    let framing = cx.framing;
    let frame_start = out.len();
    if framing == Framing::Length {
        out.extend_from_slice(&[0, 0, 0, 0, frame::DATA]);
    }
    let body_start = out.len();
    let (service, conn) = (cx.service, cx.conn);
    let session = &mut *cx.session;
    let started = cx.timed.then(Instant::now);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let session = session.get_or_insert_with(|| service.open_session(conn));
        service.call_with(session.as_mut(), request, &mut Response::new(out))
    }));
    if let Some(started) = started {
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        cx.stats.observe_service(cx.worker, took);
    }
    let failure = match result {
        Ok(Ok(())) => match framing {
            Framing::Length => match u32::try_from(out.len() - body_start + 1) {
                Ok(len) => {
                    out[frame_start..frame_start + 4].copy_from_slice(&len.to_be_bytes());
                    return;
                }
                Err(_) => "response too large for one frame".to_owned(),
            },
            Framing::Line => {
                if memchr::memchr(b'\n', &out[body_start..]).is_none() {
                    out.push(b'\n');
                    return;
                }
                "response contains a newline; not representable in line framing".to_owned()
            }
        },
        Ok(Err(e)) => e.0,
        Err(panic) => {
            Stats::bump(&cx.stats.service_panics);
            error!(
                "{}: service panicked: {}; answered with ERROR",
                Who::of(conn),
                panic_message(&panic)
            );
            "internal error".to_owned()
        }
    };
    out.truncate(frame_start);
    framing.encode_error(&failure, out);
}

/// The message a panic was raised with, if it is a string.
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}
