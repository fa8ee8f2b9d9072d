//! A read-only multibit trie over one address family, answering "which range holds this key".
//!
//! The input is a partition of the whole key space into ranges (sorted starts, one answer
//! index each). The trie is a 16-bit root array, then internal nodes of variable stride (4 to
//! 16 bits, chosen per node), ending in either a uniform slot (the whole region has one
//! answer) or a small sorted leaf of at most [`LEAF_MAX`] range starts, searched by a
//! branchless binary search. Every slot is one `u32`:
//!
//! ```text
//!  31 30 29 ............................................. 0
//! [ tag ][ payload                                         ]
//!  00     answer index (region is uniform)
//!  01     dense node: bits 26..30 = stride - 1, bits 0..26 = arena index
//!  10     leaf: bit 29 = wide, bit 28 = compact, bits 5..28 = arena index / 2,
//!         bits 0..5 = length - 1
//!  11     sparse node: as a dense one
//! ```
//!
//! Everything below the root lives in one `u32` arena:
//! - a **dense node** is the plain array of its 2^stride child slots: one load per level.
//!   The stride is the smallest that leaves every child few enough ranges for a leaf, within
//!   a budget of [`SLOTS_PER_RANGE`] slots per range in the node's region (else the largest
//!   the budget allows). Sizing strides by where ranges actually cluster, rather than a fixed
//!   8 bits, is what keeps IPv6 lookups to two or three levels: a /32 split into hundreds
//!   of /48s is crossed in one step.
//! - nodes right below the root (the largest, often long runs of equal children) are
//!   **sparse** when that saves enough memory (by more than `Key::DENSE_FACTOR`: 1 for IPv4,
//!   whose lookups mostly end at the root, 16 for IPv6, where every real lookup passes such
//!   a node and the sparse step costs a dependent load and a popcount), compressed as in
//!   Poptrie: per 64 children a run map with a bit set where a child differs from its left
//!   neighbour and the number of runs before the block, then the distinct children; child
//!   `i` is found with one popcount. Only that level can be sparse, and the IPv6 nodes that
//!   stay sparse there hold few ranges, so the "which kind of node" branch is well predicted.
//! - a **leaf** holds the `n` ranges of its region. A key is the offset of a range start in
//!   the region, left-aligned, in the first of three forms that is exact:
//!   - *compact*: one word per range, the key's top 24 bits above an 8-bit answer, when
//!     every answer of the leaf is below 256 (answers are numbered by use, most used
//!     first). The search reads the answer with the key: no answer line to fetch, and half
//!     the memory of the narrow form. Every IPv4 leaf and most IPv6 ones on the shipped
//!     database are compact.
//!   - *narrow*: `n` 32-bit keys, then `n` answers.
//!   - *wide* (fine-grained IPv6 ranges high in the trie): all 128 bits, four words per
//!     key, then the answers. Any region of at most `LEAF_MAX` ranges is thus one leaf: a
//!     /40 holding a few /127s is not split 4 bits at a time down to them (with 64-bit wide
//!     keys it was, and those chains of up to 12 levels cost a dependent load each).
//!
//! A lookup reads the root slot, then one slot per level (on the shipped database: 1-3 for
//! IPv6, 0-1 for IPv4), then one leaf; it never allocates and takes no lock.

mod patch;

