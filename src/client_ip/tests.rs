// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg(source: ClientIpSource, trusted: &[&str]) -> ClientIpConfig {
    ClientIpConfig {
        source,
        trusted: trusted.iter().map(|n| n.parse::<IpNet>().unwrap()).collect(),
        on_unresolved: OnUnresolved::Block,
    }
}

fn xff_cfg() -> ClientIpConfig {
    cfg(ClientIpSource::XForwardedFor, &["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"])
}

fn fwd_cfg() -> ClientIpConfig {
    cfg(ClientIpSource::Forwarded, &["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"])
}

fn headers(name: &str, lines: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
    for line in lines {
        map.append(name.clone(), HeaderValue::from_str(line).unwrap());
    }
    map
}

const PEER: &str = "10.1.1.1";

fn xff(lines: &[&str]) -> Resolution {
    resolve(&xff_cfg(), ip(PEER), &headers("x-forwarded-for", lines))
}

fn fwd(lines: &[&str]) -> Resolution {
    resolve(&fwd_cfg(), ip(PEER), &headers("forwarded", lines))
}

fn ok(client: &str, outcome: Outcome) -> Resolution {
    Resolution { client: Some(ip(client)), outcome }
}

fn bad(outcome: Outcome) -> Resolution {
    Resolution { client: None, outcome }
}

fn malformed(index: usize, reason: Malformed) -> Resolution {
    bad(Outcome::Malformed { index, reason })
}

// --- sources that ignore headers ---

#[test]
fn peer_source_ignores_headers_and_canonicalises() {
    let c = cfg(ClientIpSource::Peer, &["0.0.0.0/0"]);
    let h = headers("x-forwarded-for", &["1.2.3.4"]);
    assert_eq!(resolve(&c, ip("::ffff:192.0.2.7"), &h), ok("192.0.2.7", Outcome::Peer));
    assert_eq!(resolve(&c, ip("::1"), &h), ok("::1", Outcome::Peer));
}

#[test]
fn proxy_protocol_source_returns_given_address() {
    let c = cfg(ClientIpSource::ProxyProtocol, &[]);
    let h = headers("x-forwarded-for", &["1.2.3.4"]);
    assert_eq!(resolve(&c, ip("::ffff:198.51.100.1"), &h), ok("198.51.100.1", Outcome::ProxyProtocol));
}

// --- X-Forwarded-For ---

#[test]
fn spoofed_xff_from_untrusted_peer_is_ignored() {
    let h = headers("x-forwarded-for", &["1.2.3.4", "5.6.7.8"]);
    for peer in ["203.0.113.9", "::ffff:203.0.113.9", "2001:db8::9"] {
        let res = resolve(&xff_cfg(), ip(peer), &h);
        assert_eq!(res.client, Some(ip(peer).to_canonical()));
        assert_eq!(res.outcome, Outcome::UntrustedPeer);
    }
}

#[test]
fn ipv4_mapped_peer_matches_ipv4_trust() {
    let h = headers("x-forwarded-for", &["198.51.100.4"]);
    assert_eq!(resolve(&xff_cfg(), ip("::ffff:127.0.0.1"), &h), ok("198.51.100.4", Outcome::Header { index: 0 }));
    // A trusted net spelled as IPv4-mapped IPv6 also matches the canonical IPv4 peer.
    let c = cfg(ClientIpSource::XForwardedFor, &["::ffff:10.0.0.0/104"]);
    assert_eq!(resolve(&c, ip("10.2.3.4"), &h), ok("198.51.100.4", Outcome::Header { index: 0 }));
    assert!(is_trusted(&c, ip("::ffff:10.9.9.9")));
    assert!(!is_trusted(&c, ip("11.0.0.1")));
}

