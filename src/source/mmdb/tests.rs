// Tests may unwrap: a failure should stop right there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use ipnet::IpNet;
use mmdb_writer::Writer;
use serde_json::{json, Value};

use super::*;

/// Decodes each `(record, address)` of a one-off database with `schema`.
fn decode_all(schema: &MmdbSchema, records: &[Value]) -> (Vec<GeoRecord>, RecordDecoder) {
    let mut writer = Writer::new("unit");
    for (i, r) in records.iter().enumerate() {
        let net: IpNet = format!("10.0.{i}.0/24").parse().unwrap();
        writer.insert(net, r).unwrap();
    }
    let bytes = writer.to_bytes().unwrap();
    let reader = Reader::from_source(bytes.as_slice()).unwrap();
    let mut decoder = RecordDecoder::new(schema);
    let out = (0..records.len())
        .map(|i| {
            let ip: IpAddr = format!("10.0.{i}.1").parse().unwrap();
            decoder.decode(&reader.lookup(ip).unwrap()).unwrap()
        })
        .collect();
    (out, decoder)
}

fn cc(s: &str) -> Option<CountryCode> {
    CountryCode::parse(s)
}

#[test]
fn geoip2_fields_are_read() {
    let (got, decoder) = decode_all(
        &MmdbSchema::Auto,
        &[json!({
            "country": {"iso_code": "UA", "names": {"en": "Ukraine"}},
            "registered_country": {"iso_code": "ru"},
            "represented_country": {"iso_code": "US", "type": "military"},
            "subdivisions": [{"iso_code": "ENG"}, {"names": {}}, {"iso_code": "43"}, {"names": {}}],
            "traits": {"is_anonymous_proxy": true, "is_satellite_provider": false},
            "location": {"latitude": 45.0}
        })],
    );
    let want = GeoRecord {
        country: cc("UA"),
        registered_country: cc("RU"),
        represented_country: cc("US"),
        subdivision: Some("UA-43".into()),
        anonymous_proxy: true,
        satellite_provider: false,
        asn: None,
        as_org: None,
    };
    assert_eq!(got, vec![want]);
    assert_eq!(decoder.invalid, 0);
    assert_eq!(decoder.schema_found().as_deref(), Some("geoip2"));
}

#[test]
fn flat_and_mixed_records_in_auto() {
    let (got, decoder) = decode_all(
        &MmdbSchema::Auto,
        &[
            json!({"country_code": "by"}),
            json!({"country": {"iso_code": "DE"}, "country_code": "RU"}),
            json!({"country": {"iso_code": "XYZ"}, "country_code": "RU"}),
        ],
    );
    let countries: Vec<_> = got.iter().map(|r| r.country).collect();
    assert_eq!(countries, vec![cc("BY"), cc("DE"), cc("RU")]);
    assert_eq!(decoder.invalid, 1);
    assert_eq!(decoder.schema_found().as_deref(), Some("geoip2+flat"));
}

#[test]
fn explicit_schemas_read_only_their_fields() {
    let records = [json!({"country": {"iso_code": "DE"}, "country_code": "RU"})];
    let (flat, _) = decode_all(&MmdbSchema::Flat, &records);
    let (geoip2, _) = decode_all(&MmdbSchema::GeoIp2, &records);
    assert_eq!(flat[0].country, cc("RU"));
    assert_eq!(geoip2[0].country, cc("DE"));
}

#[test]
fn wrong_shapes_are_ignored_and_counted() {
    let (got, decoder) = decode_all(
        &MmdbSchema::Auto,
        &[
            json!({"country": "RU"}),
            json!({"country": {"iso_code": 643}}),
            json!({"subdivisions": {"iso_code": "43"}, "country": {"iso_code": "UA"}}),
            json!({"subdivisions": ["43"], "country": {"iso_code": "UA"}}),
            json!({"traits": {"is_anonymous_proxy": "yes", "is_satellite_provider": 1}}),
            json!({"traits": [true]}),
            json!("RU"),
            json!([1, 2, 3]),
            json!({"country_code": ["RU"]}),
            json!({"country_code": ""}),
            json!({"country": {"iso_code": "UA"}, "subdivisions": [{"iso_code": "TOOLONG"}]}),
            json!({"subdivisions": [{"iso_code": "43"}]}),
        ],
    );
    let empty = GeoRecord::default();
    for (i, r) in got.iter().enumerate() {
        let only_country = GeoRecord { country: r.country, ..GeoRecord::default() };
        assert!(*r == empty || *r == only_country, "record {i}: {r:?}");
    }
    assert_eq!(decoder.invalid, 13, "{:?}", decoder.example);
    assert_eq!(decoder.example.as_deref(), Some("country.iso_code: a string where a map was expected"));
}

#[test]
fn subdivision_codes_are_normalised() {
    let mut d = RecordDecoder::new(&MmdbSchema::Auto);
    let ua = cc("UA");
    let s = |d: &mut RecordDecoder, country, code: &str| {
        d.subdivision("f", country, Some(Leaf::Str(Cow::Owned(code.to_owned())))).map(|s| s.to_string())
    };
    assert_eq!(s(&mut d, ua, "43").as_deref(), Some("UA-43"));
    assert_eq!(s(&mut d, ua, "ua-43").as_deref(), Some("UA-43"));
    assert_eq!(s(&mut d, None, "UA-09").as_deref(), Some("UA-09"));
    assert_eq!(s(&mut d, cc("GB"), "wsm").as_deref(), Some("GB-WSM"));
    assert_eq!(d.invalid, 0);
    for bad in ["", "ABCD", "4 3", "U-43", "UA-", "UA-43-1"] {
        assert_eq!(s(&mut d, ua, bad), None, "{bad:?}");
    }
    assert_eq!(s(&mut d, None, "43"), None);
    assert_eq!(d.invalid, 7);
}

