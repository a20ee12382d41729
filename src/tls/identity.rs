//! Who a client is: what its verified certificate says.

use std::fmt::Write as _;

use x509_parser::extensions::GeneralName;

/// What a client's certificate says about it, once the server has verified
/// the certificate against `--tls-client-ca` (and the revocation lists). A
/// service reads it from [`crate::ConnInfo::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name (CN), if it has one.
    pub common_name: Option<String>,
    /// The DNS names among its subject alternative names.
    pub dns_names: Vec<String>,
    /// The URIs among them (a SPIFFE ID, say).
    pub uris: Vec<String>,
    /// The e-mail addresses among them.
    pub emails: Vec<String>,
    /// The SHA-256 fingerprint of the whole certificate (DER).
    pub fingerprint_sha256: [u8; 32],
}

impl ClientIdentity {
    /// What a DER certificate says; `None` if it does not parse (it was
    /// verified before this is asked, so that does not happen).
    pub(crate) fn from_der(der: &[u8]) -> Option<ClientIdentity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let (mut dns_names, mut uris, mut emails) = (Vec::new(), Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push((*n).to_owned()),
                    GeneralName::URI(u) => uris.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => emails.push((*e).to_owned()),
                    _ => {}
                }
            }
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut fingerprint_sha256 = [0u8; 32];
        fingerprint_sha256.copy_from_slice(digest.as_ref());
        Some(ClientIdentity {
            common_name,
            dns_names,
            uris,
            emails,
            fingerprint_sha256,
        })
    }

    /// The fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint_sha256
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}
