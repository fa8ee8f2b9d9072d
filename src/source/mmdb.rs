//! MaxMind DB reader: walks the whole search tree once and returns every network with data,
//! so the table never needs the file (or `maxminddb`) at lookup time.
//!
//! # What the output means
//! `Database::v4` answers exactly what `maxminddb::Reader::lookup` answers for each IPv4
//! address, and `Database::v6` exactly what it answers for each IPv6 address:
//!
//! - IPv4-only databases (`ip_version` 4) give `v4` only.
//! - IPv6 databases keep IPv4 at `::/96`. The walk reports that subtree as IPv4 networks,
//!   each to `v4` as is; `::/96` itself is then an alias block, since an IPv6 lookup of
//!   `::a.b.c.d` walks the same nodes: `v6` holds `::a.b.c.d/(96+p)` (replayed from the IPv4
//!   networks), a [`SourceLayer`] only notes the block, and the table answers it from IPv4.
//! - The alias nodes MaxMind writers add (`::ffff:0:0/96`, `2002::/16`, `2001::/32`) point
//!   into the IPv4 subtree; they answer what the IPv4 subtree answers, so `v6` holds e.g.
//!   `::ffff:a.b.c.d/(96+p)` and `2002:a.b.c.d::/(16+p)` too (replayed from the IPv4
//!   networks, not walked again; counted once).
//! - A database without an IPv4 subtree (`::/96` lies inside one bigger IPv6 record) answers
//!   every IPv4 lookup with that record, so `v4` is `0.0.0.0/0` -> that record.
//!
//! Both vectors are in ascending address order and disjoint. Records are interned: a record
//! is decoded once per data offset, equal records share one index, and the `u32` beside a
//! network is an index into `records`. A record may be empty ([`GeoRecord::is_empty`]) when the
//! database entry has none of the fields the schema reads, or only invalid ones.
//!
//! # Cost
//! One pass over the tree: O(terminal nodes) network conversions plus one lookup and one
//! decode per distinct data record. Output memory is 12 bytes per IPv4 network and 24 per IPv6
//! network; every IPv4 network also appears in [`Database::v6`] once per alias block (`::/96`,
//! and with MaxMind's aliases three more; a [`SourceLayer`] only notes the blocks).
//!
//! # Hostile files
//! The tree walk ([`tree`]) checks that the tree fits in the file, never goes deeper than an
//! address has bits, and gives up past the terminals `node_count` allows (a tree whose nodes
//! are shared would otherwise be walked an exponential number of times); `maxminddb` checks
//! the metadata and every data access, and each record is found through a `maxminddb` lookup
//! that must land on the record the walk found. The whole load runs under `catch_unwind` so a
//! bug in any layer becomes an error, not a crash.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use hashbrown::{HashMap, HashSet};
use ipnet::{Ipv4Net, Ipv6Net};
use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{panic_message, sha256_hex, Provenance, SourceError};
use crate::config::{FieldPaths, MmdbSchema};
use crate::geo::{CountryCode, GeoRecord, RegionFilter};
use crate::table::SourceLayer;

/// Everything a MaxMind DB says, flattened. See the module documentation for the meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    pub v4: Vec<(Ipv4Net, u32)>,
    pub v6: Vec<(Ipv6Net, u32)>,
    pub records: Vec<GeoRecord>,
    pub provenance: Provenance,
}

/// How many terminals per search-tree node the walk accepts before calling the tree corrupt.
/// A proper tree has `node_count + 1` terminals; a fallback walk of an alias that cannot be
/// replayed (see [`walk`]) visits the IPv4 subtree again, so 8 leaves room for odd writers.
const TERMINALS_PER_NODE: usize = 8;

/// Reads and loads a database file into vectors of every network (tests, benches, `lookup`
/// of a single file). The serving path streams instead: [`load_layer`].
pub fn load(name: &str, path: &Path, schema: &MmdbSchema) -> Result<Database, SourceError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io { origin: origin.clone(), source })?;
    load_bytes(name, &origin, bytes, schema)
}

/// Loads a database from memory; `origin` names it in errors and provenance.
pub fn load_bytes(name: &str, origin: &str, bytes: Vec<u8>, schema: &MmdbSchema) -> Result<Database, SourceError> {
    let mut sink = Collect::default();
    let provenance = guarded(origin, || walk(name, origin, &bytes, None, schema, &RegionFilter::all(), &mut sink))?;
    let Collect { mut v4, mut v6, records } = sink;
    // The walk is depth-first, left first, so this holds already; a cheap check keeps the
    // documented order independent of the iterator's internals.
    if !v4.is_sorted_by_key(|(net, _)| *net) {
        v4.sort_unstable_by_key(|(net, _)| *net);
    }
    if !v6.is_sorted_by_key(|(net, _)| *net) {
        v6.sort_unstable_by_key(|(net, _)| *net);
    }
    Ok(Database { v4, v6, records, provenance })
}

