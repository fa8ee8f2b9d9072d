//! `source::cidr::parse` on any text: never panics; on success every network is canonical
//! (no host bits, no IPv4-mapped IPv6), the vectors are sorted and deduplicated, and writing
//! the networks back out parses to the same list.
#![no_main]

use geogate::source::cidr::parse;
use ipnet::{IpNet, Ipv6Net};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse("f", "fuzz", &text) {
        Ok(list) => {
            let mapped: Ipv6Net = "::ffff:0:0/96".parse().unwrap_or_default();
            for net in &list.v4 {
                assert_eq!(*net, net.trunc(), "host bits in {net}");
            }
            for net in &list.v6 {
                assert_eq!(*net, net.trunc(), "host bits in {net}");
                assert!(!mapped.contains(net) && !net.contains(&mapped), "IPv4-mapped network {net} kept as IPv6");
            }
            assert!(list.v4.windows(2).all(|w| w[0] < w[1]), "v4 not sorted/deduplicated");
            assert!(list.v6.windows(2).all(|w| w[0] < w[1]), "v6 not sorted/deduplicated");
            assert_eq!(list.provenance.networks_v4, list.v4.len());
            assert_eq!(list.provenance.networks_v6, list.v6.len());
            assert_eq!(list.provenance.bytes, text.len() as u64);

            let written: Vec<String> = list
                .v4
                .iter()
                .map(|n| IpNet::V4(*n).to_string())
                .chain(list.v6.iter().map(|n| IpNet::V6(*n).to_string()))
                .collect();
            let again = parse("f", "fuzz", &written.join("\n"));
            match again {
                Ok(again) => assert!(again.v4 == list.v4 && again.v6 == list.v6, "round trip changed the list"),
                Err(e) => panic!("round trip refused: {e}"),
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert_eq!(e.origin(), "fuzz");
        }
    }
});
