#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::IpAddr;

use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;

use super::*;
use crate::geo::SharedStr;
use crate::source::sha256_hex;
use crate::table::TableBuilder;

const AUTO: RangeLayout = RangeLayout::Auto;

fn load(text: &str, layout: &RangeLayout) -> Result<(SourceLayer, Provenance), SourceError> {
    load_layer_bytes("src", "t.csv", text.as_bytes(), layout)
}

fn ok(text: &str, layout: &RangeLayout) -> (SourceLayer, Provenance) {
    load(text, layout).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str, layout: &RangeLayout) -> String {
    match load(text, layout) {
        Ok(_) => panic!("loaded: {text:?}"),
        Err(e) => {
            assert!(!matches!(e, SourceError::Panicked { .. }), "{e}");
            e.to_string()
        }
    }
}

fn cc(s: &str) -> Option<CountryCode> {
    Some(CountryCode::parse(s).unwrap())
}

fn country(s: &str) -> GeoRecord {
    GeoRecord { country: cc(s), ..GeoRecord::default() }
}

fn v4(s: &str) -> u32 {
    s.parse::<Ipv4Addr>().unwrap().into()
}

fn v6(s: &str) -> u128 {
    s.parse::<Ipv6Addr>().unwrap().into()
}

/// A layer built by hand: `records` numbered in order, then the ranges pushed in order.
fn layer(records: &[GeoRecord], ranges4: &[(&str, &str, u32)], ranges6: &[(&str, &str, u32)]) -> SourceLayer {
    let mut layer = SourceLayer::new();
    for r in records {
        layer.push_record(r.clone());
    }
    for &(a, b, r) in ranges4 {
        layer.push_range_v4(v4(a), v4(b), r).unwrap();
    }
    for &(a, b, r) in ranges6 {
        layer.push_range_v6(v6(a), v6(b), r).unwrap();
    }
    layer.shrink();
    layer
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn lookup_country(layer: &SourceLayer, ip: &str) -> Option<CountryCode> {
    let mut builder = TableBuilder::new();
    builder.add_layer(0, layer);
    builder.build().unwrap().lookup(ip.parse::<IpAddr>().unwrap()).geo.country
}

const COUNTRY_CSV: &str = "# a comment\r\n\
    start,end,country\r\n\
    1.0.0.0,1.0.0.255,AU\r\n\
    1.0.1.0,1.0.3.255,cn\r\n\
    \r\n\
    # another\r\n\
    1.0.4.0,1.0.7.255,AU\r\n\
    2001:db8::,2001:db8::ffff,DE\r\n";

#[test]
fn country_layout() {
    let (got, provenance) = ok(COUNTRY_CSV, &AUTO);
    let want = layer(
        &[country("AU"), country("CN"), country("DE")],
        &[("1.0.0.0", "1.0.0.255", 0), ("1.0.1.0", "1.0.3.255", 1), ("1.0.4.0", "1.0.7.255", 0)],
        &[("2001:db8::", "2001:db8::ffff", 2)],
    );
    assert_eq!(got, want);
    assert_eq!(
        provenance,
        Provenance {
            name: "src".into(),
            kind: "ranges",
            origin: "t.csv".into(),
            schema: "country".into(),
            database_type: None,
            build_epoch: None,
            networks_v4: 3,
            networks_v6: 1,
            bytes: COUNTRY_CSV.len() as u64,
            sha256: sha256_hex(COUNTRY_CSV.as_bytes()),
        }
    );
    let (declared, p) = ok(COUNTRY_CSV, &RangeLayout::Known(KnownRangeLayout::Country));
    assert_eq!((declared, p.schema.as_str()), (want, "country"));
    // No-country values are gaps; a BOM is not part of the first field.
    let (got, _) = ok("\u{feff}1.0.0.0,1.0.0.9,ZZ\n1.0.0.10,1.0.0.19,--\n1.0.0.20,1.0.0.29,\n1.0.0.30,1.0.0.39,xx\n1.0.0.40,1.0.0.49,us\n", &AUTO);
    assert_eq!(got, layer(&[country("US")], &[("1.0.0.40", "1.0.0.49", 0)], &[]));
}

#[test]
fn asn_layout_with_quoted_orgs() {
    let text = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
                1.0.1.0,1.0.1.255,AS4134,\"Chinanet \"\"Backbone\"\"\"\n\
                1.0.2.0,1.0.2.255,0,\n\
                1.0.3.0,1.0.3.255,13336, \"Cloudflare, Inc.\" \n\
                1.0.4.0,1.0.4.255,0,Reserved\n\
                1.0.5.0,1.0.5.255,7,\n";
    let (got, provenance) = ok(text, &AUTO);
    let org = |asn: Option<u32>, org: Option<&str>| GeoRecord {
        asn,
        as_org: org.map(SharedStr::from),
        ..GeoRecord::default()
    };
    let want = layer(
        &[
            org(Some(13335), Some("Cloudflare, Inc.")),
            org(Some(4134), Some("Chinanet \"Backbone\"")),
            org(Some(13336), Some("Cloudflare, Inc.")),
            org(None, Some("Reserved")),
            org(Some(7), None),
        ],
        &[
            ("1.0.0.0", "1.0.0.255", 0),
            ("1.0.1.0", "1.0.1.255", 1),
            ("1.0.3.0", "1.0.3.255", 2),
            ("1.0.4.0", "1.0.4.255", 3),
            ("1.0.5.0", "1.0.5.255", 4),
        ],
        &[],
    );
    assert_eq!(got, want);
    assert_eq!((provenance.schema.as_str(), provenance.networks_v4), ("asn", 5));
    // Equal strings share one allocation.
    let records = got.records();
    assert!(SharedStr::ptr_eq(records[0].as_org.as_ref().unwrap(), records[2].as_org.as_ref().unwrap()));
}

#[test]
fn city_layout() {
    let text = "ip_start,ip_end,cc,state1,state2,city,postcode,lat,lon,tz\n\
                1.0.0.0,1.0.0.255,AU,Queensland,,Brisbane,4000,-27.4,153.0,Australia/Brisbane\n\
                1.0.1.0,1.0.1.255,UA,ua-43,,Simferopol,,44.9,34.1,Europe/Simferopol\n\
                1.0.2.0,1.0.2.255,RU, Crimea ,,Simferopol,,44.9,34.1,\n\
                1.0.3.0,1.0.3.255,RU,Crimea,,Kerch,,,,\n\
                1.0.4.0,1.0.4.255,RU,,,,,,,\n";
    let (got, provenance) = ok(text, &AUTO);
    let city = |c: &str, sub: &str| GeoRecord {
        country: cc(c),
        subdivision: Some(SharedStr::from(sub)),
        ..GeoRecord::default()
    };
    let crimea = GeoRecord {
        country: cc("RU"),
        subdivision: named_subdivision(CountryCode::parse("RU").unwrap(), "Crimea"),
        ..GeoRecord::default()
    };
    assert_eq!(crimea, city("RU", "RU:Crimea"));
    let want = layer(
        &[city("AU", "AU:Queensland"), city("UA", "UA-43"), crimea, country("RU")],
        &[
            ("1.0.0.0", "1.0.0.255", 0),
            ("1.0.1.0", "1.0.1.255", 1),
            ("1.0.2.0", "1.0.3.255", 2),
            ("1.0.4.0", "1.0.4.255", 3),
        ],
        &[],
    );
    assert_eq!(got, want);
    assert_eq!((provenance.schema.as_str(), provenance.networks_v4), ("city", 5));
    assert_eq!(got.ranges(), (4, 0));
}

const IPTOASN: &str = "0.0.0.0\t0.255.255.255\t0\tNone\tNot routed\n\
    1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
    1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
    1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM-AUSTRALIA Gtelecom-AUSTRALIA\n\
    1.0.8.0\t1.0.8.255\t4134\tZZ\t\n\
    2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB WIDE Project\n";

#[test]
fn iptoasn_layout_with_gaps() {
    let (got, provenance) = ok(IPTOASN, &AUTO);
    let rec = |asn: u32, c: &str, org: &str| GeoRecord {
        asn: Some(asn),
        country: cc(c),
        as_org: Some(SharedStr::from(org)),
        ..GeoRecord::default()
    };
    let want = layer(
        &[
            rec(13335, "US", "CLOUDFLARENET"),
            rec(38803, "AU", "GTELECOM-AUSTRALIA Gtelecom-AUSTRALIA"),
            GeoRecord { asn: Some(4134), ..GeoRecord::default() },
            rec(2500, "JP", "WIDE-BB WIDE Project"),
        ],
        &[("1.0.0.0", "1.0.0.255", 0), ("1.0.4.0", "1.0.7.255", 1), ("1.0.8.0", "1.0.8.255", 2)],
        &[("2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", 3)],
    );
    assert_eq!(got, want);
    assert_eq!((provenance.schema.as_str(), provenance.networks_v4, provenance.networks_v6), ("iptoasn", 3, 1));
    assert_eq!(lookup_country(&got, "1.0.2.0"), None);
    assert_eq!(ok(IPTOASN, &RangeLayout::Known(KnownRangeLayout::Iptoasn)).0, want);
    // A file of gaps only has no networks.
    let gaps = "0.0.0.0\t0.255.255.255\t0\tNone\tNot routed\n";
    assert!(matches!(load(gaps, &AUTO), Err(SourceError::NoNetworks { .. })));
}

#[test]
fn non_aligned_ranges_are_exact() {
    let (got, _) = ok("1.0.0.3,1.0.0.9,US\n1.0.0.10,1.0.0.10,DE\n::5,::9,FR\n", &AUTO);
    assert_eq!(
        got,
        layer(
            &[country("US"), country("DE"), country("FR")],
            &[("1.0.0.3", "1.0.0.9", 0), ("1.0.0.10", "1.0.0.10", 1)],
            &[("::5", "::9", 2)]
        )
    );
    for (ip, want) in [
        ("1.0.0.2", None),
        ("1.0.0.3", cc("US")),
        ("1.0.0.9", cc("US")),
        ("1.0.0.10", cc("DE")),
        ("1.0.0.11", None),
        ("::4", None),
        ("::5", cc("FR")),
        ("::9", cc("FR")),
        ("::a", None),
    ] {
        assert_eq!(lookup_country(&got, ip), want, "{ip}");
    }
}

#[test]
fn ipv4_mapped_ranges_are_ipv4() {
    let (got, provenance) = ok("::ffff:1.0.0.0,::ffff:1.0.0.255,US\n", &AUTO);
    assert_eq!(got, layer(&[country("US")], &[("1.0.0.0", "1.0.0.255", 0)], &[]));
    assert_eq!((provenance.networks_v4, provenance.networks_v6), (1, 0));
}

#[test]
fn unsorted_disjoint_input_equals_sorted() {
    let sorted = "1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.1.255,AU\n2.0.0.0,2.0.0.9,US\n3.0.0.0,3.0.0.0,DE\n\
                  ::1,::1,DE\n2001:db8::,2001:db8::ff,US\n";
    let unsorted = "2001:db8::,2001:db8::ff,US\n3.0.0.0,3.0.0.0,DE\n1.0.1.0,1.0.1.255,AU\n::1,::1,DE\n\
                    2.0.0.0,2.0.0.9,US\n1.0.0.0,1.0.0.255,AU\n";
    let (a, pa) = ok(sorted, &AUTO);
    let (b, pb) = ok(unsorted, &AUTO);
    assert_eq!(a, b);
    assert_eq!(a.ranges(), (5, 3), "equal neighbours merged, gaps between");
    assert_eq!((pb.networks_v4, pb.networks_v6), (pa.networks_v4, pa.networks_v6));
    assert_eq!(pb.sha256, sha256_hex(unsorted.as_bytes()));
    // Gaps take part in the order too.
    let (c, _) = ok(
        "1.0.4.0\t1.0.7.255\t38803\tAU\tGT\n0.0.0.0\t0.255.255.255\t0\tNone\tNot routed\n1.0.0.0\t1.0.0.255\t13335\tUS\tCF\n",
        &AUTO,
    );
    let (d, _) = ok(
        "0.0.0.0\t0.255.255.255\t0\tNone\tNot routed\n1.0.0.0\t1.0.0.255\t13335\tUS\tCF\n1.0.4.0\t1.0.7.255\t38803\tAU\tGT\n",
        &AUTO,
    );
    assert_eq!(c, d);
}

/// The country a one-source table gives `ip` from a range file's text.
fn country_at(text: &str, ip: &str) -> Option<String> {
    let (layer, _) = ok(text, &AUTO);
    let mut b = crate::table::TableBuilder::new();
    b.add_layer(0, &layer);
    let table = b.build().unwrap();
    table.lookup(ip.parse().unwrap()).geo.country.map(|c| c.to_string())
}

#[test]
fn overlaps_are_resolved_narrowest_first() {
    // A later range starting inside an earlier one (as in ip-location-db's ASN file): the
    // narrower wins where they overlap, each keeps the rest.
    let text = "1.0.0.0,1.0.0.255,AU\n1.0.0.128,1.0.1.0,CN\n";
    assert_eq!(country_at(text, "1.0.0.127").as_deref(), Some("AU"));
    // 129 addresses against 256: CN is the narrower where they overlap.
    assert_eq!(country_at(text, "1.0.0.128").as_deref(), Some("CN"));
    assert_eq!(country_at(text, "1.0.0.255").as_deref(), Some("CN"));
    assert_eq!(country_at(text, "1.0.1.0").as_deref(), Some("CN"));
    // Nested: the inner range wins inside, the outer keeps both sides.
    let text = "0.0.0.0,1.0.0.255,US\n1.0.0.0,1.0.0.9,AU\n1.0.0.20,1.0.0.29,DE\n";
    for (ip, cc) in
        [("0.255.0.0", "US"), ("1.0.0.5", "AU"), ("1.0.0.15", "US"), ("1.0.0.25", "DE"), ("1.0.0.200", "US")]
    {
        assert_eq!(country_at(text, ip).as_deref(), Some(cc), "{ip}");
    }
    // Equal ranges: the later line.
    assert_eq!(country_at("::1,::5,AU\n::1,::5,NZ\n", "::3").as_deref(), Some("NZ"));
    // Out of order and nested gives the same answers as in order.
    let text = "1.0.0.20,1.0.0.29,DE\n0.0.0.0,1.0.0.255,US\n1.0.0.0,1.0.0.9,AU\n";
    for (ip, cc) in [("1.0.0.5", "AU"), ("1.0.0.15", "US"), ("1.0.0.25", "DE")] {
        assert_eq!(country_at(text, ip).as_deref(), Some(cc), "{ip}");
    }
    // Families are independent: the same numbers in IPv4 and IPv6 do not overlap.
    ok("::,::ffff,AU\n0.0.0.0,0.0.255.255,US\n", &AUTO);
}

#[test]
fn bad_lines_are_reported_with_file_and_line() {
    let text = "1.0.0.0,1.0.0.255,AU\n\
                1.0.1.9,1.0.1.0,AU\n\
                1.0.2.x,1.0.2.255,AU\n\
                1.0.3.0,1.0.3.255,A1\n\
                1.0.4.0,1.0.4.255\n\
                1.0.5.0,::1,AU\n\
                16777216,16777471,AU\n\
                1.0.6.0,1.0.6.255,\"AU\n";
    let msg = err(text, &AUTO);
    assert!(msg.starts_with("t.csv: 7 bad lines in the range file"), "{msg}");
    for (line, reason) in [
        (2, "reversed range"),
        (3, "start \"1.0.2.x\" is not an IP address"),
        (4, "bad country code \"A1\""),
        (5, "expected 3 comma-separated fields (country layout: start,end,country), found 2"),
        (6, "not of the same family"),
        (7, "bare integer"),
        (8, "no closing quote"),
    ] {
        let at = format!("t.csv:{line}: ");
        let shown = msg.lines().find(|l| l.trim_start().starts_with(&at)).unwrap_or_else(|| panic!("{at} in {msg}"));
        assert!(shown.contains(reason), "{shown:?} lacks {reason:?}");
    }
    let Err(SourceError::Ranges { origin, errors, more }) = load(text, &AUTO) else { panic!() };
    assert_eq!((origin.as_str(), errors.len(), more), ("t.csv", 7, 0));
    assert_eq!(errors[0].text, "1.0.1.9,1.0.1.0,AU");

    let asn = RangeLayout::Known(KnownRangeLayout::Asn);
    let msg = err("1.0.0.0,1.0.0.255,AS-1,x\n1.0.1.0,1.0.1.255,4294967296,y\n1.0.2.0,1.0.2.255,4294967295,z\n", &asn);
    assert!(msg.starts_with("t.csv: 2 bad lines"), "{msg}");
    assert!(msg.contains("t.csv:1: \"1.0.0.0,1.0.0.255,AS-1,x\": bad AS number \"AS-1\""), "{msg}");
    assert!(msg.contains("t.csv:2: ") && msg.contains("bad AS number \"4294967296\""), "{msg}");
}

#[test]
fn many_bad_lines_are_capped() {
    let mut text = String::from("1.0.0.0,1.0.0.255,AU\n");
    for i in 0..25 {
        text.push_str(&format!("bad{i},1.0.0.0,AU\n"));
    }
    let msg = err(&text, &AUTO);
    assert!(msg.starts_with("t.csv: 25 bad lines"), "{msg}");
    assert!(msg.contains("t.csv:21: ") && !msg.contains("t.csv:22: "), "{msg}");
    assert!(msg.ends_with("and 5 more"), "{msg}");
    let Err(SourceError::Ranges { errors, more, .. }) = load(&text, &AUTO) else { panic!() };
    assert_eq!((errors.len(), more), (MAX_REPORTED_LINES, 5));
}

#[test]
fn layout_that_cannot_be_told() {
    let msg = err("# feed\n1.0.0.0,1.0.0.255,hello,world,x\n", &AUTO);
    assert!(msg.starts_with("t.csv: 1 bad line"), "{msg}");
    assert!(msg.contains("t.csv:2: ") && msg.contains("layout = \"country\"") && msg.contains("columns = ["), "{msg}");
    // A header is allowed only first; a word later is a bad address.
    let msg = err("1.0.0.0,1.0.0.255,AU\nstart,end,country\n", &AUTO);
    assert!(msg.contains("t.csv:2: ") && msg.contains("not an IP address"), "{msg}");
    // A known layout counts fields on every line.
    let msg = err(COUNTRY_CSV, &RangeLayout::Known(KnownRangeLayout::Asn));
    assert!(msg.contains("t.csv:3: ") && msg.contains("expected 4 comma-separated fields"), "{msg}");
}

#[test]
fn empty_and_binary_input() {
    assert!(matches!(load("", &AUTO), Err(SourceError::Empty { .. })));
    assert!(matches!(load_layer_bytes("s", "t.gz", &gzip(b""), &AUTO), Err(SourceError::Empty { .. })));
    assert!(matches!(load("# nothing\n\nstart,end,country\n", &AUTO), Err(SourceError::NoNetworks { .. })));
    let mut garbage = b"\xff\xfe\x00\x01garbage\n1.0.0.0,1.0.0.255,AU\n".to_vec();
    garbage.extend(std::iter::repeat_n(0xa5u8, 200_000));
    let e = load_layer_bytes("s", "t.bin", &garbage, &AUTO).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("t.bin:1: ") && msg.contains("not UTF-8"), "{msg}");
    assert!(msg.contains("t.bin:3: ") && msg.contains("longer than 65536 bytes"), "{msg}");
    // Invalid bytes in a comment are harmless.
    ok("# \u{0}\n1.0.0.0,1.0.0.255,AU\n", &AUTO);
    let mut commented = b"# caf\xe9\n".to_vec();
    commented.extend_from_slice(b"1.0.0.0,1.0.0.255,AU\n");
    assert!(load_layer_bytes("s", "t.csv", &commented, &AUTO).is_ok());
}

