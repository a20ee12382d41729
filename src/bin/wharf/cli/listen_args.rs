//! `wharf serve`'s flags for who may connect and how clients are known:
//! Unix socket permissions, the balancers trusted to send a PROXY header,
//! and the per-address limits (contract §6). Each has its `WHARF_*`
//! variable.

use clap::Args;
use wharf::config::{PerAddressSettings, Rate};
use wharf::proxy::ProxyFrom;

use super::values::octal_mode;

#[derive(Debug, Args)]
#[command(next_help_heading = "Clients and their addresses")]
pub struct ListenArgs {
    /// Permissions of the socket files of unix:PATH listeners, in octal, set before the server accepts on them.
    #[arg(long, env = "WHARF_UNIX_MODE", default_value = "0660", value_name = "OCTAL", value_parser = octal_mode)]
    pub unix_mode: u32,
    /// Load balancers whose connections start with a PROXY protocol header (v1 or v2) naming the client: comma-separated CIDRs (10.0.0.0/8, ::1/128) and `unix` for Unix-socket peers. Connections from anyone else never carry one.
    #[arg(long, env = "WHARF_PROXY_FROM", value_name = "LIST")]
    pub proxy_from: Option<ProxyFrom>,
    /// At most N connections at once from one client address (an IPv4 address, an IPv6 /64, a Unix uid); over it, GOAWAY 6 [default: off].
    #[arg(long, env = "WHARF_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,
    /// New connections per client address beyond this rate (N/s, N/m or N/h; a token bucket) are sent GOAWAY 6 with a retry hint [default: off].
    #[arg(long, env = "WHARF_CONNECT_RATE_PER_ADDRESS", value_name = "RATE")]
    pub connect_rate_per_address: Option<Rate>,
    /// How many new connections one address may open at once after a quiet spell [default: one second's worth of the rate, at least 1].
    #[arg(long, env = "WHARF_CONNECT_BURST", value_name = "N", requires = "connect_rate_per_address",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_burst: Option<u32>,
}

impl ListenArgs {
    /// The per-address limits as the library takes them.
    pub fn per_address(&self) -> PerAddressSettings {
        PerAddressSettings {
            max_connections: self.max_connections_per_address,
            connect_rate: self.connect_rate_per_address,
            connect_burst: self.connect_burst,
        }
    }
}
