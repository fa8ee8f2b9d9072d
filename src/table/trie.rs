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
//!  01     sparse node at arena index `payload`
//!  10     leaf: bit 29 = wide keys, bits 5..29 = arena index, bits 0..5 = length - 1
//!  11     dense node at arena index `payload`
//! ```
//!
//! Everything below the root lives in one `u32` arena, laid out so that a lookup touches about
//! one cache line per level:
//! - a **sparse node** (few distinct children, the common case) is compressed as in Poptrie:
//!   a 256-bit map with a bit set where a child differs from its left neighbour (8 words), the
//!   rank of each 64-bit word (1 word), then the distinct children; child `i` is
//!   `children[rank(i) - 1]`, found with one popcount. Nodes start on a 64-byte boundary, so a
//!   node with up to 7 distinct children is one cache line.
//! - a **dense node** (more than [`DENSE_MIN`] distinct children) is the plain 256-slot array:
//!   one load, no popcount, 1 KiB.
//! - a **leaf** is its `n` keys (relative to the leaf's region) followed by its `n` answers, so
//!   a leaf of 8 is one cache line. Keys are the top 32 bits of the offset in the region when
//!   that is exact; otherwise (fine-grained IPv6 ranges high in the trie) a *wide* leaf keeps the
//!   top 64 bits as two words per key, instead of splitting the region level after level.
//!
//! A lookup reads the root slot, then one slot per 8 further bits (in practice 0-2), then one
//! leaf; it never allocates and takes no lock.

/// Most range starts one leaf may hold; larger regions become internal nodes.
pub(crate) const LEAF_MAX: usize = 16;
/// Distinct children from which a node is stored uncompressed.
pub(crate) const DENSE_MIN: usize = 96;
const ROOT_BITS: u32 = 16;
const STRIDE: u32 = 8;
const TAG_SHIFT: u32 = 30;
const TAG_ANSWER: u32 = 0;
const TAG_SPARSE: u32 = 1;
const TAG_LEAF: u32 = 2;
const TAG_DENSE: u32 = 3;
const PAYLOAD: u32 = (1 << TAG_SHIFT) - 1;
const LEN_BITS: u32 = 5;
const WIDE_BIT: u32 = 1 << 29;
const MAX_LEAF_OFFSET: usize = (1 << (TAG_SHIFT - 1 - LEN_BITS)) - 1;
/// Words in a sparse node's header: 8 for the run map, 1 for the word ranks.
const SPARSE_HEADER: usize = 9;
/// Nodes are placed on multiples of this many words (64 bytes).
const LINE_WORDS: usize = 16;

/// An address family's key: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait Key: Copy + Ord + std::fmt::Debug + Send + Sync + 'static {
    const BITS: u32;

    fn to_u128(self) -> u128;
    fn from_u128(v: u128) -> Self;
    /// `bits` bits of `self` starting `depth` bits from the top.
    fn chunk(self, depth: u32, bits: u32) -> usize;
    /// How far leaf keys at `depth` are shifted right (0 when the region fits 32 bits).
    fn leaf_shift(depth: u32) -> u32;
    /// The 32-bit value compared with leaf keys when looking up `self` at `depth`.
    fn leaf_probe(self, depth: u32) -> u32;
    /// Shift of wide (64-bit) leaf keys at `depth`.
    fn wide_shift(depth: u32) -> u32 {
        (Self::BITS - depth).saturating_sub(64)
    }
    /// The 64-bit value compared with wide leaf keys.
    fn wide_probe(self, depth: u32) -> u64 {
        let drop = 128 - Self::BITS + depth;
        let rel = (self.to_u128() << drop) >> drop;
        (rel >> Self::wide_shift(depth)) as u64
    }
}

/// The immutable trie for one family.
#[derive(Debug)]
pub(crate) struct Trie<K: Key> {
    root: Box<[u32]>,
    arena: Box<[u32]>,
    nodes: usize,
    _key: std::marker::PhantomData<K>,
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
    fn leaf_shift(_depth: u32) -> u32 {
        0
    }
    #[inline(always)]
    fn leaf_probe(self, depth: u32) -> u32 {
        (self << depth) >> depth
    }
}

// === impl Key for u128 ===

