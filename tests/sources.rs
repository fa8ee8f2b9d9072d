#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Source readers against `maxminddb` itself: every fixture, both families, aliases, the
//! boundaries of every network, random addresses, corrupt files and malformed lists.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use geogate::config::{FieldPaths, MmdbSchema};
use geogate::geo::{CountryCode, GeoRecord};
use geogate::source::mmdb::{self, Database};
use geogate::source::{cidr, SourceError};
use geogate::table::{GeoTable, TableBuilder};
use maxminddb::{Reader, WithinOptions};
use serde_json::{json, Value};

use common::expected_record;
use common::fixtures::{Fixture, XorShift, BUILD_EPOCH};

/// What the reference implementation needs to know about the records.
#[derive(Clone, Copy, PartialEq)]
enum Reference {
    /// Decode with `serde_json` and read the geo fields directly (independent of the loader).
    Fields,
    /// Compare only which addresses have data; records are not geo records.
    PresenceOnly,
}

// --- the naive models -------------------------------------------------------------------

/// What `Database` answers for `ip`: a linear scan, no cleverness. Used on the fixtures.
fn model(db: &Database, ip: IpAddr) -> Option<&GeoRecord> {
    let hits: Vec<u32> = match ip {
        IpAddr::V4(a) => db.v4.iter().filter(|(n, _)| n.contains(&a)).map(|e| e.1).collect(),
        IpAddr::V6(a) => db.v6.iter().filter(|(n, _)| n.contains(&a)).map(|e| e.1).collect(),
    };
    assert!(hits.len() <= 1, "{ip}: networks overlap");
    hits.first().map(|&i| &db.records[i as usize])
}

/// The same answer by binary search, for big databases; equal to [`model`] once
/// [`assert_sorted_disjoint`] holds.
fn bisect(db: &Database, ip: IpAddr) -> Option<&GeoRecord> {
    let index = match ip {
        IpAddr::V4(a) => {
            let i = db.v4.partition_point(|(n, _)| n.network() <= a);
            i.checked_sub(1).filter(|&i| db.v4[i].0.contains(&a)).map(|i| db.v4[i].1)
        }
        IpAddr::V6(a) => {
            let i = db.v6.partition_point(|(n, _)| n.network() <= a);
            i.checked_sub(1).filter(|&i| db.v6[i].0.contains(&a)).map(|i| db.v6[i].1)
        }
    };
    index.map(|i| &db.records[i as usize])
}

/// What `maxminddb` answers for `ip`, read with an independent field interpretation.
fn reference(reader: &Reader<Vec<u8>>, ip: IpAddr, how: Reference) -> Option<GeoRecord> {
    let result = reader.lookup(ip).unwrap();
    if !result.has_data() {
        return None;
    }
    if how == Reference::PresenceOnly {
        return Some(GeoRecord::default());
    }
    let v: Value = result.decode().unwrap().unwrap();
    let code = |x: &Value| x.as_str().and_then(CountryCode::parse);
    let country = code(&v["country"]["iso_code"]).or_else(|| code(&v["country_code"]));
    let subdivision = v["subdivisions"]
        .as_array()
        .and_then(|subs| subs.iter().rev().find_map(|s| s["iso_code"].as_str()))
        .and_then(|s| {
            let (cc, sub) = match s.split_once('-') {
                Some((cc, sub)) => (CountryCode::parse(cc), sub),
                None => (country, s),
            };
            let ok = (1..=3).contains(&sub.len()) && sub.chars().all(|c| c.is_ascii_alphanumeric());
            cc.filter(|_| ok).map(|cc| format!("{cc}-{}", sub.to_ascii_uppercase()).into())
        })
        // A flat city database's own region name, under its country: `RU:Crimea`.
        .or_else(|| {
            let name = v["state1"].as_str()?.trim();
            let cc = country?;
            let code = name.split_once('-').filter(|(c, s)| {
                CountryCode::parse(c) == Some(cc)
                    && (1..=3).contains(&s.len())
                    && s.chars().all(|x| x.is_ascii_alphanumeric())
            });
            match code {
                Some(_) => Some(name.to_ascii_uppercase().into()),
                None => (!name.is_empty()).then(|| format!("{cc}:{name}").into()),
            }
        });
    let asn = v["autonomous_system_number"].as_u64().and_then(|n| u32::try_from(n).ok()).filter(|&n| n != 0);
    let as_org = v["autonomous_system_organization"].as_str().map(str::trim).filter(|o| !o.is_empty());
    Some(GeoRecord {
        country,
        registered_country: code(&v["registered_country"]["iso_code"]),
        represented_country: code(&v["represented_country"]["iso_code"]),
        subdivision,
        anonymous_proxy: v["traits"]["is_anonymous_proxy"].as_bool().unwrap_or(false),
        satellite_provider: v["traits"]["is_satellite_provider"].as_bool().unwrap_or(false),
        asn,
        as_org: as_org.map(Into::into),
    })
}

