//! A trie rebuilt only where its partition changed ([`Trie::patched`]).
//!
//! The patched trie is written into a new arena, walking the old trie from the root:
//! - a subtree whose region holds no changed address is copied word for word (its node
//!   slots moved to where the copy lands): no search, no stride choice;
//! - a node over a change is written again with the same stride, only the children under a
//!   change patched, the others copied;
//! - a leaf or uniform slot over a change is rebuilt by the ordinary builder from the
//!   region's new partition: the old leaf's own entries outside the changes, the new
//!   answers inside them. It may become a node if the region now holds more ranges.
//!
//! Lookups in the result are exactly those of a trie built from the new partition; its shape
//! (the strides kept from the old nodes) may be less tight. The arena holds nothing dead, so
//! patch after patch the trie stays the size of a fresh one give or take the strides.

use super::{
    is_node, leaf_parts, node_stride, Builder, Key, Trie, TrieError, COMPACT_BIT, LEAF_ALIGN, LEAF_MAX, LEN_BITS,
    MAX_LEAF_OFFSET, NODE_INDEX, PAYLOAD, ROOT_BITS, SPARSE_BLOCK, TAG_LEAF, TAG_SHIFT, TAG_SPARSE, WIDE_BIT,
};

/// The new answers inside the changes, asked piece by piece: the answer at an address and
/// the last address (at or after it) up to which that answer is sure to hold. Equal
/// neighbours are merged by the patch, so a piece may end anywhere.
pub(crate) type Pieces<'a> = dyn FnMut(u128) -> (u128, u32) + 'a;

struct Patcher<'a, 'p, K: Key> {
    old: &'a Trie<K>,
    /// Sorted, disjoint, inclusive intervals of addresses whose answer may have changed.
    changed: &'a [(u128, u128)],
    pieces: &'a mut Pieces<'p>,
    arena: Vec<u32>,
    nodes: usize,
    starts: Vec<K>,
    answers: Vec<u32>,
}

impl<K: Key> Trie<K> {
    /// This trie with the addresses in `changed` (sorted, disjoint, inclusive intervals)
    /// answered by `pieces` (asked only inside them); everything else as before. Fails like
    /// [`Trie::build`] when the arena outgrows the slot encoding.
    pub(crate) fn patched(&self, changed: &[(u128, u128)], pieces: &mut Pieces<'_>) -> Result<Self, TrieError> {
        debug_assert!(changed.windows(2).all(|w| w[0].1 < w[1].0));
        let mut p = Patcher {
            old: self,
            changed,
            pieces,
            arena: Vec::with_capacity(self.arena.len() + self.arena.len() / 8 + LEAF_MAX),
            nodes: 0,
            starts: Vec::new(),
            answers: Vec::new(),
        };
        let span = 1u128 << (K::BITS - ROOT_BITS);
        let mut root = Vec::with_capacity(self.root.len());
        for (i, &slot) in self.root.iter().enumerate() {
            let base = i as u128 * span;
            root.push(p.slot(slot, base, base + (span - 1), ROOT_BITS)?);
        }
        // Leaf searches index a fixed LEAF_MAX window past their start.
        p.arena.resize(p.arena.len() + LEAF_MAX, 0);
        Ok(Self {
            root: root.into_boxed_slice(),
            arena: p.arena.into_boxed_slice(),
            nodes: p.nodes,
            _key: std::marker::PhantomData,
        })
    }

    /// The entries of the leaf or uniform `slot` over the region at `base` (`depth` bits
    /// deep): each range start in the region, in order, with its answer.
    fn entries(&self, slot: u32, base: u128, depth: u32, out: &mut Vec<(u128, u32)>) {
        if slot >> TAG_SHIFT != TAG_LEAF {
            out.push((base, slot));
            return;
        }
        let (_, len) = leaf_parts(slot);
        out.extend((0..len).map(|j| (base + self.leaf_offset(slot, depth, j), self.leaf_answer(slot, j))));
    }
}

impl<K: Key> Patcher<'_, '_, K> {
    /// The changes overlapping `base..=end`, from the first one.
    fn overlapping(&self, base: u128, end: u128) -> &[(u128, u128)] {
        let first = self.changed.partition_point(|&(_, last)| last < base);
        let count = self.changed[first..].partition_point(|&(a, _)| a <= end);
        &self.changed[first..first + count]
    }

