#!/usr/bin/env python3
"""Classifies run.py's raw results and writes the path-differential report.

usage: report.py OUT_DIR [--min-frameworks 4]
Reads OUT_DIR/runs.json, corpus.jsonl and raw/*.jsonl; writes summary.tsv, bypasses.tsv,
false_blocks.tsv, refusals.tsv, groups.tsv, disagreements.tsv, per_path.tsv, hosts.tsv and
report.json into OUT_DIR; prints the summary. Exit 0: no bypass; 1: a bypass; 2: too few
frameworks ran.

The rule under test is a segment-prefix rule (paths = ["/signup", "/api/v1/accounts"]): it
covers everything below those paths, and every app routes the sub-paths to the protected action
too, so /signup/confirm is "protected" both ways.

Terms (per framework, per target):
  direct   protected:signup | protected:accounts (2xx from that route, the base or its prefix
           route) | other (the catch-all or 404 handler) | redirect:CODE | status:CODE (the
           server's own error) | noresp:WHY
  via      blocked (geogate's 451: the policy said no) | refused (a 400 geogate made: its path /
           host screening before policy, applied to every client, or its HTTP parser's bare 400)
           | gw:CODE (another answer of geogate's own) | fwd:<direct class> (forwarded; what the
           app then did)
  reason   of a refusal: the geogate_rejected_total label that moved when run.py re-sent the
           target alone (path_control, path_invalid_utf8, path_encoded_delimiter,
           path_ambiguous_unicode, host_*, ...), http_parser when neither that nor the upstream
           counter moved, unknown without metrics.
Per target (over all frameworks):
  bypass       a framework routes it to a protected route (direct) and geogate forwards it; also
               a forwarded request that reached a protected route direct did not (geogate
               rewrote it into one). Counted per framework.
  false block  geogate answers 451 and no framework routes it to a protected route.
  refusal      geogate answers 400 (by design, whatever the route: a refused form some
               framework routes to a protected route is not a bypass, a refused look-alike is
               not a false block).
  disagreement some frameworks route it to a protected route and others do not.
Each list is grouped by the target's mutation class (corpus "class", from gen_corpus.py), the
refusals first by reason.
"""
import argparse
import collections
import json
import os
import sys

PROTECTED_HOST = "console.example.com"


def show(target):
    """Printable form of the target bytes: non-printable and non-ASCII as \\xNN."""
    return "".join(chr(b) if 0x21 <= b < 0x7F and b != 0x5C else "\\x%02x" % b for b in target)


def direct_class(r):
    if r.get("status") is None:
        return "noresp:" + str(r.get("err"))
    echo = r.get("echo")
    if echo is not None:
        route = echo.get("route")
        if route in ("signup", "accounts") and 200 <= r["status"] < 300:
            return "protected:" + route
        if route in ("signup", "accounts"):
            return "status:%d" % r["status"]
        return "other"
    if 300 <= r["status"] < 400:
        return "redirect:%d" % r["status"]
    return "status:%d" % r["status"]


def geogate_own(r):
    """An answer geogate made itself rather than forwarded: its JSON error (no-store), or the
    bare 400 of its HTTP parser. run.py settles every such 400 by geogate's upstream counter
    ("forwarded"); without it, the parser's own 400 is the one with Content-Length: 0 and no
    Content-Type (a forwarded empty error keeps the upstream's framing or headers)."""
    if r.get("echo") is not None:
        return False
    body, h = r.get("body", ""), r.get("headers", {})
    if body.startswith('{"error":') and "no-store" in h.get("cache-control", ""):
        return True
    if "forwarded" in r:
        return not r["forwarded"]
    return (r["status"] == 400 and body == "" and h.get("content-length") == "0" and "content-type" not in h
            and "server" not in h)


def via_class(r):
    if r.get("status") is None:
        return "noresp:" + str(r.get("err"))
    if r["status"] == 451 and r.get("echo") is None:
        return "blocked"
    if geogate_own(r):
        return "refused" if r["status"] == 400 else "gw:%d" % r["status"]
    return "fwd:" + direct_class(r)


