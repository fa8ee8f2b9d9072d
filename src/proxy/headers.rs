//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! forged geo-tag removal, and the client-address and forwarding headers geogate writes.
//!
//! Order matters and is fixed here: strip what the client sent (hop-by-hop, names listed in
//! `Connection`, anything looking like a tag header), THEN add geogate's own headers, so no
//! client header can remove or impersonate what geogate adds.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{ClientHeaders, ClientIpSource, CLIENT_ADDRESS_HEADERS};

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

/// What the upstream is told about the client: the address geogate decided and how it came.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress<'a> {
    /// The decided client address; `None` when it could not be resolved and was let through.
    pub client: Option<IpAddr>,
    /// The validated chain, client first, then trusted hops, without the peer
    /// ([`crate::client_ip::validated_chain`]).
    pub chain: &'a [IpAddr],
    /// The peer: the TCP peer, or a PROXY header's source.
    pub peer: IpAddr,
}

/// Rewrites every client-address header the upstream may read, so that none names an address
/// other than the one geogate decided:
/// - the [`CLIENT_ADDRESS_HEADERS`] and the listener's own header (`X-Geo-Client-IP`) are
///   removed, in any spelling a CGI-style framework maps to the same name, unless
///   `cfg.pass` names them;
/// - `X-Forwarded-For` and `Forwarded` are written anew from the validated chain plus the
///   peer (the part the client wrote, left of the client, is dropped);
/// - a single-address source header (`X-Real-IP` ...) and `cfg.upstream` carry the decided
///   address;
/// - `X-Forwarded-Proto` is set to `http` unless a trusted peer sent one (a TLS-terminating
///   balancer in front knows better), and `X-Forwarded-Host` to the host geogate judged.
pub fn rewrite_client_address(
    headers: &mut HeaderMap,
    addr: &ClientAddress<'_>,
    source: &ClientIpSource,
    cfg: &ClientHeaders,
    host: &str,
    peer_trusted: bool,
) {
    let passed = |name: &str| cfg.pass.iter().any(|p| p.as_str() == name);
    let source_header = match source {
        ClientIpSource::Header(h) => Some(h),
        _ => None,
    };
    let managed = |k: &[u8]| {
        CLIENT_ADDRESS_HEADERS.iter().any(|m| !passed(m) && same_ignoring_underscore(k, m.as_bytes()))
            || cfg.upstream.as_ref().is_some_and(|u| same_ignoring_underscore(k, u.as_str().as_bytes()))
            || source_header.is_some_and(|h| same_ignoring_underscore(k, h.as_str().as_bytes()))
    };
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| managed(k.as_str().as_bytes())).cloned().collect();
    for n in doomed {
        headers.remove(&n);
    }
    let hops = addr.chain.iter().copied().chain(std::iter::once(addr.peer.to_canonical()));
    if !passed("x-forwarded-for") {
        let mut xff = String::with_capacity(16 * (addr.chain.len() + 1));
        for (i, ip) in hops.clone().enumerate() {
            if i > 0 {
                xff.push_str(", ");
            }
            push_ip(&mut xff, ip);
        }
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(xff)) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if !passed("forwarded") {
        let mut fwd = String::with_capacity(24 * (addr.chain.len() + 1) + host.len());
        for (i, ip) in hops.enumerate() {
            if i > 0 {
                fwd.push_str(", ");
            }
            fwd.push_str("for=");
            match ip {
                IpAddr::V4(_) => push_ip(&mut fwd, ip),
                IpAddr::V6(_) => {
                    fwd.push_str("\"[");
                    push_ip(&mut fwd, ip);
                    fwd.push_str("]\"");
                }
            }
        }
        fwd.push_str(";host=\"");
        fwd.push_str(host);
        fwd.push_str("\";proto=http");
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(fwd)) {
            headers.insert(header::FORWARDED, v);
        }
    }
    if let Some(client) = addr.client {
        let mut text = String::with_capacity(39);
        push_ip(&mut text, client);
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)) {
            if let Some(h) = source_header {
                headers.insert(h.clone(), v.clone());
            }
            if let Some(u) = &cfg.upstream {
                headers.insert(u.clone(), v);
            }
        }
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Ok(h) = HeaderValue::from_str(host) {
        headers.insert(X_FORWARDED_HOST, h);
    }
}

