//! Chooses the upstream for a request by host and path prefix; first matching route wins.
//!
//! The host is the one `authority` decided and the path the strict reading the policy uses
//! (`policy::normalize_path`), so the upstream chosen is the one the request was judged for.

use crate::config::Config;

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
    }
}