def refusal_reason(r):
    return r.get("refusal") or "unknown"


def is_protected(cls):
    return cls.startswith("protected:") or cls.startswith("fwd:protected:")


def verdict(v):
    """geogate's own decision, whatever the app did after: blocked, refused, forwarded, other."""
    if v in ("blocked", "refused"):
        return v
    return "forwarded" if v.startswith("fwd:") else "other"


def norm_host(h):
    """As geogate compares hosts: lower case, port and trailing dot dropped."""
    if h is None:
        return None
    h = h.strip().lower()
    if h.startswith("["):
        h = h.split("]")[0] + "]"
    elif h.count(":") == 1 and h.rsplit(":", 1)[1].isdigit():
        h = h.rsplit(":", 1)[0]
    return h.rstrip(".")


def tsv(path, header, rows):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(str(c).replace("\t", " ") for c in row) + "\n")


def host_row(fw, h):
    via, direct = h["via"], h["direct"]
    vc = via_class(via)
    echo, decho = via.get("echo") or {}, direct.get("echo") or {}
    app_host, fw_host = echo.get("host_header"), echo.get("fw_host")
    judged = PROTECTED_HOST if vc == "blocked" else echo.get("x_forwarded_host")
    verdict = ""
    if vc == "blocked":
        # Blocked for console.example.com; fine unless the app would have served another host.
        seen = norm_host(decho.get("fw_host") or decho.get("host_header"))
        if decho and seen != PROTECTED_HOST:
            verdict = "note:blocked,direct-app-sees:%s" % seen
    elif vc.startswith("fwd:"):
        if PROTECTED_HOST in (norm_host(app_host), norm_host(fw_host)) and is_protected(vc):
            verdict = "BYPASS"
        elif norm_host(app_host) != norm_host(judged) or norm_host(fw_host) != norm_host(judged):
            verdict = "host-mismatch"
    return {
        "framework": fw, "form": h["form"], "via": vc + (":" + refusal_reason(via) if vc == "refused" else ""),
        "judged_host": judged, "app_host_header": app_host,
        "app_fw_host": fw_host, "direct": direct_class(direct), "direct_host_header": decho.get("host_header"),
        "direct_fw_host": decho.get("fw_host"), "verdict": verdict,
        "x_forwarded_for": echo.get("x_forwarded_for"), "forwarded": echo.get("forwarded"),
        "x_real_ip": echo.get("x_real_ip"), "x_geo_client_ip": echo.get("x_geo_client_ip"),
        "fw_remote_ip": echo.get("fw_remote_ip"),
    }


def examples(ids, corpus, n=3):
    """Up to n targets, one per base first, so an example list shows the spread."""
    picked, bases = [], set()
    for i in ids:
        if corpus[i]["base"] not in bases:
            bases.add(corpus[i]["base"])
            picked.append(i)
        if len(picked) == n:
            break
    picked += [i for i in ids if i not in picked][: n - len(picked)]
    return [show(bytes.fromhex(corpus[i]["target_hex"])) for i in sorted(picked)]


def grouped(ids, corpus, key=lambda i: None):
    """[(key, class, [ids])], largest first (then by name, so the order is stable)."""
    g = collections.defaultdict(list)
    for i in ids:
        g[(key(i), corpus[i].get("class", corpus[i]["kind"]))].append(i)
    return sorted(((k, c, v) for (k, c), v in g.items()), key=lambda x: (-len(x[2]), str(x[0]), x[1]))


