//! A table rebuilt only where its sources changed: [`GeoTable::patched`].
//!
//! A reload whose database changed in a few networks (a weekly update, a re-published file
//! with new metadata) would otherwise layer every source and build both tries again. Here the
//! caller finds the addresses that changed ([`Changes`], from
//! [`SourceLayer::changes_from`](super::SourceLayer::changes_from)), builds a small table
//! from the sources clipped to them (the *fresh* table, right inside the changes and
//! meaningless outside), and the old table is copied with those regions answered from the
//! fresh one:
//!
//! - answers: the old pools are kept and each fresh answer used in a change is found in them
//!   by content (its record, lists, source and the records of its views), or appended;
//! - tries: the regions over a change are rebuilt, everything else shared word for word
//!   ([`Trie::patched`]);
//! - range counts: adjusted by the boundaries that appeared or went inside the changes.
//!
//! Answers are exactly those of a table built afresh from the new sources (the model tests
//! check this); the tries' shape may be less tight, and old answers nothing refers to any
//! more stay in the pool (a few hundred for a country database; the pool is built anew by
//! the next whole build).

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use super::trie::{Key, Trie, TrieError};
use super::{AnswerPools, FamilyStats, GeoTable, StoredAnswer};
use crate::geo::{GeoRecord, ViewEntry};

/// Addresses whose answer may differ between two versions of the sources: per family, sorted,
/// disjoint inclusive intervals with a gap between any two (adjacent ones are joined).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub(crate) v4: Vec<(u128, u128)>,
    pub(crate) v6: Vec<(u128, u128)>,
}

/// Why a table cannot be patched; the caller builds it whole instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("a change lies in an alias block answered from the IPv4 table")]
    AliasBlock,
    #[error("the patched table is too large for its slot encoding")]
    TooLarge,
}

// === impl Changes ===

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Intervals over both families.
    pub fn intervals(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Adds `first..=last` to one family's intervals; it must not start before the last one.
    pub(crate) fn extend(family: &mut Vec<(u128, u128)>, first: u128, last: u128) {
        match family.last_mut() {
            // Touching or overlapping the last one (which may end at the top of the space).
            Some((_, end)) if end.checked_add(1).is_none_or(|next| next >= first) => *end = (*end).max(last),
            _ => family.push((first, last)),
        }
    }

    /// `self` closed over the alias `blocks` (`(first address, prefix length)`) a table holds
    /// as copies of IPv4 ranges: a change in a block's IPv6 addresses adds the IPv4 addresses
    /// they stand for, and every IPv4 change adds its image in each block. A table built from
    /// layers clipped to the result has every block's copy right wherever it changed.
    pub fn with_alias_images(&self, blocks: &[(u128, u8)]) -> Changes {
        let mut sorted = blocks.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut pre = Changes::default();
        let mut v4: Vec<(u128, u128)> = Vec::new();
        for &(base, len) in &sorted {
            let (end, shift) = (base | (u128::MAX >> len), 96 - u32::from(len));
            for &(a, b) in &self.v6 {
                if a <= end && b >= base {
                    let low = |x: u128| (x >> shift) & u128::from(u32::MAX);
                    v4.push((low(a.max(base)), low(b.min(end))));
                }
            }
        }
        v4.sort_unstable();
        for (a, b) in v4 {
            Self::extend(&mut pre.v4, a, b);
        }
        let closed4 = self.union(&pre);
        let mut images = Changes::default();
        for &(base, len) in &sorted {
            let shift = 96 - u32::from(len);
            let mut block = Vec::new();
            for &(first, last) in &closed4.v4 {
                let (a, b) = super::alias_span(base, shift, first, last);
                Self::extend(&mut block, a, b);
            }
            images = images.union(&Changes { v4: Vec::new(), v6: block });
        }
        closed4.union(&images)
    }

    /// Every address in `self` or in `other`.
    pub fn union(&self, other: &Changes) -> Changes {
        let join = |a: &[(u128, u128)], b: &[(u128, u128)]| {
            let mut all: Vec<(u128, u128)> = a.iter().chain(b).copied().collect();
            all.sort_unstable();
            let mut out = Vec::with_capacity(all.len());
            for (first, last) in all {
                Self::extend(&mut out, first, last);
            }
            out
        };
        Changes { v4: join(&self.v4, &other.v4), v6: join(&self.v6, &other.v6) }
    }
}

