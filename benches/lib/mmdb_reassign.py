#!/usr/bin/env python3
"""Copy a MaxMind DB with a fraction of its networks pointed at another record.

usage: mmdb_reassign.py IN OUT FRACTION [SEED]

Every search-tree record that points into the data section (a network with data) is, with
probability FRACTION, re-pointed at another record already in the file, chosen at random
(seeded: the same arguments give the same bytes). The copy has the same size, tree shape and
data section; only those networks answer differently, scattered over the whole address
space as a database update's changes are. FRACTION 0 flips the lowest bit of the metadata's
build_epoch instead: the same networks and records, different bytes.

Used by benches/reload_soak.sh to give every reload a real change to compile. Standard
library only; reads the file's record size and node count from its metadata.
"""
import random
import sys

MARKER = b"\xab\xcd\xefMaxMind.com"


def metadata_uint(data, start, key):
    """The unsigned integer metadata field `key` (types 5, 6, 9 and 10: uint16/32/64/128)."""
    at = data.index(key.encode(), start) + len(key)
    ctrl = data[at]
    kind, size = ctrl >> 5, ctrl & 0x1F
    at += 1
    if kind == 0:  # extended type: the next byte holds type - 7
        kind = 7 + data[at]
        at += 1
    if kind not in (5, 6, 9, 10) or size > 16:
        raise SystemExit(f"metadata {key}: unexpected type {kind}")
    return int.from_bytes(data[at:at + size], "big"), at, size


def main():
    src, dst, fraction = sys.argv[1], sys.argv[2], float(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 42
    data = bytearray(open(src, "rb").read())
    meta = data.rindex(MARKER) + len(MARKER)
    if fraction == 0:
        _, at, size = metadata_uint(data, meta, "build_epoch")
        data[at + size - 1] ^= 1
        open(dst, "wb").write(data)
        print(f"{dst}: build_epoch changed, 0 networks")
        return
    nodes, _, _ = metadata_uint(data, meta, "node_count")
    bits, _, _ = metadata_uint(data, meta, "record_size")
    width = bits * 2 // 8

    def get(n, right):
        b = data[n * width:(n + 1) * width]
        if bits == 24:
            return int.from_bytes(b[3:6] if right else b[0:3], "big")
        if bits == 32:
            return int.from_bytes(b[4:8] if right else b[0:4], "big")
        if right:  # 28: the middle byte's low nibble is the right record's top
            return ((b[3] & 0x0F) << 24) | int.from_bytes(b[4:7], "big")
        return ((b[3] & 0xF0) << 20) | int.from_bytes(b[0:3], "big")

    def put(n, right, v):
        o = n * width
        if bits == 24:
            data[o + (3 if right else 0):o + (6 if right else 3)] = v.to_bytes(3, "big")
        elif bits == 32:
            data[o + (4 if right else 0):o + (8 if right else 4)] = v.to_bytes(4, "big")
        elif right:
            data[o + 3] = (data[o + 3] & 0xF0) | (v >> 24)
            data[o + 4:o + 7] = (v & 0xFFFFFF).to_bytes(3, "big")
        else:
            data[o + 3] = (data[o + 3] & 0x0F) | ((v >> 20) & 0xF0)
            data[o:o + 3] = (v & 0xFFFFFF).to_bytes(3, "big")

    leaves = [(n, r) for n in range(nodes) for r in (0, 1) if get(n, r) > nodes]
    targets = sorted({get(n, r) for n, r in leaves})
    if len(targets) < 2:
        raise SystemExit("fewer than two records: nothing to reassign to")
    rng = random.Random(seed)
    changed = 0
    for n, r in leaves:
        if rng.random() < fraction:
            old = get(n, r)
            new = old
            while new == old:
                new = rng.choice(targets)
            put(n, r, new)
            changed += 1
    open(dst, "wb").write(data)
    print(f"{dst}: {changed} of {len(leaves)} networks re-pointed")


if __name__ == "__main__":
    main()
