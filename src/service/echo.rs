//! The built-in echo service, with simulated I/O-bound (`--delay`) and
//! CPU-bound (`--spin`) work.

use std::time::{Duration, Instant};

use super::{ConnInfo, Response, Service, ServiceError};

/// The built-in service: answers every request with the same bytes.
///
/// It is what `wharf serve` runs and what the benchmark ([`crate::bench`])
/// loads: a service whose cost is known, so what is measured is the
/// server. `delay` sleeps before answering (simulated I/O-bound work, which
/// leaves the CPU free); `spin` busy-loops for that much wall-clock time
/// (simulated CPU-bound work). Both default to zero, which answers at once.
///
/// ```
/// use std::time::{Duration, Instant};
/// use wharf::{Client, ClientOptions, Config, Echo, Server};
///
/// // Each request holds its worker for 20 ms, as a slow backend would.
/// let echo = Echo { delay: Duration::from_millis(20), ..Echo::default() };
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, echo)?;
///
/// let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
/// let start = Instant::now();
/// assert_eq!(client.request(b"ping?")?, b"ping?");
/// assert!(start.elapsed() >= Duration::from_millis(20));
///
/// drop(client);
/// server.handle().shutdown();
/// server.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Echo {
    /// Sleep this long before each response.
    pub delay: Duration,
    /// Busy-loop this long before each response.
    pub spin: Duration,
}

impl Service for Echo {
    type Session = ();

    fn open(&self, _conn: &ConnInfo) {}

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if !self.spin.is_zero() {
            let start = Instant::now();
            while start.elapsed() < self.spin {
                std::hint::spin_loop();
            }
        }
        response.extend_from_slice(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_appends_after_existing_bytes() {
        let mut buf = b"earlier".to_vec();
        let mut response = Response::new(&mut buf);
        Echo::default()
            .call(&mut (), b"abc", &mut response)
            .unwrap();
        assert_eq!(response.as_slice(), b"abc");
        response.clear();
        assert!(response.is_empty());
        assert_eq!(buf, b"earlier");
    }

    #[test]
    fn spin_takes_at_least_its_duration() {
        let echo = Echo {
            spin: Duration::from_millis(5),
            ..Echo::default()
        };
        let start = Instant::now();
        let mut buf = Vec::new();
        echo.call(&mut (), b"x", &mut Response::new(&mut buf))
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert_eq!(buf, b"x");
    }
}
