//! Compiles layers of sources into the partitions the tries are built from.
//!
//! Each family is kept as a partition of its whole address space into ranges, each with a
//! [`Cell`] (layered record id, list bits, source, views id). Sources are applied in
//! precedence order as layers: a layer's prefixes are first made disjoint (the longest prefix
//! wins inside the layer), then merged over the partition in one linear pass. A database
//! layer lays its record over the cell's field by field ([`GeoRecord::overlay`]) and records
//! its own answer in the cell's views; a list layer adds its bit and, if it has a `set`
//! record, lays that over the cell's record too. Adjacent ranges with equal cells are merged
//! as the partition is built. Cells, records, overlays and view sets are interned, so a range
//! costs a 16-byte start and a `u32` cell id; the cells still in use at the end become the
//! table's answers, and the records and view sets they use become its pools (moved, not
//! copied). Each interning set stores ids only, hashing the pooled values in place, so no
//! record, cell or view set is held twice while compiling; the sets are dropped before the
//! pools are handed over.

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use ipnet::{Ipv4Net, Ipv6Net};

use super::trie::{Key, Trie, TrieError};
use super::{alias_span, AnswerPools, Changes, FamilyStats, GeoTable, StoredAnswer};

use crate::geo::{GeoRecord, ViewEntry, MAX_LISTS};

/// Collects sources in precedence order and builds a [`GeoTable`].
#[derive(Clone, Debug)]
pub struct TableBuilder {
    list_names: Vec<Box<str>>,
    cells: Cells,
    v4: Partition<u32>,
    v6: Partition<u128>,
    aliases: AliasBlocks,
}

/// The alias blocks (MaxMind's `::ffff:0:0/96`, `2002::/16`, `2001::/32`: IPv6 space that
/// answers what the IPv4 space answers for the 32 bits after the prefix) that the table can
/// answer from its IPv4 trie instead of holding a copy of every IPv4 range in each.
///
/// The first layer proposes its blocks. A block stays as long as every later layer either
/// has the same alias or lays nothing over it and has no IPv4 ranges at all (an IPv4 range
/// would change the IPv4 answers the block stands for without changing the block). A layer
/// that breaks that gets the block copied in, as the layers so far made it (their merged IPv4
/// ranges replayed into the block), before it is laid over. A layer with an alias that is no
/// longer (or never was) a block of the table replays its own IPv4 ranges there.
///
/// `None` until the first layer; then `(first address, prefix length)`, prefix length 1..=96,
/// in address order.
type AliasBlocks = Option<Vec<(u128, u8)>>;

/// One database's networks as ranges of its own (neighbours with equal records merged, no
/// other source mixed in): built by streaming the database once, applied to a
/// [`TableBuilder`] with [`TableBuilder::add_layer`], and kept by a snapshot so that a reload
/// whose database did not change skips reading it. Memory: 20 bytes per IPv6 range and 8 per
/// IPv4 range after merging, not per network.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceLayer {
    records: Vec<GeoRecord>,
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    /// IPv6 blocks that answer as this layer's IPv4 ranges do ([`SourceLayer::alias_v4`]);
    /// the IPv6 ranges have a gap there.
    aliases: Vec<(u128, u8)>,
    /// For a [`clipped`](SourceLayer::clipped) copy: what the whole layer answers to the
    /// questions that decide how a table keeps the alias blocks, so that a table built from
    /// clipped layers decides as one built from the whole ones.
    whole: Option<Box<AliasInputs>>,
}

/// What a layer says to [`TableBuilder`]'s alias decisions: whether it has IPv4 ranges, and
/// which of the candidate blocks its IPv6 ranges touch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct AliasInputs {
    has_v4: bool,
    touched: Vec<(u128, u8)>,
}

/// Why a network cannot be added to a [`SourceLayer`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayerError {
    #[error("networks out of order: {0} overlaps or precedes the network before it")]
    Unordered(String),
    #[error("a network refers to record {index} but only {len} records came before it")]
    BadRecord { index: u32, len: usize },
}

/// Runs of one record each (or [`Ranges::NONE`] for a gap) over one family's space, from the
/// first network to the last, built in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ranges<K> {
    starts: Vec<K>,
    records: Vec<u32>,
    /// The last address covered so far (meaningless while `starts` is empty).
    end: u128,
}

/// Why a table cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("more than {MAX_LISTS} CIDR lists; merge some lists or drop unused ones")]
    TooManyLists,
    #[error("two lists are named {0:?}; list names must be unique")]
    DuplicateList(String),
    #[error("a database refers to record {index} but has only {len} records")]
    BadRecordIndex { index: u32, len: usize },
    #[error("the table is too large for its slot encoding ({0} ranges)")]
    TooLarge(usize),
}

/// What the table stores for one range before interning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Cell {
    /// Index into `Records::list` of the layered record; 0 is the empty record.
    geo: u32,
    lists: u64,
    /// Source index + 1; 0 = no source gave geo data.
    source: u16,
    /// Index into `ViewSets::sets`; 0 is the empty set.
    views: u32,
}

