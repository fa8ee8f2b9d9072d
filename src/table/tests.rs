//! The table against a naive model: a linear scan over every source's prefixes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::*;
use crate::geo::{CountryCode, GeoRecord, ListSet, OwnedAnswer};

/// One source as the model sees it.
#[derive(Clone, Debug)]
enum Layer {
    Db {
        v4: Vec<(Ipv4Net, u32)>,
        v6: Vec<(Ipv6Net, u32)>,
    },
    List {
        v4: Vec<Ipv4Net>,
        v6: Vec<Ipv6Net>,
        set: Option<u32>,
    },
    /// A streamed database ([`SourceLayer`]) whose IPv6 `aliases` (first address, prefix
    /// length) answer as its IPv4 networks do for the 32 bits after the prefix (MaxMind's
    /// alias nodes). Networks disjoint, none of the IPv6 ones inside an alias.
    Aliased {
        v4: Vec<(Ipv4Net, u32)>,
        v6: Vec<(Ipv6Net, u32)>,
        aliases: Vec<(u128, u8)>,
    },
}

/// The alias blocks a database can have: `::/96` (its IPv4 subtree seen from IPv6) and
/// MaxMind's `::ffff:0:0/96`, `2002::/16`, `2001::/32`.
const ALIAS_BLOCKS: [(u128, u8); 4] = [(0, 96), (0xffff << 32, 96), (0x2001 << 112, 32), (0x2002 << 112, 16)];

/// The alias block holding `a`, as `(embedded IPv4 address)`.
fn in_alias(aliases: &[(u128, u8)], a: Ipv6Addr) -> Option<u32> {
    let a = u128::from(a);
    aliases
        .iter()
        .find(|&&(base, len)| (a ^ base) >> (128 - u32::from(len)) == 0)
        .map(|&(_, len)| (a >> (96 - u32::from(len))) as u32)
}

/// The [`SourceLayer`] of an aliased layer: IPv4 networks, then IPv6 ones and the aliases in
/// address order.
fn source_layer(
    recs: &[GeoRecord],
    v4: &[(Ipv4Net, u32)],
    v6: &[(Ipv6Net, u32)],
    aliases: &[(u128, u8)],
) -> SourceLayer {
    let mut l = SourceLayer::new();
    for r in recs {
        l.push_record(r.clone());
    }
    for &(n, r) in v4 {
        l.push_v4(n, r).unwrap();
    }
    let mut pending: Vec<(u128, u8)> = aliases.to_vec();
    pending.sort_unstable();
    let mut pending = pending.into_iter().peekable();
    for &(n, r) in v6 {
        while let Some(&(base, len)) = pending.peek().filter(|&&(base, _)| base < u128::from(n.network())) {
            l.alias_v4(base, 96 - u32::from(len)).unwrap();
            pending.next();
        }
        l.push_v6(n, r).unwrap();
    }
    for (base, len) in pending {
        l.alias_v4(base, 96 - u32::from(len)).unwrap();
    }
    l
}

fn record(i: u32) -> GeoRecord {
    if i >= 6 {
        // Operator-only records (an ASN database): laid over, they keep the location.
        return GeoRecord { asn: Some(64_500 + i), as_org: Some(format!("org {i}").into()), ..GeoRecord::default() };
    }
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let a = letters[(i as usize) % 26] as char;
    let b = letters[(i as usize / 26) % 26] as char;
    GeoRecord {
        country: CountryCode::parse(&format!("{a}{b}")),
        subdivision: (i % 3 == 0).then(|| format!("{a}{b}-{i}").into()),
        anonymous_proxy: i % 5 == 0,
        ..GeoRecord::default()
    }
}

fn records() -> Vec<GeoRecord> {
    (0..8).map(record).collect()
}