/// Checks `db` against `reader` for the first and last address of every network (the
/// loader's and the reader's own), the addresses just outside them, `random` addresses per
/// family, and the IPv6 forms of IPv4 addresses. Returns how many addresses were compared.
fn check_agreement(db: &Database, reader: &Reader<Vec<u8>>, how: Reference, random: usize) -> usize {
    assert_sorted_disjoint(db);
    let small = db.v4.len() + db.v6.len() < 5000;
    let answer = |ip| if small { model(db, ip) } else { bisect(db, ip) };
    let ipv6_db = reader.metadata().ip_version == 6;
    let mut v4: Vec<Ipv4Addr> = Vec::new();
    let mut v6: Vec<Ipv6Addr> = Vec::new();
    for (net, _) in &db.v4 {
        push_bounds_v4(&mut v4, u32::from(net.network()), u32::from(net.broadcast()));
    }
    for (net, _) in &db.v6 {
        push_bounds_v6(&mut v6, u128::from(net.network()), u128::from(net.broadcast()));
    }
    // The reader's own view of its networks, so a network the loader missed is found too.
    for item in reader.networks(WithinOptions::default()).unwrap() {
        let net = item.unwrap().network().unwrap();
        match (net.network(), net.broadcast()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => push_bounds_v4(&mut v4, a.into(), b.into()),
            (IpAddr::V6(a), IpAddr::V6(b)) => push_bounds_v6(&mut v6, a.into(), b.into()),
            _ => unreachable!(),
        }
    }
    let mut rng = XorShift::new(0xdecafbad);
    for _ in 0..random {
        let a = rng.next() as u32;
        v4.push(Ipv4Addr::from(a));
        v6.push(Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())));
        // Its IPv6 forms; the bounds of the alias networks they fall in were listed above.
        push_ipv6_forms(&mut v6, a);
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    let mut compared = 0;
    for a in v4 {
        let ip = IpAddr::V4(a);
        assert_eq!(answer(ip), reference(reader, ip, how).as_ref(), "{ip}");
        compared += 1;
    }
    if ipv6_db {
        for a in v6 {
            let ip = IpAddr::V6(a);
            assert_eq!(answer(ip), reference(reader, ip, how).as_ref(), "{ip}");
            compared += 1;
        }
    } else {
        assert!(db.v6.is_empty());
    }
    compared
}

fn push_bounds_v4(out: &mut Vec<Ipv4Addr>, first: u32, last: u32) {
    out.extend([first, last].map(Ipv4Addr::from));
    out.extend(first.checked_sub(1).map(Ipv4Addr::from));
    out.extend(last.checked_add(1).map(Ipv4Addr::from));
}

fn push_bounds_v6(out: &mut Vec<Ipv6Addr>, first: u128, last: u128) {
    out.extend([first, last].map(Ipv6Addr::from));
    out.extend(first.checked_sub(1).map(Ipv6Addr::from));
    out.extend(last.checked_add(1).map(Ipv6Addr::from));
}

/// The IPv4-compatible, IPv4-mapped, 6to4 and Teredo forms of the IPv4 address `a`.
fn push_ipv6_forms(out: &mut Vec<Ipv6Addr>, a: u32) {
    let a = u128::from(a);
    out.push(Ipv6Addr::from(a));
    out.push(Ipv6Addr::from(0xffff_0000_0000 | a));
    out.push(Ipv6Addr::from(0x2002u128 << 112 | a << 80));
    out.push(Ipv6Addr::from(0x2001_0000u128 << 96 | a << 64));
}

fn load_fixture(f: Fixture, schema: &MmdbSchema) -> (Database, Reader<Vec<u8>>, Vec<u8>) {
    let bytes = f.bytes();
    let db = mmdb::load_bytes("fixture", f.file_name(), bytes.clone(), schema).unwrap_or_else(|e| panic!("{f:?}: {e}"));
    let reader = Reader::from_source(bytes.clone()).unwrap();
    (db, reader, bytes)
}

fn assert_sorted_disjoint(db: &Database) {
    for w in db.v4.windows(2) {
        assert!(w[0].0.broadcast() < w[1].0.network(), "{:?}", w);
    }
    for w in db.v6.windows(2) {
        assert!(w[0].0.broadcast() < w[1].0.network(), "{:?}", w);
    }
    let indexes = db.v4.iter().map(|e| e.1).chain(db.v6.iter().map(|e| e.1));
    for i in indexes {
        assert!((i as usize) < db.records.len());
    }
}

// --- fixtures ---------------------------------------------------------------------------

#[test]
fn every_fixture_agrees_with_maxminddb() {
    for f in Fixture::ALL {
        let (db, reader, _) = load_fixture(f, &MmdbSchema::Auto);
        assert_sorted_disjoint(&db);
        let n = check_agreement(&db, &reader, Reference::Fields, 2000);
        assert!(n > 2000, "{f:?}: only {n} addresses compared");
    }
}

#[test]
fn every_fixture_answers_its_expectation_table() {
    for f in Fixture::ALL {
        let (db, reader, _) = load_fixture(f, &MmdbSchema::Auto);
        for e in f.expectations() {
            let ip: IpAddr = e.ip.parse().unwrap();
            let want = expected_record(&e);
            assert_eq!(model(&db, ip), want.as_ref(), "{f:?} {}", e.ip);
            // The table itself must describe what maxminddb answers.
            assert_eq!(reference(&reader, ip, Reference::Fields), want, "{f:?} {}", e.ip);
        }
    }
}

/// Every fixture, streamed the way geogate serves it (alias subtrees replayed from the IPv4
/// networks, not walked), answers what maxminddb answers at every expectation address and
/// at the IPv4-compatible, IPv4-mapped, 6to4 and Teredo forms of each IPv4 one.
#[test]
fn every_fixture_streamed_agrees_with_maxminddb() {
    for f in Fixture::ALL {
        let (db, reader, bytes) = load_fixture(f, &MmdbSchema::Auto);
        let table = table_of(&bytes);
        assert_same_answers(&table, &table_of_collected(&db), &format!("{f:?}"));
        let mut ips: Vec<IpAddr> = Vec::new();
        for e in f.expectations() {
            let ip: IpAddr = e.ip.parse().unwrap();
            ips.push(ip);
            if let (IpAddr::V4(a), true) = (ip, f.is_ipv6()) {
                let mut forms = Vec::new();
                push_ipv6_forms(&mut forms, u32::from(a));
                ips.extend(forms.into_iter().filter(|a| a.to_ipv4_mapped().is_none()).map(IpAddr::V6));
            }
        }
        // IPv4-mapped addresses are canonicalised to IPv4 by design; the reader does not.
        for ip in ips.into_iter().filter(|ip| !matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some())) {
            let got = table.lookup(ip);
            assert_eq!(got.source.map(|_| got.geo), reference(&reader, ip, Reference::Fields).as_ref(), "{f:?} {ip}");
        }
    }
}