#[test]
fn gzip_equals_plain() {
    let plain = ok(COUNTRY_CSV, &AUTO).0;
    let gz = gzip(COUNTRY_CSV.as_bytes());
    let (got, provenance) = load_layer_bytes("src", "t.csv.gz", &gz, &AUTO).unwrap();
    assert_eq!(got, plain);
    assert_eq!((provenance.bytes, provenance.sha256), (gz.len() as u64, sha256_hex(&gz)));
    // Concatenated members (what `cat a.gz b.gz` gives) read as one text.
    let (head, tail) = IPTOASN.split_at(IPTOASN.find("1.0.4.0").unwrap());
    let mut two = gzip(head.as_bytes());
    two.extend(gzip(tail.as_bytes()));
    assert_eq!(load_layer_bytes("src", "t.gz", &two, &AUTO).unwrap().0, ok(IPTOASN, &AUTO).0);
}

#[test]
fn corrupt_gzip_is_an_error() {
    let gz = gzip(IPTOASN.repeat(50).as_bytes());
    let truncated = &gz[..gz.len() / 2];
    let e = load_layer_bytes("src", "t.gz", truncated, &AUTO).unwrap_err();
    assert!(matches!(e, SourceError::Io { .. }), "{e}");
    assert!(e.to_string().starts_with("t.gz: cannot read: gzip stream"), "{e}");
    for at in [3, 10, gz.len() / 3, gz.len() - 6] {
        let mut bad = gz.clone();
        bad[at] ^= 0x55;
        match load_layer_bytes("src", "t.gz", &bad, &AUTO) {
            Err(SourceError::Panicked { message, .. }) => panic!("{message}"),
            Err(e) => assert!(e.to_string().starts_with("t.gz: "), "{e}"),
            Ok(_) => panic!("flipped byte {at} went unnoticed"),
        }
    }
}