#[test]
fn xff_walks_right_to_left_past_trusted_hops() {
    let cases: &[(&[&str], Resolution)] = &[
        (&["1.2.3.4"], ok("1.2.3.4", Outcome::Header { index: 0 })),
        (&["9.9.9.9, 1.2.3.4, 10.0.0.2, 10.0.0.3"], ok("1.2.3.4", Outcome::Header { index: 2 })),
        (&["9.9.9.9,1.2.3.4,10.0.0.2"], ok("1.2.3.4", Outcome::Header { index: 1 })),
        (&["  1.2.3.4 ,\t10.0.0.2  "], ok("1.2.3.4", Outcome::Header { index: 1 })),
        (&["1.2.3.4, ::ffff:10.0.0.2"], ok("1.2.3.4", Outcome::Header { index: 1 })),
        (&["2001:db8::1, fd00::1"], ok("2001:db8::1", Outcome::Header { index: 1 })),
        (&["::ffff:192.0.2.1"], ok("192.0.2.1", Outcome::Header { index: 0 })),
    ];
    for (lines, want) in cases {
        assert_eq!(&xff(lines), want, "{lines:?}");
    }
}

#[test]
fn xff_several_lines_are_joined_in_order() {
    // Line 1 entries come first, so line 2's last entry is the nearest hop.
    assert_eq!(xff(&["1.1.1.1, 2.2.2.2", "10.0.0.5"]), ok("2.2.2.2", Outcome::Header { index: 1 }));
    assert_eq!(xff(&["1.1.1.1", "10.0.0.4, 10.0.0.5", "10.0.0.6"]), ok("1.1.1.1", Outcome::Header { index: 3 }));
    // An empty line contributes nothing.
    assert_eq!(xff(&["1.1.1.1", "", "10.0.0.6"]), ok("1.1.1.1", Outcome::Header { index: 1 }));
    // A malformed line is only fatal if the walk reaches it.
    assert_eq!(xff(&["garbage", "3.3.3.3"]), ok("3.3.3.3", Outcome::Header { index: 0 }));
    assert_eq!(xff(&["garbage", "10.0.0.3"]), malformed(1, Malformed::BadAddress));
}

#[test]
fn xff_all_trusted_takes_leftmost() {
    assert_eq!(xff(&["10.0.0.1, 127.0.0.1, 10.0.0.3"]), ok("10.0.0.1", Outcome::AllTrusted { index: 2 }));
    assert_eq!(xff(&["fd00::7"]), ok("fd00::7", Outcome::AllTrusted { index: 0 }));
}

#[test]
fn xff_missing_or_empty_is_the_peer() {
    for lines in [&[][..], &[""], &["   "], &["", " \t "]] {
        assert_eq!(xff(lines), ok(PEER, Outcome::HeaderMissing), "{lines:?}");
    }
}

#[test]
fn xff_malformed_entry_stops_the_walk() {
    let cases: &[(&[&str], Resolution)] = &[
        // Never skipped to reach the real-looking address on its left.
        (&["1.2.3.4, bogus, 10.0.0.1"], malformed(1, Malformed::BadAddress)),
        (&["1.2.3.4,,10.0.0.1"], malformed(1, Malformed::EmptyElement)),
        (&["1.2.3.4,"], malformed(0, Malformed::EmptyElement)),
        (&[","], malformed(0, Malformed::EmptyElement)),
        (&["1.2.3.4, 010.0.0.1"], malformed(0, Malformed::BadAddress)),
        (&["127.1"], malformed(0, Malformed::BadAddress)),
        (&["0x7f.0.0.1"], malformed(0, Malformed::BadAddress)),
        (&["2130706433"], malformed(0, Malformed::BadAddress)),
        (&["1.2.3.4.5"], malformed(0, Malformed::BadAddress)),
        (&["fe80::1%eth0"], malformed(0, Malformed::BadAddress)),
        (&["[1.2.3.4]"], malformed(0, Malformed::BadAddress)),
        (&["[2001:db8::1"], malformed(0, Malformed::BadAddress)),
        (&["[2001:db8::1]x"], malformed(0, Malformed::BadAddress)),
        (&["1.2.3.4:"], malformed(0, Malformed::BadPort)),
        (&["1.2.3.4:65536"], malformed(0, Malformed::BadPort)),
        (&["1.2.3.4:080"], malformed(0, Malformed::BadPort)),
        (&["1.2.3.4:+80"], malformed(0, Malformed::BadPort)),
        (&["1.2.3.4:123456"], malformed(0, Malformed::BadPort)),
        (&["[2001:db8::1]:"], malformed(0, Malformed::BadPort)),
        (&["1.2.3.4 5.6.7.8"], malformed(0, Malformed::BadAddress)),
        (&["_hidden"], malformed(0, Malformed::BadAddress)),
        (&["for=1.2.3.4"], malformed(0, Malformed::BadAddress)),
        (&["unknown"], bad(Outcome::UnknownToken { index: 0 })),
        (&["1.2.3.4, UNKNOWN, 10.0.0.2"], bad(Outcome::UnknownToken { index: 1 })),
    ];
    for (lines, want) in cases {
        assert_eq!(&xff(lines), want, "{lines:?}");
    }
}