// === impl GeoTable ===

impl GeoTable {
    /// This table with the addresses in `changes` answered as `fresh` answers them (see the
    /// module docs). `fresh` must answer right inside `changes`; what it says elsewhere is
    /// never read.
    pub fn patched(&self, fresh: &GeoTable, changes: &Changes) -> Result<GeoTable, PatchError> {
        for &(first, last) in &changes.v6 {
            let hit = self.redirects.iter().any(|&(base, len)| first <= base | (u128::MAX >> len) && last >= base);
            if hit {
                return Err(PatchError::AliasBlock);
            }
        }
        let mut remap = Remap::new(self, fresh);
        let v4 = patch_family(&self.v4, &fresh.v4, &changes.v4, &mut remap)?;
        let v6 = patch_family(&self.v6, &fresh.v6, &changes.v6, &mut remap)?;
        let f4 = FamilyStats { ranges: recount(&self.v4, &v4, &changes.v4, self.stats.ranges_v4) };
        let f6 = FamilyStats { ranges: recount(&self.v6, &v6, &changes.v6, self.stats.ranges_v6) };
        let pools = AnswerPools { answers: remap.answers, records: remap.records, views: remap.views };
        Ok(Self::from_parts(v4, v6, pools, self.list_names.clone(), self.redirects.clone(), f4, f6))
    }
}

/// One family's trie patched: inside a change the fresh trie answers (its answers found in or
/// added to the old pools), elsewhere the old one.
fn patch_family<K: Key>(
    old: &Trie<K>,
    fresh: &Trie<K>,
    changed: &[(u128, u128)],
    remap: &mut Remap<'_>,
) -> Result<Trie<K>, PatchError> {
    let mut pieces = |at: u128| {
        let i = changed.partition_point(|&(_, last)| last < at);
        match changed.get(i) {
            Some(&(first, last)) if first <= at => {
                let f = fresh.find(K::from_u128(at));
                (f.last.to_u128().min(last), remap.map(f.answer))
            }
            next => {
                let f = old.find(K::from_u128(at));
                let limit = next.map_or(u128::MAX, |&(first, _)| first - 1);
                (f.last.to_u128().min(limit), f.answer)
            }
        }
    };
    old.patched(changed, &mut pieces).map_err(|_: TrieError| PatchError::TooLarge)
}

/// `before`'s range count adjusted for the answer boundaries inside each change (and at its
/// two ends) that `after` has and `old` had.
fn recount<K: Key>(old: &Trie<K>, after: &Trie<K>, changed: &[(u128, u128)], before: usize) -> usize {
    let max = if K::BITS == 128 { u128::MAX } else { (1u128 << K::BITS) - 1 };
    let mut count = before;
    for &(first, last) in changed {
        let (lo, hi) = (first.saturating_sub(1), last.saturating_add(1).min(max));
        // The old boundaries in the window are among the `before` counted ones.
        count = (count + boundaries(after, lo, hi)).saturating_sub(boundaries(old, lo, hi));
    }
    count
}

/// How many addresses `p` in `lo + 1..=hi` have another answer than `p - 1`.
fn boundaries<K: Key>(trie: &Trie<K>, lo: u128, hi: u128) -> usize {
    let f = trie.find(K::from_u128(lo));
    let (mut answer, mut last, mut n) = (f.answer, f.last.to_u128(), 0);
    while last < hi {
        let f = trie.find(K::from_u128(last + 1));
        n += usize::from(f.answer != answer);
        (answer, last) = (f.answer, f.last.to_u128());
    }
    n
}

/// The old table's answer pools, growing by the fresh answers they lack.
struct Remap<'a> {
    fresh: &'a GeoTable,
    answers: Vec<StoredAnswer>,
    records: Vec<GeoRecord>,
    views: Vec<ViewEntry>,
    hasher: DefaultHashBuilder,
    /// Pool answers by content; built at the first fresh answer.
    by_content: Option<HashTable<u32>>,
    /// Pool records by value; built at the first record a new answer's views need.
    by_record: Option<HashMap<GeoRecord, u32>>,
    /// Fresh answer id -> pool answer id (`u32::MAX`: not looked up yet).
    mapped: Vec<u32>,
}