#[test]
fn files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("c.csv");
    std::fs::write(&plain, COUNTRY_CSV).unwrap();
    let gz = dir.path().join("c.csv.gz");
    std::fs::write(&gz, gzip(COUNTRY_CSV.as_bytes())).unwrap();
    let (a, pa) = load_layer("src", &plain, &AUTO).unwrap();
    let (b, pb) = load_layer("src", &gz, &AUTO).unwrap();
    assert_eq!(a, b);
    assert_eq!(pa.origin, plain.display().to_string());
    assert_eq!(pa.sha256, sha256_hex(COUNTRY_CSV.as_bytes()));
    assert_eq!(pb.bytes, std::fs::metadata(&gz).unwrap().len());
    // An unsorted file is read twice, from disk too.
    let unsorted = dir.path().join("u.csv");
    std::fs::write(&unsorted, "2.0.0.0,2.0.0.9,US\n1.0.0.0,1.0.0.9,AU\n").unwrap();
    let (u, _) = load_layer("src", &unsorted, &AUTO).unwrap();
    assert_eq!(u, layer(&[country("AU"), country("US")], &[("1.0.0.0", "1.0.0.9", 0), ("2.0.0.0", "2.0.0.9", 1)], &[]));
    let missing = load_layer("src", &dir.path().join("nope.csv"), &AUTO).unwrap_err();
    assert!(matches!(missing, SourceError::Io { .. }), "{missing}");
}

