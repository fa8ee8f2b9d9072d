#!/usr/bin/env python3
"""Per-request tables from one callgrind dump, for benches/profile/request_cost.sh.

usage: callgrind_tables.py DUMP REQUESTS [--top K] [--sites K] [--width W]

Reads a callgrind output file (any of callgrind's name compression; positions and the Ir event
as callgrind writes them by default) and prints, each divided by REQUESTS:

  * the total Ir of the dump and its Ir per request;
  * the top K functions by exclusive (self) Ir, and by inclusive Ir;
  * the allocator calls: calls into jemalloc's public entry points (tikv-jemallocator is the
    global allocator; its prefix is _rjem_) and glibc's malloc family, counting only calls that
    come from outside those entry points (so a thunk such as _rjem_rallocx -> do_rallocx or an
    entry point calling another is not counted twice), plus the Rust allocator shims
    (__rust_alloc, ...) as a cross-check;
  * where the allocations come from: when the run used --separate-callersN=<entry point>,
    callgrind keeps one context per call chain (entry'caller'caller's caller'...); each chain is
    shown without its allocator plumbing frames (alloc::raw_vec, __rust_alloc, ...).

Why not callgrind_annotate's own function table: callgrind_annotate (3.19) keys its table by
"file:function" where the file is the source file of inlined code (fi=/fe= lines), so one
function shows up several times, and its inclusive column then counts calls more than once.
Here a function is one callgrind function (fn=), whatever it inlined. The script also writes
callgrind_annotate's outputs to the scratch directory, and compares its PROGRAM TOTALS with
the total read here.
"""

import argparse
import collections
import re
import sys

ALLOC_ENTRIES = {  # new blocks
    "_rjem_malloc", "_rjem_mallocx", "_rjem_calloc", "_rjem_aligned_alloc", "_rjem_posix_memalign",
    "malloc", "calloc", "aligned_alloc", "posix_memalign", "memalign",
}
REALLOC_ENTRIES = {"_rjem_realloc", "_rjem_rallocx", "realloc"}
FREE_ENTRIES = {"_rjem_sdallocx", "_rjem_free", "_rjem_dallocx", "free"}
ENTRIES = ALLOC_ENTRIES | REALLOC_ENTRIES | FREE_ENTRIES
RUST_SHIMS = ["__rust_alloc", "__rust_alloc_zeroed", "__rust_realloc", "__rust_dealloc"]

# frames that only pass an allocation on: skipped when naming where an allocation comes from
PLUMBING = re.compile(
    r"^<*(__rustc::|__rust_|__rg_|alloc::alloc::|alloc::raw_vec::|alloc::alloc::Global|tikv_jemallocator::"
    r"|core::alloc::|alloc::boxed::Box<T>::new$|alloc::boxed::Box<T,A>::new|do_rallocx$)"
)


# generic helpers (formatting, collections, closures' call shims): kept in a chain, but not counted
# among the frames that place an allocation
GENERIC = re.compile(
    r"^<*(core::fmt::|alloc::fmt::|alloc::string::String as core::fmt::Write|alloc::vec::|alloc::string::"
    r"|alloc::slice::|alloc::borrow::|alloc::boxed::|alloc::sync::|alloc::str::|core::ops::function::"
    r"|core::iter::|core::str::|&.* as core::fmt::|.* as core::fmt::(Display|Debug)>::fmt"
    r"|.* as alloc::string::ToString>|.* as core::clone::Clone>::clone|core::option::|core::result::)"
)
PLACING_FRAMES = 3


def base_name(name):
    """A function's name without callgrind's caller context (entry'caller'caller...)."""
    head, sep, _ = name.partition("'")
    return head if sep and (head in ENTRIES or head.startswith("_rjem_")) else name