    fn slot(&mut self, old: u32, base: u128, end: u128, depth: u32) -> Result<u32, TrieError> {
        crate::pace::tick();
        let here = self.overlapping(base, end);
        if here.is_empty() {
            return self.copy(old);
        }
        if is_node(old) {
            let stride = node_stride(old);
            let shift = K::BITS - (depth + stride);
            let children: Vec<u32> = (0..1usize << stride).map(|c| self.old.child(old, stride, c)).collect();
            // Which children lie under a change.
            let mut touched = vec![false; children.len()];
            for &(a, b) in here {
                let from = ((a.max(base) - base) >> shift) as usize;
                let to = ((b.min(end) - base) >> shift) as usize;
                touched[from..=to].iter_mut().for_each(|t| *t = true);
            }
            let mut slots = Vec::with_capacity(children.len());
            for (c, &child) in children.iter().enumerate() {
                let child_base = base + ((c as u128) << shift);
                slots.push(if touched[c] {
                    self.slot(child, child_base, child_base + ((1u128 << shift) - 1), depth + stride)?
                } else {
                    self.copy(child)?
                });
            }
            return self.with_builder(&[], &[], |b| b.node(&slots, stride, depth == ROOT_BITS));
        }
        self.rebuild(old, base, end, depth)
    }

    /// A leaf or uniform region over a change, built again from its new partition.
    fn rebuild(&mut self, old: u32, base: u128, end: u128, depth: u32) -> Result<u32, TrieError> {
        let mut entries = Vec::new();
        self.old.entries(old, base, depth, &mut entries);
        let changes: Vec<(u128, u128)> =
            self.overlapping(base, end).iter().map(|&(a, b)| (a.max(base), b.min(end))).collect();
        self.starts.clear();
        self.answers.clear();
        let mut starts = std::mem::take(&mut self.starts);
        let mut answers = std::mem::take(&mut self.answers);
        let mut push = |at: u128, answer: u32| {
            if answers.last() != Some(&answer) {
                starts.push(K::from_u128(at));
                answers.push(answer);
            }
        };
        // The old entries from `at` up to `until` (inclusive), the first one cut to `at`.
        let mut j = 0usize;
        let mut old_part = |at: u128, until: u128, push: &mut dyn FnMut(u128, u32)| {
            while j + 1 < entries.len() && entries[j + 1].0 <= at {
                j += 1;
            }
            push(at, entries[j].1);
            while j + 1 < entries.len() && entries[j + 1].0 <= until {
                j += 1;
                push(entries[j].0, entries[j].1);
            }
        };
        let mut at = base;
        let mut failed = false;
        for &(a, b) in &changes {
            if a > at {
                old_part(at, a - 1, &mut push);
            }
            let mut p = a;
            loop {
                let (last, answer) = (self.pieces)(p);
                failed |= answer > PAYLOAD;
                push(p, answer);
                if last >= b {
                    break;
                }
                p = last + 1;
            }
            match b.checked_add(1) {
                Some(next) => at = next,
                None => break,
            }
        }
        if changes.last().is_some_and(|&(_, b)| b < end) {
            old_part(at, end, &mut push);
        }
        if failed {
            return Err(TrieError::TooLarge);
        }
        let slot = self.with_builder(&starts, &answers, |b| b.region(base, end, depth, &mut 0));
        self.starts = starts;
        self.answers = answers;
        slot
    }

