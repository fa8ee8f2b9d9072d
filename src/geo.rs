//! Geo data types shared by the sources, the table, the policy and the CLI.
//!
//! A leaf module: plain values, no I/O. `GeoRecord` is what a source says about a network;
//! `ListSet` says which named CIDR lists contain an address; `Answer` is what the table
//! returns for an address (both, plus which source gave the geo data).
//!
//! # Layering, field by field
//! Sources apply in configuration order and a later source overrides only the fields it has
//! ([`GeoRecord::overlay`]). The fields travel in groups, so an answer never mixes one
//! database's country with another's region:
//! - location: `country` with its `subdivision` (a source that gives a country replaces
//!   both, so `UA` from one database never carries `RU:Krasnodar Krai` from another; a source
//!   with a subdivision but no country is the same as one with both);
//! - `registered_country` and `represented_country`, each on its own;
//! - the operator: `asn` with its `as_org`;
//! - the flags `anonymous_proxy` and `satellite_provider`: set if any source sets them.
//!
//! # Subdivisions
//! A subdivision is an ISO 3166-2 code (`UA-43`) where the database gives one, else the
//! database's own name under its country (`RU:Crimea`, `UA:Donetsk`). [`subdivision_matches`]
//! compares a rule's entry with either form: codes ASCII case-insensitively, names case- and
//! accent-insensitively (`ua:kyiv` is `UA:Kyïv`), without allocating.

use std::fmt;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A string shared by every record that names it (an organisation, a region name): one
/// pointer wide, so a record stays small (a city database layered with an ASN database holds
/// 200k+ records).
pub type SharedStr = arcstr::ArcStr;

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
    /// The most specific subdivision: a full ISO 3166-2 code (`UA-43`), or `CC:Name` where
    /// the database names it without a code (`RU:Crimea`).
    pub subdivision: Option<SharedStr>,
    /// GeoIP2 `traits.is_anonymous_proxy`.
    pub anonymous_proxy: bool,
    /// GeoIP2 `traits.is_satellite_provider`.
    pub satellite_provider: bool,
    /// The autonomous system announcing the network (`autonomous_system_number`).
    pub asn: Option<u32>,
    /// The organisation operating that AS (`autonomous_system_organization`), shared between
    /// the records that name it.
    pub as_org: Option<SharedStr>,
}

/// Which named lists contain an address: bit `i` is the list with id `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListSet(pub u64);

/// The largest number of named CIDR lists one configuration may hold.
pub const MAX_LISTS: usize = 64;

/// What the table knows about an address, borrowed from the table: a lookup copies a few
/// words and never allocates. Records and view sets live once in the table's pools, however
/// many answers share them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    /// The sources' records laid over each other in configuration order (and any list's `set`).
    pub geo: &'a GeoRecord,
    /// Every list containing the address.
    pub lists: ListSet,
    /// Index (in configuration order) of the source that supplied the location in `geo` (or,
    /// with no location, the last one that gave any field); `None` = no data.
    pub source: Option<u16>,
    /// Each database source's own answer, for those with data here, in configuration order:
    /// what a rule's `view` tests and `explain` shows.
    pub views: Views<'a>,
}

/// One entry of a view set as a table stores it: a source and the index of its record in the
/// table's record pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewEntry {
    /// Index of the source in configuration order.
    pub source: u16,
    /// Index into the record pool the entry is read with.
    pub record: u32,
}

/// The per-source answers of one [`Answer`], in source order.
#[derive(Clone, Copy)]
pub struct Views<'a> {
    records: &'a [GeoRecord],
    entries: &'a [ViewEntry],
}

/// One database source's own answer for an address, before layering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceView<'a> {
    /// Index of the source in configuration order.
    pub source: u16,
    pub geo: &'a GeoRecord,
}

/// An [`Answer`] that owns its records, for answers built by hand (tests, tools);
/// [`answer`](Self::answer) borrows it the way a table's answer borrows the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedAnswer {
    pub geo: GeoRecord,
    pub lists: ListSet,
    pub source: Option<u16>,
    records: Vec<GeoRecord>,
    entries: Vec<ViewEntry>,
}

/// The record that says nothing, for views of a source without data.
pub static EMPTY_RECORD: GeoRecord = GeoRecord {
    country: None,
    registered_country: None,
    represented_country: None,
    subdivision: None,
    anonymous_proxy: false,
    satellite_provider: false,
    asn: None,
    as_org: None,
};

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

// === impl Answer ===