/// Ids of values kept in a pool, found by the value's hash: a set that holds nothing twice.
#[derive(Clone, Debug, Default)]
struct Interner {
    ids: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// Distinct records, interned, and the overlays of one on another already computed.
#[derive(Clone, Debug)]
struct Records {
    list: Vec<GeoRecord>,
    ids: Interner,
    /// `(under, over)` -> the record `over` laid over `under` makes.
    overlays: HashMap<(u32, u32), u32>,
}

/// Distinct view sets (each database source's own record id, in source order), kept one
/// after another in `pool`.
#[derive(Clone, Debug)]
struct ViewSets {
    pool: Vec<ViewEntry>,
    /// `(start in pool, length)` of each set; set 0 is the empty one.
    sets: Vec<(u32, u16)>,
    ids: Interner,
    /// Scratch for the set being formed.
    next: Vec<ViewEntry>,
}

/// The distinct cells seen while layering, interned so that a partition stores a `u32` per
/// range instead of a 16-byte cell (a full IPv6 database's partition is the largest thing a
/// compile holds). Id 0 is the empty cell.
#[derive(Clone, Debug)]
struct Cells {
    list: Vec<Cell>,
    ids: Interner,
    /// The last `apply`, reused while consecutive pieces paint the same way.
    last: Option<(Paint, u32, u32)>,
    /// Every `apply` of the current layer: a layer paints few distinct ways over few
    /// distinct cells, so most of its pieces are answered here without forming a cell.
    applied: HashMap<(Paint, u32), u32>,
    records: Records,
    views: ViewSets,
}

/// A partition of one family's space; `ends` are implicit (next start - 1, or the max).
/// Starts are kept at the family's width (4 bytes for IPv4), in chunks of at most
/// [`CHUNK`] ranges: an overlay frees each chunk of the old partition as soon as it has read
/// it, so the old and the new partition never both exist whole (a full database's partition
/// is the largest thing a compile holds).
#[derive(Clone, Debug)]
struct Partition<K> {
    chunks: Vec<Chunk<K>>,
}

/// Ranges of a partition, in order: `starts[i]` with cell id `cells[i]`.
#[derive(Clone, Debug)]
struct Chunk<K> {
    starts: Vec<K>,
    cells: Vec<u32>,
}

/// Ranges per chunk (1.25 MiB of IPv6 starts); a handful in unit tests, so that the table's
/// model tests cross chunk boundaries all the time.
const CHUNK: usize = if cfg!(test) { 8 } else { 1 << 16 };

/// Writes a partition's ranges in order, chunk by chunk, merging equal neighbours.
struct ChunkWriter<K> {
    done: Vec<Chunk<K>>,
    current: Chunk<K>,
}

/// A change one layer makes to the cells it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Paint {
    /// A database's record `geo` (source index + 1 in `source`).
    Geo {
        geo: u32,
        source: u16,
    },
    List {
        bit: u64,
        set: Option<(u32, u16)>,
    },
    /// Becomes that cell (an alias block copied from the IPv4 partition; only over empty cells).
    Cell(u32),
}

// === impl TableBuilder ===

impl Default for TableBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TableBuilder {
    pub fn new() -> Self {
        Self { list_names: Vec::new(), cells: Cells::new(), v4: Partition::new(), v6: Partition::new(), aliases: None }
    }

    /// Adds a database layer. `source` is its index in configuration order; `v4`/`v6` map
    /// networks to indices into `records`. Nested networks are allowed: the longest wins.
    pub fn add_database(
        &mut self,
        source: u16,
        records: &[GeoRecord],
        v4: &[(Ipv4Net, u32)],
        v6: &[(Ipv6Net, u32)],
    ) -> Result<(), BuildError> {
        let ids: Vec<u32> = records.iter().map(|r| self.intern(r)).collect();
        // Check every record index up front, so the merges below index without failing.
        if let Some(&index) =
            v4.iter().map(|(_, i)| i).chain(v6.iter().map(|(_, i)| i)).find(|&&i| i as usize >= ids.len())
        {
            return Err(BuildError::BadRecordIndex { index, len: ids.len() });
        }
        self.settle_aliases(&[], !v4.is_empty(), |f, l| {
            v6.iter().any(|(n, _)| u128::from(n.network()) <= l && u128::from(n.broadcast()) >= f)
        });
        let source = source.saturating_add(1);
        let paint = |index: u32| Paint::Geo { geo: ids[index as usize], source };
        // A database's networks are the leaves of its search tree: already sorted and
        // disjoint. Then they are merged straight from the input with no copy (copying a full
        // database's pieces is what dominated peak memory during a reload); otherwise they are
        // made disjoint first, the longest prefix winning.
        if v4.windows(2).all(|w| w[0].0.broadcast() < w[1].0.network()) {
            self.v4.overlay_iter(
                &mut self.cells,
                v4.iter().map(|(n, i)| {
                    let (first, last, _, p) = piece4(n, paint(*i));
                    (first, last, p)
                }),
            );
        } else {
            self.v4.overlay(&mut self.cells, disjoint(v4.iter().map(|(n, i)| piece4(n, paint(*i))).collect()));
        }
        if v6.windows(2).all(|w| w[0].0.broadcast() < w[1].0.network()) {
            self.v6.overlay_iter(
                &mut self.cells,
                v6.iter().map(|(n, i)| {
                    let (first, last, _, p) = piece6(n, paint(*i));
                    (first, last, p)
                }),
            );
        } else {
            self.v6.overlay(&mut self.cells, disjoint(v6.iter().map(|(n, i)| piece6(n, paint(*i))).collect()));
        }
        self.cells.end_layer();
        Ok(())
    }

    /// Adds a database layer from its own ranges ([`SourceLayer`], built by streaming the
    /// database once, or kept from an earlier compile when the file has not changed).
    pub fn add_layer(&mut self, source: u16, layer: &SourceLayer) {
        let own = self.settle_layer_aliases(layer);
        let ids: Vec<u32> = layer.records.iter().map(|r| self.intern(r)).collect();
        let source = source.saturating_add(1);
        let paint = |record: u32| Paint::Geo { geo: ids[record as usize], source };
        self.v4.overlay_iter(&mut self.cells, layer.v4.pieces().map(|(f, l, r)| (f, l, paint(r))));
        if own.is_empty() {
            self.v6.overlay_iter(&mut self.cells, layer.v6.pieces().map(|(f, l, r)| (f, l, paint(r))));
        } else {
            let pieces = layer.v6_with_replays(&own).into_iter().map(|(f, l, r)| (f, l, paint(r)));
            self.v6.overlay_iter(&mut self.cells, pieces);
        }
        self.cells.end_layer();
    }

    /// [`add_layer`](Self::add_layer) for a layer no longer needed: IPv6 first, its ranges
    /// freed before IPv4 is layered, so the largest family's input and output never overlap
    /// with the other family's (the peak of a one-off compile).
    pub fn add_layer_owned(&mut self, source: u16, mut layer: SourceLayer) {
        // The layer's records move into the builder's pool (no second copy of a big layer's).
        let ids: Vec<u32> =
            std::mem::take(&mut layer.records).into_iter().map(|r| self.cells.records.intern_owned(r)).collect();
        let source = source.saturating_add(1);
        let paint = |record: u32| Paint::Geo { geo: ids[record as usize], source };
        let own = self.settle_layer_aliases(&layer);
        if !own.is_empty() {
            let pieces = layer.v6_with_replays(&own);
            layer.v6 = Ranges::default();
            self.v6.overlay_iter(&mut self.cells, pieces.into_iter().map(|(f, l, r)| (f, l, paint(r))));
        }
        let v6 = std::mem::take(&mut layer.v6);
        if v6.starts.is_empty() {
            // Nothing left to lay (or laid above with the replays).
        } else if self.v6.is_pristine() {
            // The first layer over an empty space: its ranges become the partition in place
            // (starts moved, records turned into cell ids), with no second copy.
            let Ranges { starts, records, end } = v6;
            let cells = &mut self.cells;
            self.v6.adopt(starts, records, end, |r| cells.apply(paint(r), Cells::EMPTY));
        } else {
            self.v6.overlay_iter(&mut self.cells, v6.pieces().map(|(f, l, r)| (f, l, paint(r))));
            drop(v6);
        }
        let v4 = std::mem::take(&mut layer.v4);
        self.v4.overlay_iter(&mut self.cells, v4.pieces().map(|(f, l, r)| (f, l, paint(r))));
        self.cells.end_layer();
    }

