//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! forged geo-tag removal, and the forwarding headers geogate adds.
//!
//! Order matters and is fixed here: strip what the client sent (hop-by-hop, names listed in
//! `Connection`, anything looking like a tag header), THEN add geogate's own headers, so no
//! client header can remove or impersonate what geogate adds.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers: meaningful for one connection only, never forwarded.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers a client may not remove by naming them in `Connection`: the forwarding chain,
/// which geogate extends rather than replaces, and `Host`, which is end-to-end by definition.
static PROTECTED: [HeaderName; 5] =
    [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, header::FORWARDED, header::HOST];

/// Removes hop-by-hop headers and every header named in `Connection` (except protected
/// ones). If `upgrade` is given, `Connection: upgrade` and that `Upgrade` value are put back
/// so the upgrade reaches the upstream.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    // One pass over the names present (usually a handful, and usually none of them
    // hop-by-hop) instead of a hashed removal per name that might be there.
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|k| HOP_BY_HOP.contains(k)).cloned().collect();
    if !doomed.is_empty() {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !PROTECTED.contains(n));
        doomed.extend(named);
        for n in &doomed {
            headers.remove(n);
        }
    }
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Removes every header that would read as one of `tags` to a lenient upstream: any letter
/// case (already folded by `http`) and `_` in place of `-` (`X_Geo_Country`), which CGI-style
/// frameworks map to the same variable.
pub fn strip_tag_lookalikes(headers: &mut HeaderMap, tags: &[HeaderName]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str().as_bytes();
            tags.iter().any(|t| same_ignoring_underscore(k, t.as_str().as_bytes()))
        })
        .cloned()
        .collect();
    for n in doomed {
        headers.remove(&n);
    }
}

fn same_ignoring_underscore(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

fn fold(c: u8) -> u8 {
    if c == b'_' {
        b'-'
    } else {
        c.to_ascii_lowercase()
    }
}

/// Appends `peer` to `X-Forwarded-For` (one line: earlier lines joined in order), and sets
/// `X-Forwarded-Host`. `X-Forwarded-Proto` is set to `http` unless a trusted peer sent one
/// (a TLS-terminating balancer in front knows better).
pub fn add_forwarding(headers: &mut HeaderMap, peer: std::net::IpAddr, host: Option<&str>, peer_trusted: bool) {
    let mut xff = String::with_capacity(64);
    for v in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if !s.is_empty() {
                xff.push_str(s);
                xff.push_str(", ");
            }
        }
    }
    push_ip(&mut xff, peer.to_canonical());
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(xff)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST, h);
    }
}

/// Appends the textual form of `ip`; IPv4 by hand, since `Display` goes through the whole
/// formatting machinery for four small numbers on every request.
fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, n) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if n >= 100 {
                    out.push(char::from(b'0' + n / 100));
                }
                if n >= 10 {
                    out.push(char::from(b'0' + n / 10 % 10));
                }
                out.push(char::from(b'0' + n % 10));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn connection_named_headers_go_but_protected_stay() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, X-Forwarded-For, x-geo-country"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-forwarded-for", "1.2.3.4"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, None);
        assert!(h.get("x-secret").is_none() && h.get("keep-alive").is_none() && h.get("te").is_none());
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none());
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4");
        assert_eq!(h.get("x-keep").unwrap(), "yes");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "10.0.0.1", "::1", "2001:db8::ff00:42:8329"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        for n in 0..=255u8 {
            let ip = std::net::IpAddr::from([n, 255 - n, n / 3, 7]);
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn upgrade_is_put_back() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let up = h.get("upgrade").cloned();
        strip_hop_by_hop(&mut h, up);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn tag_lookalikes_removed() {
        let mut h =
            map(&[("x-geo-country", "US"), ("x_geo_country", "US"), ("X_GEO_Country", "US"), ("x-geo-countryx", "k")]);
        let tag = HeaderName::from_static("x-geo-country");
        strip_tag_lookalikes(&mut h, &[tag]);
        assert_eq!(h.len(), 1);
        assert!(h.get("x-geo-countryx").is_some());
    }

    #[test]
    fn forwarding_appends_peer_and_joins_lines() {
        let mut h =
            map(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2"), ("x-forwarded-proto", "https")]);
        add_forwarding(&mut h, "::ffff:10.0.0.1".parse().unwrap(), Some("example.com"), false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "example.com");
        let mut h = map(&[("x-forwarded-proto", "https")]);
        add_forwarding(&mut h, "10.0.0.1".parse().unwrap(), None, true);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }
}