/// Streams a database file straight into its [`SourceLayer`]: the file is read in place
/// from a private mapped copy ([`super::mapped::MappedFile`]), never copied into the heap,
/// and no list of its networks is ever held; memory grows with the ranges after merging.
pub fn load_layer(name: &str, path: &Path, schema: &MmdbSchema) -> Result<(SourceLayer, Provenance), SourceError> {
    let origin = path.display().to_string();
    let file =
        super::mapped::MappedFile::open(path).map_err(|source| SourceError::Io { origin: origin.clone(), source })?;
    load_layer_bytes(name, &origin, file.bytes(), Some(file.sha256()), schema)
}

/// [`load_layer`] over bytes already in memory; `sha256` if already known.
pub fn load_layer_bytes(
    name: &str,
    origin: &str,
    bytes: &[u8],
    sha256: Option<&str>,
    schema: &MmdbSchema,
) -> Result<(SourceLayer, Provenance), SourceError> {
    load_layer_filtered(name, origin, bytes, sha256, schema, &RegionFilter::all(), SourceLayer::new())
}

/// [`load_layer_bytes`] keeping only the region names `regions` keeps (the compile's path),
/// filling `empty`: a new layer, perhaps sized for what the file is expected to hold
/// ([`SourceLayer::sized_like`] the layer it had before).
pub fn load_layer_filtered(
    name: &str,
    origin: &str,
    bytes: &[u8],
    sha256: Option<&str>,
    schema: &MmdbSchema,
    regions: &RegionFilter,
    empty: SourceLayer,
) -> Result<(SourceLayer, Provenance), SourceError> {
    debug_assert_eq!(empty.ranges(), (0, 0), "a layer to fill starts empty");
    let mut sink = LayerSink { layer: empty };
    let provenance = guarded(origin, || walk(name, origin, bytes, sha256, schema, regions, &mut sink))?;
    let mut layer = sink.layer;
    layer.shrink();
    Ok((layer, provenance))
}

/// Second line of defence: the reader and the walk are written not to panic on any input,
/// but a panic here would take down a reload thread (or start-up) over a bad file.
fn guarded<T>(origin: &str, f: impl FnOnce() -> Result<T, SourceError>) -> Result<T, SourceError> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(SourceError::Panicked { origin: origin.to_owned(), message: panic_message(payload.as_ref()) })
    })
}

/// Where [`walk`] sends what it finds: records as first met (numbered from 0), then
/// networks in ascending order per family, each family disjoint.
trait Sink {
    fn record(&mut self, record: &GeoRecord);
    fn v4(&mut self, net: Ipv4Net, record: u32) -> Result<(), String>;
    fn v6(&mut self, net: Ipv6Net, record: u32) -> Result<(), String>;
    /// IPv6 at `base` answers as every IPv4 network seen so far, the IPv4 address taking the
    /// 32 bits that end `shift` bits above the bottom (an alias of the IPv4 subtree): copied by
    /// [`Collect`], declared to the layer by [`LayerSink`] (the table answers it from IPv4).
    fn alias_v4(&mut self, base: u128, shift: u32) -> Result<(), String>;
}

/// Collects every network ([`Database`]).
#[derive(Default)]
struct Collect {
    v4: Vec<(Ipv4Net, u32)>,
    v6: Vec<(Ipv6Net, u32)>,
    records: Vec<GeoRecord>,
}

/// Builds a [`SourceLayer`].
#[derive(Default)]
struct LayerSink {
    layer: SourceLayer,
}

