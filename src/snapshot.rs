//! `Snapshot`: everything a request needs, compiled from one `Config`, swapped as one value.
//!
//! `compile(&Config)` loads every source in precedence order, builds the [`GeoTable`],
//! compiles the [`Policy`] against the list names, and records the provenance of each
//! source, and loads the certificates of every TLS listener (see [`crate::tls`]) and the TLS
//! client of every HTTPS upstream (see [`crate::tls::client`]). Every source and certificate
//! is attempted even after one fails, so the error lists them all.
//! Compilation is blocking work (file reads, table build): run it off the async runtime.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, ListLocation, Location, MmdbSchema, RangeLayout, SourceKind};
use crate::config::{RegionNames, SourceConfig};
use crate::geo::{Answer, CountryCode, RegionFilter};
use crate::policy::Policy;
use crate::source::mapped::{hash_file, sha256_file, FileStamp, KnownHash, MappedFile};
use crate::source::{cidr, mmdb, ranges, Provenance, SourceError};
use crate::table::{BuildError, GeoTable, SourceLayer, TableBuilder};
use crate::tls::client::{ClientTlsError, UpstreamTls};
use crate::tls::{CertError, ListenerTls};

mod patch;

/// One immutable, consistent view: table + policy + the config they came from.
#[derive(Debug)]
pub struct Snapshot {
    /// 1 for the first snapshot, +1 for each swap.
    pub generation: u64,
    /// Shared with the previous snapshot when a reload changed nothing the table is built
    /// from (a rotated certificate, a policy or limits edit): see [`compile_with`].
    pub table: Arc<GeoTable>,
    /// Fingerprint of what the table was built from: the source settings, how each database
    /// is read, and each source's content hash.
    pub table_key: String,
    pub policy: Policy,
    pub config: Arc<Config>,
    /// Per source, in configuration order.
    pub provenance: Vec<Provenance>,
    /// When compilation finished.
    pub loaded_at: SystemTime,
    /// How long compilation took.
    pub compile_time: Duration,
    /// How the table came to be: built, patched from the previous one, or shared with it.
    pub table_origin: TableOrigin,
    /// Countries the policy names: the bounded `country` label set of the request metrics.
    pub metric_countries: Vec<CountryCode>,
    /// What each database source compiled to, kept so that a reload whose file has not
    /// changed reuses it instead of reading the file again (`None` for lists). Behind a lock
    /// (requests never touch it) so that a reload that must read a database again frees the
    /// stale layer first instead of holding old and new at once.
    pub layers: std::sync::Mutex<Vec<Option<CachedLayer>>>,
    /// The table builder as it stood once the leading database sources were layered, kept
    /// (when a list or another source follows them) so that a reload that changes only what
    /// comes after them, a list most often, starts from it instead of layering the
    /// databases again. Behind a lock for the same reason as `layers`.
    pub base: std::sync::Mutex<Option<CachedBase>>,
    /// Per listener, in configuration order: its certificates and rustls server
    /// configuration, `None` for a cleartext listener.
    pub tls: Vec<Option<Arc<ListenerTls>>>,
    /// Per upstream, in configuration order: its TLS client configuration, `None` for an
    /// http:// upstream.
    pub upstream_tls: Vec<Option<Arc<UpstreamTls>>>,
}

/// How a snapshot's table was made (reported by a reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableOrigin {
    /// Built whole from every source.
    Built,
    /// The previous table with the addresses that changed rebuilt ([`GeoTable::patched`]):
    /// `intervals` address intervals over both families.
    Patched { intervals: usize },
    /// The previous table itself: nothing it is built from changed in content.
    Shared,
}

/// A [`TableBuilder`] after the leading database sources of a configuration, and the layers
/// it was built from: reused while each of those sources compiles to the very same layer.
#[derive(Clone, Debug)]
pub struct CachedBase {
    layers: Vec<Arc<SourceLayer>>,
    builder: Arc<TableBuilder>,
}

/// A database source's compiled ranges and where they came from.
#[derive(Clone, Debug)]
pub struct CachedLayer {
    pub path: PathBuf,
    pub format: LayerFormat,
    /// The file as it was when read: an equal stamp means the same file, unread.
    pub stamp: Option<FileStamp>,
    pub layer: Arc<SourceLayer>,
    pub provenance: Provenance,
}

/// How a database source's file is read: part of what must be equal for a layer to be reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerFormat {
    Mmdb(MmdbSchema, RegionFilter),
    Ranges(RangeLayout, RegionFilter),
}

/// A source's content hash as [`source_hashes`] found it; for a file it had to hash, what
/// lets the compile skip hashing the same file again.
pub(crate) struct SourceHash {
    name: String,
    sha256: String,
    known: Option<KnownHash>,
}

/// Everything that went wrong while compiling, all at once.
#[derive(Debug)]
pub struct CompileError {
    pub errors: Vec<CompileProblem>,
}

/// One problem found while compiling.
#[derive(Debug, thiserror::Error)]
pub enum CompileProblem {
    #[error("source {name:?}: {error}")]
    Source { name: String, error: SourceError },
    #[error("building the table: {0}")]
    Table(#[from] BuildError),
    #[error("policy: {0}")]
    Policy(String),
    #[error("listener {listener:?} tls: {error}")]
    Tls { listener: String, error: CertError },
    #[error("upstream {upstream:?} tls: {error}")]
    UpstreamTls { upstream: String, error: ClientTlsError },
}

// === impl Snapshot ===

impl Snapshot {
    /// A content fingerprint: equal fingerprints mean reloading would change nothing.
    pub fn fingerprint(&self) -> String {
        let certificates = self.tls.iter().flatten().flat_map(|t| t.certificates.iter());
        fingerprint_of(
            &self.config,
            self.provenance
                .iter()
                .map(|p| (p.name.as_str(), p.sha256.as_str()))
                .chain(certificates.map(|c| ("tls", c.sha256.as_str())))
                .chain(self.upstream_tls.iter().flatten().map(|t| ("upstream_tls", t.sha256.as_str()))),
        )
    }

