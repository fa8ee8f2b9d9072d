//! The search tree of a MaxMind DB, read directly: one depth-first pass, left before right,
//! that reports every terminal of the tree (a data pointer or "no data") and every alias of
//! the IPv4 subtree, in ascending address order.
//!
//! `maxminddb`'s `Within` iterator walks the same tree, but builds a lookup result and a
//! checked `IpNetwork` for each network, and then the caller converts that once more; on the
//! shipped database that was over a third of a compile (profile of 2026-12-06). Here a node
//! costs two loads and a push. Records are still decoded by `maxminddb` ([`super::walk`]
//! looks up one address per distinct record), so the data section is read by one reader only.
//!
//! # Layout (MaxMind DB format 2.0)
//! The tree is the file's first `node_count * record_size / 4` bytes: node `n` holds two
//! records of `record_size` bits (24, 28 or 32), the left (bit 0) then the right (bit 1). A
//! record below `node_count` is the next node, equal to it means "no data", above it is a data
//! pointer. An IPv6 database keeps IPv4 at `::/96`: the node 96 left turns down from the root
//! is the IPv4 root.
//!
//! # Aliases
//! MaxMind writers point `::ffff:0:0/96`, `2002::/16` and `2001::/32` at the IPv4 root. A record
//! that is the IPv4 root anywhere but `::/96`, at depth `d <= 96`, is reported as an alias:
//! a lookup there continues through the IPv4 subtree with the 32 address bits after `d`, so it
//! answers exactly what the IPv4 lookup of those bits answers. Identity of the node is the
//! whole test; nothing is guessed from the addresses. Deeper than 96 the IPv4 subtree would
//! run out of address bits, so such a record is walked like any other (and is refused if a
//! node is still left when the bits are).
//!
//! `::/96` itself is the IPv4 subtree seen from IPv6 (`::a.b.c.d` walks the same nodes as
//! `a.b.c.d`): it is walked once, its terminals reported as they are, and then the block is
//! reported as an alias too, after every IPv4 network and before anything above `::/96`. A
//! reader of the walk keeps the IPv4 networks once and answers `::a.b.c.d` from them.
//!
//! # Hostile files
//! Every record read is inside the tree (its size is checked against the file first); the walk
//! never goes deeper than the address has bits; and it stops with an error once it has met more
//! terminals than `budget`, so a tree whose nodes are shared cannot make it run for ever.

/// Marks the end of the IPv4 subtree on the walk's stack (no record is this big).
const IPV4_DONE: usize = usize::MAX;

/// What a terminal of the tree says about its network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Terminal {
    /// A data pointer: the record's offset in the data section is `pointer - node_count - 16`.
    Data(usize),
    /// The record equal to `node_count`: the database has nothing for this network.
    Empty,
    /// The IPv4 root, reached outside `::/96` at depth 96 or less; or `::/96` itself, once
    /// the IPv4 subtree below it has been walked.
    Alias,
}

/// One database's search tree.
pub(super) struct Tree<'a> {
    tree: &'a [u8],
    node_count: usize,
    record_size: u16,
    /// 32 for an IPv4 database, 128 for an IPv6 one.
    bits: u8,
    /// The IPv4 root of an IPv6 database, when it is a node (not a terminal above `::/96`).
    ipv4_root: Option<usize>,
}

impl<'a> Tree<'a> {
    /// The tree at the start of `bytes`, described by the metadata's fields.
    pub(super) fn new(bytes: &'a [u8], node_count: u32, record_size: u16, ip_version: u16) -> Result<Self, String> {
        if !matches!(record_size, 24 | 28 | 32) {
            return Err(format!("record size {record_size} is not 24, 28 or 32"));
        }
        let bits = match ip_version {
            4 => 32,
            6 => 128,
            v => return Err(format!("IP version {v} is not 4 or 6")),
        };
        let node_count = node_count as usize;
        let size = node_count.checked_mul(usize::from(record_size) / 4).filter(|&s| s <= bytes.len());
        let Some(size) = size else {
            return Err(format!("{node_count} nodes of {record_size}-bit records do not fit in the file"));
        };
        let mut tree = Self { tree: &bytes[..size], node_count, record_size, bits, ipv4_root: None };
        if bits == 128 {
            let mut node = 0;
            for _ in 0..96 {
                if node >= node_count {
                    break;
                }
                node = tree.read(node, 0);
            }
            tree.ipv4_root = (node < node_count).then_some(node);
        }
        Ok(tree)
    }

    /// Whether the database is IPv6 with an IPv4 subtree at `::/96`.
    pub(super) fn has_ipv4_subtree(&self) -> bool {
        self.ipv4_root.is_some()
    }

