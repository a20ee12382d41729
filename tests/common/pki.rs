//! Certificates a test makes for itself (rcgen): a CA that keeps its key, so
//! the test can issue server and client certificates of its choosing (a
//! given common name, alternative names, serial number, validity) and sign
//! revocation lists; a directory to write them into; and a service that
//! tells the test who each connection is.
//!
//! `Certs` (in `tls`) is the quick way to a working set; this is for tests
//! that need a second CA, an expired certificate, a revoked client or a
//! certificate to swap in on a reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber,
};
use time::OffsetDateTime;
use wharf::{ConnInfo, Response, Service, ServiceError};

/// A directory under the temp dir, unique to this test, removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wharf-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the test's directory");
        Dir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` at once: a reader (the server's reload)
    /// sees the old file or the new one, never half of it. The new file's
    /// modification time is set a minute past the old one's (or now), so a
    /// change shows whatever the filesystem's timestamp granularity.
    pub fn replace(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        let old = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let stamp = old.map_or_else(SystemTime::now, |t| t + Duration::from_secs(60));
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write the new file");
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(stamp))
            .expect("set the new file's mtime");
        std::fs::rename(&tmp, &path).expect("rename the new file into place");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key.
pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Dir, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.path(&format!("{name}.pem"));
        let key = dir.path(&format!("{name}.key"));
        std::fs::write(&cert, self.pem()).expect("write the certificate");
        std::fs::write(&key, self.key_pem()).expect("write the key");
        (cert, key)
    }
}

/// A certificate authority, with its key.
pub struct Ca {
    pub cert: Certificate,
    key: KeyPair,
}

/// Now, less an hour: the usual `not_before`.
pub fn an_hour_ago() -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::hours(1)
}

impl Ca {
    /// A self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = an_hour_ago();
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Signs `params` for a new key.
    pub fn issue(&self, params: CertificateParams) -> Issued {
        self.issue_for(params, KeyPair::generate().unwrap())
    }

    /// Signs `params` for `key`.
    pub fn issue_for(&self, params: CertificateParams, key: KeyPair) -> Issued {
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued { cert, key }
    }

    /// A server certificate with common name `cn`, for `localhost`,
    /// 127.0.0.1 and ::1, valid from an hour ago for 30 days.
    pub fn server(&self, cn: &str) -> Issued {
        self.issue(server_params(cn))
    }

    /// A revocation list revoking `serials`, valid from an hour ago for a day.
    pub fn crl(&self, serials: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: an_hour_ago(),
            next_update: OffsetDateTime::now_utc() + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: an_hour_ago(),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .unwrap()
            .pem()
            .unwrap()
    }
}

/// The parameters of a server certificate (see [`Ca::server`]), for a test
/// to change before issuing.
pub fn server_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = an_hour_ago();
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
    params
}

/// The parameters of a client certificate with common name `cn`, the
/// alternative names `sans` and the serial number `serial`.
pub fn client_params(cn: &str, sans: Vec<SanType>, serial: u64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = an_hour_ago();
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
    params
}

/// The SHA-256 of `der`, computed here (not by the server).
pub fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest.as_ref().try_into().expect("32 bytes")
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("an X.509 certificate");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .expect("a common name")
        .as_str()
        .expect("a printable common name")
        .to_owned();
    cn
}

/// `notAfter` of a DER certificate, in Unix seconds, as encoded.
pub fn not_after(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("an X.509 certificate");
    cert.validity().not_after.timestamp()
}

/// Writes `contents` to `path` (a helper for files a test breaks on purpose).
pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write a test file");
}

/// An echo service that sends the test every connection it opens a
/// session for (which happens after the handshake, before the first
/// request).
pub struct Recorder {
    opened: Mutex<Sender<ConnInfo>>,
}

/// A [`Recorder`] and the receiving end of what it sees.
pub fn recorder() -> (Recorder, Receiver<ConnInfo>) {
    let (tx, rx) = mpsc::channel();
    (
        Recorder {
            opened: Mutex::new(tx),
        },
        rx,
    )
}

impl Service for Recorder {
    type Session = ();

    fn open(&self, conn: &ConnInfo) {
        let _ = self.opened.lock().unwrap().send(conn.clone());
    }

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        response.extend_from_slice(request);
        Ok(())
    }
}
