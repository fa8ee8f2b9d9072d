//! Helpers shared by the integration tests.
//!
//! Each test crate compiles this module separately and uses only part of it.
// Test support: a broken fixture should fail loudly, so unwrap/expect are fine here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;

use geogate::geo::{CountryCode, GeoRecord};

use self::fixtures::Expect;

/// The record an [`Expect`] row describes; `None` when the row expects no data.
pub fn expected_record(e: &Expect) -> Option<GeoRecord> {
    if !e.found {
        return None;
    }
    let cc = |c: Option<&str>| c.map(|c| CountryCode::parse(c).expect("fixture country code"));
    Some(GeoRecord {
        country: cc(e.country),
        registered_country: cc(e.registered_country),
        represented_country: cc(e.represented_country),
        subdivision: e.subdivision.map(Into::into),
        anonymous_proxy: e.anonymous_proxy,
        satellite_provider: e.satellite_provider,
        asn: None,
        as_org: None,
    })
}
