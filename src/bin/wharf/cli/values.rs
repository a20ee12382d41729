//! What a flag's value may be: durations (`250ms`, `2s`, `1m` or a bare
//! `0`), byte sizes (`64KiB`, `1MiB`), addresses, counts and rates, each
//! refused with a message that says what was expected; and the wire format
//! both `serve` and `client` take.
//!
//! Plain functions from text to value, for clap's `value_parser`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FramingArg {
    /// u32 length, kind byte, payload.
    Length,
    /// One request per line, for nc and telnet.
    Line,
}

impl From<FramingArg> for wharf::Framing {
    fn from(framing: FramingArg) -> Self {
        match framing {
            FramingArg::Length => wharf::Framing::Length,
            FramingArg::Line => wharf::Framing::Line,
        }
    }
}

/// `250ms`, `2s`, `1m`, `1h30m` or a bare `0`.
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // humantime suggests `5sec` for a bare `5`; the documented spelling is
    // `5s`.
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.parse() != Ok(0u64) {
        return Err(format!(
            "a unit is needed, e.g. {text}s or {text}ms (expected e.g. 250ms, 2s, 1m or 0)"
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (expected e.g. 250ms, 2s, 1m or 0)"))
}

/// `127.0.0.1:7878`, `[::1]:0`, or `host:port` resolved to its first address.
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("{e} (expected e.g. 127.0.0.1:7878 or [::1]:0)"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_owned())
}

/// `--bind` and `--tls-bind`: an address as [`socket_addr`] reads it, or
/// `unix:PATH` for a Unix socket.
pub(super) fn listen_addr(text: &str) -> Result<wharf::Address, String> {
    if text.starts_with("unix:") {
        return text.parse().map_err(|e: wharf::AddressError| e.to_string());
    }
    socket_addr(text)
        .map(wharf::Address::Tcp)
        .map_err(|e| format!("{e}, or unix:PATH"))
}

/// `--unix-mode`: file permissions in octal, e.g. `0660` or `660`.
pub(super) fn octal_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err("expected a file mode in octal, e.g. 0660".to_owned()),
    }
}

/// `--metrics-url`: `http://HOST:PORT/metrics`, `http://HOST:PORT` or
/// `HOST:PORT` (plain HTTP, the only kind `wharf serve --metrics` speaks).
pub(super) fn metrics_url(text: &str) -> Result<SocketAddr, String> {
    if text.starts_with("https://") {
        return Err("only http:// (wharf serves its metrics over plain HTTP)".to_owned());
    }
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
    if path != "metrics" {
        return Err(format!("the path must be /metrics, not /{path}"));
    }
    socket_addr(authority)
}

/// `--connect`: `unix:PATH` (a Unix socket; the path must not be empty),
/// or an address that parses or resolves now (a bad one is a bad flag, as
/// for `--bind`), kept as written so that connecting resolves it again and
/// tries each address.
pub(super) fn connect_addr(text: &str) -> Result<String, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("unix: needs the socket's path, e.g. unix:/run/wharf.sock".to_owned());
        }
        return Ok(text.to_owned());
    }
    socket_addr(text).map(|_| text.to_owned())
}

/// A queue capacity: 0 to 1048576 (its slots are allocated up front).
pub(super) fn queue_capacity(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= wharf::config::MAX_QUEUE => Ok(n),
        Ok(_) => Err(format!("must be at most {}", wharf::config::MAX_QUEUE)),
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-connections`: 1 to 1048576.
pub(super) fn max_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=wharf::config::MAX_CONNECTIONS).contains(&n) => Ok(n),
        Ok(_) => Err(format!(
            "must be between 1 and {}",
            wharf::config::MAX_CONNECTIONS
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A byte size: a bare number of bytes, or a number with a `KiB`, `MiB` or
/// `GiB` suffix (binary units, as documented; `64K` or `64KB` are
/// refused rather than guessed at).
pub(super) fn byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit.trim() {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => return Err(format!("unknown unit {other:?} ({SIZES})")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 65536, 64KiB or 1MiB)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

/// What a byte size may look like, for error messages.
const SIZES: &str = "expected a number of bytes, or KiB, MiB or GiB, e.g. 64MiB";

/// `--max-frame`: a byte size from 1 byte to 1 GiB.
pub(super) fn frame_size(text: &str) -> Result<u32, String> {
    let limit = wharf::config::MAX_FRAME_LIMIT;
    match byte_size(text)? {
        n if n >= 1 && n <= u64::from(limit) => Ok(n as u32),
        _ => Err(format!("must be between 1 byte and {} (1GiB)", limit)),
    }
}

/// A count of at least 1.
pub(super) fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A pool size: 1 to the largest pool a server accepts.
pub(super) fn pool_size(text: &str) -> Result<usize, String> {
    let max = wharf::config::MAX_WORKERS;
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be between 1 and {max}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `--workers`: a pool size as [`pool_size`] reads it.
pub(super) fn workers(text: &str) -> Result<u32, String> {
    // MAX_WORKERS fits in a u32.
    pool_size(text).map(|n| n as u32)
}

/// Requests per second: a number greater than 0.
pub(super) fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("must be a number of requests per second greater than 0".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// A bench payload: bytes, at most what the server's default max frame
/// carries (with `--connect`, the default is all that can be assumed).
pub(super) fn payload_size(text: &str) -> Result<usize, String> {
    let max = wharf::bench::max_payload(wharf::Config::default().max_frame);
    match byte_size(text)? {
        n if n <= max as u64 => Ok(n as usize),
        n => Err(format!(
            "{n} bytes is more than the server's max frame allows ({max} bytes: max-frame \
             1MiB less the kind byte)"
        )),
    }
}

/// A duration that must not be zero.
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be greater than 0".to_owned()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_documented_forms() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("soon").is_err());
        assert!(positive_duration("0").is_err());
    }

    #[test]
    fn connect_takes_host_port_or_a_unix_path() {
        assert_eq!(connect_addr("127.0.0.1:7878"), Ok("127.0.0.1:7878".into()));
        assert_eq!(
            connect_addr("unix:/run/w.sock"),
            Ok("unix:/run/w.sock".into())
        );
        assert_eq!(connect_addr("unix:rel.sock"), Ok("unix:rel.sock".into()));
        assert!(connect_addr("unix:").is_err());
        assert!(connect_addr("nowhere").is_err());
    }

    #[test]
    fn byte_sizes_in_the_documented_forms() {
        assert_eq!(byte_size("1048576"), Ok(1_048_576));
        assert_eq!(byte_size("64KiB"), Ok(65_536));
        assert_eq!(byte_size("64 KiB"), Ok(65_536));
        assert_eq!(byte_size("1MiB"), Ok(1 << 20));
        assert_eq!(byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(byte_size("0"), Ok(0));
        for bad in [
            "64K",
            "64KB",
            "1.5MiB",
            "MiB",
            "-1",
            "lots",
            "99999999999GiB",
        ] {
            assert!(byte_size(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(frame_size("1GiB"), Ok(1 << 30));
        assert!(frame_size("0").is_err());
        assert!(frame_size("2GiB").is_err());
    }
}
