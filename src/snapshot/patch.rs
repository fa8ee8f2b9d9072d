//! A reload whose databases changed, compiled by patching the previous table instead of
//! building it whole (see [`GeoTable::patched`]).
//!
//! The changed databases are read as usual; each new layer is compared with the layer the
//! previous snapshot kept ([`SourceLayer::changes_from`]). Where nothing changed (the same
//! networks re-published under a new build epoch) the previous table is shared as it is and
//! the previous layer kept. Otherwise a small table is built from every source clipped to the
//! changed addresses and the previous table is patched with it: the cost follows the size of
//! the change, not of the databases.
//!
//! Taken only when it gives what a whole build would: the same source settings as the
//! previous snapshot, every list unchanged, every database read before (its layer kept), and
//! each changed database with the same alias blocks as before and IPv4 ranges if and only
//! if it had them (so the table keeps or copies the same blocks; a copied block is patched
//! where the IPv4 ranges it stands for changed), and a change small enough to be worth it
//! ([`PATCH_SHARE`]). Anything else is compiled whole, reusing the layers already read.

use std::sync::Arc;

use super::{location_path, read_layer, table_key_of, CachedLayer, LayerFormat, SourceHash};
use crate::config::{Config, ListLocation, SourceKind};
use crate::source::cidr;
use crate::table::{Changes, GeoTable, SourceLayer, TableBuilder};

/// A change is built whole when the databases cut to it hold more than one range per this
/// many ranges of the changed databases. Patching costs about as much per range inside the
/// change as a whole build per range, plus a copy of the tries: with 1 % of the shipped
/// database's networks changed (15,042 intervals over about 1M ranges) the patch took 41 ms,
/// where layering and building the whole table takes about 80 ms (a whole reload 130-145 ms,
/// reading the file 55-60).
const PATCH_SHARE: usize = 8;

/// Changes holding up to this many ranges are patched whatever the databases' size (a small
/// database is cheap to patch either way).
const PATCH_ALWAYS: usize = 1024;

/// What a patch attempt gives the compile.
pub(super) enum Attempt {
    /// The table (patched over `intervals` address intervals; the previous one itself for
    /// 0) and each source's layer (`None` for a list), in configuration order.
    Patched { table: Arc<GeoTable>, intervals: usize, layers: Vec<Option<CachedLayer>> },
    /// Not patched; the layers of the databases already read, by source index, for the whole
    /// build to use instead of reading them again.
    Whole(Vec<Option<CachedLayer>>),
}