#[test]
fn declared_columns() {
    let layout = RangeLayout::Columns {
        delimiter: Some(b'\t'),
        columns: vec![
            RangeColumn::Skip,
            RangeColumn::Start,
            RangeColumn::End,
            RangeColumn::Asn,
            RangeColumn::Country,
            RangeColumn::Subdivision,
        ],
    };
    let text = "id\tfrom\tto\tasn\tcc\tregion\n\
                x\t1.0.0.0\t1.0.0.255\tAS5\tua\t43\n\
                y\t1.0.1.0\t1.0.1.255\t\tUA\tKyiv\n\
                z\t1.0.2.0\t1.0.2.255\t6\tUA\tua-30\n";
    let (got, provenance) = ok(text, &layout);
    let rec = |asn: Option<u32>, sub: &str| GeoRecord {
        asn,
        country: cc("UA"),
        subdivision: Some(SharedStr::from(sub)),
        ..GeoRecord::default()
    };
    let want = layer(
        &[rec(Some(5), "UA-43"), rec(None, "UA:Kyiv"), rec(Some(6), "UA-30")],
        &[("1.0.0.0", "1.0.0.255", 0), ("1.0.1.0", "1.0.1.255", 1), ("1.0.2.0", "1.0.2.255", 2)],
        &[],
    );
    assert_eq!(got, want);
    assert_eq!(provenance.schema, "columns");
    // The declared delimiter is used even where a comma would be guessed.
    let semicolons = RangeLayout::Columns {
        delimiter: Some(b';'),
        columns: vec![RangeColumn::Start, RangeColumn::End, RangeColumn::AsOrg],
    };
    let (got, _) = ok("1.0.0.0;1.0.0.255;\"A; B, C\"\n", &semicolons);
    assert_eq!(got.records()[0].as_org.as_deref(), Some("A; B, C"));
    // The header test looks at the start column, so a first line starting with a word is data.
    let msg = err("x\t1.0.0.0\t1.0.0.255\tAS5\tua\n", &layout);
    assert!(
        msg.contains("t.csv:1: ") && msg.contains("expected 6 tab-separated fields (the declared columns)"),
        "{msg}"
    );
    let no_end = RangeLayout::Columns { delimiter: None, columns: vec![RangeColumn::Start, RangeColumn::Country] };
    let msg = err("1.0.0.0,AU\n", &no_end);
    assert!(msg.contains("t.csv:1: ") && msg.contains("exactly one \"end\" column"), "{msg}");
}