/// Walks the whole search tree once ([`tree::Tree`]), sending every network to `sink`.
///
/// Alias subtrees (`::ffff:0:0/96`, `2002::/16`, `2001::/32`: records that are the IPv4
/// root) are not walked again: each answers a lookup with the IPv4 answer of the 32 address
/// bits after its prefix, so the IPv4 networks, all met before (`::/96` comes first), are
/// replayed there. Each distinct data record is decoded once, through one `maxminddb` lookup of
/// the first address that leads to it; that lookup must land on the same record, so the walk
/// and the reference reader cannot disagree unnoticed.
fn walk(
    name: &str,
    origin: &str,
    bytes: &[u8],
    sha256: Option<&str>,
    schema: &MmdbSchema,
    regions: &RegionFilter,
    sink: &mut dyn Sink,
) -> Result<Provenance, SourceError> {
    let mmdb_error = |source: MaxMindDbError| SourceError::Mmdb { origin: origin.to_owned(), source };
    let corrupt = |reason: String| SourceError::Corrupt { origin: origin.to_owned(), reason };
    if bytes.is_empty() {
        return Err(SourceError::Empty { origin: origin.to_owned() });
    }
    let reader = Reader::from_source(bytes).map_err(mmdb_error)?;
    let metadata = reader.metadata();
    let ipv6_db = metadata.ip_version == 6;
    let budget = (metadata.node_count as usize).saturating_add(1).saturating_mul(TERMINALS_PER_NODE);
    let tree =
        tree::Tree::new(bytes, metadata.node_count, metadata.record_size, metadata.ip_version).map_err(corrupt)?;
    let ipv4_subtree = tree.has_ipv4_subtree();
    let data_base = (metadata.node_count as usize).saturating_add(16);

    let mut decoder = RecordDecoder::new(schema);
    decoder.regions = regions.clone();
    let mut interner = Interner::default();
    let mut counts = (0usize, 0usize);
    let visit = |first: u128, len: u8, terminal: tree::Terminal| -> Result<(), SourceError> {
        let pointer = match terminal {
            tree::Terminal::Empty => return Ok(()),
            // Only at depth <= 96 (the tree's rule), so the shift is in range.
            tree::Terminal::Alias => return sink.alias_v4(first, 96 - u32::from(len)).map_err(corrupt),
            tree::Terminal::Data(pointer) => pointer,
        };
        let bad_network = |e: ipnet::PrefixLenError| corrupt(format!("bad network: {e}"));
        // The networks this terminal answers for, in each family, and the address to look up.
        let (v4, v6, probe) = if !ipv6_db {
            let addr = std::net::Ipv4Addr::from(first as u32);
            (Some(Ipv4Net::new(addr, len).map_err(bad_network)?), None, IpAddr::V4(addr))
        } else if ipv4_subtree && len >= 96 && first <= u128::from(u32::MAX) {
            // Inside the IPv4 subtree: the IPv4 network. The same nodes seen as `::a.b.c.d`
            // are the alias of `::/96` the walk reports after them.
            let addr = std::net::Ipv4Addr::from(first as u32);
            (Some(Ipv4Net::new(addr, len - 96).map_err(bad_network)?), None, IpAddr::V4(addr))
        } else {
            let addr = Ipv6Addr::from(first);
            let n6 = Ipv6Net::new(addr, len).map_err(bad_network)?;
            // No IPv4 subtree: the record holding `::/96` answers every IPv4 lookup.
            let v4 = (len <= 96 && first == 0).then(Ipv4Net::default);
            (v4, Some(n6), IpAddr::V6(addr))
        };
        let offset = pointer.checked_sub(data_base).ok_or_else(|| {
            corrupt(format!("a search tree record ({pointer}) points into the data section separator"))
        })?;
        let decode = || -> Result<GeoRecord, SourceError> {
            let lookup = reader.lookup(probe).map_err(mmdb_error)?;
            if lookup.offset() != Some(offset) {
                return Err(corrupt(format!(
                    "the search tree walk and a lookup of {probe} disagree (data offset {offset} against {:?})",
                    lookup.offset()
                )));
            }
            decoder.decode(&lookup).map_err(mmdb_error)
        };
        let index = interner.index(offset, decode, |r| sink.record(r))?;
        if let Some(n4) = v4 {
            sink.v4(n4, index).map_err(corrupt)?;
        }
        if let Some(n6) = v6 {
            sink.v6(n6, index).map_err(corrupt)?;
        }
        match probe {
            IpAddr::V4(_) => counts.0 += 1,
            IpAddr::V6(_) => counts.1 += 1,
        }
        Ok(())
    };
    tree.walk(budget, visit).map_err(|e| match e {
        tree::Walk::Corrupt(reason) => corrupt(reason),
        tree::Walk::Visit(e) => e,
    })?;
    if counts == (0, 0) {
        return Err(SourceError::NoNetworks { origin: origin.to_owned() });
    }
    if let Some(reason) = decoder.fatal.take() {
        return Err(SourceError::Corrupt { origin: origin.to_owned(), reason });
    }
    let found_schema = decoder.schema_found().ok_or_else(|| SourceError::NoGeoData {
        origin: origin.to_owned(),
        schema: decoder.schema_name().to_owned(),
        database_type: metadata.database_type.clone(),
        records: interner.by_offset.len(),
    })?;
    if decoder.invalid > 0 {
        tracing::warn!(
            source = name,
            origin,
            invalid_values = decoder.invalid,
            example = decoder.example.as_deref().unwrap_or(""),
            "ignored invalid values in database records"
        );
    }
    Ok(Provenance {
        name: name.to_owned(),
        kind: "mmdb",
        origin: origin.to_owned(),
        schema: found_schema,
        database_type: Some(metadata.database_type.clone()),
        build_epoch: Some(metadata.build_epoch),
        networks_v4: counts.0,
        networks_v6: counts.1,
        bytes: bytes.len() as u64,
        sha256: sha256.map_or_else(|| sha256_hex(bytes), str::to_owned),
    })
}

// === impl Collect ===

impl Sink for Collect {
    fn record(&mut self, record: &GeoRecord) {
        self.records.push(record.clone());
    }

