#!/usr/bin/env python3
"""Generates the request-target corpus for the path differential (deterministic; stdlib only).

usage: gen_corpus.py [--quick] > corpus.jsonl
Each line: {"id": N, "group": "protected|lookalike|subpath", "base": "/signup", "kind": "...",
"mutations": [...], "class": "...", "producers": [...], "target_hex": "..."}
  target_hex  the exact request-target bytes (hex, since some forms carry raw bytes that are not
              UTF-8)
  kind        the first (simplest) mutation that produced the target, as before
  mutations   the atomic mutation kinds that kind applied, in order: one, or two for a combination
              ("combo-upper+json" is ["case-upper", "suffix"])
  class       what those mutations do to a path, independent of where they were applied
              ("encoded control char", "dot segment", "case + format suffix"); report.py groups
              by it. See mutation_class().
  producers   every "base kind" pair that generates the same bytes (the first is base + kind):
              the same target can come out of several families or bases.

The forms come from mutation families applied to every position or segment of each base,
not from a list of known tricks: the point is to find what nobody thought to list. Bases are
the two protected resources and look-alike *different* resources (which must not be blocked).
The only ordering is the generation order, so the output is the same on every run.
"""
import argparse
import json
import sys

PROTECTED = ["/signup", "/api/v1/accounts"]
# Different resources whose names share a prefix or shape with the protected ones.
LOOKALIKES = [
    "/signups",
    "/signup-help",
    "/signupx",
    "/sign",
    "/api/v1/accountsettings",
    "/api/v1/accounts2",
    "/api/v1/account",
    "/api/v2/accounts",
    "/public",
]
# Below a protected resource: geogate's segment-prefix rule covers them by design, and each app
# routes them to the protected action too (its prefix route). Only a few families.
SUBPATHS = ["/signup/confirm", "/api/v1/accounts/42"]
QUICK_LOOKALIKES = ["/signups", "/api/v1/accountsettings", "/public"]


def pct(ch, lower=False):
    """Percent-encodes every UTF-8 byte of one character."""
    return "".join(("%%%02x" if lower else "%%%02X") % b for b in ch.encode())


def fullwidth(ch):
    # U+FF01..U+FF5E mirror ASCII 0x21..0x7E; NFKC folds them back.
    return chr(ord(ch) - 0x21 + 0xFF01) if "!" <= ch <= "~" else ch


def overlong2(ch):
    """The two-byte overlong UTF-8 form of an ASCII character, percent-encoded."""
    c = ord(ch)
    return "%%%02X%%%02X" % (0xC0 | (c >> 6), 0x80 | (c & 0x3F))


def slash_positions(p):
    return [i for i, c in enumerate(p) if c == "/"]


def letter_positions(p):
    return [i for i, c in enumerate(p) if c != "/"]


def at(p, i, repl):
    return p[:i] + repl + p[i + 1 :]


def boundaries(p):
    """Indexes just after each '/', i.e. where a segment starts (insertion points)."""
    return [i + 1 for i in slash_positions(p)] + [len(p)]


# Each family yields (kind, target as str); str chars above U+00FF are sent as UTF-8 and
# chars U+0080..U+00FF stand for single raw bytes only where the kind says raw (see encode()).


def f_identity(p):
    yield "identity", p


def f_pct1(p):
    for i in range(len(p)):
        for lower in (False, True):
            kind = "pct1-slash" if p[i] == "/" else "pct1"
            yield kind + ("-lower" if lower else "-upper"), at(p, i, pct(p[i], lower))


def f_pct_all(p):
    for lower in (False, True):
        suf = "-lower" if lower else "-upper"
        yield "pct-all" + suf, "".join(pct(c, lower) for c in p)
        yield "pct-all-but-slash" + suf, "".join(c if c == "/" else pct(c, lower) for c in p)


def f_double(p):
    for i in range(len(p)):
        yield "double-pct", at(p, i, "%25" + pct(p[i])[1:])
    yield "double-pct-all", "".join("%25" + pct(c)[1:] if c != "/" else c for c in p)
    i = letter_positions(p)[0]
    yield "triple-pct", at(p, i, "%2525" + pct(p[i])[1:])
    yield "pct-of-pct-digits", at(p, i, "%" + "".join(pct(d) for d in pct(p[i])[1:]))


