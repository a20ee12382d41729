//! `wharf serve`'s TLS flags, each with its `WHARF_*` variable: the TLS
//! listeners and the files and choices they share (one certificate set for
//! every TLS listener), mapped onto [`wharf::tls::TlsSettings`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wharf::tls::{ClientAuth, TlsSettings, TlsVersion};

use super::values::{duration, listen_addr};

#[derive(Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// TLS listen address (repeatable, or comma-separated; same forms as --bind); needs --tls-cert and --tls-key.
    #[arg(long = "tls-bind", id = "tls_bind", env = "WHARF_TLS_BIND", value_name = "ADDR", value_parser = listen_addr,
          value_delimiter = ',', requires_all = ["tls_cert", "tls_key"])]
    pub bind: Vec<wharf::Address>,
    /// PEM certificate chain, the server's own certificate first.
    #[arg(
        long = "tls-cert",
        id = "tls_cert",
        env = "WHARF_TLS_CERT",
        value_name = "PATH"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long = "tls-key",
        id = "tls_key",
        env = "WHARF_TLS_KEY",
        value_name = "PATH"
    )]
    pub key: Option<PathBuf>,
    /// Oldest TLS version accepted.
    #[arg(long = "tls-min-version", env = "WHARF_TLS_MIN_VERSION", value_enum,
          default_value_t = MinVersionArg::V1_2, value_name = "VERSION")]
    pub min_version: MinVersionArg,
    /// PEM bundle of the CAs a client certificate must chain to; clients are asked for a certificate (mutual TLS).
    #[arg(
        long = "tls-client-ca",
        id = "tls_client_ca",
        env = "WHARF_TLS_CLIENT_CA",
        value_name = "PATH"
    )]
    pub client_ca: Option<PathBuf>,
    /// Whether a client must present a certificate (with --tls-client-ca); one presented must verify either way.
    #[arg(long = "tls-client-auth", env = "WHARF_TLS_CLIENT_AUTH", value_enum,
          default_value_t = ClientAuthArg::Required, requires = "tls_client_ca")]
    pub client_auth: ClientAuthArg,
    /// PEM certificate revocation list checked against client certificates (repeatable; with --tls-client-ca).
    #[arg(
        long = "tls-crl",
        env = "WHARF_TLS_CRL",
        value_name = "PATH",
        requires = "tls_client_ca"
    )]
    pub crl: Vec<PathBuf>,
    /// How often the TLS files are checked, and reloaded if any changed; 0 = only on SIGHUP.
    #[arg(long = "tls-reload-interval", env = "WHARF_TLS_RELOAD_INTERVAL", default_value = "30s",
          value_name = "D", value_parser = duration)]
    pub reload_interval: Duration,
}

impl TlsArgs {
    /// The settings for the library, if a certificate and key were given
    /// (a TLS listener without them never gets this far: clap refuses it).
    pub fn settings(&self) -> Option<TlsSettings> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return None;
        };
        Some(TlsSettings {
            min_version: self.min_version.into(),
            client_ca: self.client_ca.clone(),
            client_auth: self.client_auth.into(),
            crls: self.crl.clone(),
            reload_interval: self.reload_interval,
            ..TlsSettings::new(cert, key)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MinVersionArg {
    /// TLS 1.2 and 1.3.
    #[value(name = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    V1_3,
}

impl From<MinVersionArg> for TlsVersion {
    fn from(version: MinVersionArg) -> Self {
        match version {
            MinVersionArg::V1_2 => TlsVersion::V1_2,
            MinVersionArg::V1_3 => TlsVersion::V1_3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuthArg {
    /// A client without a valid certificate fails the handshake.
    Required,
    /// A client may present no certificate.
    Optional,
}

impl From<ClientAuthArg> for ClientAuth {
    fn from(auth: ClientAuthArg) -> Self {
        match auth {
            ClientAuthArg::Required => ClientAuth::Required,
            ClientAuthArg::Optional => ClientAuth::Optional,
        }
    }
}
