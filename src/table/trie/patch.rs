//! A trie rebuilt only where its partition changed ([`Trie::patched`]).
//!
//! The patched trie starts as a copy of the old arena, so every slot of the old trie stays
//! valid in it. Walking down from the root, a slot whose region holds no changed address is
//! kept as it is; a node over a change is written again with the same stride, its children
//! patched the same way; a leaf or uniform slot over a change is rebuilt from the new
//! partition of its region by the ordinary builder, which may split it into nodes. What the
//! rewritten slots replaced stays in the arena, unreachable, and is counted
//! ([`Trie::garbage_words`]) so that the caller can build afresh once too much of the arena is
//! dead. Lookups in the result are exactly those of a trie built from the new partition; its
//! shape (the strides kept from the old nodes) may be less tight.

use super::{
    is_node, leaf_parts, node_stride, Builder, Key, Trie, TrieError, COMPACT_BIT, LEAF_MAX, NODE_INDEX, PAYLOAD,
    ROOT_BITS, SPARSE_BLOCK, TAG_LEAF, TAG_SHIFT, TAG_SPARSE, WIDE_BIT,
};

/// The new partition, asked piece by piece: the answer at an address and the last address
/// (at or after it) up to which that answer is sure to hold. Equal neighbours are merged by
/// the patch, so a piece may end anywhere.
pub(crate) type Pieces<'a> = dyn FnMut(u128) -> (u128, u32) + 'a;

struct Patcher<'a, 'p, K: Key> {
    old: &'a Trie<K>,
    /// Sorted, disjoint, inclusive intervals of addresses whose answer may have changed.
    changed: &'a [(u128, u128)],
    pieces: &'a mut Pieces<'p>,
    arena: Vec<u32>,
    /// Nodes written (new or rewritten) and old nodes replaced.
    nodes_added: usize,
    nodes_dropped: usize,
    garbage: usize,
    starts: Vec<K>,
    answers: Vec<u32>,
}

impl<K: Key> Trie<K> {
    /// This trie with every region that overlaps `changed` (sorted, disjoint, inclusive
    /// intervals) answered from `pieces` instead; the rest is shared word for word. Fails like
    /// [`Trie::build`] when the arena outgrows the slot encoding.
    pub(crate) fn patched(&self, changed: &[(u128, u128)], pieces: &mut Pieces<'_>) -> Result<Self, TrieError> {
        debug_assert!(changed.windows(2).all(|w| w[0].1 < w[1].0));
        let mut arena = Vec::with_capacity(self.arena.len() + self.arena.len() / 8 + LEAF_MAX);
        arena.extend_from_slice(&self.arena);
        let mut p = Patcher {
            old: self,
            changed,
            pieces,
            arena,
            nodes_added: 0,
            nodes_dropped: 0,
            garbage: self.garbage,
            starts: Vec::new(),
            answers: Vec::new(),
        };
        let span = 1u128 << (K::BITS - ROOT_BITS);
        let mut root = Vec::with_capacity(self.root.len());
        for (i, &slot) in self.root.iter().enumerate() {
            let base = i as u128 * span;
            root.push(p.slot(slot, base, base + (span - 1), ROOT_BITS)?);
        }
        if p.arena.len() > self.arena.len() {
            // Leaf searches index a fixed LEAF_MAX window past their start.
            p.arena.resize(p.arena.len() + LEAF_MAX, 0);
        }
        Ok(Self {
            root: root.into_boxed_slice(),
            arena: p.arena.into_boxed_slice(),
            nodes: self.nodes + p.nodes_added - p.nodes_dropped,
            garbage: p.garbage,
            _key: std::marker::PhantomData,
        })
    }

    /// Arena words no slot refers to any more (left behind by [`Trie::patched`]).
    pub(crate) fn garbage_words(&self) -> usize {
        self.garbage
    }

    /// Arena words in use or dead: what [`Trie::garbage_words`] is a share of.
    pub(crate) fn arena_words(&self) -> usize {
        self.arena.len()
    }

    /// Words the node or leaf `slot` occupies in the arena (0 for a uniform slot).
    fn words_of(&self, slot: u32) -> usize {
        match slot >> TAG_SHIFT {
            TAG_LEAF => {
                let (_, len) = leaf_parts(slot);
                if slot & WIDE_BIT != 0 {
                    5 * len
                } else if slot & COMPACT_BIT != 0 {
                    len
                } else {
                    2 * len
                }
            }
            TAG_SPARSE => {
                let at = (slot & NODE_INDEX) as usize;
                let blocks = (1usize << node_stride(slot)).div_ceil(64);
                let last = at + SPARSE_BLOCK * (blocks - 1);
                let runs = u64::from(self.arena[last]) | (u64::from(self.arena[last + 1]) << 32);
                SPARSE_BLOCK * blocks + self.arena[last + 2] as usize + runs.count_ones() as usize
            }
            _ if is_node(slot) => 1 << node_stride(slot),
            _ => 0,
        }
    }
}

impl<K: Key> Patcher<'_, '_, K> {
    fn touches(&self, base: u128, end: u128) -> bool {
        let i = self.changed.partition_point(|&(_, last)| last < base);
        self.changed.get(i).is_some_and(|&(first, _)| first <= end)
    }

    fn slot(&mut self, old: u32, base: u128, end: u128, depth: u32) -> Result<u32, TrieError> {
        if !self.touches(base, end) {
            return Ok(old);
        }
        self.garbage += self.old.words_of(old);
        if is_node(old) {
            let stride = node_stride(old);
            let child_depth = depth + stride;
            let span = 1u128 << (K::BITS - child_depth);
            let mut slots = Vec::with_capacity(1 << stride);
            for c in 0..(1usize << stride) {
                let child_base = base + c as u128 * span;
                let child = self.old.child(old, stride, c);
                slots.push(self.slot(child, child_base, child_base + (span - 1), child_depth)?);
            }
            self.nodes_dropped += 1;
            return self.with_builder(|b| b.node(&slots, stride, depth == ROOT_BITS));
        }
        // A leaf or a uniform region: built again from the new partition of the region.
        self.starts.clear();
        self.answers.clear();
        let mut at = base;
        loop {
            let (last, answer) = (self.pieces)(at);
            if answer > PAYLOAD {
                return Err(TrieError::TooLarge);
            }
            if self.answers.last() != Some(&answer) {
                self.starts.push(K::from_u128(at));
                self.answers.push(answer);
            }
            if last >= end {
                break;
            }
            at = last + 1;
        }
        let starts = std::mem::take(&mut self.starts);
        let answers = std::mem::take(&mut self.answers);
        let slot = self.with_builder_over(&starts, &answers, |b| b.region(base, end, depth, &mut 0));
        self.starts = starts;
        self.answers = answers;
        slot
    }

    fn with_builder(
        &mut self,
        f: impl FnOnce(&mut Builder<'_, K>) -> Result<u32, TrieError>,
    ) -> Result<u32, TrieError> {
        self.with_builder_over(&[], &[], f)
    }

    /// Runs `f` with a builder that appends to the patched arena, over the given partition.
    fn with_builder_over(
        &mut self,
        starts: &[K],
        answers: &[u32],
        f: impl FnOnce(&mut Builder<'_, K>) -> Result<u32, TrieError>,
    ) -> Result<u32, TrieError> {
        let arena = std::mem::take(&mut self.arena);
        let mut b = Builder::<K> { starts, answers, arena, nodes: 0, _key: std::marker::PhantomData };
        let slot = f(&mut b);
        self.arena = b.arena;
        self.nodes_added += b.nodes;
        slot
    }
}