def f_case(p):
    yield "case-upper", p.upper()
    yield "case-title", "/".join(s[:1].upper() + s[1:] for s in p.split("/"))
    yield "case-alternate", "".join(c.upper() if k % 2 else c for k, c in enumerate(p))
    for i in letter_positions(p):
        if p[i].isalpha():
            yield "case-one", at(p, i, p[i].upper())


def f_slashes(p):
    for i in slash_positions(p):
        yield "slash-double", at(p, i, "//")
    yield "slash-all-double", p.replace("/", "//")
    yield "slash-leading-triple", "//" + p
    yield "slash-trailing-double", p + "//"


def f_dots(p):
    segs = [
        ("dot", "./"),
        ("dotdot-x", "x/../"),
        ("dotdot-other", "public/../"),
        ("pct-dot", "%2e/"),
        ("pct-dot-upper", "%2E/"),
        ("pct-dotdot-x", "x/%2e%2e/"),
        ("half-pct-dotdot-x", "x/.%2e/"),
        ("half-pct-dotdot2-x", "x/%2e./"),
        ("double-pct-dotdot-x", "x/%252e%252e/"),
        ("overlong-dotdot-x", "x/%c0%ae%c0%ae/"),
        ("overlong-dot", "%c0%ae/"),
        ("onedotleader-dotdot-x", "x/%e2%80%a4%e2%80%a4/"),
        ("fullwidth-dotdot-x", "x/%ef%bc%8e%ef%bc%8e/"),
        ("dotdot-param-x", "x/..;/"),
        ("dotdot-pct2f-x", "x/..%2f"),
        ("dotdot-backslash-x", "x\\..\\"),
        ("dotdot-pct5c-x", "x%5c..%5c"),
    ]
    for b in boundaries(p)[:-1]:
        for kind, ins in segs:
            yield "dotseg-" + kind, p[:b] + ins + p[b:]
    # Climbing above the root, and dot segments after the resource.
    yield "dotseg-above-root", "/.." + p
    yield "dotseg-above-root-pct", "/%2e%2e" + p
    for kind, tail in [("dot", "/."), ("dotdot", "/.."), ("pct-dot", "/%2e"), ("x-dotdot", "/x/.."),
                       ("x-pct-dotdot", "/x/%2e%2e"), ("pct-dotdot", "/%2e%2e"), ("half-pct-dotdot", "/.%2e"),
                       ("dotdot-slash", "/../")]:
        yield "dotseg-tail-" + kind, p + tail
    last = p.rsplit("/", 1)[1]
    # A different resource that climbs back into the protected one, and the reverse (out of the
    # prefix: a router that keeps ".." literal sends it to the sub-path route).
    yield "dotseg-sibling-climb", p + "x/../" + last
    yield "dotseg-into-public", p + "/../public"
    yield "dotseg-into-public-pct", p + "/%2e%2e/public"


def f_params(p):
    for i in slash_positions(p)[1:] + [len(p)]:
        yield "param-jsessionid", p[:i] + ";jsessionid=1" + p[i:]
        yield "param-empty", p[:i] + ";" + p[i:]
    yield "param-pct3b", p + "%3bjsessionid=1"
    yield "param-mid-segment", p[:3] + ";x=y" + p[3:]
    yield "param-slash", p + ";/"


TRAILERS = [
    ("slash", "/"), ("dot", "."), ("dotdot", ".."), ("pct-dot", "%2e"), ("tilde", "~"),
    ("question", "?"), ("hash", "#"), ("query", "?x=1"), ("fragment", "#frag"),
    ("pct3f", "%3f"), ("pct23", "%23"), ("pct3f-x", "%3fx=1"), ("pct23-x", "%23x"),
    ("pct2f", "%2f"), ("pct2F", "%2F"), ("pct5c", "%5c"), ("backslash", "\\"), ("star", "*"),
    ("dash", "-"), ("underscore", "_"), ("plus", "+"), ("bare-pct", "%"), ("short-pct", "%2"),
    ("bad-pct", "%zz"), ("query-climb", "?/../public"), ("fragment-climb", "#/../public"),
    ("slash-dot", "/."), ("dot-slash", "./"), ("semicolon-dot", ";."), ("amp", "&"),
]


