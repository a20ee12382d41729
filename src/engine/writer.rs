//! Writing a batch of replies within `--write-timeout`.
//!
//! A worker answers every complete frame it has, then writes all the
//! replies at once: a pipelining client gets one `write` per batch, and a
//! lone request one `write`. The whole batch must go out within the write
//! timeout, so a client that does not read, or reads a trickle at a time,
//! is dropped rather than holding a worker.

use crate::engine::socket::Stream;
use std::io::{self, ErrorKind, Write};
use std::time::{Duration, Instant};

/// Writes all of `buf` within `limit` in total. The socket's send timeout
/// (set to `limit` at accept) bounds each `write` call; a client that reads a
/// little at a time would make every call succeed partially and hold the
/// worker for ever, so after a partial write each call may only block for
/// what is left. The common case, one complete write, costs one clock read.
pub(crate) fn write_within(stream: &Stream, mut buf: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut shortened = false;
    let result = loop {
        match (&*stream).write(buf) {
            Ok(n) if n == buf.len() => break Ok(()),
            Ok(0) => break Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(io::Error::from(ErrorKind::TimedOut));
        }
        if let Err(e) = stream.set_write_timeout(Some(left)) {
            break Err(e);
        }
        shortened = true;
    };
    if shortened {
        let _ = stream.set_write_timeout(Some(limit));
    }
    result
}