    fn v4(&mut self, net: Ipv4Net, record: u32) -> Result<(), String> {
        self.v4.push((net, record));
        Ok(())
    }

    fn v6(&mut self, net: Ipv6Net, record: u32) -> Result<(), String> {
        self.v6.push((net, record));
        Ok(())
    }

    fn alias_v4(&mut self, base: u128, shift: u32) -> Result<(), String> {
        let len = 96 - shift as u8;
        for i in 0..self.v4.len() {
            let (n4, record) = self.v4[i];
            let addr = base | (u128::from(u32::from(n4.network())) << shift);
            let n6 = Ipv6Net::new(Ipv6Addr::from(addr), len + n4.prefix_len()).map_err(|e| e.to_string())?;
            self.v6.push((n6, record));
        }
        Ok(())
    }
}

// === impl LayerSink ===

impl Sink for LayerSink {
    fn record(&mut self, record: &GeoRecord) {
        self.layer.push_record(record.clone());
    }

    fn v4(&mut self, net: Ipv4Net, record: u32) -> Result<(), String> {
        self.layer.push_v4(net, record).map_err(|e| e.to_string())
    }

    fn v6(&mut self, net: Ipv6Net, record: u32) -> Result<(), String> {
        self.layer.push_v6(net, record).map_err(|e| e.to_string())
    }

    fn alias_v4(&mut self, base: u128, shift: u32) -> Result<(), String> {
        self.layer.alias_v4(base, shift).map_err(|e| e.to_string())
    }
}

/// Maps data offsets to record indexes, decoding each offset once and sharing equal records.
#[derive(Default)]
struct Interner {
    /// Neighbouring networks usually share a record; this skips the hash lookup for them.
    last: Option<(usize, u32)>,
    by_offset: HashMap<usize, u32>,
    by_record: HashMap<GeoRecord, u32>,
    records: Vec<GeoRecord>,
}

/// Turns raw mmdb records into `GeoRecord`s for one schema, counting what it had to ignore.
struct RecordDecoder {
    schema: Schema,
    /// Values present but unusable (a country that is not two letters, a wrong type...).
    invalid: usize,
    /// The first invalid value, for the one warning per database.
    example: Option<String>,
    saw_geoip2: bool,
    saw_flat: bool,
    saw_asn: bool,
    saw_custom: bool,
    /// A value no reading can accept where the operator's data promised one (an AS number of
    /// the wrong type): the database is refused with this reason.
    fatal: Option<String>,
    /// Texts seen so far (AS organisations, region names), shared between records.
    strings: HashSet<crate::geo::SharedStr>,
    /// The region names to keep.
    regions: RegionFilter,
}

enum Schema {
    Auto,
    GeoIp2,
    Flat,
    Asn,
    Custom(CustomPaths),
}

/// Custom field paths, split once into their elements.
struct CustomPaths {
    country: Option<Vec<Segment>>,
    registered_country: Option<Vec<Segment>>,
    represented_country: Option<Vec<Segment>>,
    subdivision: Option<Vec<Segment>>,
    anonymous_proxy: Option<Vec<Segment>>,
    satellite_provider: Option<Vec<Segment>>,
    asn: Option<Vec<Segment>>,
    as_org: Option<Vec<Segment>>,
}

/// One element of a dotted path: integers index arrays (negative from the end).
enum Segment {
    Key(String),
    Index(isize),
}

/// A value where a string or boolean is expected; anything else is kept only as its type
/// name, for the warning. Deserialising this never fails on a type mismatch.
enum Leaf<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    /// A non-negative integer (AS numbers).
    Num(u64),
    Other(&'static str),
}

/// The fields of one record that any built-in schema reads, as found.
#[derive(Default)]
struct RawRecord<'a> {
    /// Set when the record itself is not a map.
    not_a_map: Option<&'static str>,
    country: Option<Place<'a>>,
    registered_country: Option<Place<'a>>,
    represented_country: Option<Place<'a>>,
    /// The last subdivision that has an `iso_code` (GeoIP2 lists the largest first).
    subdivisions: Option<Place<'a>>,
    traits: Option<Traits<'a>>,
    country_code: Option<Leaf<'a>>,
    /// ip-location-db's region name (flat city databases).
    state1: Option<Leaf<'a>>,
    asn: Option<Leaf<'a>>,
    as_org: Option<Leaf<'a>>,
}

/// A GeoIP2 `{ "iso_code": .. }` map, or the type found instead of a map.
enum Place<'a> {
    Map(Option<Leaf<'a>>),
    NotMap(&'static str),
}

/// GeoIP2 `traits` flags, or the type found instead of a map.
enum Traits<'a> {
    Map { anonymous_proxy: Option<Leaf<'a>>, satellite_provider: Option<Leaf<'a>> },
    NotMap(&'static str),
}

/// Deserialises the last element of the `subdivisions` array that has an `iso_code`.
struct Subdivisions<'a>(Place<'a>);