def f_trailing(p):
    for kind, t in TRAILERS:
        yield "trail-" + kind, p + t


SUFFIXES = [".json", ".xml", ".JSON", ".Json", ".html", ".json.gz", ".txt", ".php", ".js", ".csv",
            ".json/", ".json?x=1", "%2ejson", ".json;x=1", ".", "..json", ".json.", ".j"]


def f_suffix(p):
    for s in SUFFIXES:
        yield "suffix", p + s
    # A suffix on an inner segment ("/api.json/v1/accounts") is a different shape again.
    for i in slash_positions(p)[1:]:
        yield "suffix-inner", p[:i] + ".json" + p[i:]


WHITESPACE = [
    ("sp", "%20"), ("tab", "%09"), ("lf", "%0a"), ("cr", "%0d"), ("crlf", "%0d%0a"),
    ("nul", "%00"), ("vt", "%0b"), ("ff", "%0c"), ("us", "%1f"), ("del", "%7f"),
    ("latin1-nbsp", "%a0"), ("nbsp", "%c2%a0"), ("zwsp", "%e2%80%8b"), ("ideographic-sp", "%e3%80%80"),
    ("line-sep", "%e2%80%a8"), ("bom", "%ef%bb%bf"), ("plus", "+"), ("sp-upper-run", "%20%20"),
]


def f_whitespace(p):
    for name, w in WHITESPACE:
        yield "ws-trailing-" + name, p + w
        yield "ws-leading-" + name, "/" + w + p[1:]
        for i in slash_positions(p)[1:]:
            yield "ws-before-slash-" + name, p[:i] + w + p[i:]
        mid = letter_positions(p)[2]
        yield "ws-mid-word-" + name, p[:mid] + w + p[mid:]


def f_backslash(p):
    for kind, b in [("raw", "\\"), ("pct5c", "%5c"), ("pct5C", "%5C")]:
        for i in slash_positions(p):
            yield "backslash-" + kind, at(p, i, b)
        yield "backslash-all-" + kind, p.replace("/", b)
    yield "backslash-leading", "\\" + p


SLASH_LOOKALIKES = [
    ("pct2f", "%2f"), ("pct2F", "%2F"), ("double-pct2f", "%252f"), ("overlong-c0af", "%c0%af"),
    ("overlong-e080af", "%e0%80%af"), ("fullwidth-solidus", "%ef%bc%8f"),
    ("division-slash", "%e2%88%95"), ("fraction-slash", "%e2%81%84"),
]


def f_encoded_slash(p):
    for kind, s in SLASH_LOOKALIKES:
        for i in slash_positions(p)[1:]:
            yield "slash-" + kind, at(p, i, s)
        yield "slash-all-" + kind, "/" + p[1:].replace("/", s)


def f_unicode(p):
    letters = [i for i in letter_positions(p) if p[i].isalpha()]
    for i in letters:
        yield "fullwidth-letter", at(p, i, pct(fullwidth(p[i]), True))
    yield "fullwidth-all", "".join(c if c == "/" else pct(fullwidth(c), True) for c in p)
    yield "fullwidth-all-raw", "".join(c if c == "/" else fullwidth(c) for c in p)
    for i in letters:
        if p[i] == "s":
            yield "long-s", at(p, i, pct("\u017f", True))  # U+017F uppercases to S
            yield "long-s-raw", at(p, i, "\u017f")
        if p[i] == "i":
            yield "dotless-i", at(p, i, pct("\u0131", True))  # U+0131 uppercases to I
            yield "dotted-capital-i", at(p, i, pct("\u0130", True))
        if p[i] == "c":
            yield "math-bold-c", at(p, i, pct("\U0001d41c", True))
    yield "combining-mark", p + pct("\u0301", True)
    yield "math-bold-first", at(p, letters[0], pct(chr(0x1D41A + ord(p[letters[0]]) - ord("a")), True))


