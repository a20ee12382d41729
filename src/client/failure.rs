//! Why a client's TLS handshake failed, in the words an operator needs:
//! [`TlsFailure`], made from what rustls reports by `classify`.
//!
//! Separate from the handshake because rustls speaks in alerts and
//! certificate errors, several of which mean the same thing to an operator
//! (an unknown issuer and a bad signature both mean "do not trust this
//! server"), and one alert means different things depending on what this
//! client did (a `handshake_failure` after the server asked for a
//! certificate that was not presented is a missing client certificate, not
//! a missing cipher suite). The mapping lives here, in one place, with the
//! facts it depends on.

use std::fmt;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError, Error};

/// Why a TLS handshake failed; its `Display` is the reason `wharf client`
/// prints (after `TLS handshake with ADDR failed: `).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate does not chain to a trusted CA, or the
    /// chain does not verify (a bad signature, expired, revoked...).
    Untrusted(String),
    /// The server's certificate is valid but not for the name verified.
    NameMismatch {
        /// The name verified.
        expected: String,
        /// The names the certificate carries, when rustls says.
        presented: Vec<String>,
    },
    /// The server asked for a client certificate and none was presented.
    ClientCertRequired,
    /// The server refused the client certificate presented (with TLS 1.3,
    /// after the client had finished its side of the handshake).
    ClientCertRejected(String),
    /// No TLS version, cipher suite, key exchange or ALPN protocol that
    /// both sides accept.
    NoCommonProtocol(String),
    /// What answered is not a TLS server (a plain listener, say).
    NotTls(String),
    /// The server closed the connection before the handshake completed.
    Closed,
    /// The handshake did not complete within the connect timeout.
    TimedOut(Duration),
    /// Anything else rustls reported.
    Other(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Untrusted(why) => write!(f, "untrusted certificate: {why}"),
            TlsFailure::NameMismatch {
                expected,
                presented,
            } => {
                write!(
                    f,
                    "name mismatch: the server's certificate is not valid for {expected}"
                )?;
                if !presented.is_empty() {
                    write!(f, " (it names {})", presented.join(", "))?;
                }
                Ok(())
            }
            TlsFailure::ClientCertRequired => f.write_str(
                "a client certificate required: the server asked for one and none was presented",
            ),
            TlsFailure::ClientCertRejected(why) => {
                write!(f, "client certificate rejected by the server ({why})")
            }
            TlsFailure::NoCommonProtocol(why) => write!(f, "no common protocol: {why}"),
            TlsFailure::NotTls(why) => {
                write!(f, "what answered does not speak TLS (its reply: {why})")
            }
            TlsFailure::Closed => {
                f.write_str("the server closed the connection during the handshake")
            }
            TlsFailure::TimedOut(d) => {
                write!(f, "no handshake within {}", crate::human::duration(*d))
            }
            TlsFailure::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// What this client did in the handshake, which decides what an alert
/// from the server means.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Facts {
    /// The server asked for a client certificate (CertificateRequest).
    pub(super) asked: bool,
    /// A client certificate is configured (and so was presented if asked).
    pub(super) presents: bool,
}

/// The failure a rustls error means for this client.
pub(super) fn classify(e: &Error, facts: Facts) -> TlsFailure {
    match e {
        Error::InvalidCertificate(cert) => certificate(cert),
        Error::AlertReceived(alert) => alert_received(*alert, facts),
        Error::NoApplicationProtocol => TlsFailure::NoCommonProtocol(
            "the server does not speak the ALPN protocol \"wharf\"".into(),
        ),
        Error::PeerIncompatible(why) => {
            TlsFailure::NoCommonProtocol(format!("the server's choices do not fit ours ({why:?})"))
        }
        Error::InvalidMessage(why) => TlsFailure::NotTls(format!("{why:?}")),
        e => TlsFailure::Other(e.to_string()),
    }
}