    /// The old subtree at `slot`, copied into the new arena: its slot there.
    fn copy(&mut self, slot: u32) -> Result<u32, TrieError> {
        crate::pace::tick();
        match slot >> TAG_SHIFT {
            TAG_LEAF => {
                let (off, len) = leaf_parts(slot);
                let words = if slot & WIDE_BIT != 0 {
                    5 * len
                } else if slot & COMPACT_BIT != 0 {
                    len
                } else {
                    2 * len
                };
                let at = self.arena.len().next_multiple_of(1 << LEAF_ALIGN);
                if at > MAX_LEAF_OFFSET {
                    return Err(TrieError::TooLarge);
                }
                self.arena.resize(at, 0);
                self.arena.extend_from_slice(&self.old.arena[off..off + words]);
                let keep = (slot & !PAYLOAD) | (slot & (WIDE_BIT | COMPACT_BIT)) | (slot & ((1 << LEN_BITS) - 1));
                Ok(keep | (((at >> LEAF_ALIGN) as u32) << LEN_BITS))
            }
            _ if is_node(slot) => {
                let stride = node_stride(slot);
                let at = (slot & NODE_INDEX) as usize;
                if slot >> TAG_SHIFT == TAG_SPARSE {
                    // Run maps as they are; the distinct children copied.
                    let blocks = (1usize << stride).div_ceil(64);
                    let last = at + SPARSE_BLOCK * (blocks - 1);
                    let runs = u64::from(self.old.arena[last]) | (u64::from(self.old.arena[last + 1]) << 32);
                    let distinct = self.old.arena[last + 2] as usize + runs.count_ones() as usize;
                    let head = SPARSE_BLOCK * blocks;
                    let mut children = Vec::with_capacity(distinct);
                    for &child in &self.old.arena[at + head..at + head + distinct] {
                        children.push(self.copy(child)?);
                    }
                    let new_at = self.arena.len();
                    self.arena.extend_from_slice(&self.old.arena[at..at + head]);
                    self.arena.extend_from_slice(&children);
                    return self.node_slot(slot, new_at);
                }
                let mut children = Vec::with_capacity(1 << stride);
                for i in 0..1usize << stride {
                    children.push(self.copy(self.old.arena[at + i])?);
                }
                let new_at = self.arena.len();
                self.arena.extend_from_slice(&children);
                self.node_slot(slot, new_at)
            }
            _ => Ok(slot),
        }
    }

    /// `slot` (a node) moved to `at`.
    fn node_slot(&mut self, slot: u32, at: usize) -> Result<u32, TrieError> {
        if self.arena.len() > NODE_INDEX as usize {
            return Err(TrieError::TooLarge);
        }
        self.nodes += 1;
        Ok((slot & !NODE_INDEX) | at as u32)
    }

