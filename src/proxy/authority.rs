//! The one host of a request: decided once, judged by the policy and the router, and the
//! only `Host` the upstream receives.
//!
//! | request | host decided |
//! |---|---|
//! | HTTP/1.x absolute-form (`POST http://a.example/x`) | the URI's authority; any `Host` line is replaced (RFC 9112 §3.2.2) |
//! | HTTP/1.x origin-form | the single `Host` line |
//! | HTTP/2 | `:authority`, or `host` when there is no `:authority`; both present and different: 400 (RFC 9113 §8.3.1) |
//! | no host at all (HTTP/1.0 without `Host`, h2 without either) | the listener's `default_host`, else 400 |
//!
//! Refused with 400: several `Host` lines (RFC 9112 §3.2), an invalid or ambiguous value (see
//! [`crate::host`]), and an HTTP/1.1 request without any host (RFC 9112 §3.2: a server MUST
//! answer 400).

use http::header::{HeaderValue, HOST};
use http::{Request, Version};

use crate::host::{self, Host};

/// Why a request's host was refused. `as_str` is the bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// More than one `Host` line.
    Multiple,
    /// A value that is not a valid host (see [`crate::host`]).
    Invalid,
    /// HTTP/2 `host` and `:authority` differ.
    Conflict,
    /// No host, and no `default_host` (or HTTP/1.1, where a host is required).
    Missing,
}

// === impl HostError ===

impl HostError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Multiple => "host_multiple",
            Self::Invalid => "host_invalid",
            Self::Conflict => "host_conflict",
            Self::Missing => "host_missing",
        }
    }

    /// Every label, for metrics initialised at zero.
    pub const ALL: [Self; 4] = [Self::Multiple, Self::Invalid, Self::Conflict, Self::Missing];
}

/// Decides the request's host; `default_host` is the listener's (already canonical).
pub fn decide<B>(req: &Request<B>, default_host: Option<&str>) -> Result<Host, HostError> {
    let mut lines = req.headers().get_all(HOST).iter();
    let header = lines.next();
    if lines.next().is_some() {
        return Err(HostError::Multiple);
    }
    let header = header.filter(|v| !v.is_empty());
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    match (req.version(), authority, header) {
        (Version::HTTP_2 | Version::HTTP_3, Some(a), Some(h)) => {
            let (a, h) = (parse(a)?, parse_value(h)?);
            if a == h {
                Ok(a)
            } else {
                Err(HostError::Conflict)
            }
        }
        // Absolute-form (and h2's `:authority`): the authority wins over Host.
        (_, Some(a), _) => parse(a),
        (_, None, Some(h)) => parse_value(h),
        (Version::HTTP_11, None, None) => Err(HostError::Missing),
        (_, None, None) => default_host.ok_or(HostError::Missing).and_then(|d| parse(d.as_bytes())),
    }
}

fn parse(raw: &[u8]) -> Result<Host, HostError> {
    host::canonical(raw).ok_or(HostError::Invalid)
}

/// A `Host` line: kept as it is when already canonical (see [`host::canonical_value`]).
fn parse_value(value: &HeaderValue) -> Result<Host, HostError> {
    host::canonical_value(value).ok_or(HostError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    fn name(r: Result<Host, HostError>) -> Result<String, HostError> {
        r.map(|h| h.header().to_owned())
    }

    #[test]
    fn absolute_form_replaces_host() {
        let r = req(Version::HTTP_11, "http://Other.Example.com/signup", &["console.example.com"]);
        assert_eq!(name(decide(&r, None)), Ok("other.example.com".into()));
    }

    #[test]
    fn one_host_line_only() {
        let r = req(Version::HTTP_11, "/signup", &["console.example.com", "other.example.com"]);
        assert_eq!(decide(&r, None), Err(HostError::Multiple));
        let r = req(Version::HTTP_11, "/signup", &["console%2eexample.com"]);
        assert_eq!(decide(&r, None), Err(HostError::Invalid));
        let r = req(Version::HTTP_11, "/signup", &["Console.Example.com.:8080"]);
        assert_eq!(name(decide(&r, None)), Ok("console.example.com:8080".into()));
    }

    #[test]
    fn missing_host_uses_the_default_except_on_http11() {
        let r = req(Version::HTTP_10, "/signup", &[]);
        assert_eq!(name(decide(&r, Some("console.example.com"))), Ok("console.example.com".into()));
        assert_eq!(decide(&r, None), Err(HostError::Missing));
        let r = req(Version::HTTP_11, "/signup", &[]);
        assert_eq!(decide(&r, Some("console.example.com")), Err(HostError::Missing));
        let r = req(Version::HTTP_10, "/signup", &[""]);
        assert_eq!(name(decide(&r, Some("console.example.com"))), Ok("console.example.com".into()));
    }

    #[test]
    fn h2_host_must_agree_with_authority() {
        let r = req(Version::HTTP_2, "http://console.example.com/signup", &["other.example.com"]);
        assert_eq!(decide(&r, None), Err(HostError::Conflict));
        let r = req(Version::HTTP_2, "http://console.example.com/signup", &["Console.example.com."]);
        assert_eq!(name(decide(&r, None)), Ok("console.example.com".into()));
        let r = req(Version::HTTP_2, "/signup", &["console.example.com"]);
        assert_eq!(name(decide(&r, None)), Ok("console.example.com".into()));
    }
}
