//! Certificates for trying TLS and mutual TLS without other tools
//! (`wharf dev-certs DIR`), and the benchmark's throwaway certificate: a
//! development CA, and a server and a client certificate signed by it.
//! ECDSA P-256 keys, valid from an hour ago for 825 days.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A development CA and the certificates it signed, in PEM.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA's certificate: what clients trust (`--tls-ca`), and what the
    /// server verifies clients against (`--tls-client-ca`).
    pub ca_pem: String,
    /// The server's certificate, naming the DNS names asked for and
    /// 127.0.0.1 and ::1.
    pub server_pem: String,
    /// Its private key (PKCS#8).
    pub server_key: String,
    /// A client certificate (common name `wharf dev client`).
    pub client_pem: String,
    /// Its private key (PKCS#8).
    pub client_key: String,
}

/// Makes a CA, a server certificate for `names` (and 127.0.0.1 and ::1),
/// and a client certificate.
pub fn dev_certs(names: &[String]) -> Result<DevCerts, rcgen::Error> {
    let now = OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(825);
    };

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wharf development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_key = KeyPair::generate()?;
    let ca = ca.self_signed(&ca_key)?;

    let mut san: Vec<String> = names.to_vec();
    san.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
    let mut server = CertificateParams::new(san)?;
    server.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server);
    let server_key = KeyPair::generate()?;
    let server = server.signed_by(&server_key, &ca, &ca_key)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "wharf dev client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut client);
    let client_key = KeyPair::generate()?;
    let client = client.signed_by(&client_key, &ca, &ca_key)?;

    Ok(DevCerts {
        ca_pem: ca.pem(),
        server_pem: server.pem(),
        server_key: server_key.serialize_pem(),
        client_pem: client.pem(),
        client_key: client_key.serialize_pem(),
    })
}

/// Writes [`dev_certs`] into `dir` (created if missing) as `ca.pem`,
/// `server.pem`, `server.key`, `client.pem` and `client.key`, the keys
/// readable by their owner only. Returns the paths written.
///
/// It never overwrites: if any of the five files exists, nothing is
/// written and the error names it (a directory that holds real keys is
/// not clobbered by a development command).
pub fn write_dev_certs(dir: &Path, names: &[String]) -> io::Result<Vec<PathBuf>> {
    let certs = dev_certs(names).map_err(io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let files = [
        ("ca.pem", &certs.ca_pem, false),
        ("server.pem", &certs.server_pem, false),
        ("server.key", &certs.server_key, true),
        ("client.pem", &certs.client_pem, false),
        ("client.key", &certs.client_key, true),
    ];
    if let Some((name, ..)) = files.iter().find(|(name, ..)| dir.join(name).exists()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} already exists; remove it or choose another directory",
                dir.join(name).display()
            ),
        ));
    }
    let mut written = Vec::new();
    for (name, pem, secret) in files {
        let path = dir.join(name);
        write(&path, pem, secret)?;
        written.push(path);
    }
    Ok(written)
}

fn write(path: &Path, contents: &str, secret: bool) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
}