/// Most range starts one leaf may hold; larger regions become internal nodes. With the binary
/// search, 32 keys cost one step more than 16 and need fewer nodes: on the shipped database
/// the table is 1.2 MiB smaller at the same lookup speed.
pub(crate) const LEAF_MAX: usize = 32;
const _: () = assert!(LEAF_MAX.is_power_of_two());
/// Leaves start at even word offsets, so a leaf slot's offset field (23 bits once the length
/// takes 5 and the kind 2) addresses 2^24 words (64 MiB) of arena: the shipped database's
/// two tries take 11 MiB.
const LEAF_ALIGN: u32 = 1;
const ROOT_BITS: u32 = 16;
/// Bounds of a node's stride (bits it consumes).
const MIN_STRIDE: u32 = 4;
const MAX_STRIDE: u32 = 16;
/// Words per 64 children of a sparse node: the run map (2) and the runs before it (1).
const SPARSE_BLOCK: usize = 3;
/// Most slots a dense node may have per range inside its region.
const SLOTS_PER_RANGE: usize = 2;
/// Node slots: bits 26..30 hold the stride minus one, bits 0..26 the arena index.
const STRIDE_SHIFT: u32 = 26;
const NODE_INDEX: u32 = (1 << STRIDE_SHIFT) - 1;
const TAG_SHIFT: u32 = 30;
const TAG_ANSWER: u32 = 0;
const TAG_NODE: u32 = 1;
const TAG_LEAF: u32 = 2;
const TAG_SPARSE: u32 = 3;
const PAYLOAD: u32 = (1 << TAG_SHIFT) - 1;
const LEN_BITS: u32 = LEAF_MAX.trailing_zeros();
const WIDE_BIT: u32 = 1 << 29;
const COMPACT_BIT: u32 = 1 << 28;
/// Answers a compact leaf can hold: its words keep 8 bits for the answer.
const COMPACT_ANSWERS: u32 = 1 << 8;
const MAX_LEAF_OFFSET: usize = ((1 << (TAG_SHIFT - 2 - LEN_BITS)) << LEAF_ALIGN) - 1;

/// An address family's key: `u32` for IPv4, `u128` for IPv6.
///
/// A lookup shifts the key left as it descends, so the bits that index the next level (and
/// the bits leaf keys are compared with) are always the top ones: every shift is by a
/// constant, which matters for `u128`.
pub(crate) trait Key: Copy + Ord + std::fmt::Debug + Send + Sync + 'static {
    const BITS: u32;
    /// A node right below the root is sparse only if its dense form would take more than
    /// this many times the words of the sparse one.
    const DENSE_FACTOR: usize;

    fn to_u128(self) -> u128;
    fn from_u128(v: u128) -> Self;
    /// The top `bits` bits (`1..=16`).
    fn top(self, bits: u32) -> usize;
    /// `self << bits` (`bits < BITS`).
    fn shl(self, bits: u32) -> Self;
    /// The top 32 bits: what narrow leaf keys are compared with.
    fn top32(self) -> u32;
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

/// Where [`Trie::walk`] stopped: a leaf or answer slot, the key's remaining bits at the top of
/// `rest`, the slot's region depth in bits, and the internal nodes passed.
struct Walk<K> {
    slot: u32,
    rest: K,
    depth: u32,
    levels: u32,
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
    // Most IPv4 lookups end at the root: save the memory.
    const DENSE_FACTOR: usize = 1;

    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    #[inline(always)]
    fn top(self, bits: u32) -> usize {
        (self >> (32 - bits)) as usize
    }
    #[inline(always)]
    fn shl(self, bits: u32) -> Self {
        self << bits
    }
    #[inline(always)]
    fn top32(self) -> u32 {
        self
    }
}

// === impl Key for u128 ===

impl Key for u128 {
    const BITS: u32 = 128;
    // Every real IPv6 lookup passes a node below the root: skipping the sparse step there
    // took about a quarter off the shipped database's IPv6 lookups for ~2 MB.
    const DENSE_FACTOR: usize = 16;

    fn to_u128(self) -> u128 {
        self
    }
    fn from_u128(v: u128) -> Self {
        v
    }
    #[inline(always)]
    fn top(self, bits: u32) -> usize {
        (self >> (128 - bits)) as usize
    }
    #[inline(always)]
    fn shl(self, bits: u32) -> Self {
        self << bits
    }
    #[inline(always)]
    fn top32(self) -> u32 {
        (self >> 96) as u32
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
        // Reserved generously up front: pages never written cost no memory, while growing by
        // doubling would briefly hold two copies of a multi-megabyte arena. Leaves take about
        // two words per range and nodes at most two per range per level.
        let reserve = starts.len().saturating_mul(8).saturating_add(1 << 16);
        let arena = Vec::with_capacity(reserve);
        let mut b = Builder::<K> { starts, answers, arena, nodes: 0, _key: std::marker::PhantomData };
        let mut root = Vec::with_capacity(1 << ROOT_BITS);
        let span = 1u128 << (K::BITS - ROOT_BITS);
        let mut lo = 0usize;
        for i in 0..(1u128 << ROOT_BITS) {
            let base = i * span;
            root.push(b.region(base, base + (span - 1), ROOT_BITS, &mut lo)?);
        }
        // Leaf searches index a fixed LEAF_MAX window; keep the last one inside the arena.
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
        self.descend(self.root[key.top(ROOT_BITS)], key.shl(ROOT_BITS))
    }

