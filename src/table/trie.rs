//! A read-only multibit trie over one address family, answering "which range holds this key".
//!
//! The input is a partition of the whole key space into ranges (sorted starts, one answer
//! index each). The trie is a 16-bit root array, then 8-bit internal nodes, ending in either a
//! uniform slot (the whole region has one answer) or a small sorted leaf of at most
//! [`LEAF_MAX`] range starts, searched linearly. Every slot is one `u32`:
//!
//! ```text
//!  31 30 29 ............................................. 0
//! [ tag ][ payload                                         ]
//!  00     answer index (region is uniform)
//!  01     internal node: index into `nodes`
//!  10     leaf: bits 5..30 = offset into `keys`/`vals`, bits 0..5 = length - 1
//! ```
//!
//! Internal nodes are compressed as in Poptrie: neighbouring children that are equal (the same
//! uniform answer, typically) are stored once. A node is a 256-bit map with a bit set where a
//! child differs from its left neighbour, the rank of each 64-bit word, and the offset of its
//! distinct children in `children`; child `i` is `children[offset + rank(i) - 1]`, found
//! with one popcount. A node costs 40 bytes plus 4 per distinct child instead of 1 KiB.
//!
//! A lookup reads the root slot, then at most one slot per 8 further bits (in practice 0-2),
//! then one leaf (`LEAF_MAX` keys fit in one or two cache lines), and never allocates.

use std::fmt::Debug;

/// Most range starts one leaf may hold; larger regions become internal nodes.
pub(crate) const LEAF_MAX: usize = 16;
const ROOT_BITS: u32 = 16;
const STRIDE: u32 = 8;
const TAG_SHIFT: u32 = 30;
const TAG_ANSWER: u32 = 0;
const TAG_NODE: u32 = 1;
const TAG_LEAF: u32 = 2;
const PAYLOAD: u32 = (1 << TAG_SHIFT) - 1;
const LEN_BITS: u32 = 5;
const MAX_LEAF_OFFSET: usize = (1 << (TAG_SHIFT - LEN_BITS)) - 1;

/// An address family's key: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Key: Copy + Ord + Debug + Send + Sync + 'static {
    const BITS: u32;
    /// The type leaf keys are stored in, relative to the leaf's region.
    type Leaf: Copy + Ord + Debug + Send + Sync + 'static;

    fn to_u128(self) -> u128;
    fn from_u128(v: u128) -> Self;
    /// `bits` bits of `self` starting `depth` bits from the top.
    fn chunk(self, depth: u32, bits: u32) -> usize;
    /// The leaf key for `rel` (an offset inside a region at `depth`), if exact.
    fn leaf_key(rel: u128, depth: u32) -> Option<Self::Leaf>;
    /// The value compared with leaf keys when looking up `self` at `depth`; order-preserving.
    fn leaf_probe(self, depth: u32) -> Self::Leaf;
    /// The integer a leaf key holds.
    fn leaf_value(leaf: Self::Leaf) -> u128;
}

/// The immutable trie for one family.
#[derive(Debug)]
pub(crate) struct Trie<K: Key> {
    root: Box<[u32]>,
    nodes: Box<[Node]>,
    children: Box<[u32]>,
    keys: Box<[K::Leaf]>,
    vals: Box<[u32]>,
}

/// A compressed 256-way internal node.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Bit `i` set: child `i` differs from child `i - 1` (bit 0 always set).
    runs: [u64; 4],
    /// Number of set bits in the words before each word, one byte each.
    ranks: u32,
    /// Offset of the first distinct child in `children`.
    offset: u32,
}

/// Where a lookup ended: the answer and the bounds of the stored range around the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found<K> {
    pub answer: u32,
    pub first: K,
    pub last: K,
}

/// Why a partition cannot be turned into a trie.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrieError {
    /// More ranges or answers than the slot encoding can address.
    TooLarge,
}

// === impl Key for u32 ===

impl Key for u32 {
    const BITS: u32 = 32;
    type Leaf = u16;

    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    #[inline(always)]
    fn chunk(self, depth: u32, bits: u32) -> usize {
        ((self << depth) >> (32 - bits)) as usize
    }
    fn leaf_key(rel: u128, depth: u32) -> Option<u16> {
        // Regions at depth >= ROOT_BITS span at most 2^16 addresses.
        debug_assert!(depth >= ROOT_BITS);
        u16::try_from(rel).ok()
    }
    #[inline(always)]
    fn leaf_probe(self, depth: u32) -> u16 {
        ((self << depth) >> depth) as u16
    }
    fn leaf_value(leaf: u16) -> u128 {
        u128::from(leaf)
    }
}

// === impl Key for u128 ===

impl Key for u128 {
    const BITS: u32 = 128;
    type Leaf = u32;

