//! The immutable IPv4/IPv6 prefix table: "what do the sources say about this address".
//!
//! Built once per reload by [`TableBuilder`] from databases and lists in precedence order,
//! then only read. No I/O, no async, no locks; a lookup never allocates. The long loops of a
//! build or patch call [`crate::pace::tick`], which rests only on a paced reload thread.
//!
//! # Memory layout
//! - One stored answer (56 bytes: the layered record inline, list bits, source, and where its
//!   view set starts in a shared pool) per distinct (layered record, list set, source, view
//!   set) combination, interned: ranges refer to answers by `u32` index. Each source's own
//!   records are stored once in a record pool and each view set once as a run of `(source,
//!   record)` entries, so a city database layered with an ASN database (180k answers) pays
//!   about 56 bytes per answer plus its share of the pools. A lookup returns an [`Answer`]
//!   that borrows from the table. A country database has a few hundred answers.
//! - Per family a multibit trie (see `trie`): a 2^16-slot root array (256 KiB), then
//!   internal nodes of 4 to 16 bits (stride chosen per node from where its ranges cluster;
//!   Poptrie-style compressed right below the root where that saves enough memory, plain
//!   arrays elsewhere) only where a region holds more than 32 ranges, and leaves of at most
//!   32 range starts with their answer indices.
//! - Per range: one `u32` word in a compact leaf (24-bit key and 8-bit answer index, the
//!   common case: answers are numbered by use), else a `u32` or 128-bit key and a `u32`
//!   answer index, plus node slots (at most two per range per level). The shipped database
//!   (494k IPv4 + 517k IPv6 networks) takes about 8.0 MiB.
//!
//! # Cost of each operation
//! - `lookup`: one root load, then one load per level (on the shipped database 0-1 for
//!   IPv4, 1-3 for most IPv6 addresses; deeper only inside clusters of host routes), then a
//!   branchless binary search of at most 32 leaf keys: O(1), no allocation.
//! - `find` (for `explain`): the same, plus the bounds of the stored range.
//! - build: O(n log n) to sort each source's prefixes, O(n) per layer to merge, O(n) trie.
//!
//! # Address semantics
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is canonicalised to IPv4 before the lookup
//! (`IpAddr::to_canonical`). Every other IPv6 address, including IPv4-compatible
//! `::a.b.c.d`, 6to4, Teredo and NAT64 `64:ff9b::/96`, gets exactly what the IPv6 side of
//! the sources says (for a MaxMind database, what `Reader::lookup` answers). A database's
//! alias blocks (6to4, Teredo, `::ffff:0:0/96` in MaxMind's own files) say "as the IPv4
//! address in the next 32 bits": where every source agrees on that ([`TableBuilder`]), the
//! table keeps them as a short list of redirects into the IPv4 trie (a few comparisons per
//! IPv6 lookup) instead of an IPv6 copy of every IPv4 range per block. `::/96` of a database
//! with an IPv4 subtree is such a block too: `::a.b.c.d` walks the IPv4 subtree's own nodes.

mod builder;
mod patch;
mod trie;

pub use builder::{BuildError, LayerError, SourceLayer, TableBuilder};
pub use patch::{Changes, PatchError};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::geo::{Answer, GeoRecord, ListSet, ViewEntry, Views};
use trie::Trie;

/// The compiled, immutable lookup table.
#[derive(Debug)]
pub struct GeoTable {
    v4: Trie<u32>,
    v6: Trie<u128>,
    answers: Box<[StoredAnswer]>,
    /// Every record an answer or a view refers to, once.
    records: Box<[GeoRecord]>,
    /// Every view set, one after another; an answer refers to its run.
    views: Box<[ViewEntry]>,
    list_names: Box<[Box<str>]>,
    /// Alias blocks of the IPv6 space (`(first address, prefix length)`, length 1..=96) that
    /// answer with the IPv4 table: an address there is looked up as the 32 bits after the
    /// prefix. MaxMind's `::ffff:0:0/96`, `2002::/16` and `2001::/32` when every source agrees
    /// (see [`TableBuilder`]); the IPv6 trie holds nothing there.
    redirects: Box<[(u128, u8)]>,
    stats: TableStats,
}