    /// Continues a lookup at a node slot, `rest` holding the key's bits below `slot`'s region
    /// at the top.
    #[inline(always)]
    fn descend(&self, mut slot: u32, mut rest: K) -> u32 {
        while is_node(slot) {
            let stride = node_stride(slot);
            slot = self.child(slot, stride, rest.top(stride));
            rest = rest.shl(stride);
        }
        if slot >> TAG_SHIFT == TAG_LEAF {
            return self.leaf_answer(slot, self.leaf_position(slot, rest));
        }
        slot
    }

    /// Like [`lookup`](Self::lookup), also giving the stored range around `key`.
    pub(crate) fn find(&self, key: K) -> Found<K> {
        let k = key.to_u128();
        let region = |depth: u32| {
            let span_bits = K::BITS - depth;
            let base = (k >> span_bits) << span_bits;
            (base, base + ((1u128 << span_bits) - 1))
        };
        let Walk { slot, rest, depth, .. } = self.walk(key);
        let (base, region_last) = region(depth);
        if slot >> TAG_SHIFT != TAG_LEAF {
            return Found { answer: slot, first: K::from_u128(base), last: K::from_u128(region_last) };
        }
        let (_, len) = leaf_parts(slot);
        let j = self.leaf_position(slot, rest);
        let rel = |j: usize| self.leaf_offset(slot, depth, j);
        let first = base + rel(j);
        let last = if j + 1 < len { base + rel(j + 1) - 1 } else { region_last };
        Found { answer: self.leaf_answer(slot, j), first: K::from_u128(first), last: K::from_u128(last) }
    }

    /// The offset in its region (`depth` bits deep) of key `j` of the leaf `slot`: leaf keys
    /// are the top bits of that offset, left-aligned.
    fn leaf_offset(&self, slot: u32, depth: u32, j: usize) -> u128 {
        let (off, _) = leaf_parts(slot);
        let top = if slot & WIDE_BIT != 0 {
            self.wide_key(off, j)
        } else if slot & COMPACT_BIT != 0 {
            u128::from(self.arena[off + j] >> 8) << 104
        } else {
            u128::from(self.arena[off + j]) << 96
        };
        top >> (128 - K::BITS + depth)
    }

    /// Slot of child `i` of the node `slot` (of `stride` bits).
    #[inline(always)]
    fn child(&self, slot: u32, stride: u32, i: usize) -> u32 {
        let at = (slot & NODE_INDEX) as usize;
        if slot >> TAG_SHIFT == TAG_NODE {
            return self.arena[at + i];
        }
        // Sparse: per 64 children a run map (a bit where a child differs from its left
        // neighbour) and the runs before the block, then the distinct children.
        let block = at + SPARSE_BLOCK * (i >> 6);
        let blocks = (1usize << stride).div_ceil(64);
        let runs = u64::from(self.arena[block]) | (u64::from(self.arena[block + 1]) << 32);
        let before = self.arena[block + 2];
        // Set bits up to and including bit `i % 64`; bit 0 of a node is always set.
        let upto = (runs << (63 - (i & 63))).count_ones();
        self.arena[at + SPARSE_BLOCK * blocks + (before + upto) as usize - 1]
    }

    /// Position (0-based) of the last key in the leaf `slot` that is <= a key whose bits
    /// below the leaf's region are at the top of `rest`.
    #[inline(always)]
    fn leaf_position(&self, slot: u32, rest: K) -> usize {
        if slot & WIDE_BIT != 0 {
            return self.wide_position(slot, rest);
        }
        let (off, len) = leaf_parts(slot);
        self.search(off, len, narrow_threshold(slot, rest.top32()))
    }

