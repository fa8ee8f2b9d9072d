//! `source::mmdb::load_bytes` on any bytes never panics. The loader wraps itself in
//! `catch_unwind`; a caught panic comes back as `SourceError::Panicked`, which is still a bug
//! (a layer panicked on file input), so the target turns it back into a crash the fuzzer counts.
//! (libfuzzer-sys's panic hook aborts first anyway; the check keeps this honest if it did not.)
//!
//! A file that loads is also streamed the way geogate serves it (`load_layer_bytes`, alias
//! blocks noted instead of copied) and both are compiled: the two tables must answer the same
//! at the first and last address of the first networks of each family.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geogate::config::MmdbSchema;
use geogate::source::mmdb::{load_bytes, load_layer_bytes};
use geogate::source::SourceError;
use geogate::table::TableBuilder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match load_bytes("f", "fuzz", data.to_vec(), &MmdbSchema::Auto) {
        Ok(db) => {
            let records = db.records.len();
            assert!(db.v4.iter().all(|&(net, i)| net == net.trunc() && (i as usize) < records));
            assert!(db.v6.iter().all(|&(net, i)| net == net.trunc() && (i as usize) < records));
            assert_eq!(db.provenance.bytes, data.len() as u64);
            // The module doc promises ascending, disjoint networks (the table relies on it).
            assert!(db.v4.windows(2).all(|w| w[0].0.broadcast() < w[1].0.network()), "v4 overlaps or unsorted");
            assert!(db.v6.windows(2).all(|w| w[0].0.broadcast() < w[1].0.network()), "v6 overlaps or unsorted");
            let (layer, _) = load_layer_bytes("f", "fuzz", data, None, &MmdbSchema::Auto).expect("loads twice");
            let mut collected = TableBuilder::new();
            collected.add_database(0, &db.records, &db.v4, &db.v6).expect("collected table");
            let mut streamed = TableBuilder::new();
            streamed.add_layer(0, &layer);
            let (Ok(collected), Ok(streamed)) = (collected.build(), streamed.build()) else { return };
            let v4 = db.v4.iter().take(64).flat_map(|(n, _)| [n.network(), n.broadcast()]).map(IpAddr::V4);
            let v6 = db.v6.iter().take(64).flat_map(|(n, _)| [n.network(), n.broadcast()]).map(IpAddr::V6);
            for ip in v4.chain(v6).chain([IpAddr::V4(Ipv4Addr::BROADCAST), IpAddr::V6(Ipv6Addr::from(0x2002u128 << 112))]) {
                let raw = |t: &geogate::table::GeoTable| match ip {
                    IpAddr::V4(a) => format!("{:?}", t.lookup_v4(a)),
                    IpAddr::V6(a) => format!("{:?}", t.lookup_v6(a)),
                };
                assert_eq!(raw(&streamed), raw(&collected), "{ip}");
            }
        }
        Err(SourceError::Panicked { message, .. }) => panic!("mmdb loader panicked (caught): {message}"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