/// An [`Answer`] as the table stores it (56 bytes): the layered record inline (a lookup reads
/// it with the answer, no second dependent load; it is nearly always the answer's own), the
/// view set as a run of the shared pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct StoredAnswer {
    pub geo: GeoRecord,
    pub lists: u64,
    /// The answer's view set: `views[views_at..views_at + views_len]`.
    pub views_at: u32,
    pub views_len: u16,
    /// Source index + 1; 0 = no data.
    pub source: u16,
}

/// The pools a table's answers refer to, as the builder hands them over.
#[derive(Debug, Default)]
pub(crate) struct AnswerPools {
    pub answers: Vec<StoredAnswer>,
    pub records: Vec<GeoRecord>,
    pub views: Vec<ViewEntry>,
}

/// Sizes reported by `geogate check`, `/-/snapshot` and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    /// Ranges after merging neighbours with equal answers.
    pub ranges_v4: usize,
    pub ranges_v6: usize,
    /// Distinct answers.
    pub answers: usize,
    /// Internal trie nodes per family.
    pub nodes_v4: usize,
    pub nodes_v6: usize,
    /// Heap bytes held by the table (tries, answers and their strings).
    pub heap_bytes: usize,
}

/// A lookup with the stored range around the address, for `explain`.
#[derive(Clone, Copy, Debug)]
pub struct Located<'a> {
    pub answer: Answer<'a>,
    /// The range of addresses around the looked-up one that the table stores as one entry.
    pub first: IpAddr,
    pub last: IpAddr,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FamilyStats {
    pub ranges: usize,
}

// === impl GeoTable ===

impl GeoTable {
    /// A table that knows nothing: every address maps to the empty answer.
    pub fn empty() -> Self {
        let pools = AnswerPools { answers: vec![StoredAnswer::default()], records: Vec::new(), views: Vec::new() };
        Self::from_parts(
            Trie::uniform(0),
            Trie::uniform(0),
            pools,
            Box::new([]),
            Box::new([]),
            FamilyStats { ranges: 1 },
            FamilyStats { ranges: 1 },
        )
    }

    pub(crate) fn from_parts(
        v4: Trie<u32>,
        v6: Trie<u128>,
        pools: AnswerPools,
        list_names: Box<[Box<str>]>,
        redirects: Box<[(u128, u8)]>,
        f4: FamilyStats,
        f6: FamilyStats,
    ) -> Self {
        let answers = pools.answers.into_boxed_slice();
        let records = pools.records.into_boxed_slice();
        let views = pools.views.into_boxed_slice();
        let pool_heap = std::mem::size_of_val(&*answers)
            + std::mem::size_of_val(&*records)
            + std::mem::size_of_val(&*views)
            + strings_heap(answers.iter().map(|a| &a.geo).chain(records.iter()));
        let names_heap: usize = list_names.iter().map(|n| n.len() + 16).sum();
        let stats = TableStats {
            ranges_v4: f4.ranges,
            ranges_v6: f6.ranges,
            answers: answers.len(),
            nodes_v4: v4.node_count(),
            nodes_v6: v6.node_count(),
            heap_bytes: v4.heap_bytes() + v6.heap_bytes() + pool_heap + names_heap,
        };
        let redirects_heap = std::mem::size_of_val(&*redirects);
        let stats = TableStats { heap_bytes: stats.heap_bytes + redirects_heap, ..stats };
        Self { v4, v6, answers, records, views, list_names, redirects, stats }
    }