// === impl Interner ===

impl Interner {
    /// The index of the record at `offset`; `fresh` sees each new distinct record once.
    fn index<E>(
        &mut self,
        offset: usize,
        decode: impl FnOnce() -> Result<GeoRecord, E>,
        fresh: impl FnOnce(&GeoRecord),
    ) -> Result<u32, E> {
        if let Some((last, index)) = self.last {
            if last == offset {
                return Ok(index);
            }
        }
        let index = match self.by_offset.get(&offset) {
            Some(&index) => index,
            None => {
                let record = decode()?;
                let index = match self.by_record.get(&record) {
                    Some(&index) => index,
                    None => {
                        // At most one record per data offset, and offsets are below 2^32.
                        let index = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
                        self.by_record.insert(record.clone(), index);
                        fresh(&record);
                        self.records.push(record);
                        index
                    }
                };
                self.by_offset.insert(offset, index);
                index
            }
        };
        self.last = Some((offset, index));
        Ok(index)
    }
}

// === impl RecordDecoder ===

impl RecordDecoder {
    fn new(schema: &MmdbSchema) -> Self {
        let schema = match schema {
            MmdbSchema::Auto => Schema::Auto,
            MmdbSchema::GeoIp2 => Schema::GeoIp2,
            MmdbSchema::Flat => Schema::Flat,
            MmdbSchema::Asn => Schema::Asn,
            MmdbSchema::Custom(paths) => Schema::Custom(CustomPaths::new(paths)),
        };
        Self {
            schema,
            invalid: 0,
            example: None,
            saw_geoip2: false,
            saw_flat: false,
            saw_asn: false,
            saw_custom: false,
            fatal: None,
            strings: HashSet::new(),
            regions: RegionFilter::all(),
        }
    }