    /// Adds a named list layer; `set` replaces the geo data of its addresses when given.
    /// Returns the list's id (its bit in [`ListSet`]).
    pub fn add_list(
        &mut self,
        source: u16,
        name: &str,
        set: Option<&GeoRecord>,
        v4: &[Ipv4Net],
        v6: &[Ipv6Net],
    ) -> Result<usize, BuildError> {
        if self.list_names.iter().any(|n| &**n == name) {
            return Err(BuildError::DuplicateList(name.to_owned()));
        }
        let id = self.list_names.len();
        if id >= MAX_LISTS {
            return Err(BuildError::TooManyLists);
        }
        self.list_names.push(name.into());
        self.settle_aliases(&[], !v4.is_empty(), |f, l| {
            v6.iter().any(|n| u128::from(n.network()) <= l && u128::from(n.broadcast()) >= f)
        });
        let set = set.map(|r| (self.intern(r), source.saturating_add(1)));
        let paint = Paint::List { bit: 1u64 << id, set };
        self.v4.overlay(&mut self.cells, disjoint(v4.iter().map(|n| piece4(n, paint)).collect()));
        self.v6.overlay(&mut self.cells, disjoint(v6.iter().map(|n| piece6(n, paint)).collect()));
        self.cells.end_layer();
        Ok(id)
    }

    /// Heap bytes held while compiling: the partitions and the interned cells, records and
    /// view sets (an estimate from capacities; strings shared with the layers not counted).
    pub fn heap_bytes(&self) -> usize {
        fn partition<K>(p: &Partition<K>) -> usize {
            p.chunks.iter().map(|c| c.starts.capacity() * std::mem::size_of::<K>() + c.cells.capacity() * 4).sum()
        }
        let c = &self.cells;
        partition(&self.v4)
            + partition(&self.v6)
            + c.list.capacity() * std::mem::size_of::<Cell>()
            + c.ids.ids.capacity() * 4
            + c.records.list.capacity() * std::mem::size_of::<GeoRecord>()
            + c.records.ids.ids.capacity() * 4
            + c.records.overlays.capacity() * 12
            + c.views.pool.capacity() * std::mem::size_of::<ViewEntry>()
            + c.views.sets.capacity() * 8
            + c.views.ids.ids.capacity() * 4
    }

    /// Interns answers and builds both tries.
    pub fn build(self) -> Result<GeoTable, BuildError> {
        let Cells { list, ids, records, views, .. } = self.cells;
        // The interning sets are done with: freed before anything else is built.
        drop(ids);
        let Records { list: mut records, ids, overlays } = records;
        drop((ids, overlays));
        let ViewSets { pool: view_pool, sets: view_sets, ids, next } = views;
        drop((ids, next));
        // Answer ids: the cells still in use, numbered in order of first use, then renumbered
        // by how many ranges use them (`by_use`).
        let mut answer_of = vec![u32::MAX; list.len()];
        let mut cells: Vec<Cell> = Vec::new();
        let (s4, mut a4, n4) = self.v4.finish(&list, &mut answer_of, &mut cells);
        let (s6, mut a6, n6) = self.v6.finish(&list, &mut answer_of, &mut cells);
        drop((list, answer_of));
        let cells = by_use(cells, &mut a4, &mut a6);
        let too_large = |_: TrieError| BuildError::TooLarge(n4 + n6);
        // Each family's inputs are freed as soon as its trie is built (peak memory).
        let v4 = Trie::<u32>::build(&s4, &a4).map_err(too_large)?;
        drop((s4, a4));
        let v6 = Trie::<u128>::build(&s6, &a6).map_err(too_large)?;
        drop((s6, a6));

        // Each answer gets its layered record; the pools keep only what the views use:
        // records renumbered in place (moved, not copied), each view set used copied once into
        // a new pool.
        let mut answers: Vec<StoredAnswer> = Vec::with_capacity(cells.len());
        let mut used = vec![false; records.len()];
        let mut set_at: Vec<Option<(u32, u16)>> = vec![None; view_sets.len()];
        let mut views: Vec<ViewEntry> = Vec::new();
        for c in &cells {
            let slot = &mut set_at[c.views as usize];
            if slot.is_none() {
                let run = view_run(&view_pool, &view_sets, c.views);
                let len = run.len() as u16;
                for e in run {
                    used[e.record as usize] = true;
                }
                *slot = Some((views.len() as u32, len));
                views.extend_from_slice(run);
            }
            let (views_at, views_len) = set_at[c.views as usize].unwrap_or((0, 0));
            let geo = records.get(c.geo as usize).cloned().unwrap_or_default();
            answers.push(StoredAnswer { geo, lists: c.lists, views_at, views_len, source: c.source });
        }
        drop((view_pool, view_sets));
        let mut renumber = vec![u32::MAX; records.len()];
        let mut kept = 0u32;
        for (old, &u) in used.iter().enumerate() {
            if u {
                renumber[old] = kept;
                kept += 1;
            }
        }
        let mut keep = used.iter();
        records.retain(|_| keep.next().copied().unwrap_or(false));
        records.shrink_to_fit();
        drop(used);
        for e in &mut views {
            e.record = renumber[e.record as usize];
        }
        Ok(GeoTable::from_parts(
            v4,
            v6,
            AnswerPools { answers, records, views },
            self.list_names.into_boxed_slice(),
            self.aliases.unwrap_or_default().into_boxed_slice(),
            FamilyStats { ranges: n4 },
            FamilyStats { ranges: n6 },
        ))
    }

    fn intern(&mut self, record: &GeoRecord) -> u32 {
        self.cells.records.intern(record)
    }