#[test]
fn provenance_describes_the_file() {
    use sha2::Digest;
    for f in Fixture::ALL {
        let (db, _, bytes) = load_fixture(f, &MmdbSchema::Auto);
        let p = &db.provenance;
        assert_eq!(p.name, "fixture");
        assert_eq!(p.kind, "mmdb");
        assert_eq!(p.origin, f.file_name());
        let want_schema = if f.is_geoip2() { "geoip2" } else { "flat" };
        assert_eq!(p.schema, want_schema, "{f:?}");
        assert!(p.database_type.as_deref().unwrap().starts_with("Geogate-Test-"));
        assert_eq!(p.build_epoch, Some(BUILD_EPOCH));
        // Every network counted once: not the `::/96` copies of the IPv4 networks in an IPv6
        // tree, not the three alias subtrees that lead back to them.
        let (v4, v6) = (db.v4.len(), db.v6.len());
        let copies = if f.has_aliases() { 4 } else { 1 };
        let want = match f {
            Fixture::NoIpv4Subtree => (0, v6),
            Fixture::FlatCountryV4Only => (v4, 0),
            _ => (v4, v6 - v4 * copies),
        };
        assert_eq!((p.networks_v4, p.networks_v6), want, "{f:?}");
        assert_eq!(p.bytes, bytes.len() as u64);
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(p.sha256, sha);
    }
}

/// `::/96` (the IPv4 subtree seen from IPv6) is kept once: the layer notes it as an alias block
/// and holds no IPv6 ranges there, a table of databases alone answers it from its IPv4 trie,
/// and a later list with IPv4 entries (which must not reach `::a.b.c.d`, as before) makes the
/// table hold a copy of what the databases answered there instead.
#[test]
fn the_ipv4_subtree_is_kept_once_and_a_later_ipv4_list_does_not_reach_it() {
    for f in [Fixture::FlatCountry, Fixture::FlatCountryNoAliases] {
        let (_, reader, bytes) = load_fixture(f, &MmdbSchema::Auto);
        let (layer, _) = mmdb::load_layer_bytes("t", "t.mmdb", &bytes, None, &MmdbSchema::Auto).unwrap();
        assert_eq!(layer.aliases().first(), Some(&(0, 96)), "{f:?}");
        let alone = table_of(&bytes);
        assert!(alone.redirects().contains(&(0, 96)), "{f:?}: {:?}", alone.redirects());

        let mut builder = TableBuilder::new();
        builder.add_layer(0, &layer);
        builder.add_list(1, "listed", None, &["5.0.0.0/8".parse().unwrap()], &[]).unwrap();
        let listed = builder.build().unwrap();
        assert!(!listed.redirects().contains(&(0, 96)), "{f:?}: copied, not redirected");
        let v4: IpAddr = "5.8.1.1".parse().unwrap();
        let v6: IpAddr = "::5.8.1.1".parse().unwrap();
        assert!(!listed.lookup(v4).lists.is_empty(), "{f:?}: the list covers {v4}");
        for table in [&alone, &listed] {
            let got = table.lookup(v6);
            assert!(got.lists.is_empty(), "{f:?}: an IPv4 list reached {v6}");
            assert_eq!(got.source.map(|_| got.geo), reference(&reader, v6, Reference::Fields).as_ref(), "{f:?}");
        }
    }
}

/// A database written with MaxMind's alias nodes and the same networks written without them
/// report the same network counts, so switching between the two is not a "drop".
#[test]
fn alias_nodes_do_not_change_network_counts() {
    for (with, without) in
        [(Fixture::Geoip2City, Fixture::Geoip2CityNoAliases), (Fixture::FlatCountry, Fixture::FlatCountryNoAliases)]
    {
        let (a, _, _) = load_fixture(with, &MmdbSchema::Auto);
        let (b, _, _) = load_fixture(without, &MmdbSchema::Auto);
        assert_eq!(
            (a.provenance.networks_v4, a.provenance.networks_v6),
            (b.provenance.networks_v4, b.provenance.networks_v6),
            "{with:?} vs {without:?}"
        );
        assert!(a.v6.len() > b.v6.len(), "{with:?}: the aliases still answer (replayed from IPv4)");
    }
}

#[test]
fn aliases_and_family_shapes() {
    let (with, _, _) = load_fixture(Fixture::FlatCountry, &MmdbSchema::Auto);
    let (without, _, _) = load_fixture(Fixture::FlatCountryNoAliases, &MmdbSchema::Auto);
    let (v4only, _, _) = load_fixture(Fixture::FlatCountryV4Only, &MmdbSchema::Auto);
    assert_eq!(with.v4, without.v4);
    assert_eq!(with.records, without.records);
    // IPv4 networks appear in v6 as ::a.b.c.d, plus three alias copies when aliased.
    let v6_native = without.v6.len() - without.v4.len();
    assert_eq!(with.v6.len(), v6_native + 4 * with.v4.len());
    assert!(v4only.v6.is_empty());
    let as_pairs = |db: &Database| -> Vec<(String, Option<CountryCode>)> {
        db.v4.iter().map(|(n, i)| (n.to_string(), db.records[*i as usize].country)).collect()
    };
    assert_eq!(as_pairs(&with), as_pairs(&v4only));

    let (none, _, _) = load_fixture(Fixture::NoIpv4Subtree, &MmdbSchema::Auto);
    assert_eq!(none.v4.len(), 1);
    assert_eq!(none.v4[0].0.to_string(), "0.0.0.0/0");
}

#[test]
fn records_are_interned() {
    let (db, _, _) = load_fixture(Fixture::FlatCountry, &MmdbSchema::Auto);
    // Eight countries used by the generated networks plus RU/UA/BY/DE/US/invalid.
    assert!(db.records.len() <= 9, "{:?}", db.records);
    for (i, r) in db.records.iter().enumerate() {
        assert_eq!(db.records.iter().position(|x| x == r), Some(i), "duplicate record");
    }
}