impl Key for u128 {
    const BITS: u32 = 128;

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
    #[inline(always)]
    fn leaf_shift(depth: u32) -> u32 {
        // A region at `depth` spans 2^(128-depth) keys; leaves keep the top 32 of those bits.
        // Real IPv6 allocations are /64 or shorter, so starts are exact almost everywhere;
        // where they are not, the region is split further instead.
        (128 - depth).saturating_sub(32)
    }
    #[inline(always)]
    fn leaf_probe(self, depth: u32) -> u32 {
        (((self << depth) >> depth) >> Self::leaf_shift(depth)) as u32
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
        let mut b = Builder::<K> { starts, answers, arena: Vec::new(), nodes: 0, _key: std::marker::PhantomData };
        let mut root = Vec::with_capacity(1 << ROOT_BITS);
        let span = 1u128 << (K::BITS - ROOT_BITS);
        let mut lo = 0usize;
        for i in 0..(1u128 << ROOT_BITS) {
            let base = i * span;
            root.push(b.region(base, base + (span - 1), ROOT_BITS, &mut lo)?);
        }
        // Leaf scans read a fixed LEAF_MAX window; keep the last one inside the arena.
        b.arena.resize(b.arena.len() + LEAF_MAX, 0);
        Ok(Self { root: root.into_boxed_slice(), arena: b.arena.into_boxed_slice(), nodes: b.nodes, _key: b._key })
    }

    /// A trie that gives `answer` for every key.
    pub(crate) fn uniform(answer: u32) -> Self {
        Self {
            root: vec![(TAG_ANSWER << TAG_SHIFT) | (answer & PAYLOAD); 1 << ROOT_BITS].into_boxed_slice(),
            arena: Box::new([]),
            nodes: 0,
            _key: std::marker::PhantomData,
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
                TAG_LEAF => return self.arena[self.leaf_answer_index(slot, key, depth)],
                _ => {
                    slot = self.child(slot, key.chunk(depth, STRIDE));
                    depth += STRIDE;
                }
            }
        }
    }

    /// Like [`lookup`](Self::lookup), also giving the stored range around `key`.
    pub(crate) fn find(&self, key: K) -> Found<K> {
        let k = key.to_u128();
        let region = |depth: u32| {
            let span_bits = K::BITS - depth;
            let base = (k >> span_bits) << span_bits;
            (base, base + ((1u128 << span_bits) - 1))
        };
        let mut slot = self.root[key.chunk(0, ROOT_BITS)];
        let mut depth = ROOT_BITS;
        loop {
            match slot >> TAG_SHIFT {
                TAG_ANSWER => {
                    let (first, last) = region(depth);
                    return Found { answer: slot, first: K::from_u128(first), last: K::from_u128(last) };
                }
                TAG_LEAF => {
                    let (off, len) = leaf_parts(slot);
                    let wide = slot & WIDE_BIT != 0;
                    let keys_len = if wide { 2 * len } else { len };
                    let at = self.leaf_answer_index(slot, key, depth);
                    let j = at - off - keys_len;
                    let (base, region_last) = region(depth);
                    let rel = |j: usize| {
                        if wide {
                            u128::from(self.wide_key(off, j)) << K::wide_shift(depth)
                        } else {
                            u128::from(self.arena[off + j]) << K::leaf_shift(depth)
                        }
                    };
                    let first = base + rel(j);
                    let last = if j + 1 < len { base + rel(j + 1) - 1 } else { region_last };
                    return Found { answer: self.arena[at], first: K::from_u128(first), last: K::from_u128(last) };
                }
                _ => {
                    slot = self.child(slot, key.chunk(depth, STRIDE));
                    depth += STRIDE;
                }
            }
        }
    }

    #[inline(always)]
    fn child(&self, slot: u32, i: usize) -> u32 {
        let at = (slot & PAYLOAD) as usize;
        if slot >> TAG_SHIFT == TAG_DENSE {
            return self.arena[at + i];
        }
        let word = i >> 6;
        let runs = u64::from(self.arena[at + 2 * word]) | (u64::from(self.arena[at + 2 * word + 1]) << 32);
        let before = (self.arena[at + 8] >> (word * 8)) & 0xff;
        // Set bits in this word up to and including bit `i % 64`.
        let upto = (runs << (63 - (i & 63))).count_ones();
        self.arena[at + SPARSE_HEADER + (before + upto) as usize - 1]
    }

    /// Arena index of the answer for `key` in the leaf `slot`.
    #[inline(always)]
    fn leaf_answer_index(&self, slot: u32, key: K, depth: u32) -> usize {
        if slot & WIDE_BIT != 0 {
            return self.wide_answer_index(slot, key, depth);
        }
        let (off, len) = leaf_parts(slot);
        let probe = key.leaf_probe(depth);
        // keys[0] is always 0, so the position is the count of later keys <= probe. The scan
        // has a fixed trip count (masked by `len`; the arena is padded at the end) so it
        // unrolls into a few vector compares with no data-dependent loop exit: independent
        // lookups then overlap in the pipeline instead of stalling on a mispredicted branch.
        let window = &self.arena[off + 1..off + LEAF_MAX];
        let mut i = 0u32;
        for (j, k) in window.iter().enumerate() {
            i += u32::from((j + 1 < len) & (*k <= probe));
        }
        off + len + i as usize
    }

    /// Levels below the root a lookup of `key` visits, and whether it ends in a leaf (for
    /// the bench's diagnostics).
    pub(crate) fn depth_of(&self, key: K) -> (u32, bool) {
        let mut slot = self.root[key.chunk(0, ROOT_BITS)];
        let mut depth = ROOT_BITS;
        let mut levels = 0;
        loop {
            match slot >> TAG_SHIFT {
                TAG_ANSWER => return (levels, false),
                TAG_LEAF => return (levels, true),
                _ => {
                    slot = self.child(slot, key.chunk(depth, STRIDE));
                    depth += STRIDE;
                    levels += 1;
                }
            }
        }
    }

    #[cold]
    fn wide_answer_index(&self, slot: u32, key: K, depth: u32) -> usize {
        let (off, len) = leaf_parts(slot);
        let probe = key.wide_probe(depth);
        let mut i = 0usize;
        for j in 1..len {
            i += usize::from(self.wide_key(off, j) <= probe);
        }
        off + 2 * len + i
    }

    #[inline(always)]
    fn wide_key(&self, off: usize, j: usize) -> u64 {
        (u64::from(self.arena[off + 2 * j]) << 32) | u64::from(self.arena[off + 2 * j + 1])
    }

    /// Heap bytes owned by this trie.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.root.len() + self.arena.len()) * 4
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes
    }
}

