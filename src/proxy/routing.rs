//! Chooses the upstream for a request by host and path prefix; first matching route wins.

use crate::config::Config;

/// The request's host without port, lower-cased: the URI authority (HTTP/2, absolute-form)
/// or the `Host` header.
pub fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.host(),
        None => strip_port(req.headers().get(http::header::HOST)?.to_str().ok()?),
    };
    let h = raw.trim().trim_end_matches('.');
    (!h.is_empty()).then(|| h.to_ascii_lowercase())
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or("");
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

/// True if `host` matches `pattern`: exact, or `*.suffix` for any subdomain of suffix.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

/// Index into `config.upstreams` for this host and path.
pub fn choose(config: &Config, host: Option<&str>, path: &str) -> usize {
    for r in &config.routes {
        let host_ok = match (&r.host, host) {
            (None, _) => true,
            (Some(p), Some(h)) => host_matches(p, h),
            (Some(_), None) => false,
        };
        let path_ok = r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));
        if host_ok && path_ok {
            return r.upstream;
        }
    }
    config.default_upstream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(host_matches("example.com", "example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        let req = http::Request::builder().uri("/").header("host", "Console.Example.com:8080").body(()).unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("console.example.com"));
        let req = http::Request::builder().uri("/").header("host", "[::1]:80").body(()).unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("::1"));
    }
}