#[test]
fn custom_paths_match_the_builtin_schemas() {
    let geoip2_paths = FieldPaths {
        country: Some("country.iso_code".into()),
        registered_country: Some("registered_country.iso_code".into()),
        represented_country: Some("represented_country.iso_code".into()),
        subdivision: Some("subdivisions.-1.iso_code".into()),
        anonymous_proxy: Some("traits.is_anonymous_proxy".into()),
        satellite_provider: Some("traits.is_satellite_provider".into()),
        asn: Some("autonomous_system_number".into()),
        as_org: Some("autonomous_system_organization".into()),
    };
    let (auto, _, _) = load_fixture(Fixture::Geoip2City, &MmdbSchema::Auto);
    let (custom, _, _) = load_fixture(Fixture::Geoip2City, &MmdbSchema::Custom(geoip2_paths));
    assert_eq!(custom.provenance.schema, "custom");
    assert_eq!(resolved(&auto), resolved(&custom));

    let flat_paths = FieldPaths { country: Some("country_code".into()), ..FieldPaths::default() };
    let (auto, _, _) = load_fixture(Fixture::FlatCountry, &MmdbSchema::Auto);
    let (flat, _, _) = load_fixture(Fixture::FlatCountry, &MmdbSchema::Flat);
    let (custom, _, _) = load_fixture(Fixture::FlatCountry, &MmdbSchema::Custom(flat_paths));
    assert_eq!(resolved(&auto), resolved(&flat));
    assert_eq!(resolved(&auto), resolved(&custom));
    let (geoip2, _, _) = load_fixture(Fixture::Geoip2City, &MmdbSchema::GeoIp2);
    assert_eq!(geoip2.provenance.schema, "geoip2");
}

/// Network → record pairs, independent of record numbering.
fn resolved(db: &Database) -> Vec<(String, GeoRecord)> {
    let v4 = db.v4.iter().map(|(n, i)| (n.to_string(), db.records[*i as usize].clone()));
    let v6 = db.v6.iter().map(|(n, i)| (n.to_string(), db.records[*i as usize].clone()));
    v4.chain(v6).collect()
}

#[test]
fn wrong_schema_is_refused_with_a_hint() {
    for (f, schema) in [
        (Fixture::FlatCountry, MmdbSchema::GeoIp2),
        (Fixture::Geoip2City, MmdbSchema::Flat),
        (
            Fixture::FlatCountry,
            MmdbSchema::Custom(FieldPaths { country: Some("location.cc".into()), ..FieldPaths::default() }),
        ),
    ] {
        let err = mmdb::load_bytes("x", "x.mmdb", f.bytes(), &schema).unwrap_err();
        assert!(matches!(err, SourceError::NoGeoData { .. }), "{f:?}: {err}");
        assert!(err.to_string().contains("x.mmdb") && err.to_string().contains("schema"), "{err}");
    }
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::Geoip2City.write_in(dir.path());
    let db = mmdb::load("city", &path, &MmdbSchema::Auto).unwrap();
    assert_eq!(db.provenance.origin, path.display().to_string());
    let missing = dir.path().join("nope.mmdb");
    let err = mmdb::load("city", &missing, &MmdbSchema::Auto).unwrap_err();
    assert!(matches!(err, SourceError::Io { .. }));
    assert!(err.to_string().contains("nope.mmdb"), "{err}");
}

// --- hostile input ----------------------------------------------------------------------

/// Loads `bytes`, insisting on no panic (caught or not) and an error that names the file.
fn load_hostile(bytes: Vec<u8>, what: &str) -> Result<Database, SourceError> {
    let result = mmdb::load_bytes("bad", "bad.mmdb", bytes, &MmdbSchema::Auto);
    if let Err(e) = &result {
        assert!(!matches!(e, SourceError::Panicked { .. }), "{what}: {e}");
        assert!(e.to_string().starts_with("bad.mmdb"), "{what}: {e}");
    }
    result
}

#[test]
fn empty_and_random_files_are_refused() {
    assert!(matches!(load_hostile(Vec::new(), "empty"), Err(SourceError::Empty { .. })));
    let mut rng = XorShift::new(42);
    for len in [1usize, 13, 14, 100, 4096, 65_537] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(load_hostile(bytes, "random").is_err());
    }
    // Random bytes that end with a metadata marker: the reader must get past the marker.
    let mut bytes: Vec<u8> = (0..1000).map(|_| rng.next() as u8).collect();
    bytes.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    assert!(load_hostile(bytes, "marker only").is_err());
}

#[test]
fn truncated_files_are_refused() {
    for f in [Fixture::Geoip2City, Fixture::FlatCountryV4Only] {
        let bytes = f.bytes();
        let mut cuts: Vec<usize> = (0..50).map(|i| bytes.len() * i / 50).collect();
        cuts.extend([1, bytes.len() - 1, bytes.len() - 14, bytes.len() - 20]);
        for cut in cuts {
            let r = load_hostile(bytes[..cut].to_vec(), &format!("{f:?} cut at {cut}"));
            assert!(r.is_err(), "{f:?} truncated at {cut} loaded");
        }
    }
}

#[test]
fn flipped_bits_never_panic() {
    let mut refused = 0;
    let mut loaded = 0;
    for f in [Fixture::Geoip2City, Fixture::FlatCountryV4Only] {
        let bytes = f.bytes();
        let mut rng = XorShift::new(7);
        // Every byte of the tree start, the separator and the metadata, then a spread.
        let tail = bytes.len().saturating_sub(400)..bytes.len();
        let spread: Vec<usize> = (0..1500).map(|_| (rng.next() % bytes.len() as u64) as usize).collect();
        let positions = (0..400.min(bytes.len())).chain(tail).chain(spread);
        for pos in positions {
            let mut bad = bytes.clone();
            bad[pos] ^= 1 << (rng.next() % 8);
            match load_hostile(bad, &format!("{f:?} flip at {pos}")) {
                Ok(_) => loaded += 1,
                Err(_) => refused += 1,
            }
        }
    }
    // Many flips land in names or unused data and still give a valid database.
    assert!(refused > 100 && loaded > 100, "refused {refused}, loaded {loaded}");
}

