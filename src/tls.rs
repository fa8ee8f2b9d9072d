//! TLS termination: what a TLS listener serves, built with the snapshot, and the handshake.
//! (TLS towards HTTPS upstreams, the client side, is [`client`].)
//!
//! ```text
//! compile: [[listener]].tls pairs ─ certs::load_pair (each checked, errors name the file)
//!            └ ListenerTls { rustls ServerConfig (SNI resolver, TLS 1.2/1.3, ALPN h2 + http/1.1,
//!                            session cache + tickets carried over from the previous snapshot) }
//! accept:  TCP ─ (PROXY header) ─ handshake(ServerConfig of the snapshot serving, timeout)
//!            ├ a ClientHello below TLS 1.2 → `protocol_version` alert, closed
//!            └ Ok(TlsStream) | Err(bounded failure reason for the metrics)
//! ```
//!
//! The version screen exists because rustls checks a ClientHello's signature_algorithms
//! extension before its version, and TLS 1.0/1.1 clients do not send that extension: they
//! would get a `handshake_failure` alert and be counted as a cipher mismatch. Reading the
//! ClientHello's version first gives them the alert RFC 8446 names, and operators the
//! `protocol_version` count that tells them old clients are knocking.
//!
//! The crypto provider is rustls' `ring`: it builds with a C compiler alone (no cmake, no
//! nasm), which keeps a from-scratch build and the container build simple and short. A
//! listener reads the `ServerConfig` of the snapshot serving when it accepts, so a reload
//! with new certificate files applies to the next handshake while connections already up
//! keep the keys they negotiated.

pub mod certs;
pub mod client;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;

pub use certs::{CertError, LoadedCert};

use crate::config::TlsConfig;
use crate::proxy_protocol::Rewind;

/// Sessions a listener remembers for stateful resumption.
const SESSION_CACHE: usize = 4096;

/// A TLS record header (5 bytes), a handshake header (4) and a ClientHello's client_version
/// (2): enough to tell the version an old client offers.
const HELLO_PREFIX: usize = 11;

/// What a TLS listener serves under one snapshot.
#[derive(Debug)]
pub struct ListenerTls {
    pub server_config: Arc<ServerConfig>,
    /// The certificates in configuration order; the first is the default.
    pub certificates: Arc<[LoadedCert]>,
}

/// Why a handshake failed: the `reason` label of `geogate_tls_handshake_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not finished within `limits.tls_handshake_timeout`.
    Timeout,
    /// The client offers only versions below TLS 1.2.
    ProtocolVersion,
    /// No cipher suite, signature scheme or key-exchange group in common.
    NoSharedCipher,
    /// The client offers ALPN protocols, none of them `h2` or `http/1.1`.
    NoSharedAlpn,
    /// The client refused the certificate (unknown CA, wrong name, expired ...).
    BadCertificate,
    /// The bytes are not TLS (e.g. plain HTTP sent to a TLS port).
    NotTls,
    /// The client closed the connection before the handshake finished.
    Eof,
    Other,
}

/// SNI selection over a listener's certificates: the first whose names match, else the first.
#[derive(Debug)]
struct SniResolver {
    certificates: Arc<[LoadedCert]>,
}

// === impl ListenerTls ===