    /// [`settle_aliases`](Self::settle_aliases) for a database layer.
    fn settle_layer_aliases(&mut self, layer: &SourceLayer) -> Vec<(u128, u8)> {
        if let Some(whole) = layer.whole.as_deref() {
            let touched =
                |f: u128, l: u128| whole.touched.iter().any(|&(b, len)| b == f && (b | (u128::MAX >> len)) == l);
            return self.settle_aliases(&layer.aliases, whole.has_v4, touched);
        }
        let has_v4 = layer.v4.pieces().next().is_some();
        self.settle_aliases(&layer.aliases, has_v4, |f, l| layer.v6.pieces().any(|(a, b, _)| a <= l && b >= f))
    }

    /// Keeps the alias blocks this next layer agrees with ([`AliasBlocks`]), copies the others
    /// into the IPv6 partition as the layers so far made them, and returns the layer's own
    /// aliases that are not blocks of the table (it replays its IPv4 ranges there itself).
    /// `touches_v6(first, last)`: whether the layer lays anything over that IPv6 stretch.
    fn settle_aliases(
        &mut self,
        aliases: &[(u128, u8)],
        has_v4: bool,
        touches_v6: impl Fn(u128, u128) -> bool,
    ) -> Vec<(u128, u8)> {
        let Some(blocks) = self.aliases.take() else {
            self.aliases = Some(aliases.to_vec());
            return Vec::new();
        };
        let mut kept = Vec::new();
        for (base, len) in blocks {
            let last = base | (u128::MAX >> len);
            if aliases.contains(&(base, len)) || (!has_v4 && !touches_v6(base, last)) {
                kept.push((base, len));
            } else {
                self.copy_v4_into(base, len);
            }
        }
        let own = aliases.iter().filter(|a| !kept.contains(a)).copied().collect();
        self.aliases = Some(kept);
        own
    }

    /// Copies the IPv4 partition into the (empty) alias block `base/len` of the IPv6 one.
    fn copy_v4_into(&mut self, base: u128, len: u8) {
        let shift = 96 - u32::from(len);
        // Streamed: the IPv4 partition can hold every IPv4 range of a database (`::/96` of
        // the shipped one: 341k), too many to gather first.
        let pieces = self.v4.ranges().filter(|&(_, _, cell)| cell != Cells::EMPTY).map(|(f, l, cell)| {
            let (first, last) = alias_span(base, shift, f, l);
            (first, last, Paint::Cell(cell))
        });
        self.v6.overlay_iter(&mut self.cells, pieces);
        self.cells.end_layer();
    }
}

/// Renumbers the answers by how many ranges use them, most first (ties by first use). A trie
/// leaf whose answers are all below 256 keeps them inside its key words (one cache line less
/// per lookup, half the memory), so with more than 256 answers the common ones should get
/// the small numbers.
fn by_use(cells: Vec<Cell>, a4: &mut [u32], a6: &mut [u32]) -> Vec<Cell> {
    let mut uses = vec![0usize; cells.len()];
    for &a in a4.iter().chain(a6.iter()) {
        uses[a as usize] += 1;
    }
    let mut order: Vec<u32> = (0..cells.len() as u32).collect();
    order.sort_by_key(|&a| (std::cmp::Reverse(uses[a as usize]), a));
    let mut rank = vec![0u32; cells.len()];
    for (r, &a) in order.iter().enumerate() {
        rank[a as usize] = r as u32;
    }
    for a in a4.iter_mut().chain(a6.iter_mut()) {
        *a = rank[*a as usize];
    }
    order.iter().map(|&a| cells[a as usize]).collect()
}

fn piece4(net: &Ipv4Net, paint: Paint) -> (u128, u128, u8, Paint) {
    let first = u128::from(u32::from(net.network()));
    let last = u128::from(u32::from(net.broadcast()));
    (first, last, net.prefix_len(), paint)
}

fn piece6(net: &Ipv6Net, paint: Paint) -> (u128, u128, u8, Paint) {
    let first = u128::from(net.network());
    let last = u128::from(net.broadcast());
    (first, last, net.prefix_len(), paint)
}

/// Turns possibly nested prefixes into sorted disjoint pieces, the longest prefix winning.
/// Prefixes never partly overlap: two are either disjoint or one contains the other.
fn disjoint(mut pieces: Vec<(u128, u128, u8, Paint)>) -> Vec<(u128, u128, Paint)> {
    pieces.sort_unstable_by_key(|&(first, _, len, _)| (first, len));
    let mut out: Vec<(u128, u128, Paint)> = Vec::with_capacity(pieces.len());
    // Enclosing prefixes still open, outermost first.
    let mut open: Vec<(u128, Paint)> = Vec::new();
    // Next address not yet emitted (None once past the end of the space).
    let mut cursor: Option<u128> = Some(0);

    fn emit(out: &mut Vec<(u128, u128, Paint)>, cursor: &mut Option<u128>, last: u128, p: Paint) {
        if let Some(c) = *cursor {
            if c <= last {
                out.push((c, last, p));
            }
        }
        *cursor = last.checked_add(1);
    }

    for (first, last, _, paint) in pieces {
        // Close enclosing prefixes that end before this one starts.
        while let Some(&(end, p)) = open.last() {
            if end >= first {
                break;
            }
            emit(&mut out, &mut cursor, end, p);
            open.pop();
        }
        if let Some(&(_, p)) = open.last() {
            if first > 0 {
                emit(&mut out, &mut cursor, first - 1, p);
            }
        }
        cursor = Some(cursor.map_or(first, |c| c.max(first)));
        // An open prefix ending where this one ends has nothing left after it: either a
        // duplicate (the later entry wins) or an enclosing prefix whose tail this one covers.
        if open.last().is_some_and(|&(end, _)| end == last) {
            open.pop();
        }
        open.push((last, paint));
    }
    while let Some((end, p)) = open.pop() {
        emit(&mut out, &mut cursor, end, p);
    }
    out
}

// === impl SourceLayer ===

