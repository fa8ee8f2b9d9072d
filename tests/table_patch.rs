#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A reload that patches the table, at full size: the shipped database with about one
//! network in a hundred pointed at another record (as an update scatters its changes),
//! under a CIDR list of both families. The patched table must store exactly the ranges and
//! answers of a table built whole from the same files, and patched back, those of the first.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use geogate::geo::OwnedAnswer;
use geogate::snapshot::{self, Snapshot, TableOrigin};
use geogate::table::GeoTable;
use maxminddb::Reader;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb")
}

/// `bytes` (a MaxMind DB) with every `every`-th search-tree record that points at data
/// pointed at the data record `stride` further along the distinct ones instead.
fn repointed(bytes: &[u8], every: usize, stride: usize) -> Vec<u8> {
    let reader = Reader::from_source(bytes.to_vec()).unwrap();
    let meta = reader.metadata();
    let (nodes, bits) = (meta.node_count as usize, meta.record_size as usize);
    let width = bits * 2 / 8;
    let mut out = bytes.to_vec();
    let get = |b: &[u8], n: usize, right: bool| -> usize {
        let r = &b[n * width..(n + 1) * width];
        let be = |s: &[u8]| s.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
        match (bits, right) {
            (24, false) => be(&r[0..3]),
            (24, true) => be(&r[3..6]),
            (32, false) => be(&r[0..4]),
            (32, true) => be(&r[4..8]),
            (28, false) => (usize::from(r[3] & 0xf0) << 20) | be(&r[0..3]),
            (28, true) => (usize::from(r[3] & 0x0f) << 24) | be(&r[4..7]),
            _ => panic!("record size {bits}"),
        }
    };
    let put = |b: &mut [u8], n: usize, right: bool, v: usize| {
        let r = &mut b[n * width..(n + 1) * width];
        let bytes = v.to_be_bytes();
        let low3 = &bytes[bytes.len() - 3..];
        match (bits, right) {
            (24, false) => r[0..3].copy_from_slice(low3),
            (24, true) => r[3..6].copy_from_slice(low3),
            (32, false) => r[0..4].copy_from_slice(&bytes[bytes.len() - 4..]),
            (32, true) => r[4..8].copy_from_slice(&bytes[bytes.len() - 4..]),
            (28, false) => {
                r[0..3].copy_from_slice(low3);
                r[3] = (r[3] & 0x0f) | ((v >> 20) as u8 & 0xf0);
            }
            _ => {
                r[4..7].copy_from_slice(low3);
                r[3] = (r[3] & 0xf0) | ((v >> 24) as u8 & 0x0f);
            }
        }
    };
    let leaves: Vec<(usize, bool)> =
        (0..nodes).flat_map(|n| [(n, false), (n, true)]).filter(|&(n, r)| get(bytes, n, r) > nodes).collect();
    let mut targets: Vec<usize> = leaves.iter().map(|&(n, r)| get(bytes, n, r)).collect();
    targets.sort_unstable();
    targets.dedup();
    assert!(targets.len() > 2);
    for &(n, r) in leaves.iter().step_by(every) {
        let now = get(bytes, n, r);
        let at = targets.binary_search(&now).unwrap();
        put(&mut out, n, r, targets[(at + stride) % targets.len()]);
    }
    out
}

fn config(dir: &Path) -> Arc<geogate::config::Config> {
    std::fs::write(dir.join("list.txt"), "1.0.0.0/8\n45.0.0.0/12\n2a00::/20\n2001:db8::/32\n").unwrap();
    let text = "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:1\"\n\
                [[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:2\"\n\
                [[source]]\nname = \"geo\"\ntype = \"mmdb\"\npath = \"geo.mmdb\"\n\
                [[source]]\nname = \"l\"\ntype = \"list\"\npath = \"list.txt\"\n";
    Arc::new(geogate::config::parse(text, Some(&dir.join("geogate.toml"))).unwrap())
}

/// A family's ranges: each start with its answer.
type Ranges<K> = Vec<(K, OwnedAnswer)>;

/// The table's ranges with equal neighbours joined (the tries may cut them differently).
fn ranges(t: &GeoTable) -> (Ranges<u32>, Ranges<u128>) {
    let mut v4: Ranges<u32> = Vec::new();
    for (first, _, a) in t.segments_v4() {
        let a = OwnedAnswer::from(t.answer(a));
        if v4.last().is_none_or(|(_, b)| *b != a) {
            v4.push((first, a));
        }
    }
    let mut v6: Ranges<u128> = Vec::new();
    for (first, _, a) in t.segments_v6() {
        let a = OwnedAnswer::from(t.answer(a));
        if v6.last().is_none_or(|(_, b)| *b != a) {
            v6.push((first, a));
        }
    }
    (v4, v6)
}

fn assert_same_table(a: &Snapshot, b: &Snapshot) {
    let (a4, a6) = ranges(&a.table);
    let (b4, b6) = ranges(&b.table);
    assert_eq!(a4.len(), b4.len());
    assert_eq!(a6.len(), b6.len());
    assert!(a4 == b4, "IPv4 ranges differ");
    assert!(a6 == b6, "IPv6 ranges differ");
    let (sa, sb) = (a.table.stats(), b.table.stats());
    assert_eq!((sa.ranges_v4, sa.ranges_v6), (sb.ranges_v4, sb.ranges_v6));
    for ip in ["1.2.3.4", "45.3.2.1", "8.8.8.8", "2a00:1450::1", "2001:db8::1", "::ffff:1.2.3.4"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(OwnedAnswer::from(a.table.lookup(ip)), OwnedAnswer::from(b.table.lookup(ip)), "{ip}");
    }
}

#[test]
fn a_patched_full_size_table_equals_one_built_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    let original = std::fs::read(shipped()).unwrap();
    std::fs::write(&db, &original).unwrap();
    let first = snapshot::compile(config(dir.path()), 1).unwrap();

    let changed = repointed(&original, 97, 5);
    std::fs::write(&db, &changed).unwrap();
    let patched = snapshot::compile_with(config(dir.path()), 2, Some(&first)).unwrap();
    let TableOrigin::Patched { intervals } = patched.table_origin else {
        panic!("not patched: {:?}", patched.table_origin);
    };
    assert!(intervals > 5_000, "only {intervals} intervals changed");
    let whole = snapshot::compile(config(dir.path()), 2).unwrap();
    assert_same_table(&patched, &whole);
    assert_eq!(patched.provenance, whole.provenance);

    // And back: patched again, the table of the original file.
    std::fs::write(&db, &original).unwrap();
    let back = snapshot::compile_with(config(dir.path()), 3, Some(&patched)).unwrap();
    assert!(matches!(back.table_origin, TableOrigin::Patched { .. }));
    assert_same_table(&back, &first);
}
