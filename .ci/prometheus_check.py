#!/usr/bin/env python3
"""The Python half of .ci/prometheus-check.sh (read its header first): free ports, the
scripted workload against geogate, and every dashboard and alert query evaluated through a
real Prometheus's HTTP API. Standard library only; talks to 127.0.0.1 only.

    prometheus_check.py ports N
        N free TCP ports on 127.0.0.1, one per line (bound to port 0, then released).
    prometheus_check.py wait-http URL SECONDS
        Waits (bounded) until URL answers 200; exit status 1 if it never does.
    prometheus_check.py run --prometheus URL --proxy HOST:PORT --admin HOST:PORT
                            --dashboard FILE --alerts FILE [--timeout S]
        The check itself (below); prints one line per query and a summary line
        `prometheus-check: N passed, M failed`; exit status 1 on any failure.

`run`, in order:
  1. waits until Prometheus has scraped geogate 5 times (no request has been sent yet);
  2. "first scrape": every geogate_* / process_* metric the dashboard and alerts name has a
     series in Prometheus's FIRST sample of geogate (an instant query at that timestamp);
  3. "before traffic": every dashboard panel query and every rule of alerts.yml returns at
     least one series;
  4. the workload: allowed, tagged, blocked, dry-run-matched, rejected (CL+TE smuggling),
     unresolved (malformed X-Forwarded-For), an upstream error (a route to a closed port),
     POST /-/reload; each answer's status is checked;
  5. waits until Prometheus has scraped the workload's counts;
  6. "after traffic": step 3 again, every loaded rule is healthy (evaluated without error),
     and the workload's events are visible in the series the panels read.

Substitutions in dashboard queries (Grafana's variables and what a fresh Prometheus lacks):
  $job -> geogate (the scrape job the alerts expect); $namespace, $pod, $instance -> .* (each
  variable's "All" value, its default); $__rate_interval, $__interval, $__range -> 1m (the
  window Grafana picks at a 15 s scrape interval; it spans this whole run); `offset 1d` ->
  `offset 2s` (a Prometheus started seconds ago holds no day-old sample; the query is still
  evaluated against data). Any other `$` variable fails the query. Alert and recording rules
  are read back from Prometheus's /api/v1/rules (so they are the rules it loaded), and get
  the same `offset` substitution.

Alerts and "returns a series": an alert expression is mostly a threshold (`... > 0.05`) that
is empty while nothing fires, which would say nothing about whether its series exist. Each
alert is therefore evaluated twice: as written (it must parse: status success), and with the
`bool` modifier on every comparison (`> bool 0.05`), which keeps every series the operands
produce, at 0 or 1, instead of filtering them. That form must return a series: it does
exactly when the metrics exist and their labels match across the operators. Dropping only
the top-level comparison would not be enough: several alerts filter inside (`... > 0`,
`up == 1 unless ...`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

RATE_WINDOW = "1m"
VARIABLES = {
    "job": "geogate",
    "namespace": ".*",
    "pod": ".*",
    "instance": ".*",
    "__rate_interval": RATE_WINDOW,
    "__interval": RATE_WINDOW,
    "__range": RATE_WINDOW,
}

# Addresses the shipped database (geoip/geo-whois-asn-country.mmdb) places in each country;
# `geogate lookup --config <the generated config>` shows them, and prometheus-check.sh
# checks them before the workload.
ADDRESSES = {"US": "8.8.8.8", "DE": "194.25.2.129", "RU": "77.88.8.8", "FR": "212.27.48.10"}

passed = 0
failed = 0


def report(ok: bool, what: str, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}", flush=True)
    return ok


# --- ports ---------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


# --- Prometheus's HTTP API -----------------------------------------------------------------


class Prometheus:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # a bad query answers 400 with a JSON error
            try:
                return json.load(e)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}

    def query(self, expr: str, at: float | None = None) -> dict:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)

    def series_count(self, expr: str, at: float | None = None) -> tuple[str | None, int]:
        """(error, number of series) of an instant query."""
        r = self.query(expr, at)
        if r.get("status") != "success":
            return f"{r.get('errorType', '')}: {r.get('error', r)}", 0
        data = r["data"]
        if data["resultType"] in ("scalar", "string"):
            return None, 1
        return None, len(data["result"])

    def value(self, expr: str) -> float | None:
        r = self.query(expr)
        if r.get("status") != "success" or not r["data"]["result"]:
            return None
        return float(r["data"]["result"][0]["value"][1])

    def samples(self, expr: str) -> list[tuple[float, str]]:
        r = self.query(expr)
        if r.get("status") != "success" or not r["data"]["result"]:
            return []
        return [(float(t), v) for t, v in r["data"]["result"][0]["values"]]


def wait_until(what: str, deadline: float, probe) -> bool:
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.5)
    return report(False, f"waiting for {what}", "timed out")


# --- queries -------------------------------------------------------------------------------


def substitute(expr: str) -> tuple[str, list[str]]:
    """Grafana's variables replaced as documented above; also returns unknown ones."""
    unknown = []

    def var(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            unknown.append(name)
            return m.group(0)
        return VARIABLES[name]

    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", var, expr)
    return no_day_offset(expr), unknown


def no_day_offset(expr: str) -> str:
    return re.sub(r"\boffset\s+1d\b", "offset 2s", expr)


COMPARISON = re.compile(r"==|!=|>=|<=|>|<")


def with_bool(expr: str) -> str:
    """`bool` after every comparison operator outside label matchers and strings."""
    out = []
    i = 0
    depth = 0  # inside {...}
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            end = i + 1
            while end < len(expr) and expr[end] != c:
                end += 2 if expr[end] == "\\" and c != "`" else 1
            out.append(expr[i : end + 1])
            i = end + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        m = COMPARISON.match(expr, i) if depth == 0 else None
        if m and not expr.startswith("=~", i) and not expr.startswith("!~", i):
            out.append(m.group(0))
            i = m.end()
            if not re.match(r"\s*bool\b", expr[i:]):
                out.append(" bool")
            continue
        out.append(c)
        i += 1
    return "".join(out)


def panel_queries(dashboard: Path) -> list[tuple[str, str]]:
    doc = json.loads(dashboard.read_text())
    found = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    found.append((f"panel {p.get('title', '?')!r} ({t.get('refId', '?')})", t["expr"]))
            walk(p.get("panels", []))

    walk(doc.get("panels", []))
    return found


def loaded_rules(prom: Prometheus) -> list[dict]:
    r = prom.get("/api/v1/rules")
    if r.get("status") != "success":
        return []
    return [rule for g in r["data"]["groups"] for rule in g["rules"]]


def rule_label(rule: dict) -> str:
    return f"alert {rule['name']}" if rule["type"] == "alerting" else f"record {rule['name']}"


def evaluate(prom: Prometheus, phase: str, panels: list[tuple[str, str]], rules: list[dict]) -> None:
    for what, raw in panels:
        expr, unknown = substitute(raw)
        if unknown:
            report(False, f"[{phase}] {what}", f"unknown variable(s) {', '.join(unknown)}")
            continue
        err, n = prom.series_count(expr)
        report(err is None and n > 0, f"[{phase}] {what}", err or f"{n} series")
    for rule in rules:
        expr = no_day_offset(rule["query"])
        err, n_written = prom.series_count(expr)
        if err is not None:
            report(False, f"[{phase}] {rule_label(rule)}", f"as written: {err}")
            continue
        expr = with_bool(expr)
        err, n = prom.series_count(expr)
        report(
            err is None and n > 0,
            f"[{phase}] {rule_label(rule)}",
            err or f"{n} series with bool ({n_written} as written)",
        )


def metric_names(*texts: str) -> set[str]:
    names = set()
    for text in texts:
        names |= set(re.findall(r"(?<![\w:])((?:geogate|process)_[a-z0-9_]+)(?![\w:])", text))
    return names


# --- the workload --------------------------------------------------------------------------


def request(addr: str, method: str, path: str, headers: dict[str, str]) -> int:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def raw(addr: str, data: bytes) -> int:
    """Sends raw bytes; returns the status of the first answer (0 if none)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
    return int(m.group(1)) if m else 0


def workload(proxy: str, admin: str) -> None:
    xff = lambda ip: {"X-Forwarded-For": ip}  # noqa: E731
    steps = [
        ("allowed (US, the default action)", lambda: request(proxy, "GET", "/", xff(ADDRESSES["US"])), {200}),
        ("tagged (DE, rule tag-de)", lambda: request(proxy, "GET", "/", xff(ADDRESSES["DE"])), {200}),
        ("blocked (RU, rule block-ru)", lambda: request(proxy, "GET", "/", xff(ADDRESSES["RU"])), {451}),
        ("dry-run match (FR, rule try-fr; then allowed)", lambda: request(proxy, "GET", "/", xff(ADDRESSES["FR"])), {200}),
        ("unresolved (malformed X-Forwarded-For)", lambda: request(proxy, "GET", "/", xff("010.0.0.1")), {403}),
        ("upstream error (route /dead/ to a closed port)", lambda: request(proxy, "GET", "/dead/x", xff(ADDRESSES["US"])), {502}),
        (
            "rejected (Content-Length with Transfer-Encoding)",
            lambda: raw(
                proxy,
                b"POST / HTTP/1.1\r\nHost: geogate.test\r\nX-Forwarded-For: 8.8.8.8\r\n"
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
            {400},
        ),
        ("reload (POST /-/reload)", lambda: request(admin, "POST", "/-/reload", {}), {200}),
    ]
    for what, send, want in steps:
        try:
            status = send()
        except OSError as e:
            report(False, f"[workload] {what}", str(e))
            continue
        report(status in want, f"[workload] {what}", f"status {status}")


# What the workload must have left in the series the panels read.
SEEN = [
    ('sum(geogate_requests_total{job="geogate", action="allow", rule="", country="other"})', 2),
    ('sum(geogate_requests_total{job="geogate", action="tag", rule="tag-de", country="DE"})', 1),
    ('sum(geogate_requests_total{job="geogate", action="block", rule="block-ru", country="RU"})', 1),
    ('sum(geogate_requests_total{job="geogate", action="unresolved_block"})', 1),
    ('sum(geogate_dry_run_matches_total{job="geogate", rule="try-fr", action="block"})', 1),
    ('sum(geogate_rejected_total{job="geogate", reason="smuggling_cl_te"})', 1),
    ('sum(geogate_upstream_errors_total{job="geogate", upstream="dead", kind="connect"})', 1),
    ('sum(geogate_client_ip_resolutions_total{job="geogate", source="x-forwarded-for", outcome="malformed"})', 1),
    ('sum(geogate_reloads_total{job="geogate", trigger="admin"})', 1),
]


# --- run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    prom = Prometheus(args.prometheus)
    deadline = time.monotonic() + args.timeout
    dashboard, alerts = Path(args.dashboard), Path(args.alerts)
    scrapes = 'count_over_time(up{job="geogate"}[10m])'

    if not wait_until("5 scrapes of geogate", deadline, lambda: (prom.value(scrapes) or 0) >= 5):
        return 1
    report(prom.value('min_over_time(up{job="geogate"}[10m])') == 1, "every scrape of geogate succeeded")

    first = prom.samples('up{job="geogate"}[10m]')
    names = sorted(metric_names(dashboard.read_text(), alerts.read_text()))
    if report(bool(first) and bool(names), "first scrape and metric names found", f"{len(names)} names"):
        t0 = first[0][0]
        for name in names:
            err, n = prom.series_count(f'{name}{{job="geogate"}}', at=t0)
            report(err is None and n > 0, f"[first scrape] {name}", err or f"{n} series")

    panels = panel_queries(dashboard)
    want_rules = len(re.findall(r"^\s*- (?:alert|record):", alerts.read_text(), re.M))
    rules = []

    def rules_loaded() -> bool:
        nonlocal rules
        rules = loaded_rules(prom)
        return len(rules) == want_rules and all(r.get("health") == "ok" for r in rules)

    wait_until("every rule loaded and evaluated", deadline, rules_loaded)
    report(len(rules) == want_rules, "rules loaded from alerts.yml", f"{len(rules)} of {want_rules}")
    report(len(panels) > 0, "panel queries found in the dashboard", f"{len(panels)}")
    evaluate(prom, "before traffic", panels, rules)

    workload(args.proxy, args.admin)
    wait_until("the workload in Prometheus", deadline, lambda: all((prom.value(q) or 0) >= n for q, n in SEEN))
    # Two more scrapes and rule evaluations, so rates and recorded ratios include the workload.
    seen_at = prom.value(scrapes) or 0
    wait_until("two more scrapes", deadline, lambda: (prom.value(scrapes) or 0) >= seen_at + 2)
    for q, n in SEEN:
        v = prom.value(q)
        report(v is not None and v >= n, f"[workload seen] {q}", f"{v} (want >= {n})")
    rules = loaded_rules(prom)
    for rule in rules:
        if rule.get("health") != "ok":
            report(False, f"[rule health] {rule_label(rule)}", f"{rule.get('health')}: {rule.get('lastError', '')}")
    report(all(r.get("health") == "ok" for r in rules), "every rule evaluates without error", f"{len(rules)} rules")
    evaluate(prom, "after traffic", panels, rules)

    print(f"prometheus-check: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    w = sub.add_parser("wait-http")
    w.add_argument("url")
    w.add_argument("seconds", type=float)
    r = sub.add_parser("run")
    r.add_argument("--prometheus", required=True)
    r.add_argument("--proxy", required=True)
    r.add_argument("--admin", required=True)
    r.add_argument("--dashboard", required=True)
    r.add_argument("--alerts", required=True)
    r.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    if args.cmd == "ports":
        print("\n".join(map(str, free_ports(args.n))))
        return 0
    if args.cmd == "wait-http":
        return 0 if wait_http(args.url, args.seconds) else 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