/// Patches `previous`'s table for `config`, whose sources hash to `sources`, when that is
/// sure to answer as a whole build would (see the module docs).
pub(super) fn attempt(config: &Config, previous: &super::Snapshot, sources: &[SourceHash]) -> Attempt {
    let none = || Attempt::Whole(Vec::new());
    if config.sources.len() != previous.config.sources.len()
        || sources.len() != config.sources.len()
        || table_key_of(config, std::iter::empty()) != table_key_of(&previous.config, std::iter::empty())
    {
        return none();
    }
    // Every source: a list must be unchanged; a database must have its layer kept.
    let mut kept: Vec<Option<CachedLayer>> = Vec::with_capacity(config.sources.len());
    for (i, source) in config.sources.iter().enumerate() {
        let was = previous.provenance.get(i).map(|p| p.sha256.as_str());
        match &source.kind {
            SourceKind::List { .. } => {
                if was != Some(sources[i].sha256.as_str()) {
                    return none();
                }
                kept.push(None);
            }
            SourceKind::Mmdb { location, .. } | SourceKind::Ranges { location, .. } => {
                let path = location_path(location);
                let Some(cached) =
                    LayerFormat::of(source, config).and_then(|f| previous.cached(&source.name, path, &f))
                else {
                    return none();
                };
                kept.push(Some(cached));
            }
        }
    }
    // Read the databases whose content changed.
    let mut layers: Vec<Option<CachedLayer>> = Vec::with_capacity(kept.len());
    let mut changes = Changes::default();
    let mut eligible = true;
    // Ranges of the changed databases, against which the size of the change is judged.
    let mut ranges = 0usize;
    for (i, old) in kept.iter().enumerate() {
        let Some(old) = old else {
            layers.push(None);
            continue;
        };
        if old.provenance.sha256 == sources[i].sha256 {
            layers.push(Some(CachedLayer { stamp: super::FileStamp::of_path(&old.path), ..old.clone() }));
            continue;
        }
        let Ok(new) =
            read_layer(&config.sources[i].name, &old.path, &old.format, sources[i].known.as_ref(), Some(&old.layer))
        else {
            // The whole build reads it again and reports the error.
            return none();
        };
        // Compared (or not comparable): the previous snapshot need not keep its copy longer.
        previous.forget(&config.sources[i].name);
        if !eligible || new.layer.aliases() != old.layer.aliases() || new.layer.has_v4() != old.layer.has_v4() {
            eligible = false;
            layers.push(Some(new));
            continue;
        }
        let diff = new.layer.changes_from(&old.layer);
        if diff.is_empty() {
            // The same networks and records: the layer already kept stays (the table and a
            // kept builder refer to it), described by the new file.
            layers.push(Some(CachedLayer { stamp: new.stamp, provenance: new.provenance, ..old.clone() }));
        } else {
            let (v4, v6) = new.layer.ranges();
            ranges += v4 + v6;
            changes = changes.union(&diff);
            layers.push(Some(new));
        }
    }
    drop(kept);
    if !eligible {
        return Attempt::Whole(layers);
    }
    if changes.is_empty() {
        return Attempt::Patched { table: previous.table.clone(), intervals: 0, layers };
    }
    // An alias block the table holds as a copy of IPv4 ranges changes with them.
    let blocks: Vec<(u128, u8)> = layers.iter().flatten().flat_map(|c| c.layer.aliases().iter().copied()).collect();
    let copied: Vec<(u128, u8)> = blocks.iter().copied().filter(|b| !previous.table.redirects().contains(b)).collect();
    let changes = changes.with_alias_images(&copied);
    // Most of the databases changed (another vendor's file): a whole build costs less.
    let budget = (ranges / PATCH_SHARE).max(PATCH_ALWAYS);
    let patched = fresh_table(config, &layers, &changes, &blocks, budget)
        .and_then(|fresh| previous.table.patched(&fresh, &changes).ok());
    match patched {
        Some(table) => Attempt::Patched { table: Arc::new(table), intervals: changes.intervals(), layers },
        None => Attempt::Whole(layers),
    }
}

/// The table of every source clipped to `changes`: right inside them, empty elsewhere.
/// `None` (build whole) when the databases cut to the changes hold more than `budget` ranges.
fn fresh_table(
    config: &Config,
    layers: &[Option<CachedLayer>],
    changes: &Changes,
    blocks: &[(u128, u8)],
    budget: usize,
) -> Option<GeoTable> {
    let clipped: Vec<Option<SourceLayer>> =
        layers.iter().map(|l| l.as_ref().map(|c| c.layer.clipped(changes, blocks))).collect();
    let inside: usize = clipped.iter().flatten().map(|l| l.ranges().0 + l.ranges().1).sum();
    if inside > budget {
        return None;
    }
    let mut builder = TableBuilder::new();
    for (i, (source, layer)) in config.sources.iter().zip(clipped).enumerate() {
        let index = u16::try_from(i).ok()?;
        match (&source.kind, layer) {
            (SourceKind::List { location, set }, _) => {
                let list = match location {
                    ListLocation::File(location) => cidr::load(&source.name, location_path(location)),
                    ListLocation::Inline(entries) => cidr::from_entries(&source.name, entries),
                }
                .ok()?;
                builder.add_list(index, &source.name, set.as_ref(), &list.v4, &list.v6).ok()?;
            }
            (_, Some(layer)) => builder.add_layer_owned(index, layer),
            (_, None) => return None,
        }
    }
    builder.build().ok()
}