    fn to_u128(self) -> u128 {
        self
    }
    fn from_u128(v: u128) -> Self {
        v
    }
    #[inline(always)]
    fn chunk(self, depth: u32, bits: u32) -> usize {
        ((self << depth) >> (128 - bits)) as usize
    }
    fn leaf_key(rel: u128, depth: u32) -> Option<u32> {
        // A region at `depth` spans 2^(128-depth) keys; keep the top 32 of those bits and
        // require the rest to be zero, so comparing truncated probes stays exact. Real IPv6
        // allocations are /64 or shorter, so this holds almost everywhere; where it does not
        // the region is split further instead.
        let shift = v6_shift(depth);
        let low = if shift == 0 { 0 } else { rel & ((1u128 << shift) - 1) };
        (low == 0).then_some((rel >> shift) as u32)
    }
    #[inline(always)]
    fn leaf_probe(self, depth: u32) -> u32 {
        (((self << depth) >> depth) >> v6_shift(depth)) as u32
    }
    fn leaf_value(leaf: u32) -> u128 {
        u128::from(leaf)
    }
}

// === impl Trie ===

impl<K: Key> Trie<K> {
    /// Builds the trie for a partition of the whole key space: `starts[0] == 0`, strictly
    /// increasing, `answers[i]` covering `starts[i]..starts[i+1]`.
    pub(crate) fn build(starts: &[K], answers: &[u32]) -> Result<Self, TrieError> {
        debug_assert_eq!(starts.len(), answers.len());
        debug_assert!(starts.first().map(|s| s.to_u128()) == Some(0));
        if answers.iter().any(|&a| a > PAYLOAD) {
            return Err(TrieError::TooLarge);
        }
        let mut b = Builder::<K> {
            starts,
            answers,
            nodes: Vec::new(),
            children: Vec::new(),
            keys: Vec::new(),
            vals: Vec::new(),
        };
        let mut root = Vec::with_capacity(1 << ROOT_BITS);
        let span = 1u128 << (K::BITS - ROOT_BITS);
        let mut lo = 0usize;
        for i in 0..(1u128 << ROOT_BITS) {
            let base = i * span;
            let end = base + (span - 1);
            let slot = b.region(base, end, ROOT_BITS, &mut lo)?;
            root.push(slot);
        }
        Ok(Self {
            root: root.into_boxed_slice(),
            nodes: b.nodes.into_boxed_slice(),
            children: b.children.into_boxed_slice(),
            keys: b.keys.into_boxed_slice(),
            vals: b.vals.into_boxed_slice(),
        })
    }

    /// A trie that gives `answer` for every key.
    pub(crate) fn uniform(answer: u32) -> Self {
        Self {
            root: vec![(TAG_ANSWER << TAG_SHIFT) | (answer & PAYLOAD); 1 << ROOT_BITS].into_boxed_slice(),
            nodes: Box::new([]),
            children: Box::new([]),
            keys: Box::new([]),
            vals: Box::new([]),
        }
    }

    /// The answer index for `key`.
    #[inline]
    pub(crate) fn lookup(&self, key: K) -> u32 {
        let mut slot = self.root[key.chunk(0, ROOT_BITS)];
        let mut depth = ROOT_BITS;
        loop {
            match slot >> TAG_SHIFT {
                TAG_ANSWER => return slot,
                TAG_NODE => {
                    slot = self.child(slot, key.chunk(depth, STRIDE));
                    depth += STRIDE;
                }
                _ => return self.vals[self.leaf_index(slot, key, depth)],
            }
        }
    }

    /// Like [`lookup`](Self::lookup), also giving the stored range around `key`.
    pub(crate) fn find(&self, key: K) -> Found<K> {
        let k = key.to_u128();
        let region = |depth: u32| {
            let span_bits = K::BITS - depth;
            let base = if span_bits >= 128 { 0 } else { (k >> span_bits) << span_bits };
            let last = base + if span_bits >= 128 { u128::MAX } else { (1u128 << span_bits) - 1 };
            (base, last)
        };
        let mut slot = self.root[key.chunk(0, ROOT_BITS)];
        let mut depth = ROOT_BITS;
        loop {
            match slot >> TAG_SHIFT {
                TAG_ANSWER => {
                    let (first, last) = region(depth);
                    return Found { answer: slot, first: K::from_u128(first), last: K::from_u128(last) };
                }
                TAG_NODE => {
                    slot = self.child(slot, key.chunk(depth, STRIDE));
                    depth += STRIDE;
                }
                _ => {
                    let i = self.leaf_index(slot, key, depth);
                    let (off, len) = leaf_parts(slot);
                    let (base, region_last) = region(depth);
                    let shift = rel_shift::<K>(depth);
                    let rel_of = |j: usize| leaf_rel::<K>(self.keys[j], shift);
                    let first = base + rel_of(i);
                    let last = if i + 1 < off + len { base + rel_of(i + 1) - 1 } else { region_last };
                    return Found { answer: self.vals[i], first: K::from_u128(first), last: K::from_u128(last) };
                }
            }
        }
    }