#[test]
fn shared_subtrees_are_refused_not_walked_forever() {
    // A chain of 32 nodes for 0.0.0.0/32, then every right child made equal to the left:
    // lookups still work, but the tree now has 2^32 paths.
    let mut writer = mmdb_writer::Writer::builder("Dag")
        .ip_version(mmdb_writer::IpVersion::V4)
        .record_size(mmdb_writer::RecordSize::Bits24)
        .build();
    let net: ipnet::IpNet = "0.0.0.0/32".parse().unwrap();
    writer.insert(net, &serde_json::json!({"country_code": "RU"})).unwrap();
    let mut bytes = writer.to_bytes().unwrap();
    let nodes = Reader::from_source(bytes.clone()).unwrap().metadata().node_count as usize;
    for node in 0..nodes {
        let (left, right) = (node * 6, node * 6 + 3);
        let left_child = bytes[left..left + 3].to_vec();
        bytes[right..right + 3].copy_from_slice(&left_child);
    }
    let reader = Reader::from_source(bytes.clone()).unwrap();
    assert!(reader.lookup("255.1.2.3".parse().unwrap()).unwrap().has_data());
    let start = std::time::Instant::now();
    let err = load_hostile(bytes, "dag").unwrap_err();
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn database_without_networks_is_refused() {
    let writer = mmdb_writer::Writer::new("Empty");
    let bytes = writer.to_bytes().unwrap();
    let err = load_hostile(bytes, "no networks").unwrap_err();
    assert!(matches!(err, SourceError::NoNetworks { .. }), "{err}");
}

// --- lists ------------------------------------------------------------------------------

#[test]
fn list_file_errors_name_file_line_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocked.txt");
    std::fs::write(
        &path,
        "\u{feff}# blocked\r\n10.0.0.0/8\r\n10.0.0.1/8\r\n127.1\r\n2001:db8::/32 # doc\r\nfe80::1%eth0\r\n",
    )
    .unwrap();
    let err = cidr::load("blocked", &path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    for want in [
        "3 bad lines",
        "line 3: \"10.0.0.1/8\"",
        "did you mean 10.0.0.0/8?",
        "line 4: \"127.1\"",
        "line 6: \"fe80::1%eth0\"",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let SourceError::List { errors, .. } = err else {
        panic!("not a list error");
    };
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3, 4, 6]);
}

#[test]
fn list_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.txt");
    std::fs::write(&path, "10.0.0.0/8\n::ffff:192.0.2.0/120\n2001:db8::/32 # doc\n").unwrap();
    let list = cidr::load("ok", &path).unwrap();
    assert_eq!(list.name, "ok");
    let v4: Vec<String> = list.v4.iter().map(ToString::to_string).collect();
    assert_eq!(v4, ["10.0.0.0/8", "192.0.2.0/24"]);
    assert_eq!(list.v6.len(), 1);
}

#[test]
fn many_bad_lines_are_all_collected() {
    let text: String = (0..250).map(|i| format!("bad{i}\n")).collect();
    let err = cidr::parse("l", "l.txt", &text).unwrap_err();
    let SourceError::List { errors, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(errors.len(), 250);
    assert!(err.to_string().ends_with("and 150 more"), "{err}");
}

// --- data outside the repository (required in CI, skipped elsewhere when absent) ----------

/// MaxMind's test databases beside the checkout (`../shared`), or where
/// `GEOGATE_MAXMIND_TEST_DATA` points. CI (`CI` set, non-empty) has them, so there their
/// absence fails the test instead of silently passing it; on a clean clone elsewhere the
/// test is skipped, saying so.
fn maxmind_test_data() -> Option<PathBuf> {
    let dir = std::env::var_os("GEOGATE_MAXMIND_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/geoip/maxmind-test-data"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "CI is set but the MaxMind test data is missing: {} is not a directory (check out ../shared \
         beside the repository, or point GEOGATE_MAXMIND_TEST_DATA at maxmind-test-data)",
        dir.display()
    );
    // Straight to stderr, past the test harness's capture: a skip must show in `cargo test`.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: ../shared absent (no MaxMind test data at {}; CI is not set)",
        dir.display()
    );
    None
}

/// A custom schema whose country path is the whole record, so any database with data loads
/// (every record then counts as invalid and is empty).
fn presence_schema() -> MmdbSchema {
    MmdbSchema::Custom(FieldPaths { country: Some(String::new()), ..FieldPaths::default() })
}

fn mmdb_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            mmdb_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "mmdb") {
            out.push(p);
        }
    }
}

#[test]
fn maxmind_bad_data_is_refused_or_loads_without_panic() {
    let Some(dir) = maxmind_test_data() else {
        return;
    };
    let mut files = Vec::new();
    mmdb_files(&dir.join("bad-data"), &mut files);
    assert!(!files.is_empty());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy();
        for (label, schema) in [("auto", MmdbSchema::Auto), ("any record", presence_schema())] {
            match mmdb::load("bad", &path, &schema) {
                Ok(db) => {
                    eprintln!("{name} ({label}): loaded ({} v4, {} v6)", db.v4.len(), db.v6.len());
                }
                Err(e) => {
                    assert!(!matches!(e, SourceError::Panicked { .. }), "{e}");
                    assert!(e.to_string().contains(&*name), "{e}");
                    eprintln!("{name} ({label}): refused: {e}");
                }
            }
        }
    }
}