def f_overlong(p):
    for i in letter_positions(p):
        yield "overlong-letter", at(p, i, overlong2(p[i]))
    e = letter_positions(p)[0]
    c = ord(p[e])
    yield "overlong3-letter", at(p, e, "%%E0%%%02X%%%02X" % (0x80 | (c >> 6), 0x80 | (c & 0x3F)))


INVALID_UTF8 = [("ff", "%ff"), ("cont", "%80"), ("lead-c0", "%c0"), ("lead-c3", "%c3"),
                ("surrogate", "%ed%a0%80"), ("above-max", "%f4%90%80%80")]


def f_invalid_utf8(p):
    for name, b in INVALID_UTF8:
        yield "utf8-invalid-trailing-" + name, p + b
        mid = letter_positions(p)[2]
        yield "utf8-invalid-mid-" + name, p[:mid] + b + p[mid:]


ABSOLUTE = ["http://console.example.com", "http://127.0.0.1", "HTTP://CONSOLE.EXAMPLE.COM",
            "https://console.example.com", "http://console.example.com:80", "http://u@console.example.com",
            "http://console.example.com/.", "http://console.example.com%2f"]


def f_absolute(p):
    for a in ABSOLUTE:
        yield "absolute-form", a + p
    yield "authority-like-path", "//console.example.com" + p


# Single raw bytes (not percent-encoded); written as chars U+0000..U+00FF, sent as one byte each.
RAW = [("tab", "\t"), ("vt", "\x0b"), ("ff", "\x0c"), ("nul", "\x00"), ("del", "\x7f"),
       ("byte80", "\x80"), ("byteff", "\xff"), ("quote", '"'), ("lt", "<"), ("brace", "{"),
       ("pipe", "|"), ("caret", "^"), ("backtick", "`"), ("pct", "%")]


def f_raw(p):
    for name, b in RAW:
        yield "raw-trailing-" + name, ("raw", p + b)
    mid = letter_positions(p)[2]
    yield "raw-mid-utf8-fullwidth", ("utf8", p[:mid] + fullwidth(p[mid]) + p[mid + 1 :])


FAMILIES = [f_identity, f_pct1, f_pct_all, f_double, f_case, f_slashes, f_dots, f_params, f_trailing,
            f_suffix, f_whitespace, f_backslash, f_encoded_slash, f_unicode, f_overlong, f_invalid_utf8,
            f_absolute, f_raw]
SUBPATH_FAMILIES = [f_identity, f_case, f_trailing, f_suffix]


# Light whole-path mutations for pairwise combinations (A then B), each with a short name.
def _first_letter(p):
    return letter_positions(p)[0]


# (short name, the single-family kind it equals, mutation)
COMBINABLE = [
    ("upper", "case-upper", lambda p: p.upper()),
    ("json", "suffix", lambda p: p + ".json"),
    ("slash", "trail-slash", lambda p: p + "/"),
    ("sp", "ws-trailing-sp", lambda p: p + "%20"),
    ("tab", "ws-trailing-tab", lambda p: p + "%09"),
    ("dot", "trail-dot", lambda p: p + "."),
    ("param", "param-jsessionid", lambda p: p + ";jsessionid=1"),
    ("query", "trail-query", lambda p: p + "?x=1"),
    ("pct1", "pct1-upper", lambda p: at(p, _first_letter(p), pct(p[_first_letter(p)]))),
    ("lead2slash", "slash-leading-double", lambda p: "/" + p),
    ("dotseg", "dotseg-dot", lambda p: "/." + p),
    ("climb", "dotseg-dotdot-x", lambda p: "/x/.." + p),
    ("fullwidth1", "fullwidth-letter", lambda p: at(p, _first_letter(p), pct(fullwidth(p[_first_letter(p)]), True))),
    ("nul", "ws-trailing-nul", lambda p: p + "%00"),
]
COMBO_ATOMS = {"combo-%s+%s" % (na, nb): [ka, kb] for na, ka, _ in COMBINABLE for nb, kb, _ in COMBINABLE if na != nb}


