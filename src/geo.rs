//! Geo data types shared by the sources, the table, the policy and the CLI.
//!
//! A leaf module: plain values, no I/O. `GeoRecord` is what a source says about a network;
//! `ListSet` says which named CIDR lists contain an address; `Answer` is what the table
//! returns for an address (both, plus which source gave the geo data).

use std::fmt;

/// An ISO 3166-1 alpha-2 country code, stored as two upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

/// What one source says about one network. Every field is optional: a flat
/// `country_code` database fills only `country`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GeoRecord {
    /// Where the address is (GeoIP2 `country.iso_code`, flat `country_code`).
    pub country: Option<CountryCode>,
    /// Where the network is registered (GeoIP2 `registered_country.iso_code`).
    pub registered_country: Option<CountryCode>,
    /// Whom it serves, e.g. a military base abroad (GeoIP2 `represented_country.iso_code`).
    pub represented_country: Option<CountryCode>,
    /// The most specific ISO 3166-2 subdivision as a full code, e.g. `UA-43`.
    pub subdivision: Option<Box<str>>,
    /// GeoIP2 `traits.is_anonymous_proxy`.
    pub anonymous_proxy: bool,
    /// GeoIP2 `traits.is_satellite_provider`.
    pub satellite_provider: bool,
}

/// Which named lists contain an address: bit `i` is the list with id `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListSet(pub u64);

/// The largest number of named CIDR lists one configuration may hold.
pub const MAX_LISTS: usize = 64;

/// What the table knows about an address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Answer {
    /// Geo data from the highest-precedence source that covers the address.
    pub geo: GeoRecord,
    /// Every list containing the address.
    pub lists: ListSet,
    /// Index (in configuration order) of the source that supplied `geo`; `None` = no data.
    pub source: Option<u16>,
}

// === impl CountryCode ===

impl CountryCode {
    /// Parses two ASCII letters in either case; anything else is refused.
    pub fn parse(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl GeoRecord ===

impl GeoRecord {
    /// True when the record carries no information at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

// === impl ListSet ===

impl ListSet {
    pub const EMPTY: Self = Self(0);

    pub fn with(self, id: usize) -> Self {
        Self(self.0 | (1u64 << id))
    }

    pub fn contains(self, id: usize) -> bool {
        id < MAX_LISTS && self.0 & (1u64 << id) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// List ids in ascending order.
    pub fn ids(self) -> impl Iterator<Item = usize> {
        (0..MAX_LISTS).filter(move |i| self.0 & (1u64 << i) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_code_is_strict() {
        assert_eq!(CountryCode::parse("ru").map(|c| c.to_string()), Some("RU".into()));
        for bad in ["", "R", "RUS", "R1", "é", "R "] {
            assert!(CountryCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn list_set_bits() {
        let s = ListSet::EMPTY.with(0).with(63);
        assert!(s.contains(0) && s.contains(63) && !s.contains(1) && !s.contains(64));
        assert_eq!(s.ids().collect::<Vec<_>>(), vec![0, 63]);
    }
}