    /// Answer `id` (as the tries and [`segments_v4`](Self::segments_v4) number them); the
    /// empty answer for an id the table does not have.
    #[inline]
    pub fn answer(&self, id: u32) -> Answer<'_> {
        match self.answers.get(id as usize) {
            Some(a) => self.expand(a),
            None => Answer::EMPTY,
        }
    }

    #[inline]
    fn expand<'a>(&'a self, a: &'a StoredAnswer) -> Answer<'a> {
        let at = a.views_at as usize;
        Answer {
            geo: &a.geo,
            lists: ListSet(a.lists),
            source: a.source.checked_sub(1),
            views: Views::new(&self.records, self.views.get(at..at + usize::from(a.views_len)).unwrap_or(&[])),
        }
    }

    /// What the sources say about `ip` (canonicalised first).
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Answer<'_> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.lookup_v4(v4),
            IpAddr::V6(v6) => self.lookup_v6(v6),
        }
    }

    #[inline]
    pub fn lookup_v4(&self, ip: Ipv4Addr) -> Answer<'_> {
        self.answer(self.v4.lookup(u32::from(ip)))
    }

    /// Looks up an IPv6 address as is (no canonicalisation; see [`lookup`](Self::lookup)).
    #[inline]
    pub fn lookup_v6(&self, ip: Ipv6Addr) -> Answer<'_> {
        let key = u128::from(ip);
        if let Some((v4, _, _)) = self.redirect(key) {
            return self.answer(self.v4.lookup(v4));
        }
        self.answer(self.v6.lookup_v6(key))
    }

    /// The alias block `key` lies in, if any: the IPv4 address it stands for, the block's
    /// first address and the shift of the IPv4 bits (`96 - prefix length`).
    #[inline]
    fn redirect(&self, key: u128) -> Option<(u32, u128, u32)> {
        self.redirects.iter().find_map(|&(base, len)| {
            let host_bits = 128 - u32::from(len);
            ((key ^ base).checked_shr(host_bits) == Some(0)).then(|| {
                let shift = 96 - u32::from(len);
                ((key >> shift) as u32, base, shift)
            })
        })
    }

    /// The stored IPv6 range around `key`: from the IPv4 table inside an alias block, else
    /// from the IPv6 trie, cut short at the blocks (the trie holds nothing there).
    fn find_v6(&self, key: u128) -> (u128, u128, u32) {
        if let Some((v4, base, shift)) = self.redirect(key) {
            let f = self.v4.find(v4);
            let (first, last) = alias_span(base, shift, f.first.into(), f.last.into());
            return (first, last, f.answer);
        }
        let f = self.v6.find(key);
        let (mut first, mut last) = (f.first, f.last);
        for &(base, len) in self.redirects.iter() {
            let end = base | (u128::MAX >> len);
            if base > key {
                last = last.min(base - 1);
            } else if end < key {
                first = first.max(end + 1);
            }
        }
        (first, last, f.answer)
    }

    /// Like [`lookup`](Self::lookup), with the stored range around the address.
    pub fn locate(&self, ip: IpAddr) -> Located<'_> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let f = self.v4.find(u32::from(v4));
                Located {
                    answer: self.answer(f.answer),
                    first: IpAddr::V4(f.first.into()),
                    last: IpAddr::V4(f.last.into()),
                }
            }
            IpAddr::V6(v6) => {
                let (first, last, answer) = self.find_v6(u128::from(v6));
                Located { answer: self.answer(answer), first: IpAddr::V6(first.into()), last: IpAddr::V6(last.into()) }
            }
        }
    }

    /// Every stored range of the IPv4 space in address order, as `(first, last, answer index)`;
    /// together they cover the whole space. (A range may come in pieces where the trie splits
    /// it; each piece has one answer.)
    pub fn segments_v4(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        let mut next = Some(0u32);
        std::iter::from_fn(move || {
            let key = next?;
            let f = self.v4.find(key);
            next = f.last.checked_add(1);
            Some((key, f.last, f.answer))
        })
    }

    /// [`segments_v4`](Self::segments_v4) for the IPv6 space (as lookups see it, without
    /// canonicalisation: alias blocks in the pieces of the IPv4 ranges they stand for).
    pub fn segments_v6(&self) -> impl Iterator<Item = (u128, u128, u32)> + '_ {
        let mut next = Some(0u128);
        std::iter::from_fn(move || {
            let key = next?;
            let (_, last, answer) = self.find_v6(key);
            next = last.checked_add(1);
            Some((key, last, answer))
        })
    }

    /// The alias blocks answered from the IPv4 table, as `(first address, prefix length)`.
    pub fn redirects(&self) -> &[(u128, u8)] {
        &self.redirects
    }

    /// Internal nodes a lookup of `ip` passes and whether it ends in a leaf (diagnostics).
    pub fn depth_of(&self, ip: IpAddr) -> (u32, bool) {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.depth_of(u32::from(v4)),
            IpAddr::V6(v6) => match self.redirect(u128::from(v6)) {
                Some((v4, _, _)) => self.v4.depth_of(v4),
                None => self.v6.depth_of(u128::from(v6)),
            },
        }
    }

    /// The name of list `id` (its bit in [`crate::geo::ListSet`]).
    pub fn list_name(&self, id: usize) -> Option<&str> {
        self.list_names.get(id).map(|n| &**n)
    }

    /// List names in id order.
    pub fn list_names(&self) -> impl Iterator<Item = &str> {
        self.list_names.iter().map(|n| &**n)
    }

    /// Names of the lists in `answer`, comma-joined, or `None` when there are none.
    pub fn list_label(&self, answer: &Answer<'_>) -> Option<String> {
        if answer.lists.is_empty() {
            return None;
        }
        let names: Vec<&str> = answer.lists.ids().filter_map(|i| self.list_name(i)).collect();
        Some(names.join(","))
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Every distinct answer the table can give, in id order.
    pub fn answers(&self) -> impl ExactSizeIterator<Item = Answer<'_>> + '_ {
        self.answers.iter().map(|a| self.expand(a))
    }
}