    /// The metric label for an answer's country: a country the policy names, `other`, or
    /// `unknown` (never an unbounded value).
    pub fn country_bucket(&self, answer: &Answer) -> &str {
        match answer.geo.country {
            None => "unknown",
            Some(c) => match self.metric_countries.iter().find(|m| **m == c) {
                Some(m) => m.as_str(),
                None => "other",
            },
        }
    }

    /// Heap bytes of the database layers this snapshot keeps for the next reload.
    pub fn cached_bytes(&self) -> usize {
        let layers = self.layers.lock().map_or(0, |l| l.iter().flatten().map(|c| c.layer.heap_bytes()).sum::<usize>());
        let base = self.base.lock().ok().and_then(|b| b.as_ref().map(|b| b.builder.heap_bytes())).unwrap_or(0);
        layers + base
    }

    /// The cached layer of source `name`, if it was read from `path` the same way.
    fn cached(&self, name: &str, path: &Path, format: &LayerFormat) -> Option<CachedLayer> {
        let layers = self.layers.lock().ok()?;
        let i = self.config.sources.iter().position(|s| s.name == name)?;
        layers.get(i)?.as_ref().filter(|c| c.path == path && c.format == *format).cloned()
    }

    /// Drops the cached layer of source `name`: it is about to be rebuilt from a changed file.
    fn forget(&self, name: &str) {
        if let (Ok(mut layers), Some(i)) = (self.layers.lock(), self.config.sources.iter().position(|s| s.name == name))
        {
            if let Some(slot) = layers.get_mut(i) {
                *slot = None;
            }
        }
    }

    /// Networks per family over all sources (for guards and metrics).
    pub fn networks(&self) -> (usize, usize) {
        self.provenance.iter().fold((0, 0), |(a, b), p| (a + p.networks_v4, b + p.networks_v6))
    }
}

/// Fingerprint of a config plus the content hashes of what it loaded (sources, certificates).
fn fingerprint_of<'a>(config: &Config, sources: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // The checked config's Debug form covers every setting; sources add their contents.
    h.update(format!("{:?}", ConfigWithoutOrigin(config)).as_bytes());
    for (name, sha) in sources {
        h.update(name.as_bytes());
        h.update(sha.as_bytes());
    }
    crate::source::hex(&h.finalize())
}

/// Whether compiling `config` would give `previous` again, found without compiling: the same
/// settings and every source file with the same content. A database whose stamp (device,
/// inode, size, mtime) is unchanged is not read at all; any other file is hashed. Errors
/// (a file gone) answer `false`: the compile then reports them.
pub fn unchanged(config: &Config, previous: &Snapshot) -> bool {
    source_hashes(config, previous).is_some_and(|sources| same_inputs(config, previous, &sources))
}

/// What a reload compiles: `None` when `config` would give `previous` again ([`unchanged`]),
/// else the new snapshot ([`compile_with`]). The sources are fingerprinted once for both
/// questions and for whether the table can be shared.
pub fn recompile(config: Config, generation: u64, previous: &Snapshot) -> Result<Option<Snapshot>, CompileError> {
    let sources = source_hashes(&config, previous);
    if sources.as_deref().is_some_and(|s| same_inputs(&config, previous, s)) {
        return Ok(None);
    }
    compile_inner(Arc::new(config), generation, Some(previous), true, sources.as_deref()).map(Some)
}

/// Whether `config`, whose sources hash to `sources`, loads what `previous` loaded: the same
/// settings, sources and certificate files.
fn same_inputs(config: &Config, previous: &Snapshot, sources: &[SourceHash]) -> bool {
    let mut files: Vec<(&str, String)> = Vec::new();
    // A rotated certificate or key is a change, even with every setting the same.
    for pair in config.listeners.iter().filter_map(|l| l.tls.as_ref()).flat_map(|t| &t.certificates) {
        let Some(sha) = crate::tls::certs::pair_sha256(&pair.cert, &pair.key) else { return false };
        files.push(("tls", sha));
    }
    for tls in config.upstreams.iter().filter_map(|u| u.tls.as_ref()) {
        let Some(sha) = crate::tls::client::files_sha256(tls) else { return false };
        files.push(("upstream_tls", sha));
    }
    let all =
        sources.iter().map(|s| (s.name.as_str(), s.sha256.as_str())).chain(files.iter().map(|(n, s)| (*n, s.as_str())));
    fingerprint_of(config, all) == previous.fingerprint()
}

/// Each source's content hash, in order, found without compiling: a database whose stamp
/// (device, inode, size, mtime) matches the layer `previous` keeps is not read; any other file
/// is hashed. `None` if a file cannot be read (the compile then reports it).
fn source_hashes(config: &Config, previous: &Snapshot) -> Option<Vec<SourceHash>> {
    let mut hashes: Vec<SourceHash> = Vec::with_capacity(config.sources.len());
    for source in &config.sources {
        let (sha256, known) = match &source.kind {
            SourceKind::Mmdb { location, .. } | SourceKind::Ranges { location, .. } => {
                let path = location_path(location);
                let format = LayerFormat::of(source, config);
                match format.and_then(|f| previous.cached(&source.name, path, &f)) {
                    Some(c) if c.stamp.is_some() && c.stamp == FileStamp::of_path(path) => {
                        (c.provenance.sha256.clone(), None)
                    }
                    _ => hash_file(path).ok()?,
                }
            }
            SourceKind::List { location: ListLocation::File(location), .. } => {
                (sha256_file(location_path(location)).ok()?, None)
            }
            SourceKind::List { location: ListLocation::Inline(entries), .. } => {
                (cidr::from_entries(&source.name, entries).ok()?.provenance.sha256, None)
            }
        };
        hashes.push(SourceHash { name: source.name.clone(), sha256, known });
    }
    Some(hashes)
}