    /// Record `side` (0 left, 1 right) of `node`; `node < node_count`, so it is inside the tree.
    #[inline(always)]
    fn read(&self, node: usize, side: usize) -> usize {
        let width = usize::from(self.record_size) / 4;
        let b = &self.tree[node * width..node * width + width];
        let be = |s: &[u8]| s.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        match (self.record_size, side) {
            (24, 0) => be(&b[0..3]),
            (24, _) => be(&b[3..6]),
            (28, 0) => (usize::from(b[3] & 0xf0) << 20) | be(&b[0..3]),
            (28, _) => (usize::from(b[3] & 0x0f) << 24) | be(&b[4..7]),
            (_, 0) => be(&b[0..4]),
            (_, _) => be(&b[4..8]),
        }
    }

    /// Walks the whole tree, calling `visit(first, prefix_len, terminal)` for every terminal
    /// in ascending address order. `first` is the network's first address in the tree's own
    /// terms: a `u32` widened for an IPv4 database, the IPv6 address for an IPv6 one.
    pub(super) fn walk<E>(
        &self,
        budget: usize,
        mut visit: impl FnMut(u128, u8, Terminal) -> Result<(), E>,
    ) -> Result<(), Walk<E>> {
        let top = u32::from(self.bits);
        // (node, first address, depth): at most one pending right sibling per level.
        let mut stack: Vec<(usize, u128, u32)> = Vec::with_capacity(usize::from(self.bits) + 1);
        stack.push((0, 0, 0));
        let mut met = 0usize;
        while let Some((node, first, depth)) = stack.pop() {
            crate::pace::tick();
            if node == IPV4_DONE {
                // `::/96` is the IPv4 subtree itself, walked just now: the block aliases it.
                visit(0, 96, Terminal::Alias).map_err(Walk::Visit)?;
                continue;
            }
            if first == 0 && depth == 96 && Some(node) == self.ipv4_root {
                // Reported once the IPv4 networks have all been met (see the module docs).
                stack.push((IPV4_DONE, 0, 96));
            }
            let terminal = if node > self.node_count {
                Some(Terminal::Data(node))
            } else if node == self.node_count {
                Some(Terminal::Empty)
            } else if Some(node) == self.ipv4_root && depth <= 96 && first > u128::from(u32::MAX) {
                Some(Terminal::Alias)
            } else {
                None
            };
            if let Some(terminal) = terminal {
                met += 1;
                if met > budget {
                    return Err(Walk::Corrupt(format!(
                        "the search tree has more than {budget} networks for {} nodes (shared or cyclic subtrees)",
                        self.node_count
                    )));
                }
                // depth <= top <= 128 here
                visit(first, depth as u8, terminal).map_err(Walk::Visit)?;
                continue;
            }
            if depth >= top {
                return Err(Walk::Corrupt(format!(
                    "the search tree goes deeper than {top} bits (a cycle or a node where an address ends)"
                )));
            }
            let right = self.read(node, 1);
            let left = self.read(node, 0);
            stack.push((right, first | (1u128 << (top - 1 - depth)), depth + 1));
            stack.push((left, first, depth + 1));
        }
        Ok(())
    }
}