impl Located<'_> {
    /// The largest CIDR that contains the looked-up address and lies inside the stored range.
    pub fn prefix(&self, ip: IpAddr) -> IpNet {
        match (ip.to_canonical(), self.first, self.last) {
            (IpAddr::V4(a), IpAddr::V4(f), IpAddr::V4(l)) => {
                let (a, f, l) = (u32::from(a), u32::from(f), u32::from(l));
                let mut len = 32u8;
                while len > 0 {
                    let mask = u32::MAX.checked_shl(33 - u32::from(len)).unwrap_or(0);
                    let net = a & mask;
                    if net < f || (net | !mask) > l {
                        break;
                    }
                    len -= 1;
                }
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).map_or_else(|_| host4(a), |n| n.trunc()))
            }
            (IpAddr::V6(a), IpAddr::V6(f), IpAddr::V6(l)) => {
                let (a, f, l) = (u128::from(a), u128::from(f), u128::from(l));
                let mut len = 128u8;
                while len > 0 {
                    let mask = u128::MAX.checked_shl(129 - u32::from(len)).unwrap_or(0);
                    let net = a & mask;
                    if net < f || (net | !mask) > l {
                        break;
                    }
                    len -= 1;
                }
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).map_or_else(|_| host6(a), |n| n.trunc()))
            }
            (ip, _, _) => IpNet::from(ip),
        }
    }
}

/// Heap bytes of the records' strings, each shared string counted once.
fn strings_heap<'a>(records: impl Iterator<Item = &'a GeoRecord>) -> usize {
    use std::collections::HashSet;
    let mut seen: HashSet<usize> = HashSet::new();
    records
        .flat_map(|r| [r.subdivision.as_deref(), r.as_org.as_deref()])
        .flatten()
        .filter(|s| seen.insert(s.as_ptr() as usize))
        .map(|s| s.len() + 16)
        .sum()
}

/// The IPv6 addresses of alias block `base` (IPv4 bits `shift` above the bottom) that stand
/// for the IPv4 range `first..=last`.
pub(crate) fn alias_span(base: u128, shift: u32, first: u128, last: u128) -> (u128, u128) {
    (base | (first << shift), base | (last << shift) | ((1u128 << shift) - 1))
}

fn host4(a: u32) -> Ipv4Net {
    Ipv4Net::from(Ipv4Addr::from(a))
}

fn host6(a: u128) -> Ipv6Net {
    Ipv6Net::from(Ipv6Addr::from(a))
}

#[cfg(test)]
mod tests;