/// Fingerprint of what a table is built from: every source's settings, how each database
/// is read (its region filter follows the policy's region names), and each source's content.
fn table_key_of<'a>(config: &Config, hashes: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for source in &config.sources {
        h.update(format!("{source:?}{:?}", LayerFormat::of(source, config)).as_bytes());
    }
    for (name, sha) in hashes {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
    }
    crate::source::hex(&h.finalize())
}

/// The previous snapshot's table (with its provenance, cached layers and base), when
/// `config`, whose sources hash to `sources` ([`source_hashes`]), builds it from the very same
/// inputs: a reload that rotated a certificate or edited the policy, limits or upstreams then
/// costs a hash per changed file, not a compile.
fn reusable_table(
    config: &Config,
    previous: &Snapshot,
    sources: &[SourceHash],
) -> Option<(Arc<GeoTable>, String, Vec<Provenance>)> {
    let key = table_key_of(config, sources.iter().map(|s| (s.name.as_str(), s.sha256.as_str())));
    (key == previous.table_key).then(|| (previous.table.clone(), key, previous.provenance.clone()))
}

struct ConfigWithoutOrigin<'a>(&'a Config);

impl fmt::Debug for ConfigWithoutOrigin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
            c.server,
            c.listeners,
            c.admin,
            c.upstreams,
            c.routes,
            c.default_upstream,
            c.sources,
            c.policy,
            c.limits,
            c.reload,
            c.access_log
        )
    }
}

/// Loads every source and compiles table and policy. `generation` is stamped as given.
pub fn compile(config: Arc<Config>, generation: u64) -> Result<Snapshot, CompileError> {
    compile_inner(config, generation, None, true, None)
}

/// [`compile`] for a snapshot that will never be reloaded (`check`, `lookup`, `explain`):
/// each database's ranges are freed as soon as they are layered, which lowers the peak.
pub fn compile_once(config: Arc<Config>, generation: u64) -> Result<Snapshot, CompileError> {
    compile_inner(config, generation, None, false, None)
}

/// [`compile`], reusing what `previous` compiled from databases that have not changed: a
/// database with the same stamp is not read; one with a new stamp but the same content (a
/// `touch`, a copy of the same file) is read once to hash it, then reused. When nothing the
/// table is built from changed (a rotated certificate; a policy, limits or upstream edit that
/// names no other region), the previous table itself is shared and nothing is built.
pub fn compile_with(
    config: Arc<Config>,
    generation: u64,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, CompileError> {
    let sources = previous.and_then(|p| source_hashes(&config, p));
    compile_inner(config, generation, previous, true, sources.as_deref())
}

fn compile_inner(
    config: Arc<Config>,
    generation: u64,
    previous: Option<&Snapshot>,
    keep_layers: bool,
    sources: Option<&[SourceHash]>,
) -> Result<Snapshot, CompileError> {
    crate::alloc::promptly_released(|| compile_unreleased(config, generation, previous, keep_layers, sources))
}

fn compile_unreleased(
    config: Arc<Config>,
    generation: u64,
    previous: Option<&Snapshot>,
    keep_layers: bool,
    sources: Option<&[SourceHash]>,
) -> Result<Snapshot, CompileError> {
    let started = Instant::now();
    if let (Some(prev), Some(sources), true) = (previous, sources, keep_layers) {
        if let Some((table, table_key, provenance)) = reusable_table(&config, prev, sources) {
            let list_names = config
                .sources
                .iter()
                .filter(|s| matches!(s.kind, SourceKind::List { .. }))
                .map(|s| s.name.clone())
                .collect();
            let layers = prev.layers.lock().map(|l| l.clone()).unwrap_or_default();
            let base = prev.base.lock().ok().and_then(|b| b.clone());
            let parts = Parts { table_key, list_names, provenance, layers, base };
            return finish(config, generation, started, previous, Table::Reused(table), parts, Vec::new());
        }
    }
    // Databases changed: patch the previous table where that is sure to be right.
    let mut preloaded: Vec<Option<CachedLayer>> = Vec::new();
    if let (Some(prev), Some(sources), true) = (previous, sources, keep_layers) {
        match patch::attempt(&config, prev, sources) {
            patch::Attempt::Patched { table, intervals, layers } => {
                let parts = patched_parts(&config, prev, layers);
                let table = if intervals == 0 { Table::Reused(table) } else { Table::Patched(table, intervals) };
                return finish(config, generation, started, previous, table, parts, Vec::new());
            }
            patch::Attempt::Whole(layers) => preloaded = layers,
        }
    }
    let mut layers: Vec<Option<CachedLayer>> = Vec::with_capacity(config.sources.len());
    let mut builder = TableBuilder::new();
    // The leading database sources are layered together once all of them are loaded: from
    // the previous snapshot's builder when they compiled to the same layers, else afresh.
    let prefix = if keep_layers { leading_databases(&config) } else { 0 };
    let mut prefix_layers: Vec<Arc<SourceLayer>> = Vec::with_capacity(prefix);
    let mut base: Option<CachedBase> = None;
    let mut provenance = Vec::with_capacity(config.sources.len());
    let mut errors = Vec::new();
    let mut list_names = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        let fail = |error| CompileProblem::Source { name: source.name.clone(), error };
        match &source.kind {
            SourceKind::Mmdb { location, .. } | SourceKind::Ranges { location, .. } => {
                let path = location_path(location);
                let format = LayerFormat::of(source, &config)
                    .unwrap_or_else(|| LayerFormat::Mmdb(MmdbSchema::Auto, RegionFilter::all()));
                let loaded = match preloaded.get_mut(usize::from(index)).and_then(Option::take) {
                    Some(layer) => {
                        if let Some(p) = previous {
                            p.forget(&source.name);
                        }
                        Ok(layer)
                    }
                    None => {
                        let known = sources.and_then(|s| s.get(usize::from(index))).and_then(|s| s.known.as_ref());
                        database_layer(&source.name, path, &format, previous, known)
                    }
                };
                match loaded {
                    Ok(cached) if keep_layers => {
                        if usize::from(index) < prefix {
                            prefix_layers.push(cached.layer.clone());
                        } else {
                            builder.add_layer(index, &cached.layer);
                        }
                        provenance.push(cached.provenance.clone());
                        layers.push(Some(cached));
                    }
                    Ok(CachedLayer { layer, provenance: origin, .. }) => {
                        match Arc::try_unwrap(layer) {
                            Ok(owned) => builder.add_layer_owned(index, owned),
                            Err(shared) => builder.add_layer(index, &shared),
                        }
                        provenance.push(origin);
                        layers.push(None);
                    }
                    Err(e) => {
                        errors.push(fail(e));
                        layers.push(None);
                    }
                }
            }
            SourceKind::List { location, set } => {
                if usize::from(index) == prefix && prefix > 0 && errors.is_empty() {
                    let reused = layer_base(&mut builder, std::mem::take(&mut prefix_layers), previous);
                    base = Some(reused);
                }
                layers.push(None);
                // Keep list ids aligned with the policy's view even if this one fails.
                list_names.push(source.name.clone());
                let loaded = match location {
                    ListLocation::File(location) => cidr::load(&source.name, location_path(location)),
                    ListLocation::Inline(entries) => cidr::from_entries(&source.name, entries),
                };
                match loaded {
                    Ok(list) => {
                        if let Err(e) = builder.add_list(index, &source.name, set.as_ref(), &list.v4, &list.v6) {
                            errors.push(e.into());
                        }
                        provenance.push(list.provenance);
                    }
                    Err(e) => errors.push(fail(e)),
                }
            }
        }
    }
    let table_key = table_key_of(&config, provenance.iter().map(|p| (p.name.as_str(), p.sha256.as_str())));
    let parts = Parts { table_key, list_names, provenance, layers, base };
    finish(config, generation, started, previous, Table::Build(Box::new(builder)), parts, errors)
}

