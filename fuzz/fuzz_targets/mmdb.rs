//! `source::mmdb::load_bytes` on any bytes never panics. The loader wraps itself in
//! `catch_unwind`; a caught panic comes back as `SourceError::Panicked`, which is still a bug
//! (a layer panicked on file input), so the target turns it back into a crash the fuzzer counts.
//! (libfuzzer-sys's panic hook aborts first anyway; the check keeps this honest if it did not.)
#![no_main]

use geogate::config::MmdbSchema;
use geogate::source::mmdb::load_bytes;
use geogate::source::SourceError;
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
        }
        Err(SourceError::Panicked { message, .. }) => panic!("mmdb loader panicked (caught): {message}"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