fn certificate(e: &CertificateError) -> TlsFailure {
    let why = match e {
        CertificateError::NotValidForName => {
            return TlsFailure::NameMismatch {
                expected: "the name verified".into(),
                presented: Vec::new(),
            }
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            return TlsFailure::NameMismatch {
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|name| bare(name)).collect(),
            }
        }
        CertificateError::UnknownIssuer => {
            "the server's certificate is not signed by a trusted CA".into()
        }
        CertificateError::BadSignature => {
            "a signature in the server's chain does not verify".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet".into()
        }
        CertificateError::Revoked => "the server's certificate is revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not for a TLS server".into()
        }
        e => format!("the server's certificate does not verify ({e:?})"),
    };
    TlsFailure::Untrusted(why)
}

/// A presented name as written in a certificate: rustls spells them as
/// `DnsName("localhost")` or `IpAddress(127.0.0.1)`.
fn bare(name: &str) -> String {
    let inner = name
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        });
    inner.unwrap_or(name).to_owned()
}

fn alert_received(alert: AlertDescription, facts: Facts) -> TlsFailure {
    use AlertDescription as A;
    match alert {
        A::ProtocolVersion => TlsFailure::NoCommonProtocol(
            "the server accepts none of the TLS versions offered (1.2, 1.3)".into(),
        ),
        A::NoApplicationProtocol => TlsFailure::NoCommonProtocol(
            "the server does not accept the ALPN protocol \"wharf\"".into(),
        ),
        A::CertificateRequired => TlsFailure::ClientCertRequired,
        A::HandshakeFailure | A::BadCertificate | A::UnknownCA | A::AccessDenied
            if facts.asked && !facts.presents =>
        {
            TlsFailure::ClientCertRequired
        }
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::AccessDenied
        | A::DecryptError
        | A::HandshakeFailure
            if facts.asked =>
        {
            TlsFailure::ClientCertRejected(format!("alert {alert:?}"))
        }
        A::HandshakeFailure | A::InsufficientSecurity => TlsFailure::NoCommonProtocol(format!(
            "the server found no cipher suite or key exchange in common (alert {alert:?})"
        )),
        alert => TlsFailure::Other(format!("the server sent the alert {alert:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED_NONE: Facts = Facts {
        asked: true,
        presents: false,
    };
    const ASKED_GIVEN: Facts = Facts {
        asked: true,
        presents: true,
    };
    const NOT_ASKED: Facts = Facts {
        asked: false,
        presents: false,
    };

    #[test]
    fn an_alert_means_what_the_client_did() {
        let failure = Error::AlertReceived(AlertDescription::HandshakeFailure);
        assert_eq!(
            classify(&failure, ASKED_NONE),
            TlsFailure::ClientCertRequired
        );
        assert!(matches!(
            classify(&failure, ASKED_GIVEN),
            TlsFailure::ClientCertRejected(_)
        ));
        assert!(matches!(
            classify(&failure, NOT_ASKED),
            TlsFailure::NoCommonProtocol(_)
        ));
        let required = Error::AlertReceived(AlertDescription::CertificateRequired);
        assert_eq!(
            classify(&required, NOT_ASKED),
            TlsFailure::ClientCertRequired
        );
    }

    #[test]
    fn certificate_errors_are_untrusted_or_a_name_mismatch() {
        let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(classify(&unknown, NOT_ASKED)
            .to_string()
            .starts_with("untrusted certificate: "));
        let name = Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(classify(&name, NOT_ASKED)
            .to_string()
            .starts_with("name mismatch: "));
        let names = vec![
            "DnsName(\"localhost\")".into(),
            "IpAddress(127.0.0.1)".into(),
        ];
        let name = Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: "wharf.example".try_into().unwrap(),
            presented: names,
        });
        assert_eq!(
            classify(&name, NOT_ASKED).to_string(),
            "name mismatch: the server's certificate is not valid for wharf.example \
             (it names localhost, 127.0.0.1)"
        );
    }
}