impl SourceLayer {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty layer with room for about as many ranges and records as `like` holds (a
    /// little more): read again on a reload, a database has about the ranges it had, and
    /// arrays sized once are neither copied as they grow nor faulted in twice over.
    pub fn sized_like(like: &SourceLayer) -> Self {
        let room = |n: usize| n + n / 16 + 16;
        let mut layer = Self::default();
        layer.records.reserve_exact(room(like.records.len()));
        layer.v4.starts.reserve_exact(room(like.v4.len()));
        layer.v4.records.reserve_exact(room(like.v4.len()));
        layer.v6.starts.reserve_exact(room(like.v6.len()));
        layer.v6.records.reserve_exact(room(like.v6.len()));
        layer
    }

    /// Numbers the next distinct record (0, 1, ...).
    pub fn push_record(&mut self, record: GeoRecord) -> u32 {
        self.records.push(record);
        u32::try_from(self.records.len() - 1).unwrap_or(u32::MAX)
    }

    /// Adds an IPv4 network; networks must come in ascending order, disjoint.
    pub fn push_v4(&mut self, net: Ipv4Net, record: u32) -> Result<(), LayerError> {
        self.check(record)?;
        let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
        self.v4.push(first, last, record).map_err(|()| LayerError::Unordered(net.to_string()))
    }

    /// Adds an IPv6 network; networks must come in ascending order, disjoint.
    pub fn push_v6(&mut self, net: Ipv6Net, record: u32) -> Result<(), LayerError> {
        self.check(record)?;
        let (first, last) = (u128::from(net.network()), u128::from(net.broadcast()));
        self.v6.push(first, last, record).map_err(|()| LayerError::Unordered(net.to_string()))
    }

    /// Adds the IPv4 range `first..=last` (any bounds, not only CIDR-aligned); ranges must
    /// come in ascending order, disjoint.
    pub fn push_range_v4(&mut self, first: u32, last: u32, record: u32) -> Result<(), LayerError> {
        self.check(record)?;
        if first > last {
            return Err(LayerError::Unordered(format!(
                "{}-{}",
                std::net::Ipv4Addr::from(first),
                std::net::Ipv4Addr::from(last)
            )));
        }
        self.v4.push(first, last, record).map_err(|()| {
            LayerError::Unordered(format!("{}-{}", std::net::Ipv4Addr::from(first), std::net::Ipv4Addr::from(last)))
        })
    }

    /// Adds the IPv6 range `first..=last`; ranges must come in ascending order, disjoint.
    pub fn push_range_v6(&mut self, first: u128, last: u128, record: u32) -> Result<(), LayerError> {
        self.check(record)?;
        let text = || format!("{}-{}", std::net::Ipv6Addr::from(first), std::net::Ipv6Addr::from(last));
        if first > last {
            return Err(LayerError::Unordered(text()));
        }
        self.v6.push(first, last, record).map_err(|()| LayerError::Unordered(text()))
    }

    /// The records numbered so far, in order.
    pub fn records(&self) -> &[GeoRecord] {
        &self.records
    }

    fn check(&self, record: u32) -> Result<(), LayerError> {
        if (record as usize) < self.records.len() {
            Ok(())
        } else {
            Err(LayerError::BadRecord { index: record, len: self.records.len() })
        }
    }

    /// Declares an alias block at `base`: IPv6 addresses there answer what the IPv4 ranges
    /// answer for the 32 bits that end `shift` bits above the bottom (a MaxMind alias subtree:
    /// `::ffff:0:0/96` with `shift` 0, `2002::/16` with 80, `2001::/32` with 64). Recorded, not
    /// copied: the table answers the block from its IPv4 trie where it can
    /// ([`TableBuilder`]). Must come after every IPv4 range, after every IPv6 range below
    /// `base` and before any above the block.
    pub fn alias_v4(&mut self, base: u128, shift: u32) -> Result<(), LayerError> {
        if shift >= 96 {
            return Err(LayerError::Unordered(format!("alias shift {shift}")));
        }
        let len = (96 - shift) as u8;
        if base & (u128::MAX >> len) != 0 {
            return Err(LayerError::Unordered(format!("alias {base:x}/{len}")));
        }
        let last = base | (u128::MAX >> len);
        self.v6
            .push(base, last, Ranges::<u128>::NONE)
            .map_err(|()| LayerError::Unordered(format!("{base:x}/{len}")))?;
        self.aliases.push((base, len));
        Ok(())
    }

    /// The IPv6 pieces with the IPv4 ranges replayed into the alias blocks `blocks` (the
    /// layer's own copy of what those blocks answer), in address order.
    fn v6_with_replays(&self, blocks: &[(u128, u8)]) -> Vec<(u128, u128, u32)> {
        let mut out: Vec<(u128, u128, u32)> = self.v6.pieces().collect();
        for &(base, len) in blocks {
            let shift = 96 - u32::from(len);
            out.extend(self.v4.pieces().map(|(f, l, r)| {
                let (first, last) = alias_span(base, shift, f, l);
                (first, last, r)
            }));
        }
        out.sort_unstable_by_key(|p| p.0);
        out
    }

    /// The alias blocks declared with [`alias_v4`](Self::alias_v4), in order.
    pub fn aliases(&self) -> &[(u128, u8)] {
        &self.aliases
    }

    /// Whether the layer has any IPv4 range (which decides whether a table keeps its alias
    /// blocks as redirects, see [`TableBuilder`]).
    pub fn has_v4(&self) -> bool {
        self.v4.pieces().next().is_some()
    }

    /// Where this layer answers otherwise than `old` (records compared by value, so the two
    /// may number them differently): what a table built from `old` must change to answer as
    /// one built from `self`. Linear in the ranges of both.
    pub fn changes_from(&self, old: &SourceLayer) -> Changes {
        let index: HashMap<&GeoRecord, u32> = old.records.iter().enumerate().map(|(i, r)| (r, i as u32)).collect();
        // This layer's record ids in `old`'s numbering; a record `old` lacks matches nothing.
        let as_old: Vec<u32> =
            self.records.iter().map(|r| index.get(r).copied().unwrap_or(Ranges::<u32>::NONE - 1)).collect();
        let translate = |r: u32| if r == Ranges::<u32>::NONE { r } else { as_old[r as usize] };
        Changes {
            v4: differences(old.v4.cover(u128::from(u32::MAX)), self.v4.cover(u128::from(u32::MAX)), translate),
            v6: differences(old.v6.cover(u128::MAX), self.v6.cover(u128::MAX), translate),
        }
    }

    /// The layer restricted to `changes`: the same records and alias blocks, only the ranges
    /// inside the changes. What a table patched over `changes` is built from. `blocks` are
    /// the alias blocks of every layer of the table: the copy remembers which of them the
    /// whole layer touches, so that the table built from it keeps or copies the same blocks
    /// as one built from the whole layers.
    pub fn clipped(&self, changes: &Changes, blocks: &[(u128, u8)]) -> SourceLayer {
        let whole = match &self.whole {
            Some(w) => w.clone(),
            None => {
                let touches = |&(b, len): &(u128, u8)| {
                    let l = b | (u128::MAX >> len);
                    self.v6.pieces().any(|(x, y, _)| x <= l && y >= b)
                };
                Box::new(AliasInputs {
                    has_v4: self.has_v4(),
                    touched: blocks.iter().copied().filter(touches).collect(),
                })
            }
        };
        let mut out = SourceLayer {
            records: self.records.clone(),
            v4: Ranges::default(),
            v6: Ranges::default(),
            aliases: self.aliases.clone(),
            whole: Some(whole),
        };
        self.v4.clip_into(&changes.v4, &mut out.v4);
        self.v6.clip_into(&changes.v6, &mut out.v6);
        out
    }

    /// Ranges per family (after merging equal neighbours, gaps included).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Heap memory held, for the gauge of what a snapshot keeps between reloads.
    pub fn heap_bytes(&self) -> usize {
        self.v4.starts.capacity() * 4
            + self.v6.starts.capacity() * 16
            + (self.v4.records.capacity() + self.v6.records.capacity()) * 4
            + self.records.capacity() * std::mem::size_of::<GeoRecord>()
            + self.aliases.capacity() * std::mem::size_of::<(u128, u8)>()
    }

    /// Frees spare capacity once the layer is complete.
    pub fn shrink(&mut self) {
        for r in [&mut self.v4.records, &mut self.v6.records] {
            r.shrink_to_fit();
        }
        self.v4.starts.shrink_to_fit();
        self.v6.starts.shrink_to_fit();
    }
}

// === impl Ranges ===

impl<K> Default for Ranges<K> {
    fn default() -> Self {
        Self { starts: Vec::new(), records: Vec::new(), end: 0 }
    }
}

impl<K: Copy + Into<u128> + TryFrom<u128>> Ranges<K> {
    /// Marks a gap: addresses between networks of the layer.
    const NONE: u32 = u32::MAX;

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// Adds `first..=last`; it must start after everything added before.
    fn push(&mut self, first: K, last: K, record: u32) -> Result<(), ()> {
        let (first, last) = (first.into(), last.into());
        if !self.starts.is_empty() {
            if first <= self.end {
                return Err(());
            }
            // `end < first`, so this cannot overflow.
            if self.end + 1 < first {
                self.run(self.end + 1, Self::NONE);
            }
        }
        self.run(first, record);
        self.end = last;
        Ok(())
    }