#[test]
fn maxmind_test_data_agrees_with_maxminddb() {
    let Some(dir) = maxmind_test_data() else {
        return;
    };
    let mut files = Vec::new();
    mmdb_files(&dir.join("test-data"), &mut files);
    let geo_prefixes = [
        "GeoIP2-City",
        "GeoIP2-Country",
        "GeoLite2-City",
        "GeoLite2-Country",
        "GeoIP2-Enterprise",
        "GeoIP2-Precision-Enterprise",
    ];
    let mut checked = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (schema, how) = if geo_prefixes.iter().any(|p| name.starts_with(p)) {
            (MmdbSchema::Auto, Reference::Fields)
        } else {
            (presence_schema(), Reference::PresenceOnly)
        };
        let db = match mmdb::load("test", &path, &schema) {
            Ok(db) => db,
            Err(e) => {
                assert!(!matches!(e, SourceError::Panicked { .. }), "{e}");
                eprintln!("{name}: refused: {e}");
                continue;
            }
        };
        let Ok(reader) = Reader::open_readfile(&path) else {
            continue;
        };
        let n = check_agreement(&db, &reader, how, 500);
        eprintln!(
            "{name}: {} v4, {} v6, {} records, schema {}, {n} addresses agree",
            db.v4.len(),
            db.v6.len(),
            db.records.len(),
            db.provenance.schema
        );
        checked.push(name);
    }
    for must in [
        "GeoIP2-City-Test.mmdb",
        "GeoIP2-Country-Test.mmdb",
        "GeoLite2-Country-Test.mmdb",
        "MaxMind-DB-no-ipv4-search-tree.mmdb",
        "MaxMind-DB-test-decoder.mmdb",
        "MaxMind-DB-test-metadata-pointers.mmdb",
        "MaxMind-DB-test-nested.mmdb",
        "MaxMind-DB-test-pointer-decoder.mmdb",
        "MaxMind-DB-string-value-entries.mmdb",
    ]
    .into_iter()
    .map(String::from)
    .chain(
        ["ipv4", "ipv6", "mixed"]
            .iter()
            .flat_map(|family| [24, 28, 32].map(|bits| format!("MaxMind-DB-test-{family}-{bits}.mmdb"))),
    ) {
        assert!(checked.contains(&must), "{must} was not checked");
    }
}

// --- the shipped database -----------------------------------------------------------------

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb")
}

/// `cargo test --release --test sources -- --ignored --nocapture shipped_database_load_time`
#[test]
#[ignore = "timing; run in release mode"]
fn shipped_database_load_time() {
    let path = shipped();
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let db = mmdb::load("shipped", &path, &MmdbSchema::Auto).unwrap();
        let took = start.elapsed();
        best = best.min(took);
        eprintln!(
            "loaded {} v4 + {} v6 networks, {} records, schema {} in {took:?}",
            db.v4.len(),
            db.v6.len(),
            db.records.len(),
            db.provenance.schema
        );
    }
    eprintln!("best of 5: {best:?}");
}

#[test]
fn shipped_database_agrees_with_maxminddb_at_random_addresses() {
    let path = shipped();
    let db = mmdb::load("shipped", &path, &MmdbSchema::Auto).unwrap();
    let reader = Reader::open_readfile(&path).unwrap();
    assert_sorted_disjoint(&db);
    let mut rng = XorShift::new(99);
    for k in 0..20_000u32 {
        let ip = match k % 3 {
            0 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
            1 => IpAddr::V6(Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()))),
            // Inside a random IPv6 network, where random addresses rarely land.
            _ => {
                let (net, _) = db.v6[(rng.next() % db.v6.len() as u64) as usize];
                let host = (u128::from(rng.next()) << 64 | u128::from(rng.next())) & u128::from(net.hostmask());
                IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) | host))
            }
        };
        assert_eq!(bisect(&db, ip), reference(&reader, ip, Reference::Fields).as_ref(), "{ip}");
    }
}

// --- full-size databases in both schemas, through the compiled table -------------------------

/// The compiled table of a database file (one database source, no lists), built the way a
/// running geogate builds it: streamed into a `SourceLayer`, then layered.
fn table_of(bytes: &[u8]) -> GeoTable {
    let (layer, _) = mmdb::load_layer_bytes("t", "t.mmdb", bytes, None, &MmdbSchema::Auto).unwrap();
    let mut builder = TableBuilder::new();
    builder.add_layer(0, &layer);
    builder.build().unwrap()
}

/// The same table built from every network collected first (`mmdb::load`): the two paths
/// must agree range for range.
/// Both tables answer the same at every address: their ranges, neighbours with equal
/// answers joined, are the same in both families. (The streamed table answers alias blocks
/// from its IPv4 trie where the collected one holds copies, so their sizes differ.)
fn assert_same_answers(streamed: &GeoTable, collected: &GeoTable, what: &str) {
    fn runs<K: PartialEq + Copy>(t: &GeoTable, segments: impl Iterator<Item = (K, K, u32)>) -> Vec<(K, K, String)> {
        let mut out: Vec<(K, K, String)> = Vec::new();
        let mut last_id = None;
        for (first, last, id) in segments {
            if last_id == Some(id) {
                out.last_mut().expect("a run is open").1 = last;
                continue;
            }
            let answer = format!("{:?}", t.answer(id));
            match out.last_mut() {
                Some(run) if run.2 == answer => run.1 = last,
                _ => out.push((first, last, answer)),
            }
            last_id = Some(id);
        }
        out
    }
    assert_eq!(streamed.stats().ranges_v4, collected.stats().ranges_v4, "{what}");
    assert_eq!(streamed.stats().answers, collected.stats().answers, "{what}");
    let (a, b) = (runs(streamed, streamed.segments_v4()), runs(collected, collected.segments_v4()));
    assert!(a == b, "{what}: IPv4 ranges differ ({} against {} runs)", a.len(), b.len());
    let (a, b) = (runs(streamed, streamed.segments_v6()), runs(collected, collected.segments_v6()));
    assert!(a == b, "{what}: IPv6 ranges differ ({} against {} runs)", a.len(), b.len());
    assert!(streamed.stats().ranges_v6 <= collected.stats().ranges_v6, "{what}");
}

fn table_of_collected(db: &Database) -> GeoTable {
    let mut builder = TableBuilder::new();
    builder.add_database(0, &db.records, &db.v4, &db.v6).unwrap();
    builder.build().unwrap()
}