    fn schema_name(&self) -> &'static str {
        match self.schema {
            Schema::Auto => "auto (geoip2, flat or asn)",
            Schema::GeoIp2 => "geoip2",
            Schema::Flat => "flat",
            Schema::Asn => "asn",
            Schema::Custom(_) => "custom",
        }
    }

    /// Which schema the records turned out to have (`geoip2`, `flat`, `asn`, or shapes joined
    /// by `+` when one database holds several); `None` if no record had any known field.
    fn schema_found(&self) -> Option<String> {
        if let Schema::Custom(_) = self.schema {
            return self.saw_custom.then(|| "custom".to_owned());
        }
        let seen: Vec<&str> = [(self.saw_geoip2, "geoip2"), (self.saw_flat, "flat"), (self.saw_asn, "asn")]
            .into_iter()
            .filter_map(|(saw, name)| saw.then_some(name))
            .collect();
        (!seen.is_empty()).then(|| seen.join("+"))
    }

    fn decode<S: AsRef<[u8]>>(&mut self, lookup: &LookupResult<'_, S>) -> Result<GeoRecord, MaxMindDbError> {
        match &self.schema {
            Schema::Custom(paths) => {
                let leaves = paths.resolve(lookup)?;
                Ok(self.custom_record(leaves))
            }
            _ => {
                // The visitors accept any shape, so an error here is corrupt data or a
                // decoder resource limit, never a schema mismatch.
                let raw = lookup.decode::<RawRecord<'_>>()?.unwrap_or_default();
                Ok(self.builtin_record(raw))
            }
        }
    }

    fn builtin_record(&mut self, raw: RawRecord<'_>) -> GeoRecord {
        if let Some(kind) = raw.not_a_map {
            self.note_invalid("record", &format!("a {kind}, not a map"));
            return GeoRecord::default();
        }
        let use_geoip2 = matches!(self.schema, Schema::Auto | Schema::GeoIp2);
        let use_flat = matches!(self.schema, Schema::Auto | Schema::Flat);
        let use_asn = matches!(self.schema, Schema::Auto | Schema::GeoIp2 | Schema::Asn);
        let mut record = GeoRecord::default();
        if use_geoip2 {
            let geoip2_seen = raw.country.is_some()
                || raw.registered_country.is_some()
                || raw.represented_country.is_some()
                || raw.subdivisions.is_some()
                || raw.traits.is_some();
            self.saw_geoip2 |= geoip2_seen;
            record.country = self.place_country("country.iso_code", raw.country);
            record.registered_country = self.place_country("registered_country.iso_code", raw.registered_country);
            record.represented_country = self.place_country("represented_country.iso_code", raw.represented_country);
            match raw.traits {
                None => {}
                Some(Traits::NotMap(kind)) => self.note_invalid("traits", &format!("a {kind}")),
                Some(Traits::Map { anonymous_proxy, satellite_provider }) => {
                    record.anonymous_proxy = self.flag("traits.is_anonymous_proxy", anonymous_proxy);
                    record.satellite_provider = self.flag("traits.is_satellite_provider", satellite_provider);
                }
            }
        }
        if use_flat && raw.country_code.is_some() {
            self.saw_flat = true;
            let flat = self.country("country_code", raw.country_code);
            // GeoIP2's own field wins when a record somehow has both.
            record.country = record.country.or(flat);
        }
        if use_geoip2 {
            let code = match raw.subdivisions {
                None => None,
                Some(Place::NotMap(kind)) => {
                    self.note_invalid("subdivisions", &format!("a {kind}"));
                    None
                }
                Some(Place::Map(leaf)) => leaf,
            };
            record.subdivision = self.subdivision("subdivisions.-1.iso_code", record.country, code);
        }
        if use_flat && record.subdivision.is_none() {
            // ip-location-db's city databases name the region without a code: `RU:Crimea`.
            record.subdivision = self.region_name("state1", record.country, raw.state1);
        }
        if use_asn && (raw.asn.is_some() || raw.as_org.is_some()) {
            self.saw_asn = true;
            record.asn = self.asn("autonomous_system_number", raw.asn);
            record.as_org = self.text("autonomous_system_organization", raw.as_org);
        }
        record
    }

    fn custom_record(&mut self, leaves: [Option<Leaf<'_>>; 8]) -> GeoRecord {
        self.saw_custom |= leaves.iter().any(Option::is_some);
        let [country, registered, represented, subdivision, anonymous, satellite, asn, as_org] = leaves;
        let mut record = GeoRecord::default();
        record.country = self.country("country", country);
        record.registered_country = self.country("registered_country", registered);
        record.represented_country = self.country("represented_country", represented);
        record.subdivision = self.subdivision("subdivision", record.country, subdivision);
        record.anonymous_proxy = self.flag("anonymous_proxy", anonymous);
        record.satellite_provider = self.flag("satellite_provider", satellite);
        record.asn = self.asn("asn", asn);
        record.as_org = self.text("as_org", as_org);
        record
    }

    /// An AS number: an unsigned number (or `"AS123"` text); 0 means none. Any other type is
    /// fatal: the field is the operator's, and an ASN rule silently matching nothing would be
    /// worse than a refused database.
    fn asn(&mut self, field: &str, leaf: Option<Leaf<'_>>) -> Option<u32> {
        let value = match leaf {
            None => return None,
            Some(Leaf::Num(n)) => u32::try_from(n).ok(),
            Some(Leaf::Str(s)) => crate::geo::parse_asn(&s),
            Some(other) => {
                self.fatal.get_or_insert_with(|| format!("{field} is a {}, not a number", other.kind()));
                return None;
            }
        };
        match value {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                self.fatal.get_or_insert_with(|| format!("{field} is not an AS number (0 to 4294967295)"));
                None
            }
        }
    }

    /// A text field, trimmed; empty text is none. Interned per decoder so equal names share
    /// one allocation.
    fn text(&mut self, field: &str, leaf: Option<Leaf<'_>>) -> Option<crate::geo::SharedStr> {
        match leaf {
            None => None,
            Some(Leaf::Str(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    return None;
                }
                if let Some(shared) = self.strings.get(s) {
                    return Some(shared.clone());
                }
                let shared = crate::geo::SharedStr::from(s);
                self.strings.insert(shared.clone());
                Some(shared)
            }
            Some(other) => {
                self.note_invalid(field, &format!("a {}, not a string", other.kind()));
                None
            }
        }
    }

    /// A region name under `country` (`RU:Crimea`); a name that is itself an ISO 3166-2 code of
    /// that country (`UA-43`) is kept as the code.
    fn region_name(
        &mut self,
        field: &str,
        country: Option<CountryCode>,
        leaf: Option<Leaf<'_>>,
    ) -> Option<crate::geo::SharedStr> {
        let name = self.text(field, leaf)?;
        let country = country?;
        if let Some((cc, sub)) = name.split_once('-') {
            if CountryCode::parse(cc) == Some(country)
                && (1..=3).contains(&sub.len())
                && sub.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Some(crate::geo::SharedStr::from(name.to_ascii_uppercase()));
            }
        }
        crate::geo::named_subdivision(country, &name).filter(|n| self.regions.keeps(n))
    }

    fn place_country(&mut self, field: &str, place: Option<Place<'_>>) -> Option<CountryCode> {
        match place {
            None => None,
            Some(Place::NotMap(kind)) => {
                self.note_invalid(field, &format!("a {kind} where a map was expected"));
                None
            }
            Some(Place::Map(leaf)) => self.country(field, leaf),
        }
    }

    fn country(&mut self, field: &str, leaf: Option<Leaf<'_>>) -> Option<CountryCode> {
        match leaf {
            None => None,
            Some(Leaf::Str(s)) => {
                let code = CountryCode::parse(&s);
                if code.is_none() {
                    self.note_invalid(field, &format!("{s:?} is not a two-letter country code"));
                }
                code
            }
            Some(other) => {
                self.note_invalid(field, &format!("a {}, not a string", other.kind()));
                None
            }
        }
    }

    fn flag(&mut self, field: &str, leaf: Option<Leaf<'_>>) -> bool {
        match leaf {
            None => false,
            Some(Leaf::Bool(b)) => b,
            Some(other) => {
                self.note_invalid(field, &format!("a {}, not a boolean", other.kind()));
                false
            }
        }
    }

    /// The full ISO 3166-2 code (`UA-43`) from a subdivision code that may or may not carry
    /// its country already.
    fn subdivision(
        &mut self,
        field: &str,
        country: Option<CountryCode>,
        leaf: Option<Leaf<'_>>,
    ) -> Option<crate::geo::SharedStr> {
        let code = match leaf {
            None => return None,
            Some(Leaf::Str(s)) => s,
            Some(other) => {
                self.note_invalid(field, &format!("a {}, not a string", other.kind()));
                return None;
            }
        };
        let (cc, sub) = match code.split_once('-') {
            Some((cc, sub)) => (CountryCode::parse(cc), sub),
            None => (country, code.as_ref()),
        };
        let valid_sub = (1..=3).contains(&sub.len()) && sub.bytes().all(|b| b.is_ascii_alphanumeric());
        match cc {
            Some(cc) if valid_sub => Some(crate::geo::SharedStr::from(format!("{cc}-{}", sub.to_ascii_uppercase()))),
            Some(_) => {
                self.note_invalid(field, &format!("{code:?} is not an ISO 3166-2 code"));
                None
            }
            None => {
                self.note_invalid(field, &format!("{code:?} has no valid country to belong to"));
                None
            }
        }
    }

    fn note_invalid(&mut self, field: &str, what: &str) {
        self.invalid += 1;
        if self.example.is_none() {
            self.example = Some(format!("{field}: {what}"));
        }
    }
}