    fn run(&mut self, start: u128, record: u32) {
        if self.records.last() == Some(&record) {
            return;
        }
        if let Ok(s) = K::try_from(start) {
            self.starts.push(s);
            self.records.push(record);
        }
    }

    /// Every run over `0..=max`, gaps included as [`Self::NONE`]: `(first, last, record)`.
    fn cover(&self, max: u128) -> impl Iterator<Item = (u128, u128, u32)> + '_ {
        let n = self.starts.len();
        let first_start: Option<u128> = self.starts.first().map(|&s| s.into());
        let head = first_start.filter(|&s| s > 0).map(|s| (0, s - 1, Self::NONE));
        let tail =
            if n == 0 { Some((0, max, Self::NONE)) } else { (self.end < max).then(|| (self.end + 1, max, Self::NONE)) };
        let runs = (0..n).map(move |i| {
            let first: u128 = self.starts[i].into();
            let last = self.starts.get(i + 1).map_or(self.end, |&s| s.into() - 1);
            (first, last, self.records[i])
        });
        head.into_iter().chain(runs).chain(tail)
    }

    /// Pushes the runs with a record that lie in `intervals` (sorted, disjoint), cut to them.
    fn clip_into(&self, intervals: &[(u128, u128)], out: &mut Self) {
        for &(a, b) in intervals {
            // The run holding `a` (or the first one after it).
            let mut i = self.starts.partition_point(|&s| s.into() <= a).saturating_sub(1);
            while i < self.starts.len() {
                let first: u128 = self.starts[i].into();
                if first > b {
                    break;
                }
                let last = self.starts.get(i + 1).map_or(self.end, |&s| s.into() - 1);
                if last >= a && self.records[i] != Self::NONE {
                    // In order and disjoint by construction, so this cannot fail.
                    let _ = out.push_u128(first.max(a), last.min(b), self.records[i]);
                }
                i += 1;
            }
        }
    }

    fn push_u128(&mut self, first: u128, last: u128, record: u32) -> Result<(), ()> {
        match (K::try_from(first), K::try_from(last)) {
            (Ok(f), Ok(l)) => self.push(f, l, record),
            _ => Err(()),
        }
    }

    /// `(first, last, record)` of every run with a record, in order.
    fn pieces(&self) -> impl Iterator<Item = (u128, u128, u32)> + '_ {
        (0..self.starts.len()).filter(|&i| self.records[i] != Self::NONE).map(move |i| {
            let first: u128 = self.starts[i].into();
            let last = self.starts.get(i + 1).map_or(self.end, |&s| s.into() - 1);
            (first, last, self.records[i])
        })
    }
}

// === impl Partition ===

impl<K: Key> Partition<K> {
    /// The last address of the family.
    const MAX: u128 = if K::BITS == 128 { u128::MAX } else { (1u128 << K::BITS) - 1 };

    fn new() -> Self {
        let mut w = ChunkWriter::new();
        w.push(0, Cells::EMPTY);
        w.finish()
    }

    /// True while nothing has been layered: one empty range over the whole space.
    fn is_pristine(&self) -> bool {
        matches!(&self.chunks[..], [only] if only.cells == [Cells::EMPTY])
    }

