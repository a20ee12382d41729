//! Where a listener listens: a TCP address, or a Unix socket's path.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a listener listens, as `--bind` and `--tls-bind` take it:
/// `HOST:PORT` (an IP address; port 0 picks a free port) or `unix:PATH`.
///
/// ```
/// use wharf::Address;
///
/// let tcp: Address = "127.0.0.1:7878".parse()?;
/// assert_eq!(tcp, Address::Tcp("127.0.0.1:7878".parse()?));
/// let unix: Address = "unix:/run/wharf/wharf.sock".parse()?;
/// assert_eq!(unix.to_string(), "unix:/run/wharf/wharf.sock");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A Unix stream socket at this path. Abstract socket names (a path
    /// starting with a NUL byte, `@` in some tools) are not offered: they
    /// bypass file permissions.
    Unix(PathBuf),
}

impl Address {
    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) => Some(*addr),
            Address::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a listen address could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// `unix:` with nothing after it.
    #[error("unix: needs a path, e.g. unix:/run/wharf/wharf.sock")]
    EmptyPath,
    /// An abstract socket name (`unix:@name` or a NUL byte).
    #[error(
        "abstract Unix socket names are not supported (they bypass file permissions); \
         give a path"
    )]
    Abstract,
    /// Neither `HOST:PORT` with an IP address nor `unix:PATH`.
    #[error("expected IP:PORT (e.g. 127.0.0.1:7878 or [::1]:7878) or unix:PATH")]
    Invalid,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError::EmptyPath);
            }
            if path.starts_with('@') || path.contains('\0') {
                return Err(AddressError::Abstract);
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(Address::Tcp)
            .map_err(|_| AddressError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_as_the_flags_spell_them() {
        for text in [
            "127.0.0.1:0",
            "[::1]:7878",
            "unix:/tmp/w.sock",
            "unix:rel.sock",
        ] {
            let addr: Address = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        assert_eq!("unix:".parse::<Address>(), Err(AddressError::EmptyPath));
        assert_eq!(
            "unix:@wharf".parse::<Address>(),
            Err(AddressError::Abstract)
        );
        assert_eq!("localhost".parse::<Address>(), Err(AddressError::Invalid));
    }
}