#[test]
fn xff_non_ascii_value_is_malformed() {
    let mut h = HeaderMap::new();
    h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap());
    assert_eq!(resolve(&xff_cfg(), ip(PEER), &h), malformed(0, Malformed::BadAddress));
    let mut h = HeaderMap::new();
    h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"1.2\xe9.3.4\t, 10.0.0.1").unwrap());
    assert_eq!(resolve(&xff_cfg(), ip(PEER), &h), malformed(1, Malformed::BadAddress));
}

#[test]
fn xff_ports_and_brackets() {
    let cases = [
        ("1.2.3.4:567", "1.2.3.4"),
        ("1.2.3.4:0", "1.2.3.4"),
        ("1.2.3.4:65535", "1.2.3.4"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("[::ffff:1.2.3.4]:443", "1.2.3.4"),
    ];
    for (entry, want) in cases {
        let line = format!("{entry}, 10.0.0.1");
        assert_eq!(xff(&[&line]), ok(want, Outcome::Header { index: 1 }), "{entry}");
    }
    // A trusted hop with a port is still trusted.
    assert_eq!(xff(&["1.2.3.4, 10.0.0.1:9999, [fd00::1]:1"]), ok("1.2.3.4", Outcome::Header { index: 2 }));
}

// --- Forwarded ---

#[test]
fn forwarded_valid_forms() {
    let cases: &[(&[&str], Resolution)] = &[
        (&["for=192.0.2.60"], ok("192.0.2.60", Outcome::Header { index: 0 })),
        (&["for=192.0.2.60;proto=http;by=203.0.113.43"], ok("192.0.2.60", Outcome::Header { index: 0 })),
        (&["For=\"[2001:db8:cafe::17]:4711\""], ok("2001:db8:cafe::17", Outcome::Header { index: 0 })),
        (&["FOR=\"[2001:db8:cafe::17]\""], ok("2001:db8:cafe::17", Outcome::Header { index: 0 })),
        (&["for=\"192.0.2.60:8080\""], ok("192.0.2.60", Outcome::Header { index: 0 })),
        (&["for=\"192.0.2.60\""], ok("192.0.2.60", Outcome::Header { index: 0 })),
        (&["for=\"192.0.2.60:_port\""], ok("192.0.2.60", Outcome::Header { index: 0 })),
        (&["for=\"1\\.2.3.4\""], ok("1.2.3.4", Outcome::Header { index: 0 })),
        (
            &["for=192.0.2.43, for=198.51.100.17;by=\"_x,y;z\", for=10.0.0.1"],
            ok("198.51.100.17", Outcome::Header { index: 1 }),
        ),
        (&["for=192.0.2.43", "for=10.0.0.1;proto=https"], ok("192.0.2.43", Outcome::Header { index: 1 })),
        (&["for=1.2.3.4; proto=https ;host=example.com"], ok("1.2.3.4", Outcome::Header { index: 0 })),
        (&["proto=https;;for=1.2.3.4;"], ok("1.2.3.4", Outcome::Header { index: 0 })),
        (&["for=\"[::ffff:10.0.0.1]\""], ok("10.0.0.1", Outcome::AllTrusted { index: 0 })),
        (&["for=10.0.0.9, for=\"[fd00::1]:80\""], ok("10.0.0.9", Outcome::AllTrusted { index: 1 })),
        (&[""], ok(PEER, Outcome::HeaderMissing)),
        (&[], ok(PEER, Outcome::HeaderMissing)),
        // Garbage left of the client is never examined.
        (&["for=\"unterminated, for=6.6.6.6, for=1.2.3.4"], ok("1.2.3.4", Outcome::Header { index: 0 })),
        (&["%%%", "for=1.2.3.4"], ok("1.2.3.4", Outcome::Header { index: 0 })),
        (&["for=unknown, for=1.2.3.4"], ok("1.2.3.4", Outcome::Header { index: 0 })),
    ];
    for (lines, want) in cases {
        assert_eq!(&fwd(lines), want, "{lines:?}");
    }
}

#[test]
fn forwarded_unresolved_forms() {
    let cases: &[(&[&str], Resolution)] = &[
        (&["for=unknown"], bad(Outcome::UnknownToken { index: 0 })),
        (&["for=UnKnown"], bad(Outcome::UnknownToken { index: 0 })),
        (&["for=\"unknown:80\""], bad(Outcome::UnknownToken { index: 0 })),
        (&["for=_hidden"], bad(Outcome::Obfuscated { index: 0 })),
        (&["for=\"_SEVKISEK:_p\", for=10.0.0.1"], bad(Outcome::Obfuscated { index: 1 })),
        (&["for=1.2.3.4, for=_gw, for=10.0.0.1"], bad(Outcome::Obfuscated { index: 1 })),
        (&["for=[2001:db8::1]"], malformed(0, Malformed::Unquoted)),
        (&["for=2001:db8::1"], malformed(0, Malformed::Unquoted)),
        (&["for=1.2.3.4:80"], malformed(0, Malformed::Unquoted)),
        (&["for=::1"], malformed(0, Malformed::Unquoted)),
        (&["proto=https"], malformed(0, Malformed::MissingFor)),
        (&["for=1.2.3.4, by=10.0.0.1"], malformed(0, Malformed::MissingFor)),
        (&["for=1.2.3.4;for=5.6.7.8"], malformed(0, Malformed::DuplicateFor)),
        (&["for=1.2.3.4,,for=10.0.0.1"], malformed(1, Malformed::EmptyElement)),
        (&["for=1.2.3.4,"], malformed(0, Malformed::EmptyElement)),
        (&["for=\"1.2.3.4"], malformed(0, Malformed::Syntax)),
        (&["for=1.2.3.4\""], malformed(0, Malformed::Syntax)),
        (&["for="], malformed(0, Malformed::Syntax)),
        (&["=1.2.3.4"], malformed(0, Malformed::Syntax)),
        (&["for 1.2.3.4"], malformed(0, Malformed::Syntax)),
        (&["for = 1.2.3.4"], malformed(0, Malformed::Syntax)),
        (&[";"], malformed(0, Malformed::MissingFor)),
        (&["for=\"[1.2.3.4]\""], malformed(0, Malformed::BadAddress)),
        (&["for=\"[2001:db8::1\""], malformed(0, Malformed::BadAddress)),
        (&["for=\"[2001:db8::1]:\""], malformed(0, Malformed::BadPort)),
        (&["for=\"1.2.3.4:99999\""], malformed(0, Malformed::BadPort)),
        (&["for=\"1.2.3.4:_\""], malformed(0, Malformed::BadPort)),
        (&["for=010.1.1.1"], malformed(0, Malformed::BadAddress)),
        (&["for=_"], malformed(0, Malformed::BadAddress)),
        (&["for=hostname"], malformed(0, Malformed::BadAddress)),
        (&["for=1.2.3.4 5.6.7.8"], malformed(0, Malformed::Syntax)),
        (&["for=\"x\\\"y\", for=10.0.0.1"], malformed(1, Malformed::BadAddress)),
        // A `for=` value longer than any valid node is malformed, not truncated.
        (
            &["for=\"_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""],
            malformed(0, Malformed::BadAddress),
        ),
    ];
    for (lines, want) in cases {
        assert_eq!(&fwd(lines), want, "{lines:?}");
    }
}

#[test]
fn forwarded_element_splitting_respects_quotes() {
    let split = |s: &str| -> Vec<String> {
        ElementsRev { rest: Some(s.as_bytes()) }.map(|e| String::from_utf8_lossy(e).into_owned()).collect()
    };
    assert_eq!(split("a=1,b=2"), ["b=2", "a=1"]);
    assert_eq!(split("a=\"x,y\",b=2"), ["b=2", "a=\"x,y\""]);
    assert_eq!(split("a=\"x\\\",y\",b=\"\\\\\""), ["b=\"\\\\\"", "a=\"x\\\",y\""]);
    assert_eq!(split("a=\"x,y"), ["y", "a=\"x"]);
    assert_eq!(split("x,y\""), ["x,y\""]);
    assert_eq!(split(""), [""]);
    assert_eq!(split(","), ["", ""]);
}

// --- named header ---

#[test]
fn named_header() {
    let name = HeaderName::from_static("cf-connecting-ip");
    let c = cfg(ClientIpSource::Header(name), &["10.0.0.0/8"]);
    let run = |lines: &[&str]| resolve(&c, ip(PEER), &headers("cf-connecting-ip", lines));
    assert_eq!(run(&["1.2.3.4"]), ok("1.2.3.4", Outcome::Header { index: 0 }));
    assert_eq!(run(&[" [2001:db8::2]:80 "]), ok("2001:db8::2", Outcome::Header { index: 0 }));
    assert_eq!(run(&["::ffff:1.2.3.4"]), ok("1.2.3.4", Outcome::Header { index: 0 }));
    // The header names the client even when it is a trusted address.
    assert_eq!(run(&["10.0.0.7"]), ok("10.0.0.7", Outcome::Header { index: 0 }));
    assert_eq!(run(&[]), ok(PEER, Outcome::HeaderMissing));
    assert_eq!(run(&[""]), ok(PEER, Outcome::HeaderMissing));
    assert_eq!(run(&["1.2.3.4", "5.6.7.8"]), malformed(0, Malformed::MultipleLines));
    assert_eq!(run(&["1.2.3.4, 5.6.7.8"]), malformed(0, Malformed::MultipleValues));
    assert_eq!(run(&["1.2.3.4,"]), malformed(0, Malformed::MultipleValues));
    assert_eq!(run(&["nope"]), malformed(0, Malformed::BadAddress));
    assert_eq!(run(&["unknown"]), bad(Outcome::UnknownToken { index: 0 }));
    // From an untrusted peer the header is ignored.
    assert_eq!(
        resolve(&c, ip("8.8.8.8"), &headers("cf-connecting-ip", &["1.2.3.4"])),
        ok("8.8.8.8", Outcome::UntrustedPeer)
    );
}

// --- decisions and descriptions ---

#[test]
fn effective_ip_applies_on_unresolved() {
    let mut c = xff_cfg();
    let peer = ip("::ffff:10.0.0.1");
    let good = ok("1.2.3.4", Outcome::Header { index: 0 });
    let unresolved = malformed(0, Malformed::BadAddress);
    for (policy, want) in [
        (OnUnresolved::Block, Decision::Block),
        (OnUnresolved::UsePeer, Decision::Lookup(ip("10.0.0.1"))),
        (OnUnresolved::Allow, Decision::Allow),
    ] {
        c.on_unresolved = policy;
        assert_eq!(effective_ip(&unresolved, peer, &c), want);
        assert_eq!(effective_ip(&good, peer, &c), Decision::Lookup(ip("1.2.3.4")));
    }
}

#[test]
fn labels_are_bounded_and_descriptions_name_the_header() {
    let all = [
        Outcome::Peer,
        Outcome::ProxyProtocol,
        Outcome::UntrustedPeer,
        Outcome::HeaderMissing,
        Outcome::Header { index: 3 },
        Outcome::AllTrusted { index: 3 },
        Outcome::Malformed { index: 3, reason: Malformed::Unquoted },
        Outcome::UnknownToken { index: 3 },
        Outcome::Obfuscated { index: 3 },
    ];
    let labels: std::collections::HashSet<_> = all.iter().map(Outcome::as_str).collect();
    assert_eq!(labels.len(), all.len());
    for o in &all {
        assert!(!o.as_str().contains('3'));
        assert!(!o.to_string().is_empty());
        assert_eq!(o.is_unresolved(), matches!(o.as_str(), "malformed" | "unknown_token" | "obfuscated"));
    }
    let res = fwd(&["for=[::1]"]);
    let text = res.describe(&fwd_cfg());
    assert!(text.contains("forwarded"), "{text}");
    assert!(text.contains("must be quoted"), "{text}");
    assert!(text.contains("entry 0"), "{text}");
    let text = xff(&["1.2.3.4"]).describe(&xff_cfg());
    assert!(text.contains("1.2.3.4") && text.contains("x-forwarded-for"), "{text}");
}

// --- properties ---

fn arbitrary_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"0123456789abcdef.:[],;=\"\\ _-forFORunknown\t".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(prop::collection::vec(byte, 0..40), 0..4)
}

fn map_from(name: &HeaderName, lines: &[Vec<u8>]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines {
        // Only what hyper could hand us: HeaderValue refuses CR, LF and NUL.
        if let Ok(v) = HeaderValue::from_bytes(line) {
            map.append(name.clone(), v);
        }
    }
    map
}

fn any_source() -> impl Strategy<Value = ClientIpSource> {
    prop_oneof![
        Just(ClientIpSource::XForwardedFor),
        Just(ClientIpSource::Forwarded),
        Just(ClientIpSource::Header(HeaderName::from_static("x-real-ip"))),
        Just(ClientIpSource::Peer),
        Just(ClientIpSource::ProxyProtocol),
    ]
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(std::net::Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn resolve_never_panics(source in any_source(), peer in any_ip(), lines in arbitrary_lines()) {
        let c = cfg(source, &["0.0.0.0/1", "fd00::/8", "::ffff:0:0/96"]);
        for name in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let h = map_from(&HeaderName::from_static(name), &lines);
            let res = resolve(&c, peer, &h);
            // Every address handed out is canonical.
            if let Some(client) = res.client {
                prop_assert_eq!(client, client.to_canonical());
            }
            prop_assert_eq!(res.client.is_none(), res.outcome.is_unresolved());
            // The series created at 0 for this source cover every outcome it can count.
            prop_assert!(Outcome::labels_for(&c.source).contains(&res.outcome.as_str()), "{:?}", res.outcome);
            let _ = res.describe(&c);
        }
    }

    #[test]
    fn untrusted_peer_is_always_the_client(source in any_source(), peer in any_ip(), lines in arbitrary_lines()) {
        let c = cfg(source.clone(), &["10.0.0.0/8"]);
        prop_assume!(!is_trusted(&c, peer));
        for name in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let h = map_from(&HeaderName::from_static(name), &lines);
            let res = resolve(&c, peer, &h);
            prop_assert_eq!(res.client, Some(peer.to_canonical()));
            if !matches!(source, ClientIpSource::Peer | ClientIpSource::ProxyProtocol) {
                prop_assert_eq!(res.outcome, Outcome::UntrustedPeer);
            }
        }
    }

    #[test]
    fn xff_client_is_first_untrusted_from_the_right(
        hops in prop::collection::vec(any_ip(), 1..6),
        trusted_tail in 0usize..4,
    ) {
        // Build `hops..., 10.0.0.k...` and check the walk lands on the last non-trusted hop.
        let c = cfg(ClientIpSource::XForwardedFor, &["10.0.0.0/8"]);
        let mut entries: Vec<String> = hops.iter().map(|h| match h {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }).collect();
        entries.extend((0..trusted_tail).map(|k| format!("10.0.0.{k}")));
        let h = headers("x-forwarded-for", &[&entries.join(", ")]);
        let res = resolve(&c, ip("10.9.9.9"), &h);
        let canon: Vec<IpAddr> = hops.iter().map(|h| h.to_canonical()).collect();
        match canon.iter().rposition(|h| !is_trusted(&c, *h)) {
            Some(pos) => {
                prop_assert_eq!(res.client, Some(canon[pos]));
                prop_assert_eq!(res.outcome, Outcome::Header { index: entries.len() - 1 - pos });
            }
            None => {
                prop_assert_eq!(res.client, Some(canon[0]));
                prop_assert_eq!(res.outcome, Outcome::AllTrusted { index: entries.len() - 1 });
            }
        }
    }
}

