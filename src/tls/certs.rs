//! Certificate and key files: read, parsed and checked as a pair, every error naming the file.
//!
//! A pair is refused when either file is missing or unreadable, holds no PEM section of the
//! right kind, when the key type is not one rustls signs with (PKCS#8, PKCS#1 RSA, SEC1 EC),
//! when the leaf certificate has expired or is not valid yet, or when the key is not the
//! leaf's. What is kept from a pair is what the server and the metrics need: the rustls
//! [`CertifiedKey`], the names SNI is matched against, the expiry and a content hash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Largest certificate or key file read (a chain is a few kilobytes).
const MAX_PEM_FILE: u64 = 1 << 20;

/// One checked certificate/key pair.
#[derive(Debug)]
pub struct LoadedCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf's subjectAltName (lower-case; `*.` wildcards kept as written),
    /// or its common name when it has none.
    pub names: Vec<String>,
    /// The `certificate` label of the expiry metric: the first name, else the file name.
    pub label: String,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The leaf's serial number, hex with colons.
    pub serial: String,
    /// SHA-256 of the certificate file then the key file: equal means the same pair.
    pub sha256: String,
}

/// Why a certificate/key pair was refused; every variant names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: larger than {MAX_PEM_FILE} bytes; is this a certificate file?")]
    TooLarge { path: String },
    #[error("{path}: no PEM certificate (-----BEGIN CERTIFICATE-----) found{detail}")]
    NoCertificate { path: String, detail: String },
    #[error("{path}: no PEM private key (PKCS#8, RSA or EC) found{detail}")]
    NoKey { path: String, detail: String },
    #[error("{path}: the first certificate cannot be parsed: {detail}")]
    BadCertificate { path: String, detail: String },
    #[error("{path}: unsupported private key: {detail}")]
    BadKey { path: String, detail: String },
    #[error("{path}: the certificate expired at {when} (unix {not_after}); renew it")]
    Expired { path: String, not_after: i64, when: String },
    #[error("{path}: the certificate is not valid before unix {not_before}; check the clock or the certificate")]
    NotYetValid { path: String, not_before: i64 },
    #[error("{key}: this key does not belong to the certificate in {cert}; check that the files are a pair")]
    Mismatch { cert: String, key: String },
}

// === impl LoadedCert ===

impl LoadedCert {
    /// Whether this certificate is for `server_name` (lower-case): an exact name, or a
    /// `*.suffix` name matching exactly one more label.
    pub fn serves(&self, server_name: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, server_name))
    }
}

/// Reads and checks the pair at `cert` and `key` as of `now`.
pub fn load_pair(cert: &Path, key: &Path, now: SystemTime) -> Result<LoadedCert, CertError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::NoCertificate { path: cert_name.clone(), detail: format!(": {e}") })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate { path: cert_name, detail: String::new() });
    };
    let info = leaf_info(leaf).map_err(|detail| CertError::BadCertificate { path: cert_name.clone(), detail })?;
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if info.not_after < now_s {
        return Err(CertError::Expired { path: cert_name, not_after: info.not_after, when: info.not_after_text });
    }
    if info.not_before > now_s {
        return Err(CertError::NotYetValid { path: cert_name, not_before: info.not_before });
    }

    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::NoKey {
        path: key_name.clone(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => String::new(),
            e => format!(": {e}"),
        },
    })?;
    let certified = CertifiedKey::from_der(chain, private, &super::provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::Mismatch { cert: cert_name.clone(), key: key_name.clone() },
        e => CertError::BadKey { path: key_name.clone(), detail: e.to_string() },
    })?;

    let label =
        info.names.first().cloned().unwrap_or_else(|| {
            cert.file_name().map_or_else(|| cert_name.clone(), |n| n.to_string_lossy().into_owned())
        });
    Ok(LoadedCert {
        cert_path: cert.to_path_buf(),
        key_path: key.to_path_buf(),
        key: Arc::new(certified),
        names: info.names,
        label,
        not_after: info.not_after,
        serial: info.serial,
        sha256: pair_hash(&cert_pem, &key_pem),
    })
}

/// SHA-256 of the two files as [`LoadedCert::sha256`] computes it, or `None` if either
/// cannot be read (used to tell a rotated pair without parsing it).
pub fn pair_sha256(cert: &Path, key: &Path) -> Option<String> {
    Some(pair_hash(&read(cert).ok()?, &read(key).ok()?))
}

fn pair_hash(cert: &[u8], key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    crate::source::hex(&h.finalize())
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    use std::io::Read;
    let name = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| CertError::Read { path: name(), source })?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes).map_err(|source| CertError::Read { path: name(), source })?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(CertError::TooLarge { path: name() });
    }
    Ok(bytes)
}

/// What the leaf certificate says about itself.
struct LeafInfo {
    names: Vec<String>,
    not_before: i64,
    not_after: i64,
    not_after_text: String,
    serial: String,
}

fn leaf_info(der: &CertificateDer<'_>) -> Result<LeafInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
            names.push(cn.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    let validity = cert.validity();
    Ok(LeafInfo {
        names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        not_after_text: validity.not_after.to_string(),
        serial: cert.raw_serial_as_string(),
    })
}

/// `pattern` (`host` or `*.suffix`) against `name`, both lower-case.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("example.com", "example.com"));
        assert!(!name_matches("example.com", "www.example.com"));
    }
}
