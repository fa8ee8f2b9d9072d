use std::time::Instant;
use geogate::geo::{GeoRecord, CountryCode};
use geogate::table::TableBuilder;
use ipnet::{Ipv4Net, Ipv6Net, IpNet};
use std::collections::HashMap;
fn main() {
    let t0 = Instant::now();
    let r = maxminddb::Reader::open_readfile("geoip/geo-whois-asn-country.mmdb").unwrap();
    println!("meta {:?}", r.metadata());
    let mut recs: Vec<GeoRecord> = vec![]; let mut by_off: HashMap<usize,u32> = HashMap::new();
    let mut v4 = vec![]; let mut v6 = vec![];
    for (cidr, is4) in [("0.0.0.0/0", true), ("::/0", false)] {
        let opts = if is4 { maxminddb::WithinOptions::default() } else { maxminddb::WithinOptions::default().include_aliased_networks() };
        for res in r.within(cidr.parse().unwrap(), opts).unwrap() {
            let l = res.unwrap();
            let off = l.offset().unwrap();
            let idx = *by_off.entry(off).or_insert_with(|| {
                let cc: Option<&str> = l.decode_path(&[maxminddb::PathElement::Key("country_code")]).unwrap();
                recs.push(GeoRecord{ country: cc.and_then(CountryCode::parse), ..Default::default()}); (recs.len()-1) as u32 });
            let net = l.network().unwrap();
            let net: IpNet = format!("{}", net).parse().unwrap();
            match (is4, net) {
                (true, IpNet::V4(n)) => v4.push((n, idx)),
                (false, IpNet::V6(n)) => v6.push((n, idx)),
                (false, IpNet::V4(n)) => v6.push((Ipv6Net::new(n.network().to_ipv6_compatible(), n.prefix_len()+96).unwrap(), idx)),
                _ => panic!("{net}"),
            }
        }
    }
    println!("loaded {} v4 {} v6 {} recs in {:?}", v4.len(), v6.len(), recs.len(), t0.elapsed());
    let t1 = Instant::now();
    let mut b = TableBuilder::new();
    b.add_database(0, &recs, &v4, &v6).unwrap();
    let t = b.build().unwrap();
    println!("built in {:?}: {:?}", t1.elapsed(), t.stats());
    // check agreement on random
    let mut x: u64 = 12345; let mut bad = 0;
    for i in 0..2_000_000u64 {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27; let y = x.wrapping_mul(0x2545f4914f6cdd1d);
        let ip: std::net::IpAddr = if i % 2 == 0 { std::net::Ipv4Addr::from(y as u32).into() } else { std::net::Ipv6Addr::from(((0x2000u128 | (y as u128 & 0x1fff)) << 112) | ((y as u128) << 48)).into() };
        let want: Option<&str> = r.lookup(ip).unwrap().decode_path(&[maxminddb::PathElement::Key("country_code")]).unwrap();
        let got = t.lookup(ip).geo.country.map(|c| c.to_string());
        if want.map(|s| s.to_string()) != got { bad += 1; if bad < 5 { println!("MISMATCH {ip} {want:?} {got:?}"); } }
    }
    println!("mismatches {bad}");
}