    /// Becomes the ranges `starts`/`records` (covering up to `end`, gaps marked
    /// [`Ranges::NONE`]), each record turned into a cell id by `cell`; the space outside is
    /// empty. Only on a pristine partition.
    fn adopt(&mut self, starts: Vec<K>, records: Vec<u32>, end: u128, mut cell: impl FnMut(u32) -> u32) {
        debug_assert!(self.is_pristine());
        if starts.is_empty() {
            return;
        }
        let mut w = ChunkWriter::new();
        if starts[0].to_u128() > 0 {
            w.push(0, Cells::EMPTY);
        }
        // `push` merges equal neighbours, should a layer built some other way have any.
        for (s, r) in starts.into_iter().zip(records) {
            w.push(s.to_u128(), if r == Ranges::<u128>::NONE { Cells::EMPTY } else { cell(r) });
        }
        if end < Self::MAX {
            w.push(end + 1, Cells::EMPTY);
        }
        *self = w.finish();
    }

    /// `(first, last, cell)` of every range, in order.
    fn ranges(&self) -> impl Iterator<Item = (u128, u128, u32)> + '_ {
        let mut all = self.chunks.iter().flat_map(|c| c.starts.iter().zip(&c.cells)).peekable();
        std::iter::from_fn(move || {
            let (start, &cell) = all.next()?;
            let last = all.peek().map_or(Self::MAX, |(s, _)| s.to_u128() - 1);
            Some((start.to_u128(), last, cell))
        })
    }

    /// Applies sorted, disjoint `pieces` over the partition in one pass.
    fn overlay(&mut self, interned: &mut Cells, pieces: Vec<(u128, u128, Paint)>) {
        self.overlay_iter(interned, pieces.into_iter());
    }

    /// Like [`overlay`](Self::overlay), reading the pieces from an iterator (sorted and
    /// disjoint).
    fn overlay_iter(&mut self, interned: &mut Cells, pieces: impl Iterator<Item = (u128, u128, Paint)>) {
        let mut pieces = pieces.peekable();
        if pieces.peek().is_none() {
            return;
        }
        let mut out = ChunkWriter::new();
        // Each old chunk is freed once read (its `IntoIter` dropped as the next one starts).
        let mut old =
            std::mem::take(&mut self.chunks).into_iter().flat_map(|c| c.starts.into_iter().zip(c.cells)).peekable();
        while let Some((start, cell)) = old.next() {
            let mut pos = start.to_u128();
            let last = old.peek().map_or(Self::MAX, |(s, _)| s.to_u128() - 1);
            loop {
                while pieces.peek().is_some_and(|p| p.1 < pos) {
                    pieces.next();
                }
                let (end, c) = match pieces.peek().copied() {
                    Some((first, plast, paint)) if first <= pos => (plast.min(last), interned.apply(paint, cell)),
                    Some((first, _, _)) if first <= last => (first - 1, cell),
                    _ => (last, cell),
                };
                // Equal neighbours merge as they are written: the partition stays near its
                // final size (a database's neighbouring networks mostly share a country)
                // instead of holding every network and gap until the end.
                out.push(pos, c);
                crate::pace::tick();
                match end.checked_add(1) {
                    Some(next) if next <= last => pos = next,
                    _ => break,
                }
            }
        }
        *self = out.finish();
    }

    /// Turns cell ids into answer ids (`answer_of`, filled in as cells are first met, and
    /// `answers` in that order); returns starts, answer ids, range count. Each chunk is freed
    /// as it is copied into the flat arrays the trie is built from.
    fn finish(self, list: &[Cell], answer_of: &mut [u32], answers: &mut Vec<Cell>) -> (Vec<K>, Vec<u32>, usize) {
        let n: usize = self.chunks.iter().map(|c| c.starts.len()).sum();
        let (mut starts, mut ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for chunk in self.chunks {
            starts.extend(chunk.starts);
            ids.extend(chunk.cells.into_iter().map(|id| {
                let slot = &mut answer_of[id as usize];
                if *slot == u32::MAX {
                    *slot = answers.len() as u32;
                    answers.push(list[id as usize]);
                }
                *slot
            }));
        }
        // Overlays never leave equal neighbours, so the starts are final.
        debug_assert!(ids.windows(2).all(|w| w[0] != w[1]) || answers.len() < 2);
        (starts, ids, n)
    }
}

// === impl ChunkWriter ===

impl<K: Key> ChunkWriter<K> {
    fn new() -> Self {
        Self { done: Vec::new(), current: Chunk { starts: Vec::new(), cells: Vec::new() } }
    }

    /// Adds the range starting at `start` with cell `cell`, merged into the one before when
    /// their cells are equal (the current chunk is never empty once anything was pushed).
    fn push(&mut self, start: u128, cell: u32) {
        if self.current.cells.last() == Some(&cell) {
            return;
        }
        if self.current.starts.len() == CHUNK {
            let full = std::mem::replace(
                &mut self.current,
                Chunk { starts: Vec::with_capacity(CHUNK), cells: Vec::with_capacity(CHUNK) },
            );
            self.done.push(full);
        } else if self.current.starts.capacity() == 0 {
            self.current.starts.reserve_exact(CHUNK);
            self.current.cells.reserve_exact(CHUNK);
        }
        self.current.starts.push(K::from_u128(start));
        self.current.cells.push(cell);
    }

    fn finish(mut self) -> Partition<K> {
        if !self.current.starts.is_empty() || self.done.is_empty() {
            self.done.push(self.current);
        }
        Partition { chunks: self.done }
    }
}

// === impl Cells ===

impl Interner {
    /// The id of the value in `pool` equal to `value`, if any, and `value`'s hash.
    fn find<'p, T: Hash + Eq + ?Sized + 'p>(&self, value: &T, get: impl Fn(u32) -> &'p T) -> (Option<u32>, u64) {
        let hash = self.hasher.hash_one(value);
        (self.ids.find(hash, |&id| get(id) == value).copied(), hash)
    }

    /// Records `id` (just added to the pool, with hash `hash`); `get` reads the pool.
    fn insert<'p, T: Hash + ?Sized + 'p>(&mut self, hash: u64, id: u32, get: impl Fn(u32) -> &'p T) {
        let hasher = &self.hasher;
        self.ids.insert_unique(hash, id, |&other| hasher.hash_one(get(other)));
    }
}

impl Records {
    fn new() -> Self {
        let mut r = Self { list: Vec::new(), ids: Interner::default(), overlays: HashMap::new() };
        r.intern(&GeoRecord::default());
        r
    }

    fn intern(&mut self, record: &GeoRecord) -> u32 {
        let list = &self.list;
        match self.ids.find(record, |id| &list[id as usize]) {
            (Some(id), _) => id,
            (None, hash) => self.push(hash, record.clone()),
        }
    }