// --- the validated chain ---

#[test]
fn validated_chain_is_client_then_trusted_hops_inline_or_not() {
    // 10.0.0.0/8 is trusted (xff_cfg); the client is the first untrusted entry from the right.
    for hops in [0usize, 1, 7, 8, 9, 20] {
        let trusted: Vec<String> = (0..hops).map(|i| format!("10.0.{i}.1")).collect();
        let line = ["9.9.9.9".to_owned(), "8.8.8.8".to_owned()].into_iter().chain(trusted.clone()).collect::<Vec<_>>();
        let map = headers("x-forwarded-for", &[&line.join(", ")]);
        let res = resolve(&xff_cfg(), ip(PEER), &map);
        let chain = validated_chain(&xff_cfg(), &map, &res);
        let expected: Vec<IpAddr> = std::iter::once(ip("8.8.8.8")).chain(trusted.iter().map(|t| ip(t))).collect();
        assert_eq!(&chain[..], &expected[..], "{hops} hops");
    }
    let map = headers("x-forwarded-for", &["8.8.8.8"]);
    let untrusted = resolve(&xff_cfg(), ip("192.0.2.1"), &map);
    assert!(validated_chain(&xff_cfg(), &map, &untrusted).is_empty());
}

/// The outcome labels created at 0 for each source are exactly the outcomes that source
/// produces: one input of each kind, from a trusted and an untrusted peer.
#[test]
fn outcome_labels_per_source_are_the_outcomes_it_produces() {
    let values = [
        None,
        Some("203.0.113.7"),
        Some("10.0.0.1"),
        Some("010.0.0.1"),
        Some("unknown"),
        Some("_hidden"),
        Some("for=203.0.113.7"),
        Some("for=10.0.0.1"),
        Some("for=unknown"),
        Some("for=_hidden"),
        Some("for=010.0.0.1"),
    ];
    let sources = [
        (ClientIpSource::XForwardedFor, "x-forwarded-for"),
        (ClientIpSource::Forwarded, "forwarded"),
        (ClientIpSource::Header(HeaderName::from_static("x-real-ip")), "x-real-ip"),
        (ClientIpSource::Peer, "x-forwarded-for"),
        (ClientIpSource::ProxyProtocol, "x-forwarded-for"),
    ];
    for (source, name) in sources {
        let c = cfg(source.clone(), &["10.0.0.0/8"]);
        let mut seen = std::collections::BTreeSet::new();
        for peer in ["10.0.0.2", "192.0.2.1"] {
            for v in values {
                let lines: Vec<&str> = v.into_iter().collect();
                seen.insert(resolve(&c, ip(peer), &headers(name, &lines)).outcome.as_str());
            }
        }
        let want: std::collections::BTreeSet<&str> = Outcome::labels_for(&source).iter().copied().collect();
        assert_eq!(seen, want, "{source:?}");
    }
}