    /// Runs `f` with a builder that appends to the new arena, over the given partition.
    fn with_builder(
        &mut self,
        starts: &[K],
        answers: &[u32],
        f: impl FnOnce(&mut Builder<'_, K>) -> Result<u32, TrieError>,
    ) -> Result<u32, TrieError> {
        let arena = std::mem::take(&mut self.arena);
        let mut b = Builder::<K> { starts, answers, arena, nodes: 0, _key: std::marker::PhantomData };
        let slot = f(&mut b);
        self.arena = b.arena;
        self.nodes += b.nodes;
        slot
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::Found;
    use super::*;

    /// A partition of the IPv4 space: `n` starts clustered in a few /16s (dense and sparse
    /// nodes, leaves, uniform slots), answers from `answers`.
    fn partition(seeds: &[(u32, u32)]) -> (Vec<u32>, Vec<u32>) {
        let mut starts: Vec<u32> = seeds.iter().map(|&(s, _)| s).chain([0]).collect();
        starts.sort_unstable();
        starts.dedup();
        let answers = starts.iter().enumerate().map(|(i, _)| seeds.get(i).map_or(0, |s| s.1)).collect();
        (starts, answers)
    }

    fn answer_at(starts: &[u32], answers: &[u32], key: u32) -> u32 {
        answers[starts.partition_point(|&s| s <= key) - 1]
    }

    fn seed() -> impl Strategy<Value = (u32, u32)> {
        (prop_oneof![Just(0x0a00_0000u32), Just(0x0a01_0000), Just(0xc0a8_0000), any::<u32>()], any::<u32>(), 0u32..300)
            .prop_map(|(base, noise, answer)| (base ^ (noise >> 14), answer))
    }

    /// IPv6 with a dense node (2001::/16) and a sparse one (2a00::/16) below the root:
    /// patched in one, the other is copied; patched in the sparse one, it is rewritten.
    #[test]
    fn sparse_and_dense_nodes_are_copied_and_rewritten() {
        let mut starts: Vec<u128> = vec![0];
        let mut answers: Vec<u32> = vec![0];
        for i in 0..1024u128 {
            starts.push((0x2001u128 << 112) + (i << 102));
            answers.push(1 + (i % 8) as u32);
        }
        starts.push((0x2001u128 << 112) + (1024 << 102));
        answers.push(0);
        for g in 0..20u128 {
            for i in 0..20u128 {
                let a = (0x2a00u128 << 112) + (g << 96) + ((2 * i) << 64);
                starts.extend([a, a + (1 << 64)]);
                answers.extend([1 + ((g + i) % 8) as u32, 0]);
            }
        }
        let trie = Trie::<u128>::build(&starts, &answers).unwrap();
        let before = |k: u128| answers[starts.partition_point(|&s| s <= k) - 1];
        for (a, b) in [
            ((0x2001u128 << 112) + (5 << 102) + 7, (0x2001u128 << 112) + (9 << 102)),
            ((0x2a00u128 << 112) + (3 << 96) + (5 << 64), (0x2a00u128 << 112) + (3 << 96) + (9 << 64) + 3),
        ] {
            let patched = trie.patched(&[(a, b)], &mut |_| (b, 99)).unwrap();
            let want = |k: u128| if a <= k && k <= b { 99 } else { before(k) };
            let probes = starts.iter().flat_map(|&s| [s, s.wrapping_sub(1), s + 1]).chain([a - 1, a, b, b + 1]);
            for k in probes {
                assert_eq!(patched.lookup(k), want(k), "at {k:#x}");
                assert_eq!(patched.lookup_v6(k), want(k), "v6 path at {k:#x}");
            }
            assert_eq!(patched.top_node_kinds(), trie.top_node_kinds());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Patched over random intervals with new answers there, a trie answers every
        /// boundary as one built from the new partition does, and again when patched twice.
        #[test]
        fn a_patched_trie_answers_as_one_built_from_the_new_partition(
            seeds in prop::collection::vec(seed(), 1..3000),
            edits in prop::collection::vec((seed(), 0u32..5000, 0u32..300), 1..40),
        ) {
            let (starts, answers) = partition(&seeds);
            let mut trie = Trie::<u32>::build(&starts, &answers).unwrap();
            let (mut cur_s, mut cur_a) = (starts, answers);
            for round in 0..2 {
                // Intervals to change, and the answer each takes.
                let mut changed: Vec<(u128, u128)> = Vec::new();
                let mut iv: Vec<(u32, u32, u32)> = edits
                    .iter()
                    .skip(round)
                    .map(|&((a, _), len, answer)| (a, a.saturating_add(len), answer))
                    .collect();
                iv.sort_unstable();
                let mut kept: Vec<(u32, u32, u32)> = Vec::new();
                for (a, b, x) in iv {
                    if kept.last().is_none_or(|&(_, lb, _)| u64::from(lb) + 1 < u64::from(a)) {
                        kept.push((a, b, x));
                        changed.push((u128::from(a), u128::from(b)));
                    }
                }
                let new_at = |key: u32| {
                    kept.iter().find(|&&(a, b, _)| a <= key && key <= b).map(|k| k.2)
                        .unwrap_or_else(|| answer_at(&cur_s, &cur_a, key))
                };
                let mut pieces = |at: u128| {
                    let k = kept.iter().find(|&&(a, b, _)| u128::from(a) <= at && at <= u128::from(b)).unwrap();
                    (u128::from(k.1), k.2)
                };
                let patched = trie.patched(&changed, &mut pieces).unwrap();
                // The new partition, and the trie a whole build makes of it.
                let mut probes: Vec<u32> = cur_s.iter().flat_map(|&s| [s, s.wrapping_sub(1)]).collect();
                probes.extend(kept.iter().flat_map(|&(a, b, _)| [a, b, a.wrapping_sub(1), b.wrapping_add(1)]));
                probes.extend([0, u32::MAX]);
                probes.sort_unstable();
                probes.dedup();
                let mut ns: Vec<u32> = Vec::new();
                let mut na: Vec<u32> = Vec::new();
                for &p in &probes {
                    let x = new_at(p);
                    if p == 0 || (na.last() != Some(&x)) {
                        // A boundary may lie between probes only at a probe (every start is one).
                        if p == 0 || new_at(p - 1) != x {
                            ns.push(p);
                            na.push(x);
                        }
                    }
                }
                let whole = Trie::<u32>::build(&ns, &na).unwrap();
                for &p in &probes {
                    prop_assert_eq!(patched.lookup(p), whole.lookup(p), "at {:#x}", p);
                    let Found { answer, first, last } = patched.find(p);
                    prop_assert_eq!(answer, whole.lookup(p));
                    prop_assert!(first <= p && p <= last);
                    prop_assert_eq!(patched.lookup(first), answer);
                    prop_assert_eq!(patched.lookup(last), answer);
                }
                prop_assert_eq!(patched.heap_bytes() <= whole.heap_bytes() * 2 + (1 << 20), true);
                trie = patched;
                (cur_s, cur_a) = (ns, na);
            }
        }
    }
}