    /// The answer at position `j` of the leaf `slot`.
    #[inline(always)]
    fn leaf_answer(&self, slot: u32, j: usize) -> u32 {
        let (off, len) = leaf_parts(slot);
        if slot & WIDE_BIT != 0 {
            return self.arena[off + 4 * len + j];
        }
        // A compact leaf's words are key and answer at once, so the answer comes from a word
        // the search has just read instead of one more cache line: the selects keep the
        // compact and narrow layouts on one branch-free path.
        let compact = slot & COMPACT_BIT != 0;
        let word = self.arena[off + j + if compact { 0 } else { len }];
        word & if compact { COMPACT_ANSWERS - 1 } else { u32::MAX }
    }

    /// The answer in a narrow or compact leaf for the 32 key bits below its region.
    #[inline(always)]
    fn narrow_answer(&self, slot: u32, probe: u32) -> u32 {
        let (off, len) = leaf_parts(slot);
        self.leaf_answer(slot, self.search(off, len, narrow_threshold(slot, probe)))
    }

    /// Position of the last of the `len` words at `off` that is <= `threshold` (word 0 always
    /// is: it holds key 0).
    #[inline(always)]
    fn search(&self, off: usize, len: usize, threshold: u32) -> usize {
        let keys = &self.arena[off..off + LEAF_MAX];
        // Binary search in a fixed log2(LEAF_MAX) steps that compile to conditional moves:
        // no data-dependent branch to mispredict, a third of the instructions of a vector
        // scan of the window, and only the keys' lines are read.
        let mut pos = 0usize;
        let mut step = LEAF_MAX / 2;
        while step > 0 {
            let c = pos + step;
            if c < len && keys[c] <= threshold {
                pos = c;
            }
            step /= 2;
        }
        pos
    }

    /// Levels below the root a lookup of `key` visits, and whether it ends in a leaf (for
    /// the bench's diagnostics).
    pub(crate) fn depth_of(&self, key: K) -> (u32, bool) {
        let walk = self.walk(key);
        (walk.levels, walk.slot >> TAG_SHIFT == TAG_LEAF)
    }

    /// The internal nodes' part of a lookup, keeping what [`find`](Self::find) and
    /// [`depth_of`](Self::depth_of) need besides the final slot (the hot path, `descend`,
    /// keeps only the slot).
    fn walk(&self, key: K) -> Walk<K> {
        let mut w = Walk { slot: self.root[key.top(ROOT_BITS)], rest: key.shl(ROOT_BITS), depth: ROOT_BITS, levels: 0 };
        while is_node(w.slot) {
            let stride = node_stride(w.slot);
            w.slot = self.child(w.slot, stride, w.rest.top(stride));
            w.rest = w.rest.shl(stride);
            w.depth += stride;
            w.levels += 1;
        }
        w
    }

    /// [`leaf_position`](Self::leaf_position) for a leaf of 128-bit keys: the same
    /// fixed-step binary search as a narrow leaf (one such leaf holds up to 512 bytes of
    /// keys; a scan would read them all).
    #[cold]
    fn wide_position(&self, slot: u32, rest: K) -> usize {
        let (off, len) = leaf_parts(slot);
        let probe = rest.to_u128() << (128 - K::BITS);
        let mut pos = 0usize;
        let mut step = LEAF_MAX / 2;
        while step > 0 {
            let c = pos + step;
            if c < len && self.wide_key(off, c) <= probe {
                pos = c;
            }
            step /= 2;
        }
        pos
    }

    #[inline(always)]
    fn wide_key(&self, off: usize, j: usize) -> u128 {
        let word = |k: usize| u128::from(self.arena[off + 4 * j + k]);
        (word(0) << 96) | (word(1) << 64) | (word(2) << 32) | word(3)
    }