    /// [`intern`](Self::intern), keeping `record` itself when it is new.
    fn intern_owned(&mut self, record: GeoRecord) -> u32 {
        let list = &self.list;
        match self.ids.find(&record, |id| &list[id as usize]) {
            (Some(id), _) => id,
            (None, hash) => self.push(hash, record),
        }
    }

    fn push(&mut self, hash: u64, record: GeoRecord) -> u32 {
        let id = self.list.len() as u32;
        self.list.push(record);
        let list = &self.list;
        self.ids.insert(hash, id, |id| &list[id as usize]);
        id
    }

    /// The id of `over` laid over `under` (field by field, see [`GeoRecord::overlay`]).
    fn overlay(&mut self, under: u32, over: u32) -> u32 {
        if under == 0 || under == over {
            return over;
        }
        if let Some(&id) = self.overlays.get(&(under, over)) {
            return id;
        }
        let merged = self.list[under as usize].overlay(&self.list[over as usize]);
        let id = self.intern(&merged);
        self.overlays.insert((under, over), id);
        id
    }
}

impl ViewSets {
    fn new() -> Self {
        let mut v = Self { pool: Vec::new(), sets: Vec::new(), ids: Interner::default(), next: Vec::new() };
        v.intern_next();
        v
    }

    fn set(&self, id: u32) -> &[ViewEntry] {
        view_run(&self.pool, &self.sets, id)
    }

    /// The view set `id` with `source`'s own answer set to record `geo` (sources kept in order).
    fn with_view(&mut self, id: u32, source: u16, geo: u32) -> u32 {
        let mut next = std::mem::take(&mut self.next);
        next.clear();
        next.extend(self.set(id).iter().copied().filter(|e| e.source != source));
        // A record that says nothing is no view: "sources that have data" skip it.
        if geo != 0 {
            let at = next.partition_point(|e| e.source < source);
            next.insert(at, ViewEntry { source, record: geo });
        }
        self.next = next;
        self.intern_next()
    }

    /// The id of the set in `next`, added to the pool if new.
    fn intern_next(&mut self) -> u32 {
        let (pool, sets) = (&self.pool, &self.sets);
        let (found, hash) = self.ids.find(&self.next[..], |id| view_run(pool, sets, id));
        if let Some(id) = found {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push((self.pool.len() as u32, self.next.len() as u16));
        self.pool.extend_from_slice(&self.next);
        let (pool, sets) = (&self.pool, &self.sets);
        self.ids.insert(hash, id, |id| view_run(pool, sets, id));
        id
    }
}

/// View set `id`'s entries: its `(start, length)` run of `pool`.
fn view_run<'p>(pool: &'p [ViewEntry], sets: &[(u32, u16)], id: u32) -> &'p [ViewEntry] {
    let (at, len) = sets[id as usize];
    &pool[at as usize..at as usize + usize::from(len)]
}

impl Cells {
    const EMPTY: u32 = 0;

    fn new() -> Self {
        let mut cells = Self {
            list: Vec::new(),
            ids: Interner::default(),
            last: None,
            applied: HashMap::new(),
            records: Records::new(),
            views: ViewSets::new(),
        };
        cells.intern(Cell { geo: 0, lists: 0, source: 0, views: 0 });
        cells
    }

    fn intern(&mut self, cell: Cell) -> u32 {
        let list = &self.list;
        let (found, hash) = self.ids.find(&cell, |id| &list[id as usize]);
        if let Some(id) = found {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(cell);
        let list = &self.list;
        self.ids.insert(hash, id, |id| &list[id as usize]);
        id
    }

    /// Forgets what only the layer just applied can reuse: the overlays of its records (a
    /// later layer brings records of its own) and the last paint.
    fn end_layer(&mut self) {
        self.records.overlays = HashMap::new();
        self.applied = HashMap::new();
        self.last = None;
    }

    /// The id of the cell `paint` makes of cell `id`.
    fn apply(&mut self, paint: Paint, id: u32) -> u32 {
        if let Some((p, from, to)) = self.last {
            if p == paint && from == id {
                return to;
            }
        }
        let next = match self.applied.get(&(paint, id)) {
            Some(&next) => next,
            None => {
                let cell = self.paint(paint, self.list[id as usize]);
                let next = self.intern(cell);
                self.applied.insert((paint, id), next);
                next
            }
        };
        self.last = Some((paint, id, next));
        next
    }

    /// The cell `paint` makes of `cell`.
    fn paint(&mut self, paint: Paint, cell: Cell) -> Cell {
        match paint {
            Paint::Geo { geo, source } => {
                let views = self.views.with_view(cell.views, source.saturating_sub(1), geo);
                Cell { views, ..self.lay(cell, geo, source) }
            }
            Paint::List { bit, set: None } => Cell { lists: cell.lists | bit, ..cell },
            Paint::List { bit, set: Some((geo, source)) } => {
                Cell { lists: cell.lists | bit, ..self.lay(cell, geo, source) }
            }
            Paint::Cell(id) => self.list[id as usize],
        }
    }

    /// `cell` with record `geo` of `source` (index + 1) laid over its record. The answer's
    /// source is the one that gave the location; a layer with no location (an ASN database)
    /// leaves it, unless nothing came before.
    fn lay(&mut self, cell: Cell, geo: u32, source: u16) -> Cell {
        let merged = self.records.overlay(cell.geo, geo);
        let source =
            if self.records.list[geo as usize].has_location() || cell.source == 0 { source } else { cell.source };
        Cell { geo: merged, source, ..cell }
    }
}

/// Where two full covers of one family (as [`Ranges::cover`] gives them) differ, `new`'s
/// records read through `translate`; adjacent differences joined.
fn differences(
    old: impl Iterator<Item = (u128, u128, u32)>,
    new: impl Iterator<Item = (u128, u128, u32)>,
    translate: impl Fn(u32) -> u32,
) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let (mut old, mut new) = (old.peekable(), new.peekable());
    let mut at = 0u128;
    while let (Some(&(_, old_last, o)), Some(&(_, new_last, n))) = (old.peek(), new.peek()) {
        crate::pace::tick();
        let last = old_last.min(new_last);
        if o != translate(n) {
            Changes::extend(&mut out, at, last);
        }
        if old_last == last {
            old.next();
        }
        if new_last == last {
            new.next();
        }
        match last.checked_add(1) {
            Some(next) => at = next,
            None => break,
        }
    }
    out
}