/// Why a walk stopped.
#[derive(Debug)]
pub(super) enum Walk<E> {
    /// The tree is malformed (the reason).
    Corrupt(String),
    /// The visitor's own error.
    Visit(E),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of `records` (pairs per node) in `size`-bit records, as a writer lays it out.
    fn layout(size: u16, records: &[(usize, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(l, r) in records {
            match size {
                24 => {
                    out.extend_from_slice(&(l as u32).to_be_bytes()[1..]);
                    out.extend_from_slice(&(r as u32).to_be_bytes()[1..]);
                }
                28 => {
                    out.extend_from_slice(&(l as u32).to_be_bytes()[1..]);
                    out.push((((l >> 24) as u8 & 0x0f) << 4) | ((r >> 24) as u8 & 0x0f));
                    out.extend_from_slice(&(r as u32).to_be_bytes()[1..]);
                }
                _ => {
                    out.extend_from_slice(&(l as u32).to_be_bytes());
                    out.extend_from_slice(&(r as u32).to_be_bytes());
                }
            }
        }
        out
    }

    fn terminals(tree: &Tree<'_>, budget: usize) -> Result<Vec<(u128, u8, Terminal)>, String> {
        let mut out = Vec::new();
        tree.walk(budget, |f, l, t| {
            out.push((f, l, t));
            Ok::<(), ()>(())
        })
        .map_err(|e| match e {
            Walk::Corrupt(r) => r,
            Walk::Visit(()) => unreachable!(),
        })?;
        Ok(out)
    }

    #[test]
    fn every_record_size_reads_the_same_tree_in_address_order() {
        // IPv4 database, 3 nodes: 0.0.0.0/1 -> node 1, 128.0.0.0/1 -> no data;
        // node 1: 0/2 -> data, 64/2 -> node 2; node 2: 64/3 -> data (big pointer), 96/3 -> data.
        let big = (1usize << 27) + 5;
        for size in [24u16, 28, 32] {
            let ptr_big = if size == 24 { 3 + 16 + 7 } else { big };
            let bytes = layout(size, &[(1, 3), (3 + 16, 2), (ptr_big, 3 + 17)]);
            let tree = Tree::new(&bytes, 3, size, 4).unwrap();
            assert!(!tree.has_ipv4_subtree());
            let got = terminals(&tree, 100).unwrap();
            assert_eq!(
                got,
                vec![
                    (0, 2, Terminal::Data(3 + 16)),
                    (64 << 24, 3, Terminal::Data(ptr_big)),
                    (96 << 24, 3, Terminal::Data(3 + 17)),
                    (128 << 24, 1, Terminal::Empty),
                ],
                "record size {size}"
            );
        }
    }

    #[test]
    fn the_ipv4_root_elsewhere_is_an_alias_but_not_below_96_bits() {
        // IPv6: nodes 0..=95 go left to 96 (the IPv4 root); node 96: 0.0.0.0/1 -> data,
        // 128.0.0.0/1 -> no data. Node 0's right (8000::/1) points at the IPv4 root: an alias.
        let n = 97;
        let data = n + 16;
        let mut records: Vec<(usize, usize)> = (0..96).map(|i| (i + 1, n)).collect();
        records[0].1 = 96;
        records.push((data, n));
        let bytes = layout(24, &records);
        let tree = Tree::new(&bytes, n as u32, 24, 6).unwrap();
        assert!(tree.has_ipv4_subtree());
        let got = terminals(&tree, 1000).unwrap();
        assert_eq!(got.first(), Some(&(0, 97, Terminal::Data(data))));
        assert_eq!(got.get(1), Some(&(1 << 31, 97, Terminal::Empty)));
        assert_eq!(got.last(), Some(&(1 << 127, 1, Terminal::Alias)));
        // `::/96` is reported as an alias too, right after the IPv4 subtree's terminals.
        assert_eq!(got.get(2), Some(&(0, 96, Terminal::Alias)));
        assert_eq!(got.iter().filter(|t| t.2 == Terminal::Alias).count(), 2);
        // Same node 96 reached at depth > 96 outside ::/96 would run out of bits: walked, refused.
        let mut deep = records.clone();
        deep[95].1 = 96; // ::1:0:0/96 -> the IPv4 root at depth 96 ... still an alias (depth 96)
        let bytes = layout(24, &deep);
        let tree = Tree::new(&bytes, n as u32, 24, 6).unwrap();
        let got = terminals(&tree, 1000).unwrap();
        assert!(got.contains(&(1 << 32, 96, Terminal::Alias)));
        let mut deeper = records;
        deeper[96].1 = 96; // 128.0.0.0/1 inside the IPv4 subtree points back at its root
        let bytes = layout(24, &deeper);
        let tree = Tree::new(&bytes, n as u32, 24, 6).unwrap();
        let err = terminals(&tree, 1000).unwrap_err();
        assert!(err.contains("deeper than 128 bits"), "{err}");
    }

    #[test]
    fn shared_subtrees_stop_at_the_budget() {
        // Every node points twice at the next: 2^32 paths through 32 nodes.
        let n = 32usize;
        let records: Vec<(usize, usize)> = (0..n).map(|i| if i + 1 < n { (i + 1, i + 1) } else { (n, n) }).collect();
        let bytes = layout(32, &records);
        let tree = Tree::new(&bytes, n as u32, 32, 4).unwrap();
        let err = terminals(&tree, (n + 1) * 8).unwrap_err();
        assert!(err.contains("shared or cyclic"), "{err}");
    }

    #[test]
    fn a_tree_larger_than_the_file_is_refused() {
        let bytes = layout(24, &[(1, 1)]);
        assert!(Tree::new(&bytes, 2, 24, 4).is_err());
        assert!(Tree::new(&bytes, 1, 20, 4).is_err());
        assert!(Tree::new(&bytes, 1, 24, 5).is_err());
        assert!(Tree::new(&bytes, 1, 24, 4).is_ok());
    }
}