    /// Heap bytes owned by this trie.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.root.len() + self.arena.len()) * 4
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes
    }

    /// Dense and sparse nodes right below the root (for tests of the structure's shape).
    #[cfg(test)]
    pub(crate) fn top_node_kinds(&self) -> (usize, usize) {
        let nodes = self.root.iter().filter(|&&s| is_node(s));
        let sparse = nodes.clone().filter(|&&s| s >> TAG_SHIFT == TAG_SPARSE).count();
        (nodes.count() - sparse, sparse)
    }
}

impl Trie<u128> {
    /// [`lookup`](Trie::lookup) for IPv6, walking the upper 64 bits as a `u64` (where every
    /// real allocation lies) and switching to `u128` arithmetic only below that. The rare
    /// cases (a node below bit 64, a sparse node, a wide leaf) are out of line, which keeps
    /// the loop small and its values in registers.
    #[inline]
    pub(crate) fn lookup_v6(&self, key: u128) -> u32 {
        let mut slot = self.root[key.top(ROOT_BITS)];
        let mut hi = ((key >> 64) as u64) << ROOT_BITS;
        let mut depth = ROOT_BITS;
        while is_node(slot) {
            let stride = node_stride(slot);
            if depth + stride > 64 {
                return self.deep_v6(slot, key, depth);
            }
            let i = (hi >> (64 - stride)) as usize;
            slot = if slot >> TAG_SHIFT == TAG_NODE {
                self.arena[(slot & NODE_INDEX) as usize + i]
            } else {
                self.sparse_child(slot, stride, i)
            };
            hi <<= stride;
            depth += stride;
        }
        if slot >> TAG_SHIFT == TAG_LEAF {
            if slot & WIDE_BIT != 0 {
                return self.wide_v6(slot, key, depth);
            }
            // The 32 key bits below the leaf's region: the rest of `hi`, then the top of the
            // low half (depth is 16..=64 here, so both shifts are in range).
            let probe = ((hi | ((key as u64) >> (64 - depth))) >> 32) as u32;
            return self.narrow_answer(slot, probe);
        }
        slot
    }

    /// The rest of a lookup from a node that reaches below bit 64.
    #[cold]
    #[inline(never)]
    fn deep_v6(&self, slot: u32, key: u128, depth: u32) -> u32 {
        self.descend(slot, key << depth)
    }

    #[cold]
    #[inline(never)]
    fn wide_v6(&self, slot: u32, key: u128, depth: u32) -> u32 {
        self.leaf_answer(slot, self.wide_position(slot, key << depth))
    }

    /// Few IPv6 nodes are sparse (see `Key::DENSE_FACTOR`).
    #[inline(never)]
    fn sparse_child(&self, slot: u32, stride: u32, i: usize) -> u32 {
        self.child(slot, stride, i)
    }
}

#[inline(always)]
fn is_node(slot: u32) -> bool {
    (slot >> TAG_SHIFT) & 1 == 1
}

/// What the words of a narrow or compact leaf are compared with, for the 32 key bits below
/// the leaf's region: a compact word holds a 24-bit key above an 8-bit answer, so every word
/// whose key is at most the probe's top 24 bits is at most `probe | 0xff`.
#[inline(always)]
fn narrow_threshold(slot: u32, probe: u32) -> u32 {
    probe | if slot & COMPACT_BIT != 0 { COMPACT_ANSWERS - 1 } else { 0 }
}

#[inline(always)]
fn node_stride(slot: u32) -> u32 {
    ((slot >> STRIDE_SHIFT) & 0xf) + 1
}

#[inline(always)]
fn leaf_parts(slot: u32) -> (usize, usize) {
    let payload = slot & PAYLOAD & !WIDE_BIT & !COMPACT_BIT;
    (((payload >> LEN_BITS) as usize) << LEAF_ALIGN, (payload & ((1 << LEN_BITS) - 1)) as usize + 1)
}

struct Builder<'a, K: Key> {
    starts: &'a [K],
    answers: &'a [u32],
    arena: Vec<u32>,
    nodes: usize,
    _key: std::marker::PhantomData<K>,
}

