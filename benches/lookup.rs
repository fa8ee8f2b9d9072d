//! Lookup and compile benchmarks on the shipped database (`geoip/geo-whois-asn-country.mmdb`).
//!
//! IDs: `lookup/geogate/v4`, `lookup/maxminddb/v4`, `lookup/geogate/v6`,
//! `lookup/maxminddb/v6`, `lookup/geogate+asn/v4`, `lookup/geogate+asn/v6` (the same
//! addresses in a table that also holds an ASN layer: country and operator answers),
//! `compile/default-db`. One element = one lookup; each iteration
//! looks up the same 4096 fixed-seed addresses. IPv4 addresses are uniform over the whole
//! space; IPv6 addresses are uniform inside randomly chosen networks of the database (uniform
//! IPv6 addresses would almost all fall in unallocated space and flatter both readers).
//! The maxminddb baseline is `Reader::lookup` plus decoding the country code, which is what a
//! proxy using the crate directly does per request.
//!
//! Run: `cargo bench --bench lookup`; the table's heap size is printed before the runs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use geogate::config::MmdbSchema;
use geogate::geo::GeoRecord;
use geogate::source::mmdb;
use geogate::table::{GeoTable, TableBuilder};
use maxminddb::PathElement;

const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/geo-whois-asn-country.mmdb");
const N: usize = 4096;

/// xorshift64*: fixed seed, no dependency, same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn compile() -> GeoTable {
    let db = match mmdb::load("default", Path::new(DB), &MmdbSchema::Auto) {
        Ok(db) => db,
        Err(e) => panic!("cannot load {DB}: {e}"),
    };
    let mut b = TableBuilder::new();
    if let Err(e) = b.add_database(0, &db.records, &db.v4, &db.v6) {
        panic!("{e}");
    }
    match b.build() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

/// The shipped database with an ASN layer over it, field by field: each network gets an AS
/// number from a pool of 280 per country (about 70,000 in all, the number announced
/// worldwide), each AS in one country as most are, and one of 5,000 organisations. The table
/// then holds (country, operator) answers as it does with a real ASN database: DB-IP City
/// Lite plus ip-location-db's ASN files give 180k answers (`benches/real_data.sh`), this
/// 60-70k; a random AS per network regardless of country would give 966k, more than any real
/// pair of databases.
fn compile_with_asn() -> GeoTable {
    let db = match mmdb::load("default", Path::new(DB), &MmdbSchema::Auto) {
        Ok(db) => db,
        Err(e) => panic!("cannot load {DB}: {e}"),
    };
    const PER_COUNTRY: u32 = 280;
    let orgs: Vec<geogate::geo::SharedStr> = (0..5_000).map(|i| format!("Org {i} LLC").into()).collect();
    // Record `c * PER_COUNTRY + k` is the k-th AS of the country of shipped record `c`.
    let records: Vec<GeoRecord> = (0..db.records.len() as u32 * PER_COUNTRY)
        .map(|i| GeoRecord {
            asn: Some(i + 1),
            as_org: Some(orgs[i as usize % orgs.len()].clone()),
            ..GeoRecord::default()
        })
        .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut pick = |country_record: u32| country_record * PER_COUNTRY + (rng.next() % u64::from(PER_COUNTRY)) as u32;
    let v4: Vec<_> = db.v4.iter().map(|&(n, r)| (n, pick(r))).collect();
    let v6: Vec<_> = db.v6.iter().map(|&(n, r)| (n, pick(r))).collect();
    let mut b = TableBuilder::new();
    if let Err(e) = b.add_database(0, &db.records, &db.v4, &db.v6).and_then(|()| b.add_database(1, &records, &v4, &v6))
    {
        panic!("{e}");
    }
    match b.build() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn inputs() -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let v4 = (0..N).map(|_| Ipv4Addr::from(rng.next() as u32)).collect();
    let db = match mmdb::load("default", Path::new(DB), &MmdbSchema::Auto) {
        Ok(db) => db,
        Err(e) => panic!("{e}"),
    };
    // Skip the IPv4 subtree and aliases: sample real IPv6 allocations.
    let nets: Vec<_> = db
        .v6
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.network().segments()[0] & 0xe000 == 0x2000 && n.network().segments()[0] != 0x2002)
        .collect();
    let v6 = (0..N)
        .map(|_| {
            let net = nets[(rng.next() as usize) % nets.len()];
            let host_bits = 128 - u32::from(net.prefix_len());
            let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            let mask = if host_bits == 0 { 0 } else { u128::MAX >> (128 - host_bits) };
            Ipv6Addr::from(u128::from(net.network()) | (r & mask))
        })
        .collect();
    (v4, v6)
}