/// What a snapshot keeps with a patched table: the new layers, the lists' provenance as
/// before (their content is unchanged), and the previous kept builder if it was built from
/// the very layers kept now.
fn patched_parts(config: &Config, previous: &Snapshot, layers: Vec<Option<CachedLayer>>) -> Parts {
    let provenance: Vec<Provenance> = layers
        .iter()
        .zip(&previous.provenance)
        .map(|(layer, before)| layer.as_ref().map_or_else(|| before.clone(), |c| c.provenance.clone()))
        .collect();
    let list_names =
        config.sources.iter().filter(|s| matches!(s.kind, SourceKind::List { .. })).map(|s| s.name.clone()).collect();
    let base = previous.base.lock().ok().and_then(|mut slot| {
        let same = slot.as_ref().is_some_and(|b| {
            b.layers
                .iter()
                .zip(layers.iter())
                .all(|(kept, now)| now.as_ref().is_some_and(|c| Arc::ptr_eq(kept, &c.layer)))
        });
        if !same {
            // Stale: freed now rather than with the previous snapshot.
            *slot = None;
        }
        slot.clone()
    });
    let table_key = table_key_of(config, provenance.iter().map(|p| (p.name.as_str(), p.sha256.as_str())));
    Parts { table_key, list_names, provenance, layers, base }
}

/// What a snapshot keeps with its table.
struct Parts {
    table_key: String,
    /// The list sources' names, in the order of the table's list ids.
    list_names: Vec<String>,
    provenance: Vec<Provenance>,
    layers: Vec<Option<CachedLayer>>,
    base: Option<CachedBase>,
}

/// The table of a snapshot being compiled.
enum Table {
    /// The previous snapshot's, shared.
    Reused(Arc<GeoTable>),
    /// The previous snapshot's, patched where `intervals` address intervals changed.
    Patched(Arc<GeoTable>, usize),
    /// Every source applied; built only once the policy and TLS compiled, so a bad edit
    /// costs no build.
    Build(Box<TableBuilder>),
}

/// Compiles the policy and the listeners' TLS, builds the table if it is not reused (only
/// once both compiled), and assembles the snapshot; every problem found is reported at once.
fn finish(
    config: Arc<Config>,
    generation: u64,
    started: Instant,
    previous: Option<&Snapshot>,
    table: Table,
    parts: Parts,
    mut errors: Vec<CompileProblem>,
) -> Result<Snapshot, CompileError> {
    let source_names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let policy = match crate::policy::compile_for(&config.policy, &parts.list_names, &source_names) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(CompileProblem::Policy(e.to_string()));
            None
        }
    };
    if !errors.is_empty() {
        return Err(CompileError { errors });
    }
    let tls = listener_tls(&config, previous, &mut errors);
    let upstream_tls = upstream_tls(&config, previous, &mut errors);
    if !errors.is_empty() {
        return Err(CompileError { errors });
    }
    let (table, table_origin) = match table {
        Table::Reused(table) => (table, TableOrigin::Shared),
        Table::Patched(table, intervals) => (table, TableOrigin::Patched { intervals }),
        Table::Build(builder) => {
            (Arc::new(builder.build().map_err(|e| CompileError { errors: vec![e.into()] })?), TableOrigin::Built)
        }
    };
    let Some(policy) = policy else {
        return Err(CompileError { errors: vec![CompileProblem::Policy("policy did not compile".into())] });
    };
    let mut metric_countries: Vec<CountryCode> = config
        .policy
        .rules
        .iter()
        .flat_map(|r| r.matcher.countries.iter().chain(&r.matcher.registered_countries).copied())
        .collect();
    metric_countries.sort_unstable();
    metric_countries.dedup();
    Ok(Snapshot {
        metric_countries,
        generation,
        table,
        table_key: parts.table_key,
        policy,
        config,
        provenance: parts.provenance,
        loaded_at: SystemTime::now(),
        compile_time: started.elapsed(),
        table_origin,
        layers: std::sync::Mutex::new(parts.layers),
        base: std::sync::Mutex::new(parts.base),
        tls,
        upstream_tls,
    })
}