fn build(layers: &[Layer]) -> GeoTable {
    let recs = records();
    let mut b = TableBuilder::new();
    let mut lists = 0;
    for (i, layer) in layers.iter().enumerate() {
        match layer {
            Layer::Db { v4, v6 } => b.add_database(i as u16, &recs, v4, v6).unwrap(),
            Layer::List { v4, v6, set } => {
                let set = set.map(|s| recs[s as usize].clone());
                b.add_list(i as u16, &format!("l{lists}"), set.as_ref(), v4, v6).unwrap();
                lists += 1;
            }
            // Both ways a compile adds a streamed layer: kept for reuse, or consumed.
            Layer::Aliased { v4, v6, aliases } if i % 2 == 0 => {
                b.add_layer(i as u16, &source_layer(&recs, v4, v6, aliases));
            }
            Layer::Aliased { v4, v6, aliases } => b.add_layer_owned(i as u16, source_layer(&recs, v4, v6, aliases)),
        }
    }
    b.build().unwrap()
}

/// The model: walk layers in order; a database lays its longest matching prefix's record
/// over the answer field by field and is that source's own view; a list adds its bit and
/// maybe lays its record over too.
fn model(layers: &[Layer], ip: IpAddr) -> OwnedAnswer {
    let recs = records();
    let mut ans = OwnedAnswer::default();
    let mut list_id = 0;
    for (i, layer) in layers.iter().enumerate() {
        match layer {
            Layer::Db { v4, v6 } | Layer::Aliased { v4, v6, .. } => {
                let aliases = match layer {
                    Layer::Aliased { aliases, .. } => &aliases[..],
                    _ => &[],
                };
                let embedded = match ip {
                    IpAddr::V6(a) => in_alias(aliases, a).map(|v| IpAddr::V4(v.into())),
                    IpAddr::V4(_) => None,
                };
                let best = match embedded.unwrap_or(ip) {
                    IpAddr::V4(a) => {
                        v4.iter().filter(|(n, _)| n.contains(&a)).max_by_key(|(n, _)| n.prefix_len()).map(|x| x.1)
                    }
                    IpAddr::V6(a) => {
                        v6.iter().filter(|(n, _)| n.contains(&a)).max_by_key(|(n, _)| n.prefix_len()).map(|x| x.1)
                    }
                };
                if let Some(r) = best {
                    let rec = &recs[r as usize];
                    if rec.has_location() || ans.source.is_none() {
                        ans.source = Some(i as u16);
                    }
                    ans.geo = ans.geo.overlay(rec);
                    ans.push_view(i as u16, rec.clone());
                }
            }
            Layer::List { v4, v6, set } => {
                let hit = match ip {
                    IpAddr::V4(a) => v4.iter().any(|n| n.contains(&a)),
                    IpAddr::V6(a) => v6.iter().any(|n| n.contains(&a)),
                };
                if hit {
                    ans.lists = ans.lists.with(list_id);
                    if let Some(s) = set {
                        let rec = &recs[*s as usize];
                        if rec.has_location() || ans.source.is_none() {
                            ans.source = Some(i as u16);
                        }
                        ans.geo = ans.geo.overlay(rec);
                    }
                }
                list_id += 1;
            }
        }
    }
    ans
}

/// Addresses worth probing: the first and last of every prefix and their neighbours,
/// the ends of the space, plus the given random ones.
fn probes(layers: &[Layer], random: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = random.to_vec();
    let mut push4 = |v: u32| {
        for d in [-1i64, 0, 1] {
            if let Ok(x) = u32::try_from(i64::from(v) + d) {
                out.push(IpAddr::V4(Ipv4Addr::from(x)));
            }
        }
    };
    push4(0);
    push4(u32::MAX);
    for l in layers {
        let nets: Vec<Ipv4Net> = match l {
            Layer::Db { v4, .. } | Layer::Aliased { v4, .. } => v4.iter().map(|x| x.0).collect(),
            Layer::List { v4, .. } => v4.clone(),
        };
        for n in nets {
            push4(n.network().into());
            push4(n.broadcast().into());
        }
    }
    let mut push6 = |v: u128| {
        for x in [v.checked_sub(1), Some(v), v.checked_add(1)].into_iter().flatten() {
            out.push(IpAddr::V6(Ipv6Addr::from(x)));
        }
    };
    push6(0);
    push6(u128::MAX);
    for l in layers {
        let nets: Vec<Ipv6Net> = match l {
            Layer::Db { v6, .. } | Layer::Aliased { v6, .. } => v6.iter().map(|x| x.0).collect(),
            Layer::List { v6, .. } => v6.clone(),
        };
        for n in nets {
            push6(n.network().into());
            push6(n.broadcast().into());
        }
    }
    // Inside every alias block: its ends, and the ends of every IPv4 network as seen there.
    let v4_ends: Vec<u32> = layers
        .iter()
        .flat_map(|l| match l {
            Layer::Db { v4, .. } | Layer::Aliased { v4, .. } => v4.iter().map(|x| x.0).collect::<Vec<_>>(),
            Layer::List { v4, .. } => v4.clone(),
        })
        .flat_map(|n| [u32::from(n.network()), u32::from(n.broadcast())])
        .chain([0, u32::MAX])
        .collect();
    for (base, len) in ALIAS_BLOCKS {
        let shift = 96 - u32::from(len);
        for &e in &v4_ends {
            push6(base | (u128::from(e) << shift));
            push6(base | (u128::from(e) << shift) | ((1u128 << shift) - 1));
        }
    }
    out
}