impl Answer<'static> {
    /// The answer of an address no source knows.
    pub const EMPTY: Answer<'static> =
        Answer { geo: &EMPTY_RECORD, lists: ListSet(0), source: None, views: Views::EMPTY };
}

impl Default for Answer<'_> {
    fn default() -> Self {
        Answer::EMPTY
    }
}

impl<'a> Answer<'a> {
    /// What source `source` itself says here (the empty record where it has no data).
    pub fn view_of(&self, source: u16) -> &'a GeoRecord {
        self.views.get(source).unwrap_or(&EMPTY_RECORD)
    }
}

// === impl OwnedAnswer ===

impl OwnedAnswer {
    /// An answer whose layered record is `geo`, from source 0, with no views.
    pub fn new(geo: GeoRecord) -> Self {
        Self { geo, source: Some(0), ..Self::default() }
    }

    /// Adds what source `source` itself says (sources kept in order, one record each).
    pub fn push_view(&mut self, source: u16, record: GeoRecord) {
        self.entries.retain(|e| e.source != source);
        let at = self.entries.partition_point(|e| e.source < source);
        self.entries.insert(at, ViewEntry { source, record: self.records.len() as u32 });
        self.records.push(record);
    }

    pub fn answer(&self) -> Answer<'_> {
        Answer {
            geo: &self.geo,
            lists: self.lists,
            source: self.source,
            views: Views::new(&self.records, &self.entries),
        }
    }
}

impl From<Answer<'_>> for OwnedAnswer {
    fn from(a: Answer<'_>) -> Self {
        let mut owned = OwnedAnswer { geo: a.geo.clone(), lists: a.lists, source: a.source, ..Self::default() };
        for v in a.views.iter() {
            owned.push_view(v.source, v.geo.clone());
        }
        owned
    }
}

// === impl Views ===

impl Views<'static> {
    /// No source has data.
    pub const EMPTY: Views<'static> = Views { records: &[], entries: &[] };
}

impl<'a> Views<'a> {
    /// The view set `entries`, their records read from `records` (an entry whose record is
    /// not in `records` reads as the empty record).
    pub fn new(records: &'a [GeoRecord], entries: &'a [ViewEntry]) -> Self {
        Self { records, entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sources with data, in source order.
    pub fn iter(&self) -> impl Iterator<Item = SourceView<'a>> + 'a {
        let records = self.records;
        self.entries
            .iter()
            .map(move |e| SourceView { source: e.source, geo: records.get(e.record as usize).unwrap_or(&EMPTY_RECORD) })
    }

    /// What `source` says, if it has data here.
    pub fn get(&self, source: u16) -> Option<&'a GeoRecord> {
        self.iter().find(|v| v.source == source).map(|v| v.geo)
    }
}

impl PartialEq for Views<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Views<'_> {}

impl fmt::Debug for Views<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

// === impl GeoRecord ===

impl GeoRecord {
    /// True when the record carries no information at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// True when the record places the address somewhere (a country or a subdivision).
    pub fn has_location(&self) -> bool {
        self.country.is_some() || self.subdivision.is_some()
    }

    /// `self` with the fields `later` has laid over it (see the module doc).
    pub fn overlay(&self, later: &GeoRecord) -> GeoRecord {
        let (country, subdivision) = if later.has_location() {
            (later.country, later.subdivision.clone())
        } else {
            (self.country, self.subdivision.clone())
        };
        let (asn, as_org) = if later.asn.is_some() || later.as_org.is_some() {
            (later.asn, later.as_org.clone())
        } else {
            (self.asn, self.as_org.clone())
        };
        GeoRecord {
            country,
            subdivision,
            registered_country: later.registered_country.or(self.registered_country),
            represented_country: later.represented_country.or(self.represented_country),
            anonymous_proxy: self.anonymous_proxy || later.anonymous_proxy,
            satellite_provider: self.satellite_provider || later.satellite_provider,
            asn,
            as_org,
        }
    }
}

/// Which of a database's own region names a compile keeps. Names nobody asks for would
/// split a city database's country ranges by region (DB-IP City Lite: 4.4M ranges and a
/// 38 MiB table with every name, 0.9M ranges and 6.5 MiB with none), so by default only the
/// names some rule mentions are kept; ISO 3166-2 codes are always kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegionFilter {
    all: bool,
    /// `CC:Name` entries, sorted and unique.
    names: Vec<Box<str>>,
}

impl Default for RegionFilter {
    /// Keeps every name (the readers' default; the compile narrows it).
    fn default() -> Self {
        Self::all()
    }
}