/// How many sources lead the configuration that are databases, when a list follows them
/// (0 otherwise: with nothing after the databases, a reload that reuses all of them is an
/// unchanged one, and keeping their builder would only cost memory).
fn leading_databases(config: &Config) -> usize {
    let n = config.sources.iter().take_while(|s| !matches!(s.kind, SourceKind::List { .. })).count();
    if n < config.sources.len() {
        n
    } else {
        0
    }
}

/// Sets `builder` (still empty) to the leading database `layers`: a copy of the previous
/// snapshot's builder when it was built from the very same layers, else the layers applied
/// afresh (the previous one is dropped first, so two are never held with a third being
/// built). Returns what the new snapshot keeps for the next reload.
fn layer_base(builder: &mut TableBuilder, layers: Vec<Arc<SourceLayer>>, previous: Option<&Snapshot>) -> CachedBase {
    if let Some(Ok(mut slot)) = previous.map(|p| p.base.lock()) {
        let same = slot.as_ref().is_some_and(|kept| {
            kept.layers.len() == layers.len() && kept.layers.iter().zip(&layers).all(|(a, b)| Arc::ptr_eq(a, b))
        });
        match slot.as_ref() {
            Some(kept) if same => {
                *builder = (*kept.builder).clone();
                return kept.clone();
            }
            // Stale: dropped before the new one is built.
            _ => *slot = None,
        }
    }
    for (index, layer) in layers.iter().enumerate() {
        builder.add_layer(u16::try_from(index).unwrap_or(u16::MAX), layer);
    }
    CachedBase { layers, builder: Arc::new(builder.clone()) }
}

/// Each listener's TLS setup, loaded now; failures are added to `errors`. A listener keeps
/// the session cache and ticket keys of the same listener in `previous`.
fn listener_tls(
    config: &Config,
    previous: Option<&Snapshot>,
    errors: &mut Vec<CompileProblem>,
) -> Vec<Option<Arc<ListenerTls>>> {
    config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let cfg = l.tls.as_ref()?;
            let before = previous.and_then(|p| p.tls.get(i)).and_then(Option::as_deref);
            match ListenerTls::build(cfg, before) {
                Ok(t) => Some(Arc::new(t)),
                Err(errs) => {
                    errors
                        .extend(errs.into_iter().map(|error| CompileProblem::Tls { listener: l.name.clone(), error }));
                    None
                }
            }
        })
        .collect()
}

/// Each upstream's TLS client, loaded now (the one of the same upstream in `previous` when
/// nothing changed); failures are added to `errors`.
fn upstream_tls(
    config: &Config,
    previous: Option<&Snapshot>,
    errors: &mut Vec<CompileProblem>,
) -> Vec<Option<Arc<UpstreamTls>>> {
    config
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let cfg = u.tls.as_ref()?;
            let before = previous.and_then(|p| p.upstream_tls.get(i)).and_then(Option::as_ref);
            match UpstreamTls::build(cfg, u.protocol, before) {
                Ok(t) => Some(t),
                Err(error) => {
                    errors.push(CompileProblem::UpstreamTls { upstream: u.name.to_string(), error });
                    None
                }
            }
        })
        .collect()
}

/// A database source's layer: reused from `previous` when the file is unchanged, else read
/// (streamed from a private mapped copy, see [`MappedFile`]).
fn database_layer(
    name: &str,
    path: &Path,
    format: &LayerFormat,
    previous: Option<&Snapshot>,
    known: Option<&KnownHash>,
) -> Result<CachedLayer, SourceError> {
    let before = FileStamp::of_path(path);
    let cached = previous.and_then(|p| p.cached(name, path, format));
    if let Some(c) = cached.as_ref().filter(|c| c.stamp.is_some() && c.stamp == before) {
        return Ok(c.clone());
    }
    let origin = path.display().to_string();
    let file = MappedFile::open_known(path, known).map_err(|source| SourceError::Io { origin, source })?;
    if let Some(c) = cached.as_ref().filter(|c| c.provenance.sha256 == file.sha256()) {
        return Ok(CachedLayer { stamp: before, ..c.clone() });
    }
    // The stale layer goes before the new one is built, so the two never coexist (the new
    // one only reserves their size: untouched, the reservation is no memory yet).
    let empty = cached.as_ref().map_or_else(SourceLayer::new, |c| SourceLayer::sized_like(&c.layer));
    drop(cached);
    if let Some(p) = previous {
        p.forget(name);
    }
    layer_of(name, path, format, &file, before, empty)
}

/// A database source's layer, read from the file now (not hashed again if `known` describes
/// it); `was` is the layer it had before, if any, to size the new one.
fn read_layer(
    name: &str,
    path: &Path,
    format: &LayerFormat,
    known: Option<&KnownHash>,
    was: Option<&SourceLayer>,
) -> Result<CachedLayer, SourceError> {
    let before = FileStamp::of_path(path);
    let file = MappedFile::open_known(path, known)
        .map_err(|source| SourceError::Io { origin: path.display().to_string(), source })?;
    layer_of(name, path, format, &file, before, was.map_or_else(SourceLayer::new, SourceLayer::sized_like))
}