fn check(layers: &[Layer], random: &[IpAddr]) {
    let table = build(layers);
    for ip in probes(layers, random) {
        // The table canonicalises; the model is fed what the table looks up.
        let key = ip.to_canonical();
        let want = model(layers, key);
        assert_eq!(table.lookup(ip), want.answer(), "ip {ip} layers {layers:?}");
        let loc = table.locate(ip);
        assert_eq!(loc.answer, want.answer());
        assert!(loc.first <= key && key <= loc.last, "{ip} not in {}..{}", loc.first, loc.last);
        // Both ends of the stored range answer the same. Looked up without canonicalising:
        // an IPv6 range may span ::ffff:0:0/96, whose addresses `lookup` maps to IPv4.
        let raw = |ip: IpAddr| match ip {
            IpAddr::V4(a) => table.lookup_v4(a),
            IpAddr::V6(a) => table.lookup_v6(a),
        };
        assert_eq!(raw(loc.first), want.answer());
        assert_eq!(raw(loc.last), want.answer());
        assert!(loc.prefix(key).contains(&key));
    }
}

/// Prefixes clustered in a few regions so that they nest and crowd leaves.
fn v4_net() -> impl Strategy<Value = Ipv4Net> {
    (
        prop_oneof![Just(0u32), Just(0x0a00_0000), Just(0xc0a8_0000), Just(0xffff_ff00), any::<u32>()],
        any::<u32>(),
        0u8..=32,
    )
        .prop_map(|(base, noise, len)| {
            let noise = if len < 8 { noise } else { noise >> 12 };
            Ipv4Net::new(Ipv4Addr::from(base ^ noise), len).unwrap().trunc()
        })
}

fn v6_net() -> impl Strategy<Value = Ipv6Net> {
    (
        prop_oneof![
            Just(0u128),
            Just(0x2001_0db8u128 << 96),
            Just(0x2a00u128 << 112),
            Just(0x2002u128 << 112),
            Just(0xffffu128 << 32),
            Just(u128::MAX << 8),
            any::<u128>()
        ],
        any::<u128>(),
        prop_oneof![0u8..=128, 16u8..=64, 120u8..=128],
    )
        .prop_map(|(base, noise, len)| {
            let noise = if len < 16 { noise } else { noise >> 70 };
            Ipv6Net::new(Ipv6Addr::from(base ^ noise), len).unwrap().trunc()
        })
}

/// Sorted, disjoint networks (of overlapping ones the first in address order stays).
fn disjoint<N: Copy + Ord>(mut v: Vec<(N, u32)>, bounds: impl Fn(&N) -> (u128, u128)) -> Vec<(N, u32)> {
    v.sort_by_key(|x| x.0);
    let mut out: Vec<(N, u32)> = Vec::new();
    for (n, r) in v {
        if out.last().is_none_or(|(m, _)| bounds(m).1 < bounds(&n).0) {
            out.push((n, r));
        }
    }
    out
}