fn lookups(c: &mut Criterion) {
    let table = compile();
    let s = table.stats();
    println!(
        "table: {} IPv4 ranges, {} IPv6 ranges, {} answers, {} nodes v4, {} nodes v6, {} heap bytes ({:.2} MiB)",
        s.ranges_v4,
        s.ranges_v6,
        s.answers,
        s.nodes_v4,
        s.nodes_v6,
        s.heap_bytes,
        s.heap_bytes as f64 / (1024.0 * 1024.0)
    );
    let reader = match maxminddb::Reader::open_readfile(DB) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let (v4, v6) = inputs();
    for (family, ips) in [
        ("v4", v4.iter().map(|&a| IpAddr::V4(a)).collect::<Vec<_>>()),
        ("v6", v6.iter().map(|&a| IpAddr::V6(a)).collect()),
    ] {
        let mut hist = [0usize; 7];
        let mut leaves = 0;
        for ip in &ips {
            let (d, leaf) = table.depth_of(*ip);
            hist[(d as usize).min(6)] += 1;
            leaves += usize::from(leaf);
        }
        println!("{family}: lookups passing 0, 1, .., 5, 6+ nodes {hist:?}; ending in a leaf {leaves}/{}", ips.len());
    }
    let path = [PathElement::Key("country_code")];
    let mm = |ip: IpAddr| -> usize {
        match reader.lookup(ip) {
            Ok(r) => r.decode_path::<&str>(&path).ok().flatten().map_or(0, |s| s.len()),
            Err(_) => 0,
        }
    };

    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("geogate/v4", |b| {
        b.iter(|| {
            v4.iter()
                .map(|&ip| usize::from(black_box(table.lookup_v4(black_box(ip))).geo.country.is_some()))
                .sum::<usize>()
        })
    });
    g.bench_function("maxminddb/v4", |b| b.iter(|| v4.iter().map(|&ip| mm(black_box(IpAddr::V4(ip)))).sum::<usize>()));
    g.bench_function("geogate/v6", |b| {
        b.iter(|| {
            v6.iter()
                .map(|&ip| usize::from(black_box(table.lookup_v6(black_box(ip))).geo.country.is_some()))
                .sum::<usize>()
        })
    });
    g.bench_function("maxminddb/v6", |b| b.iter(|| v6.iter().map(|&ip| mm(black_box(IpAddr::V6(ip)))).sum::<usize>()));
    drop(table);
    let with_asn = compile_with_asn();
    let s = with_asn.stats();
    println!(
        "table with ASN layer: {} IPv4 ranges, {} IPv6 ranges, {} answers, {} heap bytes ({:.2} MiB)",
        s.ranges_v4,
        s.ranges_v6,
        s.answers,
        s.heap_bytes,
        s.heap_bytes as f64 / (1024.0 * 1024.0)
    );
    let answered = |a: geogate::geo::Answer| usize::from(a.geo.country.is_some()) + usize::from(a.geo.asn.is_some());
    g.bench_function("geogate+asn/v4", |b| {
        b.iter(|| v4.iter().map(|&ip| answered(black_box(with_asn.lookup_v4(black_box(ip))))).sum::<usize>())
    });
    g.bench_function("geogate+asn/v6", |b| {
        b.iter(|| v6.iter().map(|&ip| answered(black_box(with_asn.lookup_v6(black_box(ip))))).sum::<usize>())
    });
    g.finish();
}

fn compile_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("default-db", |b| b.iter_batched(|| (), |_| compile(), BatchSize::PerIteration));
    g.finish();
}

criterion_group!(benches, lookups, compile_bench);
criterion_main!(benches);