/// The layer of `file`, opened from `path` when it had the stamp `before`, filled into
/// `empty` (a new layer, perhaps sized already).
fn layer_of(
    name: &str,
    path: &Path,
    format: &LayerFormat,
    file: &MappedFile,
    before: Option<FileStamp>,
    empty: SourceLayer,
) -> Result<CachedLayer, SourceError> {
    let origin = path.display().to_string();
    let (layer, provenance) = match format {
        LayerFormat::Mmdb(schema, regions) => {
            mmdb::load_layer_filtered(name, &origin, file.bytes(), Some(file.sha256()), schema, regions, empty)?
        }
        LayerFormat::Ranges(layout, regions) => {
            ranges::load_layer_filtered(name, &origin, file.bytes(), layout, regions)?
        }
    };
    // A file replaced while it was copied: the stamp taken before no longer names this
    // content, so it is not kept (the next reload reads the file again).
    let stamp = if FileStamp::of_path(path) == before { before } else { None };
    Ok(CachedLayer { path: path.to_path_buf(), format: format.clone(), stamp, layer: Arc::new(layer), provenance })
}

// === impl LayerFormat ===

impl LayerFormat {
    /// How a database source of `config` is read; `None` for a list. The region names kept
    /// are part of it: a policy that names another region reads the database again.
    pub fn of(source: &SourceConfig, config: &Config) -> Option<Self> {
        let regions = match source.region_names {
            RegionNames::All => RegionFilter::all(),
            RegionNames::Named => RegionFilter::named(
                config.policy.rules.iter().flat_map(|r| r.matcher.subdivisions.iter().map(String::as_str)),
            ),
        };
        match &source.kind {
            SourceKind::Mmdb { schema, .. } => Some(Self::Mmdb(schema.clone(), regions)),
            SourceKind::Ranges { layout, .. } => Some(Self::Ranges(layout.clone(), regions)),
            SourceKind::List { .. } => None,
        }
    }
}

/// The local file a location reads from: the path, or a remote source's cache file.
pub fn location_path(location: &Location) -> &std::path::Path {
    match location {
        Location::Path(p) => p,
        Location::Remote(r) => &r.cache,
    }
}

// === impl CompileError ===

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

#[cfg(test)]
mod tests {
    // Tests may unwrap: a failure should stop right there.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, SystemTime};

    use super::*;

    fn database(country: &str) -> Vec<u8> {
        let mut writer = mmdb_writer::Writer::new("unit");
        writer
            .insert("203.0.113.0/24".parse::<ipnet::IpNet>().unwrap(), &serde_json::json!({"country_code": country}))
            .unwrap();
        writer
            .insert("2001:db8::/32".parse::<ipnet::IpNet>().unwrap(), &serde_json::json!({"country_code": country}))
            .unwrap();
        writer.to_bytes().unwrap()
    }

    fn config(dir: &Path, list: &str) -> Arc<Config> {
        std::fs::write(dir.join("list.txt"), list).unwrap();
        let text =
            "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:1\"\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:2\"\n\
             [[source]]\nname = \"geo\"\ntype = \"mmdb\"\npath = \"geo.mmdb\"\n\
             [[source]]\nname = \"l\"\ntype = \"list\"\npath = \"list.txt\"\n";
        Arc::new(crate::config::parse(text, Some(&dir.join("geogate.toml"))).unwrap())
    }

    fn country(s: &Snapshot) -> Option<String> {
        s.table.lookup("203.0.113.7".parse().unwrap()).geo.country.map(|c| c.to_string())
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn an_unread_database_with_the_same_stamp_is_reused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("geo.mmdb");
        std::fs::write(&db, database("RU")).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        set_mtime(&db, t);
        let first = compile(config(dir.path(), "192.0.2.0/24\n"), 1).unwrap();
        assert_eq!(country(&first).as_deref(), Some("RU"));
        assert!(unchanged(&config(dir.path(), "192.0.2.0/24\n"), &first));
        // Same size, same mtime, same inode, other bytes: not read again, so the old ranges
        // serve (were it read, the garbage would fail the compile).
        let len = std::fs::metadata(&db).unwrap().len() as usize;
        std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(0).unwrap();
        std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(len as u64).unwrap();
        set_mtime(&db, t);
        let second = compile_with(config(dir.path(), "192.0.2.0/24\n198.51.100.0/24\n"), 2, Some(&first)).unwrap();
        assert_eq!(country(&second).as_deref(), Some("RU"));
        let (a, b) = (first.layers.lock().unwrap(), second.layers.lock().unwrap());
        assert!(Arc::ptr_eq(&a[0].as_ref().unwrap().layer, &b[0].as_ref().unwrap().layer), "the layer was rebuilt");
    }