fn aliased_layer() -> impl Strategy<Value = Layer> {
    (
        prop::collection::vec((v4_net(), 0u32..8), 0..40),
        prop::collection::vec((v6_net(), 0u32..8), 0..40),
        prop::sample::subsequence(ALIAS_BLOCKS.to_vec(), 0..=4),
    )
        .prop_map(|(v4, v6, aliases)| {
            let b4 = |n: &Ipv4Net| (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast())));
            let b6 = |n: &Ipv6Net| (u128::from(n.network()), u128::from(n.broadcast()));
            let outside = |n: &Ipv6Net| {
                let (f, l) = b6(n);
                aliases.iter().all(|&(base, len)| l < base || f > (base | (u128::MAX >> len)))
            };
            let v6 = v6.into_iter().filter(|(n, _)| outside(n)).collect();
            Layer::Aliased { v4: disjoint(v4, b4), v6: disjoint(v6, b6), aliases }
        })
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        aliased_layer(),
        (prop::collection::vec((v4_net(), 0u32..8), 0..40), prop::collection::vec((v6_net(), 0u32..8), 0..40))
            .prop_map(|(v4, v6)| Layer::Db { v4: dedup(v4), v6: dedup(v6) }),
        (prop::collection::vec(v4_net(), 0..20), prop::collection::vec(v6_net(), 0..20), prop::option::of(0u32..8))
            .prop_map(|(v4, v6, set)| Layer::List { v4, v6, set }),
    ]
}

/// A database holds each prefix once; keep the first.
fn dedup<N: PartialEq + Copy>(v: Vec<(N, u32)>) -> Vec<(N, u32)> {
    let mut out: Vec<(N, u32)> = Vec::new();
    for (n, r) in v {
        if !out.iter().any(|(m, _)| *m == n) {
            out.push((n, r));
        }
    }
    out
}

fn random_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(v.into())),
        any::<u128>().prop_map(|v| IpAddr::V6(v.into())),
        // IPv4-mapped: must answer as the IPv4 address.
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_linear_model(layers in prop::collection::vec(layer(), 1..5), random in prop::collection::vec(random_ip(), 0..50)) {
        check(&layers, &random);
    }
}

#[test]
fn empty_table_knows_nothing() {
    let t = GeoTable::empty();
    for ip in ["0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:1.2.3.4"] {
        assert_eq!(t.lookup(ip.parse().unwrap()), Answer::EMPTY);
    }
    assert_eq!(t.stats().ranges_v4, 1);
}

#[test]
fn whole_space_and_host_routes() {
    let layers = vec![
        Layer::Db {
            v4: vec![
                ("0.0.0.0/0".parse().unwrap(), 1),
                ("255.255.255.255/32".parse().unwrap(), 2),
                ("0.0.0.0/32".parse().unwrap(), 3),
            ],
            v6: vec![
                ("::/0".parse().unwrap(), 4),
                ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128".parse().unwrap(), 5),
                ("::/128".parse().unwrap(), 6),
            ],
        },
        Layer::List {
            v4: vec!["10.0.0.0/8".parse().unwrap(), "10.1.2.3/32".parse().unwrap()],
            v6: vec!["2001:db8::/32".parse().unwrap()],
            set: Some(7),
        },
    ];
    check(&layers, &[]);
}

#[test]
fn nested_prefixes_longest_wins_and_later_source_overrides() {
    let db = Layer::Db {
        v4: vec![
            ("10.0.0.0/8".parse().unwrap(), 1),
            ("10.128.0.0/9".parse().unwrap(), 2),
            ("10.128.0.0/24".parse().unwrap(), 3),
        ],
        v6: vec![],
    };
    let vpn = Layer::List { v4: vec!["10.128.0.128/25".parse().unwrap()], v6: vec![], set: Some(4) };
    let t = build(&[db.clone(), vpn.clone()]);
    let at = |s: &str| t.lookup(s.parse().unwrap()).geo.clone();
    assert_eq!(at("10.0.0.1"), record(1));
    assert_eq!(at("10.255.255.255"), record(2));
    assert_eq!(at("10.128.0.1"), record(3));
    assert_eq!(at("10.128.0.200"), record(4));
    assert_eq!(t.lookup("10.128.0.200".parse().unwrap()).lists, ListSet(1));
    assert_eq!(t.lookup("::ffff:10.128.0.1".parse().unwrap()).geo, &record(3));
    check(&[db, vpn], &[]);
}