#[test]
fn custom_paths_index_and_count_from_the_end() {
    let paths = FieldPaths {
        country: Some("loc.cc".into()),
        subdivision: Some("regions.-2".into()),
        registered_country: Some("regs.0.code".into()),
        anonymous_proxy: Some("flags.1".into()),
        ..FieldPaths::default()
    };
    let (got, decoder) = decode_all(
        &MmdbSchema::Custom(paths),
        &[
            json!({"loc": {"cc": "UA"}, "regions": ["43", "X"], "regs": [{"code": "RU"}],
                   "flags": [false, true]}),
            json!({"loc": "UA", "regions": [], "flags": [true]}),
        ],
    );
    assert_eq!(
        got[0],
        GeoRecord {
            country: cc("UA"),
            registered_country: cc("RU"),
            subdivision: Some("UA-43".into()),
            anonymous_proxy: true,
            ..GeoRecord::default()
        }
    );
    assert_eq!(got[1], GeoRecord::default());
    // `loc.cc` runs into a string: counted as invalid, not fatal.
    assert_eq!(decoder.invalid, 1);
    assert_eq!(decoder.schema_found().as_deref(), Some("custom"));
}

#[test]
fn custom_empty_path_is_the_record_itself() {
    let paths = FieldPaths { country: Some(String::new()), ..FieldPaths::default() };
    let (got, _) = decode_all(&MmdbSchema::Custom(paths), &[json!("de")]);
    assert_eq!(got[0].country, cc("DE"));
}

#[test]
fn path_segments() {
    let got: Vec<String> = Segment::parse_path("a.b.-1.c.0").iter().map(|s| format!("{:?}", s.element())).collect();
    assert_eq!(got, ["Key(\"a\")", "Key(\"b\")", "IndexFromEnd(0)", "Key(\"c\")", "Index(0)"]);
    assert!(Segment::parse_path("").is_empty());
}

#[test]
fn interner_decodes_each_offset_once_and_shares_equal_records() {
    let mut interner = Interner::default();
    let mut decodes = 0;
    let mut fresh = 0;
    let mut index = |offset: usize, country: &str| {
        interner
            .index::<()>(
                offset,
                || {
                    decodes += 1;
                    Ok(GeoRecord { country: cc(country), ..GeoRecord::default() })
                },
                |_| fresh += 1,
            )
            .unwrap()
    };
    assert_eq!(index(10, "RU"), 0);
    assert_eq!(index(10, "RU"), 0);
    assert_eq!(index(20, "BY"), 1);
    assert_eq!(index(10, "RU"), 0);
    assert_eq!(index(30, "RU"), 0);
    assert_eq!(decodes, 3);
    assert_eq!(fresh, 2, "each distinct record is announced once");
    assert_eq!(interner.records.len(), 2);
}

#[test]
fn panics_become_errors() {
    let payload = panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
    assert_eq!(panic_message(payload.as_ref()), "boom 1");
}

#[test]
fn asn_and_region_name_fields() {
    let (got, decoder) = decode_all(
        &MmdbSchema::Auto,
        &[
            json!({"autonomous_system_number": 13238, "autonomous_system_organization": " YANDEX LLC "}),
            json!({"autonomous_system_number": 0, "autonomous_system_organization": ""}),
            json!({"country_code": "UA", "state1": "Crimea", "city": "Simferopol"}),
            json!({"country_code": "RU", "state1": "Krasnodar Krai"}),
            json!({"country_code": "UA", "state1": "ua-43"}),
            json!({"country_code": "UA", "state1": ""}),
            json!({"state1": "Crimea"}),
        ],
    );
    assert_eq!((got[0].asn, got[0].as_org.as_deref()), (Some(13238), Some("YANDEX LLC")));
    assert_eq!((got[1].asn, got[1].as_org.as_deref()), (None, None));
    let subs: Vec<Option<String>> = got[2..].iter().map(|r| r.subdivision.as_deref().map(str::to_owned)).collect();
    assert_eq!(
        subs,
        vec![Some("UA:Crimea".into()), Some("RU:Krasnodar Krai".into()), Some("UA-43".into()), None, None]
    );
    assert_eq!(decoder.schema_found().as_deref(), Some("flat+asn"));
    assert!(decoder.fatal.is_none());
}

#[test]
fn asn_of_the_wrong_type_is_fatal() {
    for bad in [
        json!({"autonomous_system_number": "big"}),
        json!({"autonomous_system_number": {"n": 1}}),
        json!({"autonomous_system_number": 4294967296u64}),
    ] {
        let (_, decoder) = decode_all(&MmdbSchema::Asn, std::slice::from_ref(&bad));
        let reason = decoder.fatal.clone().unwrap_or_default();
        assert!(reason.contains("autonomous_system_number"), "{bad}: {reason:?}");
    }
    let (got, decoder) = decode_all(&MmdbSchema::Asn, &[json!({"autonomous_system_number": "AS12389"})]);
    assert_eq!(got[0].asn, Some(12389));
    assert!(decoder.fatal.is_none());
}