    #[test]
    fn a_touched_database_is_hashed_and_reused_and_a_changed_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("geo.mmdb");
        std::fs::write(&db, database("RU")).unwrap();
        set_mtime(&db, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let first = compile(config(dir.path(), ""), 1).unwrap();
        // A new mtime, the same content: unchanged, and the ranges are reused.
        set_mtime(&db, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100));
        assert!(unchanged(&config(dir.path(), ""), &first));
        let touched = compile_with(config(dir.path(), ""), 2, Some(&first)).unwrap();
        {
            let (a, b) = (first.layers.lock().unwrap(), touched.layers.lock().unwrap());
            assert!(Arc::ptr_eq(&a[0].as_ref().unwrap().layer, &b[0].as_ref().unwrap().layer));
        }
        // New content: changed, read again (and compared with the stale ranges, which the old
        // snapshot then drops).
        std::fs::write(&db, database("BY")).unwrap();
        assert!(!unchanged(&config(dir.path(), ""), &touched));
        let changed = compile_with(config(dir.path(), ""), 3, Some(&touched)).unwrap();
        assert_eq!(country(&changed).as_deref(), Some("BY"));
        assert!(touched.layers.lock().unwrap()[0].is_none(), "the stale layer was kept");
        assert!(changed.cached_bytes() > 0);
        // A list change alone is a change too.
        assert!(!unchanged(&config(dir.path(), "192.0.2.0/24\n"), &changed));
    }

    /// A country database of `networks`, its metadata naming `kind`.
    fn countries(kind: &str, networks: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = mmdb_writer::Writer::new(kind);
        for (net, country) in networks {
            writer.insert(net.parse::<ipnet::IpNet>().unwrap(), &serde_json::json!({"country_code": country})).unwrap();
        }
        writer.to_bytes().unwrap()
    }

    fn country_at(s: &Snapshot, ip: &str) -> Option<String> {
        s.table.lookup(ip.parse().unwrap()).geo.country.map(|c| c.to_string())
    }

    #[test]
    fn a_changed_database_patches_the_table_and_the_same_networks_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("geo.mmdb");
        let nets = [("203.0.113.0/24", "RU"), ("198.51.100.0/24", "DE"), ("2001:db8::/32", "RU")];
        std::fs::write(&db, countries("unit", &nets)).unwrap();
        let cfg = || config(dir.path(), "192.0.2.0/24\n198.51.100.128/25\n");
        let first = compile(cfg(), 1).unwrap();
        assert_eq!(first.table_origin, TableOrigin::Built);
        // One network moves to another country and one is added: patched over those only.
        let edited =
            [("203.0.113.0/24", "RU"), ("198.51.100.0/24", "BY"), ("2001:db8::/32", "RU"), ("10.0.0.0/8", "FR")];
        std::fs::write(&db, countries("unit", &edited)).unwrap();
        let second = compile_with(cfg(), 2, Some(&first)).unwrap();
        // Two IPv4 changes, and their images in the alias blocks the writer puts in the file
        // (the list's IPv4 entries make the table hold those blocks as copies).
        assert!(matches!(second.table_origin, TableOrigin::Patched { intervals } if intervals >= 2));
        let whole = compile(cfg(), 2).unwrap();
        for ip in ["198.51.100.1", "198.51.100.200", "203.0.113.7", "10.1.2.3", "192.0.2.9", "2001:db8::1", "9.9.9.9"] {
            assert_eq!(country_at(&second, ip), country_at(&whole, ip), "{ip}");
            assert_eq!(lists_of(&second, ip), lists_of(&whole, ip), "{ip}");
        }
        assert_eq!(country_at(&second, "198.51.100.200").as_deref(), Some("BY"));
        assert_eq!(lists_of(&second, "198.51.100.200"), 1, "the list stays laid over the patched range");
        assert_eq!(second.table.stats().ranges_v4, whole.table.stats().ranges_v4);
        assert_eq!(second.provenance, whole.provenance);
        assert_eq!(second.table_key, whole.table_key);
        // The same networks in a file with other metadata: the table is shared, not rebuilt.
        std::fs::write(&db, countries("unit-republished", &edited)).unwrap();
        let third = compile_with(cfg(), 3, Some(&second)).unwrap();
        assert_eq!(third.table_origin, TableOrigin::Shared);
        assert!(Arc::ptr_eq(&third.table, &second.table));
        assert_ne!(third.provenance, second.provenance, "the provenance describes the new file");
        // A list change after a patch: the databases' kept builder was dropped, and a whole
        // build is right again.
        let listed = compile_with(config(dir.path(), "10.9.0.0/16\n"), 4, Some(&third)).unwrap();
        assert_eq!(listed.table_origin, TableOrigin::Built);
        assert_eq!(lists_of(&listed, "10.9.1.1"), 1);
        assert_eq!(country_at(&listed, "10.9.1.1").as_deref(), Some("FR"));
    }

    #[test]
    fn a_change_to_most_of_a_database_is_built_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("geo.mmdb");
        let nets: Vec<String> = (0..3000u32).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
        let write = |flip: bool| {
            let pairs: Vec<(&str, &str)> = nets
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), if (i % 2 == 0) != flip { "RU" } else { "DE" }))
                .collect();
            std::fs::write(&db, countries("unit", &pairs)).unwrap();
        };
        write(false);
        let first = compile(config(dir.path(), ""), 1).unwrap();
        write(true);
        let second = compile_with(config(dir.path(), ""), 2, Some(&first)).unwrap();
        assert_eq!(second.table_origin, TableOrigin::Built, "3,000 intervals of about 3,000 ranges");
        assert_eq!(country_at(&second, "10.0.0.1").as_deref(), Some("DE"));
        assert_eq!(country_at(&second, "10.0.1.1").as_deref(), Some("RU"));
    }

    fn base_of(s: &Snapshot) -> Arc<TableBuilder> {
        s.base.lock().unwrap().as_ref().expect("a base is kept").builder.clone()
    }

    fn lists_of(s: &Snapshot, ip: &str) -> u64 {
        s.table.lookup(ip.parse().unwrap()).lists.0
    }

    #[test]
    fn a_list_change_starts_from_the_databases_already_layered() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("geo.mmdb");
        std::fs::write(&db, database("RU")).unwrap();
        let first = compile(config(dir.path(), "192.0.2.0/24\n"), 1).unwrap();
        assert!(first.cached_bytes() > first.layers.lock().unwrap()[0].as_ref().unwrap().layer.heap_bytes());
        // Only the list changed: the databases' builder is the same one, and the answers are
        // those of a compile from nothing.
        let second = compile_with(config(dir.path(), "203.0.113.0/25\n"), 2, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&base_of(&first), &base_of(&second)), "the databases were layered again");
        let fresh = compile(config(dir.path(), "203.0.113.0/25\n"), 2).unwrap();
        for ip in ["203.0.113.7", "203.0.113.200", "192.0.2.1", "2001:db8::1"] {
            assert_eq!(lists_of(&second, ip), lists_of(&fresh, ip), "{ip}");
            assert_eq!(
                second.table.lookup(ip.parse().unwrap()).geo,
                fresh.table.lookup(ip.parse().unwrap()).geo,
                "{ip}"
            );
        }
        assert_eq!(lists_of(&second, "203.0.113.7"), 1);
        assert_eq!(lists_of(&second, "192.0.2.1"), 0);
        assert_eq!(country(&second).as_deref(), Some("RU"));
        // The database changed: the table is patched, the stale builder dropped from the old
        // snapshot and none kept; the next list change layers the databases again.
        std::fs::write(&db, database("BY")).unwrap();
        let third = compile_with(config(dir.path(), "203.0.113.0/25\n"), 3, Some(&second)).unwrap();
        assert!(matches!(third.table_origin, TableOrigin::Patched { .. }));
        assert_eq!(country(&third).as_deref(), Some("BY"));
        assert_eq!(lists_of(&third, "203.0.113.7"), 1);
        assert!(second.base.lock().unwrap().is_none(), "the stale base was kept");
        assert!(third.base.lock().unwrap().is_none());
        let fourth = compile_with(config(dir.path(), "192.0.2.0/24\n"), 4, Some(&third)).unwrap();
        assert_eq!(fourth.table_origin, TableOrigin::Built);
        assert!(!Arc::ptr_eq(&base_of(&first), &base_of(&fourth)));
        assert_eq!(country(&fourth).as_deref(), Some("BY"));
        assert_eq!(lists_of(&fourth, "192.0.2.1"), 1);
    }

    fn write_pair(dir: &Path) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("a.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn tls_config(dir: &Path) -> Arc<Config> {
        let text =
            "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:1\"\ntls = { cert = \"a.crt\", key = \"a.key\" }\n\
                    [[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:2\"\n\
                    [[source]]\nname = \"l\"\ntype = \"list\"\nentries = []\n";
        Arc::new(crate::config::parse(text, Some(&dir.join("geogate.toml"))).unwrap())
    }

    #[test]
    fn a_rotated_certificate_is_a_change_and_the_same_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let first_der = write_pair(dir.path());
        let first = compile(tls_config(dir.path()), 1).unwrap();
        let served = |s: &Snapshot| s.tls[0].as_ref().unwrap().certificates[0].key.cert[0].to_vec();
        assert_eq!(served(&first), first_der);
        assert!(unchanged(&tls_config(dir.path()), &first), "same settings, same files");
        let second_der = write_pair(dir.path());
        assert!(!unchanged(&tls_config(dir.path()), &first), "new files are a change");
        let second = compile_with(tls_config(dir.path()), 2, Some(&first)).unwrap();
        assert_eq!(served(&second), second_der);
        assert_ne!(second.fingerprint(), first.fingerprint());
        // The session cache and ticket keys carry over, so clients resume across the reload.
        let (a, b) = (&first.tls[0].as_ref().unwrap().server_config, &second.tls[0].as_ref().unwrap().server_config);
        assert!(Arc::ptr_eq(&a.ticketer, &b.ticketer) && Arc::ptr_eq(&a.session_storage, &b.session_storage));
        // A missing key fails the compile, naming the file (the config checked before it went).
        std::fs::remove_file(dir.path().join("a.key")).unwrap();
        assert!(!unchanged(&second.config, &second));
        let e = compile_with(second.config.clone(), 3, Some(&second)).unwrap_err().to_string();
        assert!(e.contains("a.key: cannot read"), "{e}");
    }

    /// `config` plus a TLS listener and a policy that blocks `blocked`.
    fn config_with(dir: &Path, list: &str, blocked: &str) -> Arc<Config> {
        std::fs::write(dir.join("list.txt"), list).unwrap();
        let text = format!(
            "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:1\"\ntls = {{ cert = \"a.crt\", key = \"a.key\" }}\n\
             [[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:2\"\n\
             [[source]]\nname = \"geo\"\ntype = \"mmdb\"\npath = \"geo.mmdb\"\n\
             [[source]]\nname = \"l\"\ntype = \"list\"\npath = \"list.txt\"\n\
             [[rule]]\nname = \"r\"\naction = \"block\"\ncountries = [\"{blocked}\"]\n"
        );
        Arc::new(crate::config::parse(&text, Some(&dir.join("geogate.toml"))).unwrap())
    }

    #[test]
    fn a_certificate_or_policy_change_shares_the_table_and_a_source_change_does_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("geo.mmdb"), database("RU")).unwrap();
        write_pair(dir.path());
        let first = compile(config_with(dir.path(), "192.0.2.0/24\n", "RU"), 1).unwrap();
        // A rotated certificate: a new snapshot serving it, on the very same table.
        let der = write_pair(dir.path());
        let rotated = compile_with(config_with(dir.path(), "192.0.2.0/24\n", "RU"), 2, Some(&first)).unwrap();
        assert_eq!(rotated.tls[0].as_ref().unwrap().certificates[0].key.cert[0].to_vec(), der);
        assert!(Arc::ptr_eq(&first.table, &rotated.table), "the table was built again");
        assert_eq!(rotated.table_key, first.table_key);
        assert_eq!(rotated.provenance.len(), 2);
        // A policy edit: the same table under the new policy.
        let edited = compile_with(config_with(dir.path(), "192.0.2.0/24\n", "BY"), 3, Some(&rotated)).unwrap();
        assert!(Arc::ptr_eq(&first.table, &edited.table));
        assert!(edited.cached_bytes() > 0, "the cached layers went missing");
        // A list change, and a database change: built anew, with the new answers.
        let listed = compile_with(config_with(dir.path(), "203.0.113.0/25\n", "BY"), 4, Some(&edited)).unwrap();
        assert!(!Arc::ptr_eq(&edited.table, &listed.table));
        assert_eq!(lists_of(&listed, "203.0.113.7"), 1);
        std::fs::write(dir.path().join("geo.mmdb"), database("BY")).unwrap();
        let changed = compile_with(config_with(dir.path(), "203.0.113.0/25\n", "BY"), 5, Some(&listed)).unwrap();
        assert!(!Arc::ptr_eq(&listed.table, &changed.table));
        assert_eq!(country(&changed).as_deref(), Some("BY"));
    }
}