// === impl CustomPaths ===

impl CustomPaths {
    fn new(paths: &FieldPaths) -> Self {
        let split = |p: &Option<String>| p.as_deref().map(Segment::parse_path);
        Self {
            country: split(&paths.country),
            registered_country: split(&paths.registered_country),
            represented_country: split(&paths.represented_country),
            subdivision: split(&paths.subdivision),
            anonymous_proxy: split(&paths.anonymous_proxy),
            satellite_provider: split(&paths.satellite_provider),
            asn: split(&paths.asn),
            as_org: split(&paths.as_org),
        }
    }

    fn resolve<'a, S: AsRef<[u8]>>(
        &self,
        lookup: &LookupResult<'a, S>,
    ) -> Result<[Option<Leaf<'a>>; 8], MaxMindDbError> {
        let one = |path: &Option<Vec<Segment>>| -> Result<Option<Leaf<'a>>, MaxMindDbError> {
            let Some(path) = path else {
                return Ok(None);
            };
            let elements: Vec<PathElement<'_>> = path.iter().map(Segment::element).collect();
            match lookup.decode_path::<Leaf<'a>>(&elements) {
                Ok(leaf) => Ok(leaf),
                // A path that runs into the wrong container type: the value is unusable,
                // which is reported like any other invalid value.
                Err(MaxMindDbError::Decoding { .. }) => Ok(Some(Leaf::Other("mismatched path"))),
                Err(e) => Err(e),
            }
        };
        Ok([
            one(&self.country)?,
            one(&self.registered_country)?,
            one(&self.represented_country)?,
            one(&self.subdivision)?,
            one(&self.anonymous_proxy)?,
            one(&self.satellite_provider)?,
            one(&self.asn)?,
            one(&self.as_org)?,
        ])
    }
}

// === impl Segment ===

impl Segment {
    /// `a.b.-1.c`: integers are array indexes, everything else map keys. The empty path is
    /// the record itself, for databases whose records are bare values such as `"RU"`.
    fn parse_path(path: &str) -> Vec<Segment> {
        if path.is_empty() {
            return Vec::new();
        }
        path.split('.')
            .map(|s| match s.parse::<isize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(s.to_owned()),
            })
            .collect()
    }

    fn element(&self) -> PathElement<'_> {
        match self {
            Segment::Key(k) => PathElement::Key(k),
            Segment::Index(i) => PathElement::from(*i),
        }
    }
}

// === impl Leaf ===

impl Leaf<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Leaf::Str(_) => "string",
            Leaf::Bool(_) => "boolean",
            Leaf::Num(_) => "number",
            Leaf::Other(kind) => kind,
        }
    }
}