#[test]
fn dense_region_builds_internal_nodes() {
    // 4096 alternating /32s inside one /16 force nodes below the root.
    let v4: Vec<(Ipv4Net, u32)> =
        (0..4096u32).map(|i| (Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i * 3), 32).unwrap(), i % 8)).collect();
    let v6: Vec<(Ipv6Net, u32)> = (0..4096u128)
        .map(|i| (Ipv6Net::new(Ipv6Addr::from((0x2001u128 << 112) + (i << 70)), 60).unwrap(), (i % 8) as u32))
        .collect();
    let layers = vec![Layer::Db { v4, v6 }];
    let t = build(&layers);
    assert!(t.stats().nodes_v4 > 0 && t.stats().nodes_v6 > 0);
    check(&layers, &[]);
}

#[test]
fn dense_and_sparse_nodes_below_the_root() {
    // 2001::/16: 1024 alternating /60s spread over the region (a dense node); 2a00::/16: 20
    // clusters of 20 alternating /64s in the first /27 (most children equal: a sparse node).
    let mut v6: Vec<(Ipv6Net, u32)> = (0..1024u128)
        .map(|i| (Ipv6Net::new(Ipv6Addr::from((0x2001u128 << 112) + (i << 102)), 60).unwrap(), (i % 8) as u32))
        .collect();
    for g in 0..20u128 {
        for i in 0..20u128 {
            let a = (0x2a00u128 << 112) + (g << 96) + ((2 * i) << 64);
            v6.push((Ipv6Net::new(Ipv6Addr::from(a), 64).unwrap(), ((g + i) % 8) as u32));
        }
    }
    let v4 = vec![("10.0.0.0/8".parse().unwrap(), 1)];
    let layers = vec![Layer::Db { v4, v6 }];
    let t = build(&layers);
    assert_eq!(t.v6.top_node_kinds(), (1, 1));
    check(&layers, &[]);
}

#[test]
fn too_many_lists_is_an_error() {
    let mut b = TableBuilder::new();
    for i in 0..64 {
        b.add_list(0, &format!("l{i}"), None, &[], &[]).unwrap();
    }
    assert_eq!(b.add_list(0, "one-more", None, &[], &[]), Err(BuildError::TooManyLists));
    assert_eq!(b.add_list(0, "l3", None, &[], &[]), Err(BuildError::DuplicateList("l3".into())));
}

#[test]
fn bad_record_index_is_an_error() {
    let mut b = TableBuilder::new();
    let err = b.add_database(0, &records(), &[("1.0.0.0/8".parse().unwrap(), 99)], &[]).unwrap_err();
    assert_eq!(err, BuildError::BadRecordIndex { index: 99, len: 8 });
}

#[test]
fn regression_v6_fine_range_near_zero() {
    // Shrunk by proptest: a /120 deep inside the first root region.
    let layers = vec![Layer::Db {
        v4: vec![("0.0.0.0/0".parse().unwrap(), 0)],
        v6: vec![("::1:0:0:0/120".parse().unwrap(), 0)],
    }];
    check(&layers, &[]);
}