#[test]
fn column_names() {
    for (name, column) in [
        ("start", RangeColumn::Start),
        ("end", RangeColumn::End),
        ("country", RangeColumn::Country),
        ("subdivision", RangeColumn::Subdivision),
        ("asn", RangeColumn::Asn),
        ("as_org", RangeColumn::AsOrg),
        ("-", RangeColumn::Skip),
        ("skip", RangeColumn::Skip),
    ] {
        assert_eq!(RangeColumn::from_name(name), Some(column), "{name}");
    }
    for bad in ["", "Start", "org", "city", " start"] {
        assert_eq!(RangeColumn::from_name(bad), None, "{bad:?}");
    }
}

#[test]
fn sniffing() {
    assert!(sniff(COUNTRY_CSV.as_bytes()));
    assert!(sniff(IPTOASN.as_bytes()));
    assert!(sniff(b"\"1.0.0.0\",\"1.0.0.255\",\"AU\"\n"));
    assert!(sniff(b"::,::ff,DE"));
    assert!(sniff(&gzip(b"anything")));
    // Cut inside the first line (and inside a character) still counts.
    let cut = "1.0.0.0,1.0.0.255,\"Caf\u{e9}".as_bytes();
    assert!(sniff(&cut[..cut.len() - 1]));
    assert!(!sniff(b""));
    assert!(!sniff(b"# only a comment\n"));
    assert!(!sniff(b"10.0.0.0/8\n192.168.0.0/16\n"));
    assert!(!sniff(b"10.0.0.1\n10.0.0.2\n"));
    assert!(!sniff(b"start,end,country\nnot,an,address\n"));
    let mut mmdb = vec![0u8, 0, 0, 1, 0xff, 0x10, b'\n', 0x80, 0xfe, b',', 0x20];
    mmdb.extend_from_slice(b"\xab\xcd\xefMaxMind.com\xe9[binary_format_major_version");
    assert!(!sniff(&mmdb));
}