/// Compares the compiled table of `db` with `reader` at the first and last address of every
/// network the reader holds, one address inside each, the addresses just outside, and the
/// IPv6 forms of every tenth IPv4 network's first address. Returns how many addresses were
/// compared.
fn table_agrees_with_reader(db: &Database, bytes: &[u8], reader: &Reader<Vec<u8>>) -> usize {
    let table = table_of(bytes);
    assert_same_answers(&table, &table_of_collected(db), "streamed and collected tables");
    let mut rng = XorShift::new(7);
    let mut compared = 0;
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (k, item) in reader.networks(WithinOptions::default()).unwrap().enumerate() {
        let net = item.unwrap().network().unwrap();
        let r = u128::from(rng.next()) << 64 | u128::from(rng.next());
        match (net.network(), net.broadcast()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let (first, last) = (u32::from(a), u32::from(b));
                push_bounds_v4(&mut v4, first, last);
                v4.push(Ipv4Addr::from(first + (r % (u128::from(last - first) + 1)) as u32));
                if k % 10 == 0 {
                    push_ipv6_forms(&mut v6, first);
                }
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let (first, last) = (u128::from(a), u128::from(b));
                push_bounds_v6(&mut v6, first, last);
                v6.push(Ipv6Addr::from((last - first).checked_add(1).map_or(r, |span| first + r % span)));
            }
            _ => unreachable!(),
        }
        // IPv4-mapped addresses are canonicalised to IPv4 by design; the reader does not.
        let v6_unmapped = v6.drain(..).filter(|a| a.to_ipv4_mapped().is_none()).map(IpAddr::V6);
        for ip in v4.drain(..).map(IpAddr::V4).chain(v6_unmapped) {
            let want = reference(reader, ip, Reference::Fields);
            let got = table.lookup(ip);
            assert_eq!(got.source.map(|_| got.geo), want.as_ref(), "{ip}");
            compared += 1;
        }
    }
    compared
}

/// Every network of the shipped database with a GeoIP2-City-shaped record instead of its
/// flat one, written by `mmdb-writer` with the usual IPv4 aliases: a full-size database in
/// the other schema. The record is derived from the network's country and its position, so
/// every GeoIP2 field geogate reads occurs across the file: registered and represented
/// countries that differ from the country, records with no country, the occupied Ukrainian
/// regions as subdivisions, two-level subdivisions (the most specific is the last), and the
/// anonymous-proxy and satellite traits. The shipped database's own networks inside the alias
/// ranges (6to4 `2002::/16`, Teredo `2001::/32`, `::ffff:0:0/96`) are left out: there the
/// aliases of the IPv4 data answer, as in MaxMind's own databases.
fn full_size_geoip2(shipped: &Reader<Vec<u8>>) -> Vec<u8> {
    let cc = |c: &str| json!({"iso_code": c, "names": {"en": format!("Country {c}")}});
    let subs = |codes: &[&str]| -> Value { codes.iter().map(|c| json!({"iso_code": c})).collect() };
    full_size_from(shipped, "Geogate-Test-Full-City", |k, country| {
        let mut record = json!({"country": cc(country), "registered_country": cc(country)});
        match k % 12 {
            0 => record["registered_country"] = cc("US"),
            1 if country == "UA" => record["subdivisions"] = subs(&[["43", "40", "14", "09"][k / 12 % 4]]),
            1 | 2 => record["subdivisions"] = subs(&["A", ["B1", "C22", "9"][k / 12 % 3]]),
            3 if k % 7 == 0 => record["represented_country"] = cc("DE"),
            4 if k % 5 == 0 => record = json!({"registered_country": cc(country)}),
            5 if k % 11 == 0 => record["traits"] = json!({"is_anonymous_proxy": true}),
            6 if k % 13 == 0 => record["traits"] = json!({"is_satellite_provider": true}),
            _ => {}
        }
        record
    })
}

/// A full-size database over the shipped database's networks (the alias blocks left to the
/// writer): `record(k, country)` is the record of the `k`-th network, whose shipped country is
/// `country` (`ZZ` if none).
fn full_size_from(
    shipped: &Reader<Vec<u8>>,
    database_type: &str,
    mut record: impl FnMut(usize, &str) -> Value,
) -> Vec<u8> {
    let mut writer = mmdb_writer::Writer::builder(database_type)
        .ip_version(mmdb_writer::IpVersion::V6)
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Enabled)
        .build();
    let aliased: Vec<ipnet::IpNet> =
        ["2002::/16", "2001::/32", "::ffff:0:0/96"].iter().map(|n| n.parse().unwrap()).collect();
    for (k, item) in shipped.networks(WithinOptions::default()).unwrap().enumerate() {
        let item = item.unwrap();
        let net = item.network().unwrap();
        let flat: Value = item.decode().unwrap().unwrap();
        let value = record(k, flat["country_code"].as_str().unwrap_or("ZZ"));
        let net = ipnet::IpNet::new(net.network(), net.prefix()).unwrap();
        if aliased.iter().any(|alias| alias.contains(&net) || net.contains(alias)) {
            continue;
        }
        writer.insert(net, &value).unwrap();
    }
    writer.to_bytes().unwrap()
}

/// With `GEOGATE_FULL_CITY_OUT=FILE` set, also writes the generated GeoIP2 database to FILE,
/// for the by-hand check of `geogate lookup` against `../shared/bench/mmdb_tool.py`.
#[test]
fn full_size_databases_in_both_schemas_agree_with_maxminddb_through_the_table() {
    let flat_reader = Reader::open_readfile(shipped()).unwrap();
    let flat = mmdb::load("shipped", &shipped(), &MmdbSchema::Auto).unwrap();
    let flat_bytes = std::fs::read(shipped()).unwrap();
    let n = table_agrees_with_reader(&flat, &flat_bytes, &flat_reader);
    assert!(n > 4_000_000, "flat: only {n} addresses compared");
    eprintln!("flat: {n} addresses agree");

    let bytes = full_size_geoip2(&flat_reader);
    if let Some(out) = std::env::var_os("GEOGATE_FULL_CITY_OUT") {
        std::fs::write(out, &bytes).unwrap();
    }
    let city = mmdb::load_bytes("city", "full-size city", bytes.clone(), &MmdbSchema::Auto).unwrap();
    assert_eq!(city.provenance.schema, "geoip2");
    assert_eq!(city.v4.len(), flat.v4.len());
    let city_reader = Reader::from_source(bytes.clone()).unwrap();
    let n = table_agrees_with_reader(&city, &bytes, &city_reader);
    assert!(n > 4_000_000, "geoip2: only {n} addresses compared");
    eprintln!("geoip2: {n} addresses agree");
    // Every GeoIP2 field the loader reads took part.
    let records = &city.records;
    let sub = |code: &str| records.iter().any(|r| r.subdivision.as_deref() == Some(code));
    assert!(["UA-43", "UA-40", "UA-14", "UA-09"].into_iter().all(sub));
    assert!(records.iter().any(|r| r.subdivision.as_deref().is_some_and(|s| s.ends_with("-C22"))));
    assert!(records.iter().any(|r| r.country.is_none() && r.registered_country.is_some()));
    assert!(records.iter().any(|r| r.represented_country.is_some()));
    assert!(records.iter().any(|r| r.anonymous_proxy) && records.iter().any(|r| r.satellite_provider));
    assert!(records.iter().any(|r| r.country.is_some() && r.registered_country != r.country));
}