def f_combos(p):
    for na, _, a in COMBINABLE:
        for nb, _, b in COMBINABLE:
            if na != nb:
                yield "combo-%s+%s" % (na, nb), b(a(p))


# --- classes: what a mutation does to a path, wherever it was applied ---------------------------

WS_CLASS = {"sp": "encoded space", "plus": "encoded space", "sp-upper-run": "encoded space",
            "latin1-nbsp": "invalid UTF-8"}
WS_CLASS.update({n: "encoded control char" for n in ("tab", "lf", "cr", "crlf", "nul", "vt", "ff", "us", "del")})
WS_CLASS.update({n: "unicode space/format char" for n in ("nbsp", "zwsp", "ideographic-sp", "line-sep", "bom")})
TRAIL_CLASS = {
    "slash": "trailing slash", "dot": "trailing dot", "dotdot": "trailing dot", "pct-dot": "trailing dot",
    "dot-slash": "trailing dot", "slash-dot": "dot segment", "semicolon-dot": "path param (;)",
    "question": "query/fragment", "hash": "query/fragment", "query": "query/fragment",
    "fragment": "query/fragment", "query-climb": "query/fragment", "fragment-climb": "query/fragment",
    "pct3f": "encoded ?/#", "pct23": "encoded ?/#", "pct3f-x": "encoded ?/#", "pct23-x": "encoded ?/#",
    "pct2f": "encoded slash (%2f)", "pct2F": "encoded slash (%2f)", "pct5c": "encoded backslash (%5c)",
    "backslash": "backslash", "bare-pct": "malformed %-escape", "short-pct": "malformed %-escape",
    "bad-pct": "malformed %-escape",
}
# (kind prefix, class), first match wins; the ws-, trail- and raw- kinds go by their tail above.
KIND_CLASS = [
    ("identity", "identity"),
    ("pct1-slash-", "encoded slash (%2f)"), ("pct-all-but-slash-", "pct-encoded letter"),
    ("pct-all-", "encoded slash (%2f)"), ("pct1-", "pct-encoded letter"),
    ("slash-double-pct2f", "multiple encoding"), ("slash-all-double-pct2f", "multiple encoding"),
    ("dotseg-double-pct-", "multiple encoding"), ("double-pct", "multiple encoding"),
    ("triple-pct", "multiple encoding"), ("pct-of-pct-digits", "multiple encoding"),
    ("case-", "case"),
    ("slash-double", "empty segment (//)"), ("slash-all-double", "empty segment (//)"),
    ("slash-leading-", "empty segment (//)"), ("slash-trailing-double", "empty segment (//)"),
    ("dotseg-overlong-", "overlong UTF-8"), ("slash-overlong-", "overlong UTF-8"),
    ("slash-all-overlong-", "overlong UTF-8"), ("overlong", "overlong UTF-8"),
    ("dotseg-onedotleader-", "unicode dot/slash look-alike"), ("dotseg-fullwidth-", "unicode dot/slash look-alike"),
    ("slash-fullwidth-", "unicode dot/slash look-alike"), ("slash-all-fullwidth-", "unicode dot/slash look-alike"),
    ("slash-division-", "unicode dot/slash look-alike"), ("slash-all-division-", "unicode dot/slash look-alike"),
    ("slash-fraction-", "unicode dot/slash look-alike"), ("slash-all-fraction-", "unicode dot/slash look-alike"),
    ("dotseg-dotdot-param-", "path param (;)"), ("dotseg-dotdot-pct2f-", "encoded slash (%2f)"),
    ("dotseg-dotdot-backslash-", "backslash"), ("dotseg-dotdot-pct5c-", "encoded backslash (%5c)"),
    ("dotseg-pct-", "dot segment, %2e"), ("dotseg-half-pct-", "dot segment, %2e"),
    ("dotseg-above-root-pct", "dot segment, %2e"), ("dotseg-tail-pct-", "dot segment, %2e"),
    ("dotseg-tail-x-pct-", "dot segment, %2e"), ("dotseg-tail-half-pct-", "dot segment, %2e"),
    ("dotseg-into-public-pct", "dot segment, %2e"), ("dotseg-", "dot segment"),
    ("param-", "path param (;)"),
    ("suffix-inner", "format suffix, inner segment"), ("suffix", "format suffix"),
    ("backslash-pct5", "encoded backslash (%5c)"), ("backslash-all-pct5", "encoded backslash (%5c)"),
    ("backslash-", "backslash"),
    ("slash-pct2", "encoded slash (%2f)"), ("slash-all-pct2", "encoded slash (%2f)"),
    ("fullwidth-", "fullwidth letter"), ("raw-mid-utf8-fullwidth", "fullwidth letter"),
    ("long-s", "unicode case-folding letter"), ("dotless-i", "unicode case-folding letter"),
    ("dotted-capital-i", "unicode case-folding letter"), ("math-bold-", "NFKC letter (math bold)"),
    ("combining-mark", "combining mark"),
    ("utf8-invalid-", "invalid UTF-8"),
    ("absolute-form", "absolute-form target"), ("authority-like-path", "authority-like path (//host/...)"),
]
RAW_CLASS = {"tab": "raw control byte", "vt": "raw control byte", "ff": "raw control byte",
             "nul": "raw control byte", "del": "raw control byte", "byte80": "raw non-UTF-8 byte",
             "byteff": "raw non-UTF-8 byte"}


