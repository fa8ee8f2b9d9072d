//! TLS to HTTPS upstreams: each upstream's rustls client configuration, built with the
//! snapshot (so the files are read at start-up and at every reload, and a bad one fails the
//! reload with an error naming it, leaving the running snapshot alone).
//!
//! ```text
//! [[upstream]] url = "https://...", ca?, client_cert? + client_key?, protocol
//!   └ UpstreamTls { ClientConfig: roots = ca's certificates, or the built-in Mozilla roots;
//!                   client certificate (checked as a pair, see certs::load_pair);
//!                   ALPN from protocol: http1 → http/1.1, h2 → h2, auto → h2 + http/1.1 }
//! ```
//!
//! The built-in roots are `webpki-roots` (Mozilla's list compiled in) rather than the host's
//! store (`rustls-native-certs`): geogate runs as a sidecar in minimal images and on CI hosts
//! that often have no CA bundle at all, and it already ships these roots for MaxMind
//! downloads. An upstream signed by a private CA names it with `ca`, which replaces the roots.
//!
//! A reload that finds the same settings and the same file contents keeps the previous
//! [`UpstreamTls`] (the same `Arc`), so the connections pooled under it stay in use.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

use super::certs::{self, CertError};
use crate::config::{UpstreamProtocol, UpstreamTlsConfig};

/// Largest CA bundle read (every public CA together is about 200 KiB).
const MAX_CA_FILE: u64 = 1 << 20;

/// What geogate needs to speak TLS to one upstream.
#[derive(Debug)]
pub struct UpstreamTls {
    pub client_config: Arc<ClientConfig>,
    /// SHA-256 over the settings' files (CA bundle, client certificate and key), what a
    /// reload compares.
    pub sha256: String,
    settings: (UpstreamTlsConfig, UpstreamProtocol),
}

/// Why an upstream's TLS setup was refused; every variant names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("ca {path}: cannot read: {detail}")]
    CaRead { path: String, detail: String },
    #[error("ca {path}: no PEM certificate (-----BEGIN CERTIFICATE-----) found{detail}")]
    CaEmpty { path: String, detail: String },
    #[error("ca {path}: {bad} certificate(s) cannot be used as a trust anchor")]
    CaUnusable { path: String, bad: usize },
    #[error("client certificate: {0}")]
    ClientCert(CertError),
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Presents the one client certificate of an upstream to every server that asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

// === impl UpstreamTls ===

impl UpstreamTls {
    /// Reads `cfg`'s files (as of now) and builds the client configuration; `previous` is
    /// returned as it is when nothing changed.
    pub fn build(
        cfg: &UpstreamTlsConfig,
        protocol: UpstreamProtocol,
        previous: Option<&Arc<UpstreamTls>>,
    ) -> Result<Arc<Self>, ClientTlsError> {
        let settings = (cfg.clone(), protocol);
        let sha256 = files_sha256(cfg);
        if let (Some(p), Some(sha)) = (previous, &sha256) {
            if p.settings == settings && p.sha256 == *sha {
                return Ok(p.clone());
            }
        }
        let roots = match &cfg.ca {
            Some(path) => ca_roots(path)?,
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientTlsError::Setup(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &cfg.client_cert {
            Some(pair) => {
                let loaded =
                    certs::load_pair(&pair.cert, &pair.key, SystemTime::now()).map_err(ClientTlsError::ClientCert)?;
                builder.with_client_cert_resolver(Arc::new(ClientCert(loaded.key)))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::Http1 | UpstreamProtocol::H2c => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::H2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        Ok(Arc::new(Self { client_config: Arc::new(config), sha256: sha256.unwrap_or_default(), settings }))
    }
}

/// SHA-256 over the files `cfg` names, in order, or `None` when one cannot be read.
pub fn files_sha256(cfg: &UpstreamTlsConfig) -> Option<String> {
    use sha2::{Digest, Sha256};
    let files = cfg.ca.iter().chain(cfg.client_cert.iter().flat_map(|p| [&p.cert, &p.key]));
    let mut h = Sha256::new();
    for path in files {
        let bytes = std::fs::read(path).ok()?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Some(crate::source::hex(&h.finalize()))
}

/// The trust anchors of a PEM bundle: every certificate in it must be usable as one.
fn ca_roots(path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let name = path.display().to_string();
    let read = std::fs::metadata(path).and_then(|m| {
        if m.len() > MAX_CA_FILE {
            return Err(std::io::Error::other("larger than 1 MiB; is this a PEM bundle?"));
        }
        std::fs::read(path)
    });
    let pem = read.map_err(|e| ClientTlsError::CaRead { path: name.clone(), detail: e.to_string() })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientTlsError::CaEmpty { path: name.clone(), detail: format!(": {e}") })?;
    if certs.is_empty() {
        return Err(ClientTlsError::CaEmpty { path: name, detail: String::new() });
    }
    let mut roots = RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(certs);
    if bad > 0 || roots.is_empty() {
        return Err(ClientTlsError::CaUnusable { path: name, bad });
    }
    Ok(roots)
}

// === impl ClientCert ===

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        // rustls picks the scheme from the key; a server that takes none of the key's
        // schemes gets no certificate, and refuses the handshake if it requires one.
        self.0.key.choose_scheme(sigschemes).is_some().then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
