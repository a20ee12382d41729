//! `wharf client`'s TLS flags, mapped onto [`wharf::client::ClientTls`].
//!
//! A module of its own, beside `client_args`, so the rules that bind these
//! flags together live in one place: every one of them needs `--tls`, a
//! certificate needs its key and a key its certificate, and nothing turns
//! verification off. Like the client's other flags they have no `WHARF_*`
//! variables (the `WHARF_TLS_*` ones are `wharf serve`'s).

use std::path::PathBuf;

use clap::Args;
use wharf::client::ClientTls;

#[derive(Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct ClientTlsArgs {
    /// Speak TLS (ALPN "wharf"), verifying the server's certificate: there is no switch that skips it.
    #[arg(long = "tls")]
    pub enabled: bool,
    /// PEM bundle of the CAs the server's certificate must chain to [default: the system's trusted CAs].
    #[arg(long = "tls-ca", value_name = "PATH", requires = "enabled")]
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry, a DNS name or an IP address [default: the host in --connect; required with unix:PATH].
    #[arg(long = "tls-server-name", value_name = "NAME", requires = "enabled",
          value_parser = server_name)]
    pub server_name: Option<String>,
    /// PEM certificate chain to present when the server asks for one (mutual TLS), the client's own first; needs --tls-key.
    #[arg(long = "tls-cert", id = "client_tls_cert", value_name = "PATH",
          requires_all = ["enabled", "client_tls_key"])]
    pub cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", id = "client_tls_key", value_name = "PATH",
          requires_all = ["enabled", "client_tls_cert"])]
    pub key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The library's TLS choices, with `--tls`; the server name defaults to
    /// the host of `connect` (`host:port` or `[v6]:port`), since the
    /// library only sees the addresses it resolves to. A `unix:PATH` has no
    /// host: there the name is `--tls-server-name` or none (which the
    /// client refuses before connecting).
    pub fn settings(&self, connect: &str) -> Option<ClientTls> {
        if !self.enabled {
            return None;
        }
        if connect.starts_with("unix:") {
            return Some(ClientTls {
                ca: self.ca.clone(),
                server_name: self.server_name.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            });
        }
        let host = match connect.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(v6, |(host, _)| host),
            None => connect.rsplit_once(':').map_or(connect, |(host, _)| host),
        };
        Some(ClientTls {
            ca: self.ca.clone(),
            server_name: Some(self.server_name.clone().unwrap_or_else(|| host.to_owned())),
            cert: self.cert.clone(),
            key: self.key.clone(),
        })
    }
}

/// `--tls-server-name`: a DNS name or an IP address.
fn server_name(text: &str) -> Result<String, String> {
    rustls::pki_types::ServerName::try_from(text)
        .map(|_| text.to_owned())
        .map_err(|_| "not a DNS name or an IP address".to_owned())
}