/// How many of the sorted `starts` are `<= end`: a galloping search from the front, so
/// the cost grows with the answer, not with the slice. Most regions a build visits hold no
/// start at all (the empty children of wide nodes), and each is then answered by one
/// comparison instead of a binary search over every start that follows it.
fn count_up_to<K: Key>(starts: &[K], end: u128) -> usize {
    let mut high = 1;
    while high <= starts.len() && starts[high - 1].to_u128() <= end {
        high *= 2;
    }
    // starts[..high / 2] are all <= end; the first one > end is before `high`.
    let low = high / 2;
    let high = high.min(starts.len());
    low + starts[low..high].partition_point(|s| s.to_u128() <= end)
}

impl<K: Key> Builder<'_, K> {
    /// Builds the slot for the region `base..=end` at `depth`. `lo` is the index of the range
    /// holding `base`; regions are visited in ascending order so it only moves forward.
    fn region(&mut self, base: u128, end: u128, depth: u32, lo: &mut usize) -> Result<u32, TrieError> {
        crate::pace::tick();
        while *lo + 1 < self.starts.len() && self.starts[*lo + 1].to_u128() <= base {
            *lo += 1;
        }
        let first = *lo;
        // Ranges starting inside the region after `base`.
        let rest = &self.starts[first + 1..];
        let inside = count_up_to(rest, end);
        if inside == 0 {
            return Ok((TAG_ANSWER << TAG_SHIFT) | self.answers[first]);
        }
        let count = inside + 1;
        if count <= LEAF_MAX {
            return self.leaf(base, depth, first, &rest[..inside]);
        }
        // Too many ranges for a leaf: split the region into 2^stride children.
        let stride = self.stride(base, depth, &rest[..inside]);
        let child_depth = depth + stride;
        let span = 1u128 << (K::BITS - child_depth);
        let mut slots = Vec::with_capacity(1 << stride);
        for c in 0..(1u128 << stride) {
            let child_base = base + c * span;
            slots.push(self.region(child_base, child_base + (span - 1), child_depth, lo)?);
        }
        self.node(&slots, stride, depth == ROOT_BITS)
    }

    /// The stride of a node over `inside` (the starts after the region's first range): the
    /// smallest that leaves every child few enough ranges for a leaf, within a memory budget
    /// of SLOTS_PER_RANGE slots per range; if none does, the largest the budget allows.
    /// Addresses cluster (a /32 split into /48s next to a lone /29), so a stride sized by
    /// the count alone would leave the clusters for further levels.
    fn stride(&self, base: u128, depth: u32, inside: &[K]) -> u32 {
        let count = inside.len() + 1;
        let budget = (count * SLOTS_PER_RANGE).next_power_of_two().trailing_zeros();
        let max = budget.clamp(MIN_STRIDE, MAX_STRIDE).min(K::BITS - depth);
        let align = 128 - K::BITS + depth;
        // No stride below log2(count / LEAF_MAX) can leave every child small enough.
        let least = (count / LEAF_MAX).next_power_of_two().trailing_zeros().clamp(MIN_STRIDE, max);
        for stride in least..max {
            // Starts per child: the child of each start is the top `stride` bits of its offset.
            let mut run = 1; // the range running into the first child
            let mut child = 0u128;
            for s in inside {
                let c = ((s.to_u128() - base) << align) >> (128 - stride);
                if c != child {
                    child = c;
                    run = 1; // the range running in from the left
                }
                run += 1;
                if run > LEAF_MAX {
                    // A child too large for a leaf: this stride fails, whatever follows.
                    break;
                }
            }
            if run <= LEAF_MAX {
                return stride;
            }
        }
        max
    }

    fn leaf(&mut self, base: u128, depth: u32, first: usize, later: &[K]) -> Result<u32, TrieError> {
        // A leaf key is the offset of a start in the region, left-aligned in 128 bits, kept
        // in the first of these forms that loses nothing:
        // - compact: the top 24 bits, in one word with the answer (if every answer of the
        //   leaf is below COMPACT_ANSWERS): no separate answer to fetch;
        // - narrow: the top 32 bits, answers in the words after the keys;
        // - wide: all 128 bits, so any region of few enough ranges is one leaf, however fine
        //   its starts (a /64 holding a few /127s is not split level after level down to them).
        let align = 128 - K::BITS + depth;
        let aligned = |s: &K| (s.to_u128() - base) << align;
        let count = later.len() + 1;
        let answers = &self.answers[first..first + count];
        let compact = answers.iter().all(|&a| a < COMPACT_ANSWERS) && later.iter().all(|s| aligned(s) << 24 == 0);
        let narrow = later.iter().all(|s| aligned(s) << 32 == 0);
        let (kind, words): (u32, Vec<u32>) = if compact {
            let keys = std::iter::once(0).chain(later.iter().map(|s| ((aligned(s) >> 104) as u32) << 8));
            (COMPACT_BIT, keys.zip(answers).map(|(k, &a)| k | a).collect())
        } else if narrow {
            let keys = std::iter::once(0).chain(later.iter().map(|s| (aligned(s) >> 96) as u32));
            (0, keys.chain(answers.iter().copied()).collect())
        } else {
            // Four words per key, high word first, then the answers.
            let keys = std::iter::once(0).chain(later.iter().map(aligned));
            let key_words = keys.flat_map(|a| [(a >> 96) as u32, (a >> 64) as u32, (a >> 32) as u32, a as u32]);
            (WIDE_BIT, key_words.chain(answers.iter().copied()).collect())
        };
        let off = self.arena.len().next_multiple_of(1 << LEAF_ALIGN);
        if off > MAX_LEAF_OFFSET {
            return Err(TrieError::TooLarge);
        }
        self.arena.resize(off, 0);
        self.arena.extend_from_slice(&words);
        Ok((TAG_LEAF << TAG_SHIFT) | kind | (((off >> LEAF_ALIGN) as u32) << LEN_BITS) | (count as u32 - 1))
    }

    fn node(&mut self, slots: &[u32], stride: u32, top: bool) -> Result<u32, TrieError> {
        let at = self.arena.len();
        self.nodes += 1;
        // Right below the root, a node is sparse when that saves more than the family's
        // DENSE_FACTOR: the compressed form costs a dependent load and a popcount per lookup.
        let runs = 1 + slots.windows(2).filter(|w| w[0] != w[1]).count();
        let sparse_words = SPARSE_BLOCK * slots.len().div_ceil(64) + runs;
        let tag = if top && slots.len() > K::DENSE_FACTOR * sparse_words {
            // A child starts a run where it differs from its left neighbour (the node's first
            // child always does).
            let starts_run = |c: usize| c == 0 || slots[c - 1] != slots[c];
            let mut before = 0u32;
            for block in (0..slots.len()).step_by(64) {
                let runs =
                    (0..64.min(slots.len() - block)).filter(|&c| starts_run(block + c)).fold(0u64, |m, c| m | (1 << c));
                self.arena.push(runs as u32);
                self.arena.push((runs >> 32) as u32);
                self.arena.push(before);
                before += runs.count_ones();
            }
            let mut prev = None;
            for slot in slots {
                if prev != Some(*slot) {
                    self.arena.push(*slot);
                }
                prev = Some(*slot);
            }
            TAG_SPARSE
        } else {
            self.arena.extend_from_slice(slots);
            TAG_NODE
        };
        if self.arena.len() > NODE_INDEX as usize {
            return Err(TrieError::TooLarge);
        }
        Ok((tag << TAG_SHIFT) | ((stride - 1) << STRIDE_SHIFT) | at as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_starts_up_to_an_end_agrees_with_a_binary_search() {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for len in 0..70usize {
            let mut starts: Vec<u32> = (0..len).map(|_| next() % 1000).collect();
            starts.sort_unstable();
            for end in [0u128, 1, 250, 499, 500, 999, 1000, u128::from(u32::MAX)] {
                let want = starts.partition_point(|s| u128::from(*s) <= end);
                assert_eq!(count_up_to(&starts, end), want, "len {len}, end {end}, {starts:?}");
            }
        }
    }
}