def parse(path):
    names = {"ob": {}, "fl": {}, "fn": {}}
    kinds = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
             "fn": "fn", "cfn": "fn"}
    self_cost = collections.Counter()
    fn_obj = {}
    edges = collections.defaultdict(lambda: [0, 0])  # (caller, callee) -> [calls, inclusive Ir]
    summary = totals = None
    cur_ob = cur_fn = call_ob = call_fn = None
    pending_calls = None  # count from the last calls= line: the next cost line is that call's cost

    def name_of(kind, value):
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        ident, text = m.group(1), m.group(2)
        if text is not None:
            names[kind][ident] = text
            return text
        return names[kind].get(ident, f"({ident})")

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line[0] == "#":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if pending_calls is not None:
                    e = edges[(cur_fn, call_fn)]
                    e[0] += pending_calls
                    e[1] += ir
                    fn_obj.setdefault(call_fn, call_ob or cur_ob)
                    pending_calls = None
                    call_ob = None  # cob= names the object of one call target only
                else:
                    self_cost[cur_fn] += ir
                continue
            key, sep, value = line.partition("=")
            if sep and key in kinds:
                text = name_of(kinds[key], value)
                if key == "ob":
                    cur_ob = text
                elif key == "fn":
                    cur_fn = text
                    fn_obj[cur_fn] = cur_ob
                    call_ob = None
                elif key == "cob":
                    call_ob = text
                elif key == "cfn":
                    call_fn = text
                continue
            if line.startswith("calls="):
                pending_calls = int(line[6:].split()[0])
                continue
            if line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("totals:"):
                totals = int(line.split()[1])
            # jump=/jcnd= (only with --collect-jumps) and header lines carry nothing needed here
    return self_cost, edges, fn_obj, summary, totals


JEMALLOC = "jemalloc (tikv-jemalloc-sys)"
PRIMITIVES = {"u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
              "f32", "f64", "bool", "char", "str"}


def crate_of(fn, obj):
    """The crate a function belongs to: its path's first segment (the Self type's for an impl)."""
    o = short_obj(obj)
    if not o.startswith("geogate") and o != "?":
        return o  # libc.so.6, ld-linux, ...
    if fn.startswith("_rjem_") or fn in ENTRIES:
        return JEMALLOC
    m = re.match(r"[<&*\s]*(?:mut |const |dyn )?([A-Za-z_][A-Za-z0-9_]*)", fn)
    if not m:
        return "?"
    head = m.group(1)
    if head in PRIMITIVES or head in ("core", "alloc", "std"):
        return "std (core, alloc, std)"
    if "::" not in fn:  # C code linked into the binary: jemalloc's own functions, compiler-rt
        return JEMALLOC if not head.startswith("__") else "compiler-rt"
    return head


def short_obj(obj):
    return (obj or "?").rsplit("/", 1)[-1]