/// A full-size ASN-schema database (GeoLite2-ASN's fields) over the shipped database's
/// networks, some with region names in ip-location-db's flat city form, so that every field
/// this step added is checked against `maxminddb` at full size.
fn full_size_asn(shipped: &Reader<Vec<u8>>) -> Vec<u8> {
    full_size_from(shipped, "Geogate-Test-Full-ASN", |k, country| match k % 5 {
        0 => json!({"autonomous_system_number": 0, "autonomous_system_organization": ""}),
        1 => {
            let region = ["Crimea", "Donetsk", "Kyïv", " "][k / 5 % 4];
            json!({"country_code": country, "state1": region})
        }
        _ => json!({
            "autonomous_system_number": (k % 70_000 + 1) as u64,
            "autonomous_system_organization": format!("Org {} LLC", k % 5_000),
        }),
    })
}

#[test]
fn full_size_asn_database_agrees_with_maxminddb_through_the_table() {
    let flat_reader = Reader::open_readfile(shipped()).unwrap();
    let bytes = full_size_asn(&flat_reader);
    let asn = mmdb::load_bytes("asn", "full-size asn", bytes.clone(), &MmdbSchema::Auto).unwrap();
    assert_eq!(asn.provenance.schema, "flat+asn");
    let reader = Reader::from_source(bytes.clone()).unwrap();
    let n = table_agrees_with_reader(&asn, &bytes, &reader);
    assert!(n > 4_000_000, "asn: only {n} addresses compared");
    let records = &asn.records;
    assert!(records.iter().any(|r| r.asn.is_some() && r.as_org.is_some()));
    assert!(records.iter().any(|r| r.subdivision.as_deref() == Some("UA:Kyïv")));
    assert!(records.iter().any(|r| r.country.is_some() && r.subdivision.is_none()), "a blank region name is none");
    assert!(records.iter().any(GeoRecord::is_empty), "ASN 0 with no organisation says nothing");
    eprintln!("asn: {n} addresses agree");
}

/// A flat city database naming its regions without codes, as ip-location-db's do.
fn named_regions_db() -> Vec<u8> {
    let mut writer = mmdb_writer::Writer::builder("Geogate-Test-Named-Regions")
        .ip_version(mmdb_writer::IpVersion::V6)
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Disabled)
        .build();
    for (net, cc, region) in [
        ("2.56.24.0/25", "UA", "Crimea"),
        ("5.3.41.0/24", "RU", "Crimea"),
        ("5.3.42.0/24", "RU", "Moscow"),
        ("5.3.43.0/24", "RU", "Moscow Oblast"),
        ("31.128.0.0/16", "UA", "Kyïv"),
    ] {
        let net: ipnet::IpNet = net.parse().unwrap();
        writer.insert(net, &json!({"country_code": cc, "state1": region, "city": "x"})).unwrap();
    }
    writer.to_bytes().unwrap()
}

/// Compiles `rules` over the named-regions database with `region_names` and answers `ips`'
/// subdivisions (`-` for none).
fn regions_through_a_compile(dir: &Path, region_names: &str, rules: &str, ips: &[&str]) -> (Vec<String>, usize) {
    std::fs::write(dir.join("regions.mmdb"), named_regions_db()).unwrap();
    let text = format!(
        "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:1\"\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:2\"\n\
         [[source]]\nname = \"city\"\ntype = \"mmdb\"\npath = \"regions.mmdb\"\nregion_names = \"{region_names}\"\n{rules}"
    );
    let config = geogate::config::parse(&text, Some(&dir.join("geogate.toml"))).unwrap();
    let snapshot = geogate::snapshot::compile(std::sync::Arc::new(config), 1).unwrap();
    let subs = ips
        .iter()
        .map(|ip| snapshot.table.lookup(ip.parse().unwrap()).geo.subdivision.as_deref().unwrap_or("-").to_owned())
        .collect();
    (subs, snapshot.table.stats().ranges_v4)
}

#[test]
fn only_the_region_names_rules_name_are_kept_unless_all_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["2.56.24.1", "5.3.41.1", "5.3.42.1", "5.3.43.1", "31.128.0.1"];
    let rule = "[[rule]]\nname = \"occupied\"\naction = \"block\"\nsubdivisions = [\"UA:crimea\", \"RU:Crimea\", \"UA:Kyiv\", \"UA-43\"]\n";
    let (named, named_ranges) = regions_through_a_compile(dir.path(), "named", rule, &ips);
    assert_eq!(named, ["UA:Crimea", "RU:Crimea", "-", "-", "UA:Kyïv"]);
    let (all, all_ranges) = regions_through_a_compile(dir.path(), "all", rule, &ips);
    assert_eq!(all, ["UA:Crimea", "RU:Crimea", "RU:Moscow", "RU:Moscow Oblast", "UA:Kyïv"]);
    // The Moscow networks, no longer told apart, merge into one range.
    assert!(named_ranges < all_ranges, "{named_ranges} vs {all_ranges}");
    let (none, _) = regions_through_a_compile(dir.path(), "named", "", &ips);
    assert_eq!(none, ["-", "-", "-", "-", "-"]);
}