/// Appends the textual form of `ip`; IPv4 by hand, since `Display` goes through the whole
/// formatting machinery for four small numbers on every request.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
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
        IpAddr::V6(v6) => {
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_are_written_from_the_validated_chain() {
        // The client wrote 8.8.8.8 and 1.1.1.1 itself; geogate decided 5.5.5.5 (left of a
        // trusted hop 10.0.0.2), and the peer is 10.0.0.1.
        let mut h = map(&[
            ("x-forwarded-for", "8.8.8.8, 1.1.1.1"),
            ("x-forwarded-for", "5.5.5.5, 10.0.0.2"),
            ("forwarded", "for=8.8.8.8"),
            ("x-real-ip", "8.8.8.8"),
            ("X_Real_IP", "8.8.8.8"),
            ("true-client-ip", "8.8.8.8"),
            ("cf-connecting-ip", "8.8.8.8"),
            ("x-geo-client-ip", "8.8.8.8"),
            ("x-forwarded-proto", "https"),
        ]);
        let chain = [ip("5.5.5.5"), ip("10.0.0.2")];
        let addr = ClientAddress { client: Some(ip("5.5.5.5")), chain: &chain, peer: ip("::ffff:10.0.0.1") };
        let cfg = ClientHeaders::default();
        rewrite_client_address(&mut h, &addr, &ClientIpSource::XForwardedFor, &cfg, "example.com", false);
        assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["5.5.5.5, 10.0.0.2, 10.0.0.1"]);
        assert_eq!(
            h.get_all("forwarded").iter().collect::<Vec<_>>(),
            ["for=5.5.5.5, for=10.0.0.2, for=10.0.0.1;host=\"example.com\";proto=http"]
        );
        assert_eq!(h.get_all("x-geo-client-ip").iter().collect::<Vec<_>>(), ["5.5.5.5"]);
        for gone in ["x-real-ip", "x_real_ip", "true-client-ip", "cf-connecting-ip"] {
            assert!(h.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "example.com");
    }

    #[test]
    fn passed_headers_stay_and_a_header_source_carries_the_decision() {
        let mut h = map(&[("x-real-ip", "5.5.5.5"), ("cf-connecting-ip", "8.8.8.8"), ("x-forwarded-proto", "https")]);
        let cfg = ClientHeaders { upstream: None, pass: vec![HeaderName::from_static("cf-connecting-ip")] };
        let source = ClientIpSource::Header(HeaderName::from_static("x-real-ip"));
        let chain = [ip("2001:db8::5")];
        let addr = ClientAddress { client: Some(ip("2001:db8::5")), chain: &chain, peer: ip("10.0.0.1") };
        rewrite_client_address(&mut h, &addr, &source, &cfg, "example.com", true);
        assert_eq!(h.get("x-real-ip").unwrap(), "2001:db8::5");
        assert_eq!(h.get("cf-connecting-ip").unwrap(), "8.8.8.8");
        assert!(h.get("x-geo-client-ip").is_none());
        assert_eq!(h.get("x-forwarded-for").unwrap(), "2001:db8::5, 10.0.0.1");
        assert!(h.get("forwarded").unwrap().to_str().unwrap().starts_with("for=\"[2001:db8::5]\", for=10.0.0.1;"));
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn an_unresolved_client_is_named_by_no_header() {
        let mut h = map(&[("x-forwarded-for", "garbage"), ("x-geo-client-ip", "8.8.8.8")]);
        let addr = ClientAddress { client: None, chain: &[], peer: ip("10.0.0.1") };
        let cfg = ClientHeaders::default();
        rewrite_client_address(&mut h, &addr, &ClientIpSource::XForwardedFor, &cfg, "example.com", true);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert!(h.get("x-geo-client-ip").is_none());
    }
}