def clip(text, width):
    return text if len(text) <= width else text[: width - 1] + "…"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("requests", type=int)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sites", type=int, default=15)
    ap.add_argument("--width", type=int, default=110)
    args = ap.parse_args()
    n = args.requests

    self_cost, edges, fn_obj, summary, totals = parse(args.dump)
    total = summary if summary is not None else sum(self_cost.values())

    # merge caller contexts of the allocator entry points into one function each
    merged_self = collections.Counter()
    merged_obj = {}
    for fn, ir in self_cost.items():
        merged_self[base_name(fn)] += ir
    for fn, obj in fn_obj.items():
        merged_obj.setdefault(base_name(fn), obj)
    inclusive = collections.Counter(merged_self)
    for (caller, callee), (_, ir) in edges.items():
        if base_name(caller) != base_name(callee):  # a recursive call is already in the caller's cost
            inclusive[base_name(caller)] += ir

    by_crate = collections.Counter()
    for fn, ir in merged_self.items():
        by_crate[crate_of(fn, merged_obj.get(fn))] += ir
    in_jemalloc = by_crate[JEMALLOC]

    w = args.width
    print(f"total Ir in the measured window: {total:,} over {n:,} requests")
    if totals is not None and summary is not None and abs(totals - summary) > summary / 1000:
        print(f"(the dump's 'totals:' line says {totals:,}, its 'summary:' {summary:,}: more than 0.1 % apart)")
    print(f"instructions/request: {total / n:,.0f}")
    print(f"  of which in jemalloc: {in_jemalloc / n:,.0f}; outside the allocator: {(total - in_jemalloc) / n:,.0f}"
          " (jemalloc's slow paths vary most from run to run)")
    print()

    def table(title, counter):
        print(title)
        print(f"{'Ir/req':>9} {'%':>6}  function [object]")
        for fn, ir in counter.most_common(args.top):
            pct = 100.0 * ir / total if total else 0.0
            label = f"{fn} [{short_obj(merged_obj.get(fn))}]"
            print(f"{ir / n:>9,.0f} {pct:>5.1f}%  {clip(label, w)}")
        print()

    print("exclusive Ir per request by crate (a function's own instructions, including what it inlined)")
    print(f"{'Ir/req':>9} {'%':>6}  crate")
    for crate, ir in sorted(by_crate.items(), key=lambda kv: -kv[1]):
        if ir / total < 0.001:
            continue
        print(f"{ir / n:>9,.0f} {100.0 * ir / total:>5.1f}%  {crate}")
    print()

    table(f"top {args.top} functions by exclusive (self) Ir per request", merged_self)
    table(f"top {args.top} functions by inclusive Ir per request (recursive calls not counted twice)", inclusive)

    # ------------------------------------------------------------ allocator calls
    calls_into = collections.Counter()  # entry point -> calls from outside the entry points
    site_calls = collections.Counter()  # chain (without plumbing) -> calls, for new blocks + reallocs
    for (caller, callee), (count, _) in edges.items():
        b = base_name(callee)
        if b in ENTRIES and base_name(caller) not in ENTRIES and not caller.startswith("do_rallocx"):
            calls_into[b] += count
            if b in ALLOC_ENTRIES or b in REALLOC_ENTRIES:
                chain = callee.split("'")[1:] if "'" in callee else [caller]
                if chain and chain[0] != caller:  # the context's first caller is the caller itself
                    chain = [caller] + chain
                frames, placing = [], 0
                for f in chain:
                    if PLUMBING.match(f):
                        continue
                    frames.append(f)
                    if not GENERIC.match(f):
                        placing += 1
                        if placing == PLACING_FRAMES:
                            break
                frames = frames or chain[:1]
                kind = "realloc" if b in REALLOC_ENTRIES else "alloc"
                site_calls[(kind, tuple(frames))] += count
    shim_calls = collections.Counter()
    for (caller, callee), (count, _) in edges.items():
        for shim in RUST_SHIMS:
            if callee == shim or callee.endswith("::" + shim) or callee.startswith(shim + "'"):
                shim_calls[shim] += count
    allocs = sum(v for k, v in calls_into.items() if k in ALLOC_ENTRIES)
    reallocs = sum(v for k, v in calls_into.items() if k in REALLOC_ENTRIES)
    frees = sum(v for k, v in calls_into.items() if k in FREE_ENTRIES)
    print(f"allocations/request: {allocs / n:.2f} (new blocks: malloc, mallocx, calloc)"
          f"   reallocations/request: {reallocs / n:.2f}   frees/request: {frees / n:.2f}")
    print("allocator entry points, calls in the measured window (from outside the allocator):")
    called = [e for e in sorted(ENTRIES) if calls_into[e]]
    for entry in called:
        print(f"  {entry:<22} {calls_into[entry]:>10,}  {calls_into[entry] / n:>8.2f}/request")
    if not called:
        print("  (none)")
    if any(shim_calls.values()):
        print("Rust allocator shims (cross-check; they forward to the entry points above):")
        for shim in RUST_SHIMS:
            print(f"  {shim:<22} {shim_calls[shim]:>10,}  {shim_calls[shim] / n:>8.2f}/request")
    else:
        print(f"Rust allocator shims ({', '.join(RUST_SHIMS)}): never called; LTO inlined them,"
              " their callers call jemalloc directly")
    print()

    if site_calls:
        contexts = any("'" in fn for fn in self_cost)
        print(f"top {args.sites} allocation sites per request (alloc + realloc; the frames above the "
              f"allocator plumbing, up to {PLACING_FRAMES} that are not generic helpers{'' if contexts else ', only the direct caller: no --separate-callers'})")
        print(f"{'/req':>6}  kind     call chain (innermost first)")
        ranked = sorted(site_calls.items(), key=lambda kv: (-kv[1], kv[0]))  # ties: a stable order
        for (kind, frames), count in ranked[: args.sites]:
            print(f"{count / n:>6.2f}  {kind:<7}  {clip(' < '.join(frames), 2 * w)}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