#[test]
fn few_fine_ranges_make_one_wide_leaf() {
    // Three /127s and a /128 inside 2001:db8::/32, far below bit 64: too fine for 32-bit leaf
    // keys, so the root's region becomes a single wide leaf, not a chain of nodes down to them.
    let v6: Vec<(Ipv6Net, u32)> = vec![
        ("2001:db8::/32".parse().unwrap(), 1),
        ("2001:db8:0:1::2/127".parse().unwrap(), 2),
        ("2001:db8:77:1::6/127".parse().unwrap(), 3),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe/127".parse().unwrap(), 4),
        ("2001:db8:1::1/128".parse().unwrap(), 5),
    ];
    let layers = vec![Layer::Db { v4: vec![("0.0.0.0/0".parse().unwrap(), 0)], v6 }];
    let t = build(&layers);
    assert_eq!(t.stats().nodes_v6, 0);
    let at = |s: &str| t.lookup(s.parse().unwrap()).geo.clone();
    assert_eq!(at("2001:db8:0:1::1"), record(1));
    assert_eq!(at("2001:db8:0:1::3"), record(2));
    assert_eq!(at("2001:db8:0:1::4"), record(1));
    assert_eq!(at("2001:db8:1::1"), record(5));
    assert_eq!(at("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), record(4));
    check(&layers, &[]);
}

#[test]
fn many_answers_are_numbered_by_use_and_all_answered() {
    // 300 records in alternating /24s of 10.0.0.0/8 (record 7 between every pair) and /64s of
    // 2001:db8::/32: leaves then hold answer numbers above 255, which compact leaves cannot
    // store, next to the common record 7.
    let recs: Vec<GeoRecord> = (0..300).map(record).collect();
    let mut v4: Vec<(Ipv4Net, u32)> = vec![("10.0.0.0/8".parse().unwrap(), 7)];
    let mut v6: Vec<(Ipv6Net, u32)> = vec![("2001:db8::/32".parse().unwrap(), 7)];
    for i in 0..300u32 {
        v4.push((Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 9)), 24).unwrap(), i));
        v6.push((Ipv6Net::new(Ipv6Addr::from((0x2001_0db8u128 << 96) + (u128::from(i) << 65)), 64).unwrap(), i));
    }
    let mut b = TableBuilder::new();
    b.add_database(0, &recs, &v4, &v6).unwrap();
    let t = b.build().unwrap();
    for i in 0..300u32 {
        let v4_in = Ipv4Addr::from(0x0a00_0000 + (i << 9) + 77);
        let v4_gap = Ipv4Addr::from(0x0a00_0000 + (i << 9) + 256 + 77);
        let v6_in = Ipv6Addr::from((0x2001_0db8u128 << 96) + (u128::from(i) << 65) + 5);
        let v6_gap = Ipv6Addr::from((0x2001_0db8u128 << 96) + (u128::from(i) << 65) + (1 << 64) + 5);
        assert_eq!(t.lookup(v4_in.into()).geo, &recs[i as usize], "{v4_in}");
        assert_eq!(t.lookup(v6_in.into()).geo, &recs[i as usize], "{v6_in}");
        if i != 7 {
            assert_eq!(t.lookup(v4_gap.into()).geo, &recs[7], "{v4_gap}");
            assert_eq!(t.lookup(v6_gap.into()).geo, &recs[7], "{v6_gap}");
        }
    }
    // Record 7 fills ~600 gaps, more ranges than any other answer: it is number 0.
    assert_eq!(t.answer(0).geo, &recs[7]);
    assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), Answer::EMPTY);
}