    #[inline(always)]
    fn child(&self, slot: u32, i: usize) -> u32 {
        let node = &self.nodes[(slot & PAYLOAD) as usize];
        let word = i >> 6;
        let before = (node.ranks >> (word * 8)) & 0xff;
        // Set bits in this word up to and including bit `i % 64`.
        let upto = (node.runs[word] << (63 - (i & 63))).count_ones();
        self.children[node.offset as usize + (before + upto) as usize - 1]
    }

    #[inline(always)]
    fn leaf_index(&self, slot: u32, key: K, depth: u32) -> usize {
        let (off, len) = leaf_parts(slot);
        let probe = key.leaf_probe(depth);
        let keys = &self.keys[off..off + len];
        // keys[0] is always 0, so the answer is the count of later keys <= probe.
        let mut i = 0;
        for k in &keys[1..] {
            i += usize::from(*k <= probe);
        }
        off + i
    }

    /// Heap bytes owned by this trie.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.root.len() * 4
            + self.nodes.len() * std::mem::size_of::<Node>()
            + self.children.len() * 4
            + self.keys.len() * std::mem::size_of::<K::Leaf>()
            + self.vals.len() * 4
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn leaf_entries(&self) -> usize {
        self.keys.len()
    }
}

#[inline(always)]
fn leaf_parts(slot: u32) -> (usize, usize) {
    let payload = slot & PAYLOAD;
    ((payload >> LEN_BITS) as usize, (payload & ((1 << LEN_BITS) - 1)) as usize + 1)
}

fn rel_shift<K: Key>(depth: u32) -> u32 {
    if K::BITS == 128 {
        v6_shift(depth)
    } else {
        0
    }
}

#[inline(always)]
fn v6_shift(depth: u32) -> u32 {
    (128 - depth).saturating_sub(32)
}

fn leaf_rel<K: Key>(leaf: K::Leaf, shift: u32) -> u128 {
    K::leaf_value(leaf) << shift
}

struct Builder<'a, K: Key> {
    starts: &'a [K],
    answers: &'a [u32],
    nodes: Vec<Node>,
    children: Vec<u32>,
    keys: Vec<K::Leaf>,
    vals: Vec<u32>,
}

impl<K: Key> Builder<'_, K> {
    /// Builds the slot for the region `base..=end` at `depth`. `lo` is the index of the range
    /// holding `base`; regions are visited in ascending order so it only moves forward.
    fn region(&mut self, base: u128, end: u128, depth: u32, lo: &mut usize) -> Result<u32, TrieError> {
        while *lo + 1 < self.starts.len() && self.starts[*lo + 1].to_u128() <= base {
            *lo += 1;
        }
        let first = *lo;
        // Ranges starting inside the region after `base`.
        let rest = &self.starts[first + 1..];
        let inside = rest.partition_point(|s| s.to_u128() <= end);
        if inside == 0 {
            return Ok((TAG_ANSWER << TAG_SHIFT) | self.answers[first]);
        }
        let count = inside + 1;
        if count <= LEAF_MAX {
            let mut leaf = Vec::with_capacity(count);
            leaf.push(K::leaf_key(0, depth));
            for s in &rest[..inside] {
                leaf.push(K::leaf_key(s.to_u128() - base, depth));
            }
            if let Some(leaf) = leaf.into_iter().collect::<Option<Vec<_>>>() {
                let off = self.keys.len();
                if off > MAX_LEAF_OFFSET {
                    return Err(TrieError::TooLarge);
                }
                self.keys.extend_from_slice(&leaf);
                self.vals.extend_from_slice(&self.answers[first..first + count]);
                let payload = ((off as u32) << LEN_BITS) | (count as u32 - 1);
                return Ok((TAG_LEAF << TAG_SHIFT) | payload);
            }
        }
        // Too many ranges (or starts too fine for a leaf's keys): split 8 more bits.
        let child_depth = depth + STRIDE;
        let span = 1u128 << (K::BITS - child_depth);
        let mut slots = [0u32; 1 << STRIDE];
        for (c, slot) in slots.iter_mut().enumerate() {
            let child_base = base + c as u128 * span;
            *slot = self.region(child_base, child_base + (span - 1), child_depth, lo)?;
        }
        let index = self.nodes.len();
        let offset = self.children.len();
        if index > PAYLOAD as usize || offset > u32::MAX as usize - (1 << STRIDE) {
            return Err(TrieError::TooLarge);
        }
        let mut node = Node { runs: [0; 4], ranks: 0, offset: offset as u32 };
        for (c, &slot) in slots.iter().enumerate() {
            if c == 0 || slots[c - 1] != slot {
                node.runs[c >> 6] |= 1u64 << (c & 63);
                self.children.push(slot);
            }
        }
        let mut total = 0u32;
        for w in 0..4 {
            node.ranks |= total << (w * 8);
            total += node.runs[w].count_ones();
        }
        self.nodes.push(node);
        Ok((TAG_NODE << TAG_SHIFT) | index as u32)
    }
}