/// The `visit_*` methods for every non-container type, each answering `$make(type name)`:
/// the lenient visitors below accept any shape and report what they found instead of failing.
macro_rules! visit_scalars_as {
    ($make:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(($make)("boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(($make)("number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(($make)("number"))
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Ok(($make)("number"))
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Ok(($make)("number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(($make)("number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(($make)("string"))
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok(($make)("bytes"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(($make)("null"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(($make)("null"))
        }
    };
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Map keys the lenient visitors compare against; non-string keys never match.
fn key_text<'k>(key: &'k Leaf<'_>) -> &'k str {
    match key {
        Leaf::Str(s) => s,
        _ => "",
    }
}

impl<'de> de::Deserialize<'de> for Leaf<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LeafVisitor;
        impl<'de> Visitor<'de> for LeafVisitor {
            type Value = Leaf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Leaf::Str(Cow::Borrowed(v)))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Leaf::Str(Cow::Owned(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Leaf::Other("map"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Leaf::Other("array"))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Leaf::Bool(v))
            }
            // Only for strings the decoder cannot lend out of the file.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Leaf::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(Leaf::Other("negative number"), Leaf::Num))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Leaf::Num(v))
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
                Ok(Leaf::Other("number"))
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
                Ok(Leaf::Other("number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Leaf::Other("number"))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
                Ok(Leaf::Other("bytes"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Leaf::Other("null"))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Leaf::Other("null"))
            }
        }
        d.deserialize_any(LeafVisitor)
    }
}

// === impl RawRecord ===

impl<'de> de::Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawRecord<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record map")
            }
            visit_scalars_as!(|kind| RawRecord { not_a_map: Some(kind), ..RawRecord::default() });
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(RawRecord { not_a_map: Some("array"), ..RawRecord::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut raw = RawRecord::default();
                while let Some(key) = map.next_key::<Leaf<'de>>()? {
                    match key_text(&key) {
                        "country" => raw.country = Some(map.next_value()?),
                        "registered_country" => raw.registered_country = Some(map.next_value()?),
                        "represented_country" => {
                            raw.represented_country = Some(map.next_value()?);
                        }
                        "subdivisions" => {
                            raw.subdivisions = Some(map.next_value::<Subdivisions<'de>>()?.0);
                        }
                        "traits" => raw.traits = Some(map.next_value()?),
                        "country_code" => raw.country_code = Some(map.next_value()?),
                        "state1" => raw.state1 = Some(map.next_value()?),
                        "autonomous_system_number" => raw.asn = Some(map.next_value()?),
                        "autonomous_system_organization" => raw.as_org = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

// === impl Place ===

impl<'de> de::Deserialize<'de> for Place<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PlaceVisitor;
        impl<'de> Visitor<'de> for PlaceVisitor {
            type Value = Place<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map with iso_code")
            }
            visit_scalars_as!(Place::NotMap);
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Place::NotMap("array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut iso_code = None;
                while let Some(key) = map.next_key::<Leaf<'de>>()? {
                    if key_text(&key) == "iso_code" {
                        iso_code = Some(map.next_value::<Leaf<'de>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Place::Map(iso_code))
            }
        }
        d.deserialize_any(PlaceVisitor)
    }
}

// === impl Subdivisions ===

impl<'de> de::Deserialize<'de> for Subdivisions<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SubdivisionsVisitor;
        impl<'de> Visitor<'de> for SubdivisionsVisitor {
            type Value = Subdivisions<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of subdivisions")
            }
            visit_scalars_as!(|kind| Subdivisions(Place::NotMap(kind)));
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Subdivisions(Place::NotMap("map")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // GeoIP2 lists subdivisions largest first: keep the last one with a code.
                let mut last = None;
                let mut bad = None;
                while let Some(place) = seq.next_element::<Place<'de>>()? {
                    match place {
                        Place::Map(Some(code)) => last = Some(code),
                        Place::Map(None) => {}
                        Place::NotMap(kind) => bad = Some(kind),
                    }
                }
                Ok(Subdivisions(match (last, bad) {
                    (None, Some(kind)) => Place::NotMap(kind),
                    (last, _) => Place::Map(last),
                }))
            }
        }
        d.deserialize_any(SubdivisionsVisitor)
    }
}

// === impl Traits ===

impl<'de> de::Deserialize<'de> for Traits<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TraitsVisitor;
        impl<'de> Visitor<'de> for TraitsVisitor {
            type Value = Traits<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a traits map")
            }
            visit_scalars_as!(Traits::NotMap);
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Traits::NotMap("array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut anonymous_proxy = None;
                let mut satellite_provider = None;
                while let Some(key) = map.next_key::<Leaf<'de>>()? {
                    match key_text(&key) {
                        "is_anonymous_proxy" => anonymous_proxy = Some(map.next_value()?),
                        "is_satellite_provider" => satellite_provider = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Traits::Map { anonymous_proxy, satellite_provider })
            }
        }
        d.deserialize_any(TraitsVisitor)
    }
}

mod tree;

#[cfg(test)]
mod tests;