#[test]
fn alias_blocks_are_answered_from_ipv4_while_every_layer_agrees() {
    let recs = records();
    let v4: Vec<(Ipv4Net, u32)> = vec![("1.2.3.0/24".parse().unwrap(), 1), ("9.0.0.0/8".parse().unwrap(), 2)];
    let v6: Vec<(Ipv6Net, u32)> = vec![("2a00::/16".parse().unwrap(), 3)];
    let city = source_layer(&recs, &v4, &v6, &ALIAS_BLOCKS);
    let a6to4: Ipv6Addr = "2002:102:304::1".parse().unwrap();

    // Alone: every block a redirect, the IPv6 trie holds just the IPv6 networks.
    let mut b = TableBuilder::new();
    b.add_layer(0, &city);
    let t = b.build().unwrap();
    assert_eq!(t.redirects().len(), 4);
    assert!(t.stats().ranges_v6 <= 3 + 2 * 4, "{:?}", t.stats());
    assert_eq!(t.lookup_v6(a6to4).geo, &recs[1]);
    assert_eq!(t.locate(IpAddr::V6(a6to4)).first, "2002:102:300::".parse::<IpAddr>().unwrap());

    // A v6-only list elsewhere keeps them; one inside 2002::/16 copies that block only.
    let mut b = TableBuilder::new();
    b.add_layer(0, &city);
    b.add_list(1, "v6", None, &[], &["2a00:1::/32".parse().unwrap()]).unwrap();
    assert_eq!(b.clone().build().unwrap().redirects().len(), 4);
    b.add_list(2, "in-6to4", None, &[], &["2002:909::/32".parse().unwrap()]).unwrap();
    let t = b.build().unwrap();
    assert_eq!(t.redirects().len(), 3);
    assert_eq!(t.lookup_v6(a6to4).geo, &recs[1]);
    let listed = t.lookup_v6("2002:909::1".parse().unwrap());
    assert_eq!((listed.geo, t.list_label(&listed).as_deref()), (&recs[2], Some("in-6to4")));

    // An IPv4 list changes what IPv4 answers but not what the blocks answer: all copied.
    let mut b = TableBuilder::new();
    b.add_layer(0, &city);
    b.add_list(1, "v4", Some(&recs[4]), &["1.2.3.0/24".parse().unwrap()], &[]).unwrap();
    let t = b.build().unwrap();
    assert!(t.redirects().is_empty());
    assert_eq!(t.lookup_v4("1.2.3.4".parse().unwrap()).geo, &recs[4]);
    assert_eq!(t.lookup_v6(a6to4).geo, &recs[1]);
    assert!(t.lookup_v6(a6to4).lists.is_empty());
    let compatible: Ipv6Addr = "::1.2.3.4".parse().unwrap();
    assert_eq!(t.lookup_v6(compatible).geo, &recs[1]);
    assert!(t.lookup_v6(compatible).lists.is_empty());
}

/// A changed version of an aliased layer: some records swapped, some networks dropped and
/// some of `extra`'s added; the same alias blocks.
fn edited(layer: &Layer, edits: &[(bool, u32)], extra: &Layer) -> Layer {
    let (Layer::Aliased { v4, v6, aliases }, Layer::Aliased { v4: x4, v6: x6, .. }) = (layer, extra) else {
        return layer.clone();
    };
    let edit = |i: usize, r: u32| match edits.get(i % edits.len().max(1)) {
        Some(&(true, to)) if i % 3 == 0 => Some(to),
        Some(&(false, _)) if i % 5 == 0 => None,
        _ => Some(r),
    };
    let b4 = |n: &Ipv4Net| (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast())));
    let b6 = |n: &Ipv6Net| (u128::from(n.network()), u128::from(n.broadcast()));
    let outside = |n: &Ipv6Net| {
        let (f, l) = b6(n);
        aliases.iter().all(|&(base, len)| l < base || f > (base | (u128::MAX >> len)))
    };
    let mut n4: Vec<(Ipv4Net, u32)> = v4.iter().enumerate().filter_map(|(i, &(n, r))| Some((n, edit(i, r)?))).collect();
    let mut n6: Vec<(Ipv6Net, u32)> = v6.iter().enumerate().filter_map(|(i, &(n, r))| Some((n, edit(i, r)?))).collect();
    n4.extend(x4.iter().take(edits.len()));
    n6.extend(x6.iter().take(edits.len()).filter(|(n, _)| outside(n)));
    Layer::Aliased { v4: disjoint(n4, b4), v6: disjoint(n6, b6), aliases: aliases.clone() }
}

/// What a reload does with `before` changed into `after` (the same kinds of layer, one
/// aliased layer edited): the changes found layer by layer, a fresh table from the layers
/// clipped to them, the old table patched. `None` where a reload would build afresh.
fn patch(before: &[Layer], after: &[Layer]) -> Option<(GeoTable, Changes)> {
    patch_from(&build(before), before, after)
}