impl ListenerTls {
    /// Loads every pair of `cfg` (as of now) and builds the server configuration. The session
    /// cache and ticket keys of `previous` are kept, so clients resume across reloads.
    pub fn build(cfg: &TlsConfig, previous: Option<&ListenerTls>) -> Result<Self, Vec<CertError>> {
        let now = SystemTime::now();
        let mut loaded = Vec::with_capacity(cfg.certificates.len());
        let mut errors = Vec::new();
        for pair in &cfg.certificates {
            match certs::load_pair(&pair.cert, &pair.key, now) {
                Ok(c) => loaded.push(c),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let certificates: Arc<[LoadedCert]> = loaded.into();
        let resolver = Arc::new(SniResolver { certificates: certificates.clone() });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| vec![CertError::BadKey { path: "(tls setup)".into(), detail: e.to_string() }])?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        match previous {
            Some(p) => {
                config.session_storage = p.server_config.session_storage.clone();
                config.ticketer = p.server_config.ticketer.clone();
            }
            None => {
                config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
                // Without a ticketer rustls only resumes from its cache; tickets let a client
                // resume on any connection. A failure leaves the cache alone doing it.
                match rustls::crypto::ring::Ticketer::new() {
                    Ok(t) => config.ticketer = t,
                    Err(e) => tracing::warn!(error = %e, "TLS session tickets unavailable"),
                }
            }
        }
        Ok(Self { server_config: Arc::new(config), certificates })
    }

    /// SHA-256 of each pair's files, in order (what a reload compares).
    pub fn hashes(&self) -> impl Iterator<Item = (&std::path::Path, &str)> {
        self.certificates.iter().map(|c| (c.cert_path.as_path(), c.sha256.as_str()))
    }
}

/// The crypto provider of every TLS listener: rustls' `ring` (see the module doc).
///
/// rustls 0.23.48 deprecated `ring::default_provider` because ring has no post-quantum key
/// exchange (X25519MLKEM768, which the aws-lc-rs provider offers); the classical groups
/// (X25519, P-256, P-384) are still what most clients negotiate. Kept as a decision, in one
/// place, so that moving to aws-lc-rs is one line and a dependency.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs the server handshake on `io` within `timeout`.
pub async fn handshake<S>(
    config: Arc<ServerConfig>,
    io: S,
    timeout: Duration,
) -> Result<TlsStream<Rewind<S>>, (HandshakeFailure, Option<std::io::Error>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let work = async move {
        let io = screen_version(io).await?;
        acceptor.accept(io).await.map_err(|e| (HandshakeFailure::of(&e), Some(e)))
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err((HandshakeFailure::Timeout, None)),
        Ok(result) => result,
    }
}

/// Reads the start of the ClientHello; one offering less than TLS 1.2 (client_version below
/// 0x0303: a client offering TLS 1.3 says 0x0303 there) gets a fatal `protocol_version` alert
/// and is closed. Anything else is handed on with the bytes put back, for rustls to judge.
async fn screen_version<S>(mut io: S) -> Result<Rewind<S>, (HandshakeFailure, Option<std::io::Error>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = [0u8; HELLO_PREFIX];
    let mut n = 0;
    while n < HELLO_PREFIX {
        match io.read(&mut head[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err((HandshakeFailure::of(&e), Some(e))),
        }
        if head[0] != 0x16 {
            break; // not a handshake record: rustls says what it is
        }
    }
    let client_version = u16::from_be_bytes([head[9], head[10]]);
    if n == HELLO_PREFIX && head[0] == 0x16 && head[5] == 0x01 && client_version < 0x0303 {
        // alert(21), in the record version the client used; fatal(2), protocol_version(70).
        let alert = [0x15, head[1], head[2], 0x00, 0x02, 0x02, 70];
        let _ = io.write_all(&alert).await;
        let _ = io.shutdown().await;
        return Err((HandshakeFailure::ProtocolVersion, None));
    }
    Ok(Rewind::new(bytes::Bytes::copy_from_slice(&head[..n]), io))
}

// === impl HandshakeFailure ===

impl HandshakeFailure {
    /// Every reason, for zero-valued series from the first scrape.
    pub const ALL: [Self; 8] = [
        Self::Timeout,
        Self::ProtocolVersion,
        Self::NoSharedCipher,
        Self::NoSharedAlpn,
        Self::BadCertificate,
        Self::NotTls,
        Self::Eof,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ProtocolVersion => "protocol_version",
            Self::NoSharedCipher => "no_shared_cipher",
            Self::NoSharedAlpn => "no_shared_alpn",
            Self::BadCertificate => "bad_certificate",
            Self::NotTls => "not_tls",
            Self::Eof => "eof",
            Self::Other => "other",
        }
    }

    /// The reason an I/O error from the handshake stands for.
    pub fn of(e: &std::io::Error) -> Self {
        use rustls::{AlertDescription as A, Error as E, PeerIncompatible as P};
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return match tls {
                E::PeerIncompatible(
                    P::Tls12NotOffered
                    | P::Tls12NotOfferedOrEnabled
                    | P::Tls13RequiredForQuic
                    | P::SupportedVersionsExtensionRequired,
                ) => Self::ProtocolVersion,
                E::NoApplicationProtocol => Self::NoSharedAlpn,
                E::PeerIncompatible(_) => Self::NoSharedCipher,
                E::AlertReceived(
                    A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied,
                ) => Self::BadCertificate,
                E::AlertReceived(A::ProtocolVersion) => Self::ProtocolVersion,
                E::AlertReceived(A::HandshakeFailure | A::InsufficientSecurity) => Self::NoSharedCipher,
                E::AlertReceived(A::NoApplicationProtocol) => Self::NoSharedAlpn,
                E::InvalidMessage(_) => Self::NotTls,
                _ => Self::Other,
            };
        }
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Self::Eof,
            _ => Self::Other,
        }
    }
}

// === impl SniResolver ===

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                self.certificates.iter().find(|c| c.serves(&name))
            })
            .or_else(|| self.certificates.first());
        chosen.map(|c| c.key.clone())
    }
}