impl<'a> Remap<'a> {
    fn new(old: &GeoTable, fresh: &'a GeoTable) -> Self {
        Self {
            fresh,
            answers: old.answers.to_vec(),
            records: old.records.to_vec(),
            views: old.views.to_vec(),
            hasher: DefaultHashBuilder::default(),
            by_content: None,
            by_record: None,
            mapped: vec![u32::MAX; fresh.answers.len()],
        }
    }

    /// The pool id of fresh answer `id`.
    fn map(&mut self, id: u32) -> u32 {
        match self.mapped.get(id as usize) {
            Some(&m) if m != u32::MAX => return m,
            Some(_) => {}
            None => return 0,
        }
        let fresh = self.fresh;
        let a = &fresh.answers[id as usize];
        let hash = content_hash(&self.hasher, a, &fresh.records, &fresh.views);
        if self.by_content.is_none() {
            let mut set = HashTable::with_capacity(self.answers.len());
            for (i, p) in self.answers.iter().enumerate() {
                let h = content_hash(&self.hasher, p, &self.records, &self.views);
                set.insert_unique(h, i as u32, |&j| {
                    content_hash(&self.hasher, &self.answers[j as usize], &self.records, &self.views)
                });
            }
            self.by_content = Some(set);
        }
        let (answers, records, views) = (&self.answers, &self.records, &self.views);
        let found = self.by_content.as_ref().and_then(|set| {
            set.find(hash, |&j| same_content(&answers[j as usize], records, views, a, &fresh.records, &fresh.views))
                .copied()
        });
        let pool_id = match found {
            Some(j) => j,
            None => self.append(a, hash),
        };
        self.mapped[id as usize] = pool_id;
        pool_id
    }

    /// Adds fresh answer `a` (and the records its views need) to the pools.
    fn append(&mut self, a: &StoredAnswer, hash: u64) -> u32 {
        let fresh = self.fresh;
        let by_record = self.by_record.get_or_insert_with(|| {
            self.records.iter().enumerate().map(|(i, r)| (r.clone(), i as u32)).collect::<HashMap<_, _>>()
        });
        let views_at = self.views.len() as u32;
        for v in view_run(a, &fresh.views) {
            let record = &fresh.records[v.record as usize];
            let id = match by_record.get(record) {
                Some(&id) => id,
                None => {
                    self.records.push(record.clone());
                    let id = (self.records.len() - 1) as u32;
                    by_record.insert(record.clone(), id);
                    id
                }
            };
            self.views.push(ViewEntry { source: v.source, record: id });
        }
        self.answers.push(StoredAnswer { views_at, ..a.clone() });
        let id = (self.answers.len() - 1) as u32;
        let (answers, records, views, hasher) = (&self.answers, &self.records, &self.views, &self.hasher);
        if let Some(set) = self.by_content.as_mut() {
            set.insert_unique(hash, id, |&j| content_hash(hasher, &answers[j as usize], records, views));
        }
        id
    }
}

fn view_run<'v>(a: &StoredAnswer, views: &'v [ViewEntry]) -> &'v [ViewEntry] {
    let at = a.views_at as usize;
    views.get(at..at + usize::from(a.views_len)).unwrap_or(&[])
}

/// A hash of what an answer says, independent of where its views' records sit in a pool.
fn content_hash(hasher: &DefaultHashBuilder, a: &StoredAnswer, records: &[GeoRecord], views: &[ViewEntry]) -> u64 {
    let mut h = hasher.build_hasher();
    a.geo.hash(&mut h);
    a.lists.hash(&mut h);
    a.source.hash(&mut h);
    for v in view_run(a, views) {
        v.source.hash(&mut h);
        records.get(v.record as usize).hash(&mut h);
    }
    h.finish()
}

fn same_content(
    a: &StoredAnswer,
    a_records: &[GeoRecord],
    a_views: &[ViewEntry],
    b: &StoredAnswer,
    b_records: &[GeoRecord],
    b_views: &[ViewEntry],
) -> bool {
    let (va, vb) = (view_run(a, a_views), view_run(b, b_views));
    a.geo == b.geo
        && a.lists == b.lists
        && a.source == b.source
        && va.len() == vb.len()
        && va
            .iter()
            .zip(vb)
            .all(|(x, y)| x.source == y.source && a_records.get(x.record as usize) == b_records.get(y.record as usize))
}
