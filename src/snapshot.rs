//! `Snapshot`: everything a request needs, compiled from one `Config`, swapped as one value.
//!
//! `compile(&Config)` loads every source in precedence order, builds the [`GeoTable`],
//! compiles the [`Policy`] against the list names, and records the provenance of each
//! source. Every source is attempted even after one fails, so the error lists them all.
//! Compilation is blocking work (file reads, table build): run it off the async runtime.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, ListLocation, Location, SourceKind};
use crate::geo::{Answer, CountryCode};
use crate::policy::Policy;
use crate::source::{cidr, mmdb, Provenance, SourceError};
use crate::table::{BuildError, GeoTable, TableBuilder};

/// One immutable, consistent view: table + policy + the config they came from.
#[derive(Debug)]
pub struct Snapshot {
    /// 1 for the first snapshot, +1 for each swap.
    pub generation: u64,
    pub table: GeoTable,
    pub policy: Policy,
    pub config: Arc<Config>,
    /// Per source, in configuration order.
    pub provenance: Vec<Provenance>,
    /// When compilation finished.
    pub loaded_at: SystemTime,
    /// How long compilation took.
    pub compile_time: Duration,
    /// Countries the policy names: the bounded `country` label set of the request metrics.
    pub metric_countries: Vec<CountryCode>,
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
}

// === impl Snapshot ===

impl Snapshot {
    /// A content fingerprint: equal fingerprints mean reloading would change nothing.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.config, &self.provenance)
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

    /// Networks per family over all sources (for guards and metrics).
    pub fn networks(&self) -> (usize, usize) {
        self.provenance.iter().fold((0, 0), |(a, b), p| (a + p.networks_v4, b + p.networks_v6))
    }
}

/// Fingerprint of a config plus the content hashes of what it loaded.
pub fn fingerprint(config: &Config, provenance: &[Provenance]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // The checked config's Debug form covers every setting; sources add their contents.
    h.update(format!("{:?}", ConfigWithoutOrigin(config)).as_bytes());
    for p in provenance {
        h.update(p.name.as_bytes());
        h.update(p.sha256.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
    let started = Instant::now();
    let mut builder = TableBuilder::new();
    let mut provenance = Vec::with_capacity(config.sources.len());
    let mut errors = Vec::new();
    let mut list_names = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        let fail = |error| CompileProblem::Source { name: source.name.clone(), error };
        match &source.kind {
            SourceKind::Mmdb { location, schema } => match mmdb::load(&source.name, location_path(location), schema) {
                Ok(db) => {
                    // One family at a time, each freed as soon as it is merged: the parsed
                    // networks of a full database are the largest thing a compile holds, and
                    // this keeps them from overlapping with both families' partitions.
                    let mmdb::Database { v4, v6, records, provenance: origin } = db;
                    let merged = builder.add_database(index, &records, &[], &v6);
                    drop(v6);
                    let merged = merged.and_then(|()| builder.add_database(index, &records, &v4, &[]));
                    drop(v4);
                    if let Err(e) = merged {
                        errors.push(e.into());
                    }
                    provenance.push(origin);
                }
                Err(e) => errors.push(fail(e)),
            },
            SourceKind::List { location, set } => {
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
    let policy = match crate::policy::compile(&config.policy, &list_names) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(CompileProblem::Policy(e.to_string()));
            None
        }
    };
    if !errors.is_empty() {
        return Err(CompileError { errors });
    }
    let table = builder.build().map_err(|e| CompileError { errors: vec![e.into()] })?;
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
        policy,
        config,
        provenance,
        loaded_at: SystemTime::now(),
        compile_time: started.elapsed(),
    })
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