#[test]
fn quoted_field_splitting() {
    let mut fields = Fields::default();
    split("a, \"b, c\" ,\"\"\"q\"\"\",,\"\"", b',', &mut fields).unwrap();
    let got: Vec<&str> = (0..fields.len()).map(|i| fields.get(i)).collect();
    assert_eq!(got, ["a", "b, c", "\"q\"", "", ""]);
    assert!(split("\"a\"b,c", b',', &mut fields).unwrap_err().contains("after a closing quote"));
    // Tab files take quotes literally.
    split("\"a\tb\"", b'\t', &mut fields).unwrap();
    assert_eq!((fields.get(0), fields.get(1)), ("\"a", "b\""));
}

/// Ranges from (gap before, length - 1, country) triples, laid out from `base`.
fn ranges_from(base: u32, spec: &[(u32, u32, usize)]) -> Vec<(u32, u32, &'static str)> {
    const COUNTRIES: [&str; 5] = ["US", "de", "RU", "ZZ", "UA"];
    let mut next = base;
    spec.iter()
        .map(|&(gap, len, c)| {
            let first = next + gap;
            let last = first + len;
            next = last + 1;
            (first, last, COUNTRIES[c])
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random disjoint ranges in random order answer like a linear scan of them.
    #[test]
    fn random_ranges_match_a_naive_model(
        base in 0u32..0x8000_0000,
        spec in prop::collection::vec((0u32..4, 0u32..300, 0usize..5), 1..40),
        keys in prop::collection::vec(any::<u32>(), 40),
        shuffle in any::<bool>(),
        probes in prop::collection::vec(any::<u32>(), 50),
    ) {
        let mut ranges = ranges_from(base, &spec);
        // A random order (the sorted one included).
        let mut keyed: Vec<(u32, (u32, u32, &str))> = ranges.iter().zip(&keys).map(|(r, k)| (*k, *r)).collect();
        if shuffle {
            keyed.sort_by_key(|(k, _)| *k);
        }
        let text: String = keyed
            .iter()
            .map(|(_, (a, b, c))| format!("{},{},{c}\n", Ipv4Addr::from(*a), Ipv4Addr::from(*b)))
            .collect();
        ranges.sort_unstable();
        let naive = |ip: u32| {
            ranges
                .iter()
                .find(|(a, b, _)| *a <= ip && ip <= *b)
                .and_then(|(_, _, c)| CountryCode::parse(c))
                .filter(|c| c.as_str() != "ZZ")
        };
        let with_data = ranges.iter().filter(|(_, _, c)| *c != "ZZ").count();
        let loaded = load_layer_bytes("p", "p.csv", text.as_bytes(), &RangeLayout::Known(KnownRangeLayout::Country));
        if with_data == 0 {
            let no_networks = matches!(loaded, Err(SourceError::NoNetworks { .. }));
            prop_assert!(no_networks, "{:?}", loaded);
            return Ok(());
        }
        let (layer, provenance) = loaded.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(provenance.networks_v4, with_data);
        let mut builder = TableBuilder::new();
        builder.add_layer(0, &layer);
        let table = builder.build().unwrap();
        let (lo, hi) = (ranges[0].0, ranges[ranges.len() - 1].1);
        let edges = ranges.iter().flat_map(|(a, b, _)| [*a, *b, a.saturating_sub(1), b.saturating_add(1)]);
        let inside = probes.iter().map(|p| lo + p % (hi - lo + 1));
        for ip in edges.chain(inside).chain(probes.iter().copied()) {
            let got = table.lookup(IpAddr::V4(Ipv4Addr::from(ip))).geo.country;
            prop_assert_eq!(got, naive(ip), "{}", Ipv4Addr::from(ip));
        }
    }

    /// No input makes the reader panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), gz in any::<bool>()) {
        let input = if gz { gzip(&bytes) } else { bytes.clone() };
        let result = load_layer_bytes("p", "p.bin", &input, &AUTO);
        let panicked = matches!(result, Err(SourceError::Panicked { .. }));
        prop_assert!(!panicked, "{:?}", result);
        let _ = sniff(&bytes);
    }

    /// Line-shaped noise: addresses, delimiters and quotes in random combinations.
    #[test]
    fn line_noise_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec!["1.0.0.0", "::1", ",", "\t", "\"", "\n", "\r\n", "AU", "AS1", "#", "x", " ", "ffff::"]),
            0..60,
        )
    ) {
        let text: String = parts.concat();
        let result = load(&text, &AUTO);
        let panicked = matches!(result, Err(SourceError::Panicked { .. }));
        prop_assert!(!panicked, "{:?}", result);
        let _ = sniff(text.as_bytes());
    }
}