def mutation_class(kind):
    """The class of one atomic mutation kind."""
    if kind.startswith("ws-"):  # ws-<where>-<char>; the longest matching name ("latin1-nbsp", not "nbsp")
        return WS_CLASS[max((n for n in WS_CLASS if kind.endswith("-" + n)), key=len)]
    if kind.startswith("trail-"):
        return TRAIL_CLASS.get(kind[len("trail-"):], "trailing punctuation")
    if kind.startswith("raw-trailing-"):
        return RAW_CLASS.get(kind[len("raw-trailing-"):], "raw unsafe ASCII")
    for prefix, cls in KIND_CLASS:
        if kind.startswith(prefix):
            return cls
    raise KeyError("no class for mutation kind %r" % kind)


def atoms(kind):
    """The atomic mutation kinds a generated kind applied."""
    return COMBO_ATOMS.get(kind, [kind])


def target_class(kind):
    """A target's class: its mutations' classes, deduplicated and sorted, joined by " + "."""
    return " + ".join(sorted({mutation_class(k) for k in atoms(kind)}))


def encode(form):
    """Request-target bytes: a str is sent as UTF-8, ("raw", s) byte for byte (latin-1)."""
    if isinstance(form, tuple):
        how, s = form
        return s.encode("latin-1") if how == "raw" else s.encode()
    return form.encode()


def generate(quick):
    plans = [("protected", b, FAMILIES + ([] if quick else [f_combos])) for b in PROTECTED]
    plans += [("lookalike", b, FAMILIES) for b in (QUICK_LOOKALIKES if quick else LOOKALIKES)]
    plans += [] if quick else [("subpath", b, SUBPATH_FAMILIES) for b in SUBPATHS]
    rows = {}  # target bytes -> row, in generation order
    for group, base, families in plans:
        for fam in families:
            for kind, form in fam(base):
                target = encode(form)
                producer = "%s %s" % (base, kind)
                if target in rows:  # the first (simplest) family that produced it names it
                    if producer not in rows[target]["producers"]:
                        rows[target]["producers"].append(producer)
                    continue
                rows[target] = {"group": group, "base": base, "kind": kind, "mutations": atoms(kind),
                                "class": target_class(kind), "producers": [producer], "target_hex": target.hex()}
    return rows.values()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="protected bases and three look-alikes, no combinations")
    args = ap.parse_args()
    for n, row in enumerate(generate(args.quick)):
        row = {"id": n, **row}
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
