//! Shared driver for the three client-IP targets.
//!
//! Input layout: byte 0 picks the TCP peer, byte 1 the `on_unresolved` mode, and the rest is
//! split on `\n` into header lines (a line that is not a valid `HeaderValue` is skipped, as
//! hyper would never hand one over). A line starting with `!` goes to an unrelated header
//! instead, so the target also sees maps where the interesting header is absent or interleaved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geogate::client_ip::{effective_ip, is_trusted, resolve, Decision, Outcome, Resolution};
use geogate::config::{ClientIpConfig, ClientIpSource, OnUnresolved};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Peers: trusted and untrusted, both families, and IPv4-mapped spellings of both kinds.
const PEERS: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2a02, 0x6b8, 0, 0, 0, 0, 0, 1)),
    // ::ffff:10.9.9.9 (trusted through 10.0.0.0/8 once canonical)
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a09, 0x0909)),
    // ::ffff:198.51.100.1 (untrusted)
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc633, 0x6401)),
    // 192.168.7.7: trusted only through the mapped-form net ::ffff:192.168.0.0/112
    IpAddr::V4(Ipv4Addr::new(192, 168, 7, 7)),
    IpAddr::V4(Ipv4Addr::LOCALHOST),
];

/// Prepended as an extra, leftmost header line: entries left of the client are client-written
/// and must never change a resolved answer (module doc of `client_ip`).
const GARBAGE_LINE: &str = "unknown, ,\"for=_x;;, [::1]:0999, 1.2.3.4.5";

pub fn run(data: &[u8], source: ClientIpSource) {
    let [peer_sel, mode_sel, rest @ ..] = data else { return };
    let name = match &source {
        ClientIpSource::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
        ClientIpSource::Forwarded => http::header::FORWARDED,
        ClientIpSource::Header(n) => n.clone(),
        ClientIpSource::Peer | ClientIpSource::ProxyProtocol => return,
    };
    let peer = PEERS[usize::from(*peer_sel) % PEERS.len()];
    let on_unresolved = match mode_sel % 3 {
        0 => OnUnresolved::Block,
        1 => OnUnresolved::UsePeer,
        _ => OnUnresolved::Allow,
    };
    let cfg = ClientIpConfig { source, trusted: trusted(), on_unresolved };

    let mut lines = Vec::new();
    let mut headers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let (target, line) = match line.strip_prefix(b"!") {
            Some(l) => (HeaderName::from_static("x-unrelated"), l),
            None => (name.clone(), line),
        };
        let Ok(value) = HeaderValue::from_bytes(line) else { continue };
        if target == name {
            lines.push(value.clone());
        }
        headers.append(target, value);
    }

    let res = resolve(&cfg, peer, &headers);
    check(&cfg, peer, &headers, &res);

    // Deterministic, and the same whichever way the peer is spelled.
    assert_eq!(res, resolve(&cfg, peer, &headers));
    if let IpAddr::V4(v4) = peer {
        assert_eq!(res, resolve(&cfg, IpAddr::V6(v4.to_ipv6_mapped()), &headers), "peer spelling changed the answer");
    }

    // Client-written entries (left of the client) must not matter.
    if matches!(res.outcome, Outcome::Header { .. }) && !matches!(cfg.source, ClientIpSource::Header(_)) {
        let mut prefixed = HeaderMap::new();
        prefixed.append(name.clone(), HeaderValue::from_static(GARBAGE_LINE));
        for v in &lines {
            prefixed.append(name.clone(), v.clone());
        }
        assert_eq!(res, resolve(&cfg, peer, &prefixed), "a client-written entry changed a resolved answer");
    }
}

fn trusted() -> Vec<ipnet::IpNet> {
    ["10.0.0.0/8", "2001:db8::/32", "::ffff:192.168.0.0/112", "127.0.0.1/32"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn check(cfg: &ClientIpConfig, peer: IpAddr, headers: &HeaderMap, res: &Resolution) {
    let canonical_peer = peer.to_canonical();
    if let Some(ip) = res.client {
        assert_eq!(ip, ip.to_canonical(), "client {ip} is not canonical");
    }
    assert_eq!(res.client.is_none(), res.outcome.is_unresolved(), "{res:?}");
    assert_eq!(res.is_resolved(), res.client.is_some());

    if !is_trusted(cfg, peer) {
        assert_eq!(*res, Resolution { client: Some(canonical_peer), outcome: Outcome::UntrustedPeer });
    }
    match res.outcome {
        Outcome::UntrustedPeer => assert!(!is_trusted(cfg, peer)),
        Outcome::HeaderMissing => assert_eq!(res.client, Some(canonical_peer)),
        Outcome::Header { .. } => {
            let ip = res.client.unwrap_or(canonical_peer);
            if !matches!(cfg.source, ClientIpSource::Header(_)) {
                assert!(!is_trusted(cfg, ip), "the walk stopped at trusted hop {ip}");
            }
        }
        Outcome::AllTrusted { .. } => {
            let ip = res.client.unwrap_or(canonical_peer);
            assert!(is_trusted(cfg, ip), "all_trusted gave untrusted {ip}");
        }
        Outcome::Peer | Outcome::ProxyProtocol => panic!("header source gave {:?}", res.outcome),
        Outcome::Malformed { .. } | Outcome::UnknownToken { .. } | Outcome::Obfuscated { .. } => {}
    }
    if let ClientIpSource::Header(name) = &cfg.source {
        if is_trusted(cfg, peer) && headers.get_all(name).iter().count() > 1 {
            assert!(matches!(res.outcome, Outcome::Malformed { .. }), "several lines accepted: {res:?}");
        }
    }

    let decision = effective_ip(res, peer, cfg);
    match (decision, res.client, cfg.on_unresolved) {
        (Decision::Lookup(ip), Some(client), _) => assert_eq!(ip, client),
        (Decision::Lookup(ip), None, OnUnresolved::UsePeer) => assert_eq!(ip, canonical_peer),
        (Decision::Block, None, OnUnresolved::Block) | (Decision::Allow, None, OnUnresolved::Allow) => {}
        other => panic!("inconsistent decision {other:?}"),
    }
    if let Decision::Lookup(ip) = decision {
        assert_eq!(ip, ip.to_canonical());
    }
    let _ = (res.describe(cfg), res.outcome.to_string(), res.outcome.as_str(), decision.as_str());
}
