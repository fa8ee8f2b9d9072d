//! The HTTP side of a MaxMind download: one client for `https://` (rustls 0.23, ring, Mozilla's
//! roots compiled in) and `http://` (a mirror or a test stand-in), basic auth with the account
//! ID and licence key, and redirects followed by hand.
//!
//! MaxMind's permalinks answer with a redirect to a presigned URL on another host (R2 storage).
//! The `Authorization` header goes only to the origin the permalink names: a redirect to any
//! other scheme, host or port is followed without it, so the licence key never reaches a third
//! party. A redirect from `https://` to `http://` is refused.
//!
//! Why compiled-in roots (`webpki-roots`) rather than the system store: the runtime image and
//! a systemd sandbox need no CA bundle, and the only hosts contacted publish certificates from
//! public CAs. An egress proxy that inspects TLS is not supported; point `maxmind.url` at an
//! internal mirror instead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::LicenseKeyFrom;

/// Redirects followed for one request (MaxMind uses one).
const MAX_REDIRECTS: usize = 5;

/// A licence key, read at download time. Its `Debug` never shows it; nothing else prints it.
#[derive(Clone)]
pub struct LicenseKey(String);

/// A client that speaks to MaxMind's service (or a stand-in) for one source.
#[derive(Clone, Debug)]
pub struct Downloader {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// `Authorization: Basic ...`, marked sensitive.
    auth: HeaderValue,
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Transport(String),
    #[error("too many redirects (more than {MAX_REDIRECTS})")]
    Redirects,
    #[error("a redirect without a usable Location")]
    BadRedirect,
    #[error("a redirect from https:// to http:// was refused")]
    Downgrade,
}

// === impl LicenseKey ===

impl LicenseKey {
    /// Reads the key from where the config says. Errors name the file or variable, never a
    /// value.
    pub fn read(from: &LicenseKeyFrom) -> Result<Self, String> {
        let key = match from {
            LicenseKeyFrom::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the licence key file {}: {e}", path.display()))?,
            LicenseKeyFrom::Env(var) => std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => format!("the environment variable {var} (licence key) is not set"),
                std::env::VarError::NotUnicode(_) => {
                    format!("the environment variable {var} (licence key) is not UTF-8")
                }
            })?,
        };
        let key = key.trim();
        let what = match from {
            LicenseKeyFrom::File(path) => format!("the licence key file {}", path.display()),
            LicenseKeyFrom::Env(var) => format!("the environment variable {var}"),
        };
        if key.is_empty() {
            return Err(format!("{what} is empty"));
        }
        if key.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!("{what} holds more than one word or a control character (expected the key alone)"));
        }
        Ok(Self(key.to_owned()))
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseKey(<redacted>)")
    }
}

// === impl Downloader ===

impl Downloader {
    pub fn new(account_id: u64, key: &LicenseKey, connect_timeout: Duration) -> Result<Self, String> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        // ring, named explicitly (the TLS listeners use the same provider): `builder()` would
        // panic at run time should another crate ever enable a second provider. rustls 0.23.48
        // deprecates ring's provider only to point at post-quantum key exchange, which the
        // ring provider lacks; a database download does not need it.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let mut auth =
            HeaderValue::from_str(&format!("Basic {}", base64(format!("{account_id}:{}", key.0).as_bytes())))
                .map_err(|_| "the licence key cannot be sent in a header".to_owned())?;
        auth.set_sensitive(true);
        Ok(Self { client, auth })
    }

    /// Sends `method url` with basic auth (to `url`'s origin only) and `If-Modified-Since`,
    /// following redirects. Answers the final response.
    pub async fn send(
        &self,
        method: Method,
        url: &Uri,
        if_modified_since: Option<&str>,
    ) -> Result<Response<Incoming>, RequestError> {
        let mut target = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(target.clone())
                .header(header::USER_AGENT, concat!("geogate/", env!("CARGO_PKG_VERSION")));
            if same_origin(url, &target) {
                req = req.header(header::AUTHORIZATION, self.auth.clone());
            }
            if let Some(ims) = if_modified_since {
                req = req.header(header::IF_MODIFIED_SINCE, ims);
            }
            let req = req.body(Empty::new()).map_err(|e| RequestError::Transport(e.to_string()))?;
            let resp = self.client.request(req).await.map_err(|e| RequestError::Transport(transport_message(&e)))?;
            if !matches!(
                resp.status(),
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            ) {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resolve(&target, l))
                .ok_or(RequestError::BadRedirect)?;
            if target.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                return Err(RequestError::Downgrade);
            }
            target = next;
        }
        Err(RequestError::Redirects)
    }
}

/// The whole chain of a client error, which hyper-util keeps in `source()`s.
fn transport_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.authority() == b.authority()
}

/// A `Location` value against the URL that answered it: absolute, or an absolute path.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(location.parse().ok()?);
        return Uri::from_parts(parts).ok();
    }
    None
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn redirects_resolve_absolute_urls_and_paths_only() {
        let base: Uri = "https://download.maxmind.com/geoip/databases/X/download?suffix=tar.gz".parse().unwrap();
        assert_eq!(resolve(&base, "https://r2.example/x?sig=1").unwrap().to_string(), "https://r2.example/x?sig=1");
        assert_eq!(resolve(&base, "/other").unwrap().to_string(), "https://download.maxmind.com/other");
        assert!(resolve(&base, "//evil.example/x").is_none());
        assert!(resolve(&base, "relative").is_none());
        assert!(same_origin(&base, &"https://download.maxmind.com/y".parse().unwrap()));
        assert!(!same_origin(&base, &"https://r2.example/x".parse().unwrap()));
        assert!(!same_origin(&base, &"http://download.maxmind.com/y".parse().unwrap()));
    }

    #[test]
    fn a_licence_key_is_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t-KEY_123\n").unwrap();
        let key = LicenseKey::read(&LicenseKeyFrom::File(path.clone())).unwrap();
        assert_eq!(key.0, "s3cr3t-KEY_123");
        assert!(!format!("{key:?}").contains("s3cr3t"));
        let d = Downloader::new(42, &key, Duration::from_secs(1)).unwrap();
        assert!(!format!("{d:?}").contains("s3cr3t"), "{d:?}");
        std::fs::write(&path, "two words").unwrap();
        let e = LicenseKey::read(&LicenseKeyFrom::File(path)).unwrap_err();
        assert!(!e.contains("two") && !e.contains("words"), "{e}");
        let e = LicenseKey::read(&LicenseKeyFrom::Env("GEOGATE_TEST_UNSET_VARIABLE_X".into())).unwrap_err();
        assert!(e.contains("GEOGATE_TEST_UNSET_VARIABLE_X"), "{e}");
    }
}
