//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! forged geo-tag removal, and the client-address and forwarding headers geogate writes.
//!
//! Order matters and is fixed here: strip what the client sent (hop-by-hop, names listed in
//! `Connection`, anything looking like a tag header), THEN add geogate's own headers, so no
//! client header can remove or impersonate what geogate adds.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{ClientHeaders, ClientIpSource, CLIENT_ADDRESS_HEADERS};
use crate::geo::CountryCode;

/// Hop-by-hop headers: meaningful for one connection only, never forwarded.
pub(super) static HOP_BY_HOP: [HeaderName; 9] = [
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
pub(super) static PROTECTED: [HeaderName; 5] =
    [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, header::FORWARDED, header::HOST];

/// Removes hop-by-hop headers and every header named in `Connection` (except protected
/// ones). If `upgrade` is given, `Connection: upgrade` and that `Upgrade` value are put back
/// so the upgrade reaches the upstream.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    // One pass over the names present (usually a handful, and usually none of them
    // hop-by-hop) instead of a hashed removal per name that might be there. The names found
    // are the static ones, so nothing is cloned or allocated.
    let mut doomed: [Option<&'static HeaderName>; HOP_BY_HOP.len()] = [None; HOP_BY_HOP.len()];
    let mut found = 0;
    for k in headers.keys() {
        if let Some(h) = HOP_BY_HOP.iter().find(|h| *h == k) {
            if found < doomed.len() && !doomed[..found].contains(&Some(h)) {
                doomed[found] = Some(h);
                found += 1;
            }
        }
    }
    if found > 0 {
        // The `Connection` values are kept (cheap reference-counted clones) so the names
        // they list can be removed after `Connection` itself. Usually there is one line.
        let mut lines = headers.get_all(header::CONNECTION).iter();
        let first = lines.next().cloned();
        let rest: Vec<HeaderValue> = lines.cloned().collect();
        for n in doomed.iter().flatten() {
            headers.remove(*n);
        }
        for line in first.iter().chain(&rest) {
            let Ok(line) = line.to_str() else { continue };
            for token in line.split(',').map(str::trim) {
                // Names are case-insensitive; an invalid name matches no header, as before.
                if !PROTECTED.iter().any(|p| token.eq_ignore_ascii_case(p.as_str())) {
                    headers.remove(token);
                }
            }
        }
    }
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Whether the client accepts trailers: a `TE` list holding `trailers` (RFC 9110 §10.1.4).
/// `TE` is hop-by-hop and stripped; the forwarding side says `trailers` again, which gRPC
/// servers require, since geogate passes trailers through.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")))
}

/// Removes every header that would read as one of `tags` to a lenient upstream: any letter
/// case (already folded by `http`) and `_` in place of `-` (`X_Geo_Country`), which CGI-style
/// frameworks map to the same variable.
pub fn strip_tag_lookalikes(headers: &mut HeaderMap, tags: &[&HeaderName]) {
    remove_where(headers, |k| {
        let k = k.as_str().as_bytes();
        tags.iter().any(|t| same_ignoring_underscore(k, t.as_str().as_bytes()))
    });
}

/// Longest name [`remove_where`] copies to the stack; longer ones are cloned.
const NAME_BUF: usize = 64;

/// Removes every header whose name satisfies `doomed`. The name found is copied to the stack
/// and removed by its text rather than cloned: cloning a name parsed from the request
/// allocates.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    loop {
        let mut buf = [0u8; NAME_BUF];
        let Some(k) = headers.keys().find(|k| doomed(k)) else { return };
        let name = k.as_str().as_bytes();
        let removed = if name.len() <= buf.len() {
            let len = name.len();
            buf[..len].copy_from_slice(name);
            std::str::from_utf8(&buf[..len]).ok().and_then(|n| headers.remove(n))
        } else {
            let k = k.clone();
            headers.remove(&k)
        };
        if removed.is_none() {
            // Unreachable (the name was just found); never loop on it.
            return;
        }
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

/// Every code from `AA` to `ZZ`, back to back, so that a country tag is a slice of a static
/// table rather than an allocated value.
static COUNTRY_CODES: [u8; 26 * 26 * 2] = {
    let mut table = [0u8; 26 * 26 * 2];
    let mut i = 0;
    while i < 26 * 26 {
        table[2 * i] = b'A' + (i / 26) as u8;
        table[2 * i + 1] = b'A' + (i % 26) as u8;
        i += 1;
    }
    table
};

/// The country tag's value (`US`), without allocating.
pub fn country_value(code: CountryCode) -> Option<HeaderValue> {
    match *code.as_str().as_bytes() {
        [a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            let i = 2 * (usize::from(a - b'A') * 26 + usize::from(b - b'A'));
            HeaderValue::from_maybe_shared(bytes::Bytes::from_static(&COUNTRY_CODES[i..i + 2])).ok()
        }
        // Not produced by `CountryCode::parse`; kept correct all the same.
        _ => HeaderValue::from_str(code.as_str()).ok(),
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
/// - `X-Forwarded-Proto` is `https` on a TLS listener; elsewhere `http` unless a trusted peer
///   sent one (a TLS-terminating balancer in front knows better); `X-Forwarded-Host` is the
///   host geogate judged.
pub fn rewrite_client_address(
    headers: &mut HeaderMap,
    addr: &ClientAddress<'_>,
    source: &ClientIpSource,
    cfg: &ClientHeaders,
    host: &HeaderValue,
    peer_trusted: bool,
) {
    let passed = |name: &str| cfg.pass.iter().any(|p| p.as_str() == name);
    let source_header = match source {
        ClientIpSource::Header(h) => Some(h),
        _ => None,
    };
    let hops = addr.chain.iter().copied().chain(std::iter::once(addr.peer.to_canonical()));
    // The values are written one after another into one buffer, copied once into shared
    // bytes, and each header value is a slice of those: one allocation for all of them.
    let mut text = ValueBuf::new();
    let xff = (!passed("x-forwarded-for")).then(|| {
        let start = text.len();
        for (i, ip) in hops.clone().enumerate() {
            if i > 0 {
                text.push(b", ");
            }
            text.push_ip(ip);
        }
        start..text.len()
    });
    let fwd = (!passed("forwarded")).then(|| {
        let start = text.len();
        for (i, ip) in hops.enumerate() {
            if i > 0 {
                text.push(b", ");
            }
            text.push(b"for=");
            match ip {
                IpAddr::V4(_) => text.push_ip(ip),
                IpAddr::V6(_) => {
                    text.push(b"\"[");
                    text.push_ip(ip);
                    text.push(b"]\"");
                }
            }
        }
        text.push(b";host=\"");
        text.push(host.as_bytes());
        text.push(if cfg.https { b"\";proto=https" } else { b"\";proto=http" });
        start..text.len()
    });
    let client = addr.client.map(|ip| {
        let start = text.len();
        text.push_ip(ip);
        start..text.len()
    });
    let shared = Bytes::copy_from_slice(text.as_bytes());
    let value = |at: std::ops::Range<usize>| HeaderValue::from_maybe_shared(shared.slice(at)).ok();
    let (xff, fwd, client) = (xff.and_then(value), fwd.and_then(value), client.and_then(value));
    let written = |k: &HeaderName| {
        (xff.is_some() && *k == X_FORWARDED_FOR)
            || (fwd.is_some() && *k == header::FORWARDED)
            || (client.is_some() && (source_header == Some(k) || cfg.upstream.as_ref() == Some(k)))
    };
    let managed = |k: &[u8]| {
        CLIENT_ADDRESS_HEADERS.iter().any(|m| !passed(m) && same_ignoring_underscore(k, m.as_bytes()))
            || cfg.upstream.as_ref().is_some_and(|u| same_ignoring_underscore(k, u.as_str().as_bytes()))
            || source_header.is_some_and(|h| same_ignoring_underscore(k, h.as_str().as_bytes()))
    };
    // A header about to be written under its exact name is replaced by `insert` (all its
    // lines at once); only the other spellings need a removal first.
    remove_where(headers, |k| managed(k.as_str().as_bytes()) && !written(k));
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(v) = fwd {
        headers.insert(header::FORWARDED, v);
    }
    if let Some(v) = client {
        match (source_header, &cfg.upstream) {
            (Some(h), Some(u)) => {
                headers.insert(h.clone(), v.clone());
                headers.insert(u.clone(), v);
            }
            (Some(h), None) => {
                headers.insert(h.clone(), v);
            }
            (None, Some(u)) => {
                headers.insert(u.clone(), v);
            }
            (None, None) => {}
        }
    }
    if cfg.https {
        // geogate terminated TLS itself: what a peer claims cannot make it less.
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    } else if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    headers.insert(X_FORWARDED_HOST, host.clone());
}

/// Bytes of header values built on the stack; what outgrows the stack part moves to the
/// heap. [`rewrite_client_address`] copies them once into shared bytes and slices a
/// `HeaderValue` off for each header, where a `String` per value would cost two allocations
/// each.
struct ValueBuf {
    stack: [u8; 256],
    len: usize,
    heap: Vec<u8>,
}

impl ValueBuf {
    fn new() -> Self {
        Self { stack: [0; 256], len: 0, heap: Vec::new() }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() && self.len + bytes.len() <= self.stack.len() {
            self.stack[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.len]);
            }
            self.heap.extend_from_slice(bytes);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }

    /// Appends the textual form of `ip`, as `Display` writes it; IPv4 by hand, since
    /// `Display` goes through the whole formatting machinery for four small numbers.
    fn push_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, n) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    if n >= 100 {
                        text[len] = b'0' + n / 100;
                        len += 1;
                    }
                    if n >= 10 {
                        text[len] = b'0' + n / 10 % 10;
                        len += 1;
                    }
                    text[len] = b'0' + n % 10;
                    len += 1;
                }
                self.push(&text[..len]);
            }
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    self.push(b"::ffff:");
                    self.push_ip(IpAddr::V4(v4));
                    return;
                }
                // RFC 5952 as `Display` writes it: lowercase hex without leading zeros, the
                // longest run of two or more zero groups (the first of equal runs) as `::`.
                let groups = v6.segments();
                let (mut run, mut best) = ((0, 0), (0, 0)); // (start, length)
                for (i, &g) in groups.iter().enumerate() {
                    if g == 0 {
                        run = if run.1 == 0 { (i, 1) } else { (run.0, run.1 + 1) };
                        if run.1 > best.1 {
                            best = run;
                        }
                    } else {
                        run = (0, 0);
                    }
                }
                // colon-separated groups into `text` at `len`
                fn put(text: &mut [u8; 39], len: &mut usize, part: &[u16]) {
                    for (i, &g) in part.iter().enumerate() {
                        if i > 0 {
                            text[*len] = b':';
                            *len += 1;
                        }
                        let digits = (16 - g.leading_zeros() as usize).div_ceil(4).max(1);
                        for d in (0..digits).rev() {
                            text[*len] = b"0123456789abcdef"[usize::from(g >> (4 * d) & 0xf)];
                            *len += 1;
                        }
                    }
                }
                let mut text = [0u8; 39];
                let mut len = 0;
                if best.1 > 1 {
                    put(&mut text, &mut len, &groups[..best.0]);
                    text[len..len + 2].copy_from_slice(b"::");
                    len += 2;
                    put(&mut text, &mut len, &groups[best.0 + best.1..]);
                } else {
                    put(&mut text, &mut len, &groups);
                }
                self.push(&text[..len]);
            }
        }
    }

    fn len(&self) -> usize {
        self.as_bytes().len()
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
            let mut out = ValueBuf::new();
            out.push_ip(ip);
            assert_eq!(out.as_bytes(), ip.to_string().as_bytes());
        }
        for n in 0..=255u8 {
            let ip = std::net::IpAddr::from([n, 255 - n, n / 3, 7]);
            let mut out = ValueBuf::new();
            out.push_ip(ip);
            assert_eq!(out.as_bytes(), ip.to_string().as_bytes());
        }
    }

    proptest::proptest! {
        /// IPv6 text is written by hand; `Display` is the reference, on any address and on
        /// addresses made mostly of zero groups (where the `::` run is chosen).
        #[test]
        fn ipv6_is_written_as_display_writes_it(
            any in proptest::prelude::any::<u128>(),
            groups in proptest::collection::vec(
                proptest::prop_oneof![3 => proptest::strategy::Just(0u16), 1 => 1u16..=0xf, 1 => proptest::prelude::any::<u16>()],
                8,
            ),
        ) {
            let mut g = [0u16; 8];
            g.copy_from_slice(&groups);
            for ip in [std::net::Ipv6Addr::from(any), std::net::Ipv6Addr::from(g)] {
                let mut out = ValueBuf::new();
                out.push_ip(IpAddr::V6(ip));
                proptest::prop_assert_eq!(std::str::from_utf8(out.as_bytes()).unwrap(), ip.to_string());
            }
        }
    }

    #[test]
    fn ipv6_edge_cases_are_written_as_display_writes_them() {
        for ip in [
            "::",
            "::1",
            "1::",
            "::ffff:1.2.3.4",
            "::ffff:0.0.0.0",
            "::1.2.3.4",
            "64:ff9b::1.2.3.4",
            "1:0:0:2:0:0:0:3",
            "1:0:0:2:0:0:3:4",
            "0:1:0:1:0:1:0:1",
            "1:2:3:4:5:6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::1:0:0:0",
            "2001:db8:0:0:1:0:0:1",
        ] {
            let ip: std::net::Ipv6Addr = ip.parse().unwrap();
            let mut out = ValueBuf::new();
            out.push_ip(IpAddr::V6(ip));
            assert_eq!(std::str::from_utf8(out.as_bytes()).unwrap(), ip.to_string(), "{ip:?}");
        }
    }

    #[test]
    fn a_value_longer_than_the_stack_part_is_kept_whole() {
        let mut out = ValueBuf::new();
        let mut expected = String::new();
        for i in 0..40u8 {
            let ip = std::net::IpAddr::from([10, i, 200, 7]);
            out.push_ip(ip);
            out.push(b", ");
            expected.push_str(&format!("{ip}, "));
        }
        assert!(expected.len() > 256);
        assert_eq!(out.as_bytes(), expected.as_bytes());
        assert_eq!(HeaderValue::from_bytes(out.as_bytes()).unwrap(), expected.as_str());
    }

    #[test]
    fn every_line_of_every_matching_name_is_removed() {
        let long = "x-".to_owned() + &"a".repeat(NAME_BUF + 10);
        let mut h = map(&[("x-one", "1"), ("x-one", "2"), (&long, "3"), ("x-keep", "4"), (&long, "5"), ("x-two", "6")]);
        remove_where(&mut h, |k| k.as_str() != "x-keep");
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("x-keep").unwrap(), "4");
    }

    #[test]
    fn names_on_every_connection_line_go() {
        let mut h = map(&[
            ("connection", "X-One"),
            ("x-one", "1"),
            ("connection", " x-two ,HOST"),
            ("x-two", "2"),
            ("host", "example.com"),
            ("x-three", "3"),
        ]);
        strip_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("host").unwrap(), "example.com");
        assert_eq!(h.get("x-three").unwrap(), "3");
    }

    #[test]
    fn country_values_are_the_codes() {
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let text = String::from_utf8(vec![a, b]).unwrap();
                let code = CountryCode::parse(&text).unwrap();
                assert_eq!(country_value(code).unwrap(), text.as_str());
            }
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
        strip_tag_lookalikes(&mut h, &[&tag]);
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
        rewrite_client_address(
            &mut h,
            &addr,
            &ClientIpSource::XForwardedFor,
            &cfg,
            &HeaderValue::from_static("example.com"),
            false,
        );
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
    fn a_tls_listener_says_https_whatever_a_trusted_peer_sent() {
        let mut h = map(&[("x-forwarded-proto", "http")]);
        let cfg = ClientHeaders { https: true, ..ClientHeaders::default() };
        let addr = ClientAddress { client: Some(ip("10.0.0.1")), chain: &[], peer: ip("10.0.0.1") };
        rewrite_client_address(
            &mut h,
            &addr,
            &ClientIpSource::Peer,
            &cfg,
            &HeaderValue::from_static("a.example"),
            true,
        );
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("forwarded").unwrap(), "for=10.0.0.1;host=\"a.example\";proto=https");
    }

    #[test]
    fn passed_headers_stay_and_a_header_source_carries_the_decision() {
        let mut h = map(&[("x-real-ip", "5.5.5.5"), ("cf-connecting-ip", "8.8.8.8"), ("x-forwarded-proto", "https")]);
        let cfg =
            ClientHeaders { upstream: None, pass: vec![HeaderName::from_static("cf-connecting-ip")], https: false };
        let source = ClientIpSource::Header(HeaderName::from_static("x-real-ip"));
        let chain = [ip("2001:db8::5")];
        let addr = ClientAddress { client: Some(ip("2001:db8::5")), chain: &chain, peer: ip("10.0.0.1") };
        rewrite_client_address(&mut h, &addr, &source, &cfg, &HeaderValue::from_static("example.com"), true);
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
        rewrite_client_address(
            &mut h,
            &addr,
            &ClientIpSource::XForwardedFor,
            &cfg,
            &HeaderValue::from_static("example.com"),
            true,
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert!(h.get("x-geo-client-ip").is_none());
    }
}