def group_mix(ids, corpus):
    c = collections.Counter(corpus[i].get("group", "") for i in ids)
    return " ".join("%s:%d" % (g[0], n) for g, n in sorted(c.items()))  # p:protected l:lookalike s:subpath


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--min-frameworks", type=int, default=4)
    args = ap.parse_args()
    out = args.out
    runs = json.load(open(os.path.join(out, "runs.json")))
    corpus = {c["id"]: c for c in map(json.loads, open(os.path.join(out, "corpus.jsonl")))}
    ran = [r for r in runs["runs"] if r["started"]]
    fws = [r["framework"] for r in ran]

    cls = collections.defaultdict(dict)  # id -> fw -> (direct, via, refusal reason)
    for fw in fws:
        for line in open(os.path.join(out, "raw", fw + ".jsonl")):
            r = json.loads(line)
            v = via_class(r["via"])
            cls[r["id"]][fw] = (direct_class(r["direct"]), v, refusal_reason(r["via"]) if v == "refused" else "")

    def desc(i):
        c = corpus[i]
        return [i, c.get("class", ""), c["kind"], c.get("group", ""), c["base"], show(bytes.fromhex(c["target_hex"]))]

    def directs(row):
        return " ".join("%s=%s" % (fw, d) for fw, (d, _, _) in sorted(row.items()))

    per_fw = {fw: collections.Counter() for fw in fws}
    bypasses, false_blocks, refusals, correct_blocks, disagree, inconsistent, per_path = [], [], [], [], [], [], []
    unsettled = []  # (fw, id, direct, via): direct protected, via neither a verdict nor forwarded
    refusal_of = {}
    for i in sorted(cls):
        row = cls[i]
        routed = sorted(fw for fw, (d, _, _) in row.items() if is_protected(d))
        for fw, (d, v, _) in row.items():
            c = per_fw[fw]
            c["paths"] += 1
            c["protected_direct"] += is_protected(d)
            c[verdict(v)] += 1
            if v.startswith("fwd:") and (is_protected(d) or is_protected(v)):
                c["bypasses"] += 1
                c["bypasses_confirmed"] += is_protected(v)
                bypasses.append((fw, i, d, v))
            elif is_protected(d) and verdict(v) == "other":
                unsettled.append((fw, i, d, v))
        verdicts = {verdict(v) for _, v, _ in row.values()}
        # geogate's decision does not depend on the upstream: a sanity check (an upstream that
        # times out or fails through geogate, "other", is not a different decision)
        if len(verdicts - {"other"}) > 1:
            inconsistent.append(desc(i) + [" ".join("%s=%s" % (fw, v) for fw, (_, v, _) in sorted(row.items()))])
        if "blocked" in verdicts:
            (correct_blocks if routed else false_blocks).append(i)
        if "refused" in verdicts:
            reasons = sorted({r for _, v, r in row.values() if v == "refused"})
            refusal_of[i] = ",".join(reasons)
            refusals.append(i)
        if routed and len(routed) < len(row):
            disagree.append(desc(i) + [directs(row)])
        per_path.append(desc(i) + ["%s|%s" % (row[fw][0], row[fw][1] + (":" + row[fw][2] if row[fw][2] else ""))
                                   if fw in row else "" for fw in fws])

    hosts = []
    for fw in fws:
        p = os.path.join(out, "raw", fw + ".hosts.jsonl")
        if os.path.exists(p):
            hosts += [host_row(fw, json.loads(line)) for line in open(p)]
    host_bypasses = [h for h in hosts if h["verdict"] == "BYPASS"]
    host_mismatches = [h for h in hosts if h["verdict"] == "host-mismatch"]
    host_notes = [h for h in hosts if h["verdict"].startswith("note:")]

    # --- groups -------------------------------------------------------------------------------
    bypass_ids = sorted({i for _, i, _, _ in bypasses})
    bypass_fws = collections.defaultdict(set)
    for fw, i, _, _ in bypasses:
        bypass_fws[i].add(fw)
    bypass_groups = grouped(bypass_ids, corpus)
    fb_groups = grouped(false_blocks, corpus)
    refusal_reasons = collections.Counter(refusal_of[i] for i in refusals)
    ref_groups = grouped(refusals, corpus, key=lambda i: refusal_of[i])
    refused_routed = [i for i in refusals if any(is_protected(d) for d, _, _ in cls[i].values())]

    summary_head = ["framework", "version", "paths", "protected_direct", "bypasses", "bypasses_confirmed",
                    "via_blocked", "via_refused", "via_forwarded", "via_other"]
    summary = [[r["framework"], r.get("version", "")] + [per_fw[r["framework"]][k] for k in
               ("paths", "protected_direct", "bypasses", "bypasses_confirmed", "blocked", "refused", "forwarded",
                "other")] for r in ran]
    tsv(os.path.join(out, "summary.tsv"), summary_head, summary)
    head = ["id", "class", "kind", "group", "base", "target"]
    tsv(os.path.join(out, "bypasses.tsv"), ["framework"] + head + ["direct", "via"],
        [[fw] + desc(i) + [d, v] for fw, i, d, v in bypasses])
    tsv(os.path.join(out, "false_blocks.tsv"), head + ["producers", "direct"],
        [desc(i) + ["; ".join(corpus[i].get("producers", [])), directs(cls[i])] for i in false_blocks])
    tsv(os.path.join(out, "refusals.tsv"), ["reason"] + head + ["routed_protected_by", "direct"],
        [[refusal_of[i]] + desc(i) + [",".join(fw for fw, (d, _, _) in sorted(cls[i].items()) if is_protected(d)),
                                      directs(cls[i])] for i in sorted(refusals, key=lambda i: (refusal_of[i], i))])
    groups_rows = [["bypass", "", c, len(ids), group_mix(ids, corpus), "  ".join(examples(ids, corpus))]
                   for _, c, ids in bypass_groups]
    groups_rows += [["false_block", "", c, len(ids), group_mix(ids, corpus), "  ".join(examples(ids, corpus))]
                    for _, c, ids in fb_groups]
    groups_rows += [["refusal", k, c, len(ids), group_mix(ids, corpus), "  ".join(examples(ids, corpus))]
                    for k, c, ids in sorted(ref_groups, key=lambda g: (-refusal_reasons[g[0]], g[0], -len(g[2]), g[1]))]
    tsv(os.path.join(out, "groups.tsv"), ["list", "reason", "class", "targets", "groups", "examples"], groups_rows)
    tsv(os.path.join(out, "disagreements.tsv"), head + ["direct"], disagree)
    tsv(os.path.join(out, "per_path.tsv"), head + fws, per_path)
    if hosts:
        tsv(os.path.join(out, "hosts.tsv"), list(hosts[0]), [list(h.values()) for h in hosts])

    report = {
        "client_ip": runs["client_ip"], "frameworks": ran,
        "not_started": [r for r in runs["runs"] if not r["started"]],
        "summary": [dict(zip(summary_head, s)) for s in summary],
        "targets": len(cls),
        "bypasses": {"count": len(bypasses), "targets": len(bypass_ids),
                     "by_class": {c: {show(bytes.fromhex(corpus[i]["target_hex"])): sorted(bypass_fws[i]) for i in ids}
                                  for _, c, ids in bypass_groups}},
        "blocked": {"targets": len(correct_blocks) + len(false_blocks), "routed_protected": len(correct_blocks),
                    "false_blocks": len(false_blocks)},
        "false_blocks_by_class": {c: {"count": len(ids), "groups": group_mix(ids, corpus),
                                      "targets": [show(bytes.fromhex(corpus[i]["target_hex"])) for i in ids]}
                                  for _, c, ids in fb_groups},
        "refusals": {"targets": len(refusals), "routed_protected": len(refused_routed),
                     "by_reason": dict(refusal_reasons.most_common())},
        "refusals_by_reason_class": {"%s | %s" % (k, c): {"count": len(ids), "groups": group_mix(ids, corpus),
                                                          "targets": [show(bytes.fromhex(corpus[i]["target_hex"]))
                                                                      for i in ids]} for k, c, ids in ref_groups},
        "disagreements": len(disagree), "inconsistent_verdicts": len(inconsistent),
        "unsettled": [[fw, show(bytes.fromhex(corpus[i]["target_hex"])), d, v] for fw, i, d, v in unsettled],
        "hosts": hosts, "host_bypasses": len(host_bypasses), "host_mismatches": len(host_mismatches),
    }
    json.dump(report, open(os.path.join(out, "report.json"), "w"), indent=1)

    # --- summary ------------------------------------------------------------------------------
    table_head = ["framework", "version", "paths", "protected_direct", "bypasses", "blocked", "refused", "forwarded",
                  "other"]
    table = [[s[0], s[1], s[2], s[3], s[4], s[6], s[7], s[8], s[9]] for s in summary]
    widths = [max(len(str(x)) for x in col) for col in zip(table_head, *table)] if table else []
    for row in [table_head] + table:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    print("\n%d targets x %d frameworks; groups as p:protected-form l:look-alike s:sub-path targets" % (
        len(cls), len(fws)))
    print("bypasses: %d (%d targets; must be 0)" % (len(bypasses), len(bypass_ids)))
    for _, c, ids in bypass_groups:
        print("  %-44s %4d  e.g. %s" % (c, len(ids), "  ".join(
            "%s[%s]" % (show(bytes.fromhex(corpus[i]["target_hex"])), ",".join(sorted(bypass_fws[i])))
            for i in ids[:3])))
    if unsettled:
        print("  not counted: %d protected-direct targets got no answer or a gateway error via geogate, e.g. %s" % (
            len(unsettled), "  ".join("%s[%s %s]" % (show(bytes.fromhex(corpus[i]["target_hex"])), fw, v)
                                      for fw, i, _, v in unsettled[:3])))
    print("blocked (451): %d targets, %d of them routed to a protected route by some framework" % (
        len(correct_blocks) + len(false_blocks), len(correct_blocks)))
    print("false blocks (451, no framework routes it to a protected route): %d targets in %d classes (%s)" % (
        len(false_blocks), len(fb_groups), group_mix(false_blocks, corpus)))
    for _, c, ids in fb_groups:
        print("  %-44s %4d  %-13s e.g. %s" % (c, len(ids), group_mix(ids, corpus), "  ".join(examples(ids, corpus))))
    print("refusals (400 before policy, every client; by design): %d targets (%s), %d of them routed to a "
          "protected route by some framework" % (len(refusals), group_mix(refusals, corpus), len(refused_routed)))
    for reason, n in refusal_reasons.most_common():
        ids = [i for i in refusals if refusal_of[i] == reason]
        print("  %-44s %4d  %s" % (reason, n, group_mix(ids, corpus)))
        for _, c, cids in [g for g in ref_groups if g[0] == reason]:
            print("    %-42s %4d  %-13s e.g. %s" % (c, len(cids), group_mix(cids, corpus),
                                                   "  ".join(examples(cids, corpus))))
    print("framework disagreements (some route a target to a protected route, some not): %d" % len(disagree))
    if inconsistent:
        print("geogate verdict differs between framework runs: %d targets (per_path.tsv), e.g. %s" % (
            len(inconsistent), "  ".join(r[5] for r in inconsistent[:3])))
    others = collections.Counter((fw, v) for i in cls for fw, (_, v, _) in cls[i].items() if verdict(v) == "other")
    if others:
        print("via geogate, neither a verdict nor a forwarded answer: %s" % ", ".join(
            "%s %s %d" % (fw, v, n) for (fw, v), n in sorted(others.items())))
    print("host forms: %d rows; bypasses %d; host mismatches (judged vs received) %d; notes %d (hosts.tsv)" % (
        len(hosts), len(host_bypasses), len(host_mismatches), len(host_notes)))
    for h in host_bypasses + host_mismatches:
        print("  %-8s %-34s %-13s via=%s judged=%s app got Host=%s host=%s; direct app Host=%s" % (
            h["framework"], h["form"], h["verdict"], h["via"], h["judged_host"], h["app_host_header"],
            h["app_fw_host"], h["direct_host_header"]))
    print("report: %s" % out)

    missing = [r["framework"] for r in runs["runs"] if not r["started"]]
    # Fewer than --min-frameworks ran; or a smaller --frameworks selection did not all start.
    if len(fws) < min(args.min_frameworks, len(runs["runs"])):
        print("only %d frameworks ran (%s did not start)" % (len(fws), ",".join(missing)), file=sys.stderr)
        return 2
    return 1 if bypasses or host_bypasses else 0


if __name__ == "__main__":
    sys.exit(main())