/// [`patch`] of `old`, the table of `before` (built whole or patched).
fn patch_from(old: &GeoTable, before: &[Layer], after: &[Layer]) -> Option<(GeoTable, Changes)> {
    let recs = records();
    let mut changes = Changes::default();
    let mut blocks: Vec<(u128, u8)> = Vec::new();
    for (b, a) in before.iter().zip(after) {
        if let (Layer::Aliased { v4, v6, aliases }, Layer::Aliased { v4: a4, v6: a6, aliases: aa }) = (b, a) {
            let (lb, la) = (source_layer(&recs, v4, v6, aliases), source_layer(&recs, a4, a6, aa));
            if lb.aliases() != la.aliases() || lb.has_v4() != la.has_v4() {
                return None;
            }
            changes = changes.union(&la.changes_from(&lb));
            blocks.extend(la.aliases());
        }
    }
    // Blocks the table holds as copies change with the IPv4 ranges they stand for.
    let copied: Vec<(u128, u8)> = blocks.iter().copied().filter(|b| !old.redirects().contains(b)).collect();
    let changes = changes.with_alias_images(&copied);
    let mut fresh = TableBuilder::new();
    let mut lists = 0;
    for (i, layer) in after.iter().enumerate() {
        match layer {
            Layer::Aliased { v4, v6, aliases } => {
                fresh.add_layer_owned(i as u16, source_layer(&recs, v4, v6, aliases).clipped(&changes, &blocks));
            }
            Layer::List { v4, v6, set } => {
                let set = set.map(|s| recs[s as usize].clone());
                fresh.add_list(i as u16, &format!("l{lists}"), set.as_ref(), v4, v6).unwrap();
                lists += 1;
            }
            Layer::Db { .. } => unreachable!("only streamed layers are patched"),
        }
    }
    let fresh = fresh.build().unwrap();
    old.patched(&fresh, &changes).ok().map(|t| (t, changes))
}

fn streamed_or_list() -> impl Strategy<Value = Layer> {
    prop_oneof![
        3 => aliased_layer(),
        1 => (prop::collection::vec(v4_net(), 0..20), prop::collection::vec(v6_net(), 0..20), prop::option::of(0u32..8))
            .prop_map(|(v4, v6, set)| Layer::List { v4, v6, set }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A patched table answers every address (and stores the same ranges) as a table built
    /// afresh from the changed layers; patched again, it still does.
    #[test]
    fn a_patched_table_answers_as_one_built_afresh(
        layers in prop::collection::vec(streamed_or_list(), 1..4),
        edits in prop::collection::vec((any::<bool>(), 0u32..8), 0..12),
        extra in aliased_layer(),
        which in any::<prop::sample::Index>(),
        random in prop::collection::vec(random_ip(), 0..30),
    ) {
        let mut after = layers.clone();
        let i = which.index(after.len());
        after[i] = edited(&after[i], &edits, &extra);
        let Some((patched, changes)) = patch(&layers, &after) else { return Ok(()) };
        let whole = build(&after);
        let mut all = layers.clone();
        all.extend(after.iter().cloned());
        for ip in probes(&all, &random) {
            let raw = |t: &GeoTable| match ip {
                IpAddr::V4(a) => OwnedAnswer::from(t.lookup_v4(a)),
                IpAddr::V6(a) => OwnedAnswer::from(t.lookup_v6(a)),
            };
            prop_assert_eq!(raw(&patched), raw(&whole), "ip {} changes {:?}", ip, changes);
            prop_assert_eq!(OwnedAnswer::from(patched.lookup(ip)), model(&after, ip.to_canonical()));
            let loc = patched.locate(ip);
            prop_assert!(loc.first <= ip.to_canonical() && ip.to_canonical() <= loc.last);
        }
        let (p, w) = (patched.stats(), whole.stats());
        prop_assert_eq!((p.ranges_v4, p.ranges_v6), (w.ranges_v4, w.ranges_v6), "changes {:?}", changes);
        // And back again: the patched table patched to the old layers is the old table.
        if let Some((back, _)) = patch_from(&patched, &after, &layers) {
            let old = build(&layers);
            for ip in probes(&all, &random) {
                prop_assert_eq!(OwnedAnswer::from(back.lookup(ip)), OwnedAnswer::from(old.lookup(ip)), "back at {}", ip);
            }
            prop_assert_eq!(back.stats().ranges_v4, old.stats().ranges_v4);
            prop_assert_eq!(back.stats().ranges_v6, old.stats().ranges_v6);
        }
    }
}
