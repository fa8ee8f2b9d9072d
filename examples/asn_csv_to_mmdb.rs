//! Writes an ASN-schema MaxMind DB (GeoLite2-ASN's fields, `autonomous_system_number` and
//! `autonomous_system_organization`) from ip-location-db's ASN CSV files
//! (`start,end,asn,"organisation"`), for by-hand checks of `geogate lookup` against the
//! `maxminddb` reader on real data.
//!
//! ```text
//! cargo run --release --example asn_csv_to_mmdb -- OUT.mmdb asn-ipv4.csv asn-ipv6.csv
//! ```
//!
//! Ranges that are not CIDR-aligned are written as the CIDRs that cover them exactly. The
//! data's licence (CC BY 4.0, RouteViews, DB-IP and NRO; see the package's README) goes with
//! any database written from it: keep such files out of the repository.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, inputs)) = args.split_first() else {
        eprintln!("usage: asn_csv_to_mmdb OUT.mmdb ASN.csv...");
        std::process::exit(64);
    };
    let mut writer = mmdb_writer::Writer::builder("Geogate-ASN-from-CSV")
        .ip_version(mmdb_writer::IpVersion::V6)
        // No alias nodes: the CSVs announce networks inside 2001::/32 and 2002::/16 of their own.
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Disabled)
        .build();
    let mut written = 0usize;
    for input in inputs {
        let file = BufReader::new(std::fs::File::open(input)?);
        for (n, line) in file.lines().enumerate() {
            let line = line?;
            let fields = split_csv(&line);
            let [start, end, asn, org] = fields.as_slice() else {
                return Err(format!("{input}:{}: expected start,end,asn,org", n + 1).into());
            };
            let (start, end): (IpAddr, IpAddr) = (start.parse()?, end.parse()?);
            let asn: u32 = asn.parse()?;
            let record = json!({"autonomous_system_number": asn, "autonomous_system_organization": org});
            for net in cidrs(start, end) {
                writer.insert(net, &record)?;
                written += 1;
            }
        }
    }
    std::fs::write(out, writer.to_bytes()?)?;
    eprintln!("{out}: {written} networks");
    Ok(())
}

/// The fields of one CSV line: `"..."` quoting with `""` for a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(f) = fields.last_mut() {
                    f.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

/// The CIDRs that cover `start..=end` exactly.
fn cidrs(start: IpAddr, end: IpAddr) -> Vec<IpNet> {
    let (bits, mut lo, hi, v4) = match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (32u32, u128::from(u32::from(a)), u128::from(u32::from(b)), true),
        (IpAddr::V6(a), IpAddr::V6(b)) => (128, u128::from(a), u128::from(b), false),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    while lo <= hi {
        let mut size_bits = if lo == 0 { bits } else { lo.trailing_zeros().min(bits) };
        while size_bits > 0 && (size_bits >= 128 || lo + ((1u128 << size_bits) - 1) > hi) {
            size_bits -= 1;
        }
        let prefix = (bits - size_bits) as u8;
        let net = if v4 {
            IpNet::new(IpAddr::V4((lo as u32).into()), prefix)
        } else {
            IpNet::new(IpAddr::V6(lo.into()), prefix)
        };
        out.extend(net.ok());
        let Some(next) = (if size_bits >= 128 { None } else { lo.checked_add(1u128 << size_bits) }) else { break };
        lo = next;
    }
    out
}