impl RegionFilter {
    /// Keeps every name.
    pub fn all() -> Self {
        Self { all: true, names: Vec::new() }
    }

    /// Keeps the names among `entries` (rule subdivisions; codes are ignored here).
    pub fn named<'a>(entries: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<Box<str>> = entries.into_iter().filter(|e| e.contains(':')).map(Into::into).collect();
        names.sort_unstable();
        names.dedup();
        Self { all: false, names }
    }

    /// Whether the region `CC:Name` is kept.
    pub fn keeps(&self, name: &str) -> bool {
        self.all || self.names.iter().any(|n| subdivision_matches(n, name))
    }
}

/// The subdivision shown for a database's own region name under `country`: `CC:Name`, the name
/// trimmed. `None` for an empty name.
pub fn named_subdivision(country: CountryCode, name: &str) -> Option<SharedStr> {
    let name = name.trim();
    (!name.is_empty()).then(|| SharedStr::from(format!("{country}:{name}")))
}

/// Whether a rule's subdivision entry (`UA-43` or `CC:Name`) names the record's subdivision.
/// Codes compare ASCII case-insensitively; names case- and accent-insensitively.
pub fn subdivision_matches(rule: &str, record: &str) -> bool {
    match (rule.split_once(':'), record.split_once(':')) {
        (None, None) => rule.eq_ignore_ascii_case(record),
        (Some((rc, rn)), Some((cc, name))) => rc.eq_ignore_ascii_case(cc) && fold(rn).eq(fold(name)),
        _ => false,
    }
}

/// A name's characters decomposed, without accents, lower-cased: what two spellings of a
/// region name must share to be the same name.
fn fold(name: &str) -> impl Iterator<Item = char> + '_ {
    name.trim().chars().nfd().filter(|&d| !is_combining_mark(d)).flat_map(char::to_lowercase)
}

/// An AS number written as a rule entry: `13238` or `AS13238` (any case). `None` for anything
/// else or a number beyond 32 bits.
pub fn parse_asn(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")).or_else(|| s.strip_prefix("As")).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
    fn overlay_keeps_location_fields_together() {
        let city = GeoRecord {
            country: CountryCode::parse("RU"),
            subdivision: Some("RU:Krasnodar Krai".into()),
            ..GeoRecord::default()
        };
        let asn = GeoRecord { asn: Some(12389), as_org: Some("Rostelecom".into()), ..GeoRecord::default() };
        let both = city.overlay(&asn);
        assert_eq!(both.country, city.country);
        assert_eq!(both.subdivision, city.subdivision);
        assert_eq!(both.asn, Some(12389));
        let ua = GeoRecord { country: CountryCode::parse("UA"), ..GeoRecord::default() };
        let moved = both.overlay(&ua);
        assert_eq!((moved.country, moved.subdivision.as_deref()), (ua.country, None));
        assert_eq!(moved.as_org.as_deref(), Some("Rostelecom"));
        assert_eq!(GeoRecord::default().overlay(&city), city);
        assert_eq!(city.overlay(&GeoRecord::default()), city);
    }

    #[test]
    fn subdivision_forms() {
        assert!(subdivision_matches("ua-43", "UA-43"));
        assert!(!subdivision_matches("UA-43", "UA-40"));
        assert!(subdivision_matches("ru:crimea", "RU:Crimea"));
        assert!(subdivision_matches("UA:Kyiv", "UA:Kyïv"));
        assert!(subdivision_matches("UA:  Donetsk ", "UA:Donetsk"));
        assert!(!subdivision_matches("UA:Crimea", "RU:Crimea"));
        assert!(!subdivision_matches("UA-43", "UA:Crimea"));
        assert!(!subdivision_matches("RU:Crimea", "RU:Crimean"));
        assert_eq!(
            named_subdivision(CountryCode::parse("ru").unwrap_or(CountryCode([b'X'; 2])), " Crimea ").as_deref(),
            Some("RU:Crimea")
        );
    }

    #[test]
    fn asn_forms() {
        assert_eq!(parse_asn("13238"), Some(13238));
        assert_eq!(parse_asn("AS12389"), Some(12389));
        assert_eq!(parse_asn("as0"), Some(0));
        for bad in ["", "AS", "AS-1", "4294967296", "12a", " 1", "ASN1"] {
            assert_eq!(parse_asn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn list_set_bits() {
        let s = ListSet::EMPTY.with(0).with(63);
        assert!(s.contains(0) && s.contains(63) && !s.contains(1) && !s.contains(64));
        assert_eq!(s.ids().collect::<Vec<_>>(), vec![0, 63]);
    }
}