#[inline(always)]
fn leaf_parts(slot: u32) -> (usize, usize) {
    let payload = slot & PAYLOAD & !WIDE_BIT;
    ((payload >> LEN_BITS) as usize, (payload & ((1 << LEN_BITS) - 1)) as usize + 1)
}

struct Builder<'a, K: Key> {
    starts: &'a [K],
    answers: &'a [u32],
    arena: Vec<u32>,
    nodes: usize,
    _key: std::marker::PhantomData<K>,
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
            if let Some(slot) = self.leaf(base, depth, first, &rest[..inside])? {
                return Ok(slot);
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
        self.node(&slots)
    }

    fn leaf(&mut self, base: u128, depth: u32, first: usize, later: &[K]) -> Result<Option<u32>, TrieError> {
        let exact = |shift: u32, s: &K| {
            let rel = s.to_u128() - base;
            let low = if shift == 0 { 0 } else { rel & ((1u128 << shift) - 1) };
            (low == 0).then_some(rel >> shift)
        };
        let narrow: Option<Vec<u32>> =
            later.iter().map(|s| exact(K::leaf_shift(depth), s).and_then(|r| u32::try_from(r).ok())).collect();
        let off = self.arena.len();
        if off > MAX_LEAF_OFFSET {
            return Err(TrieError::TooLarge);
        }
        let count = later.len() + 1;
        let mut payload = ((off as u32) << LEN_BITS) | (count as u32 - 1);
        if let Some(keys) = narrow {
            self.arena.push(0);
            self.arena.extend_from_slice(&keys);
        } else {
            let wide: Option<Vec<u64>> =
                later.iter().map(|s| exact(K::wide_shift(depth), s).and_then(|r| u64::try_from(r).ok())).collect();
            let Some(keys) = wide else { return Ok(None) };
            self.arena.extend_from_slice(&[0, 0]);
            for k in keys {
                self.arena.push((k >> 32) as u32);
                self.arena.push(k as u32);
            }
            payload |= WIDE_BIT;
        }
        self.arena.extend_from_slice(&self.answers[first..first + count]);
        Ok(Some((TAG_LEAF << TAG_SHIFT) | payload))
    }

    fn node(&mut self, slots: &[u32; 1 << STRIDE]) -> Result<u32, TrieError> {
        let distinct = 1 + slots.windows(2).filter(|w| w[0] != w[1]).count();
        // Start every node on a cache line.
        let pad = (LINE_WORDS - self.arena.len() % LINE_WORDS) % LINE_WORDS;
        self.arena.resize(self.arena.len() + pad, 0);
        let at = self.arena.len();
        if at > PAYLOAD as usize {
            return Err(TrieError::TooLarge);
        }
        self.nodes += 1;
        if distinct >= DENSE_MIN {
            self.arena.extend_from_slice(slots);
            return Ok((TAG_DENSE << TAG_SHIFT) | at as u32);
        }
        let mut runs = [0u64; 4];
        let mut children = Vec::with_capacity(distinct);
        for (c, &slot) in slots.iter().enumerate() {
            if c == 0 || slots[c - 1] != slot {
                runs[c >> 6] |= 1u64 << (c & 63);
                children.push(slot);
            }
        }
        let mut ranks = 0u32;
        let mut total = 0u32;
        for (w, r) in runs.iter().enumerate() {
            ranks |= total << (w * 8);
            total += r.count_ones();
        }
        for r in runs {
            self.arena.push(r as u32);
            self.arena.push((r >> 32) as u32);
        }
        self.arena.push(ranks);
        self.arena.extend_from_slice(&children);
        Ok((TAG_SPARSE << TAG_SHIFT) | at as u32)
    }
}
