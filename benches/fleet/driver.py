#!/usr/bin/env python3
"""Load, list changes and convergence measurement for benches/fleet.sh (see its header).

usage: driver.py MANIFEST.json

The manifest (written by fleet.sh) names the processes ({name, kind: remote|directory, port, log,
dir for directory}), the served remote list file, the base list, the list server's log, the poll
interval, the rounds, the request rate and the deadline (epoch seconds).

Each process gets its own client thread: one keep-alive HTTP/1.1 connection, GET / at `rate`
requests per second, X-Forwarded-For = the round's address. Round k: every client switches to
203.0.113.k (not listed), 1 s of warm-up (all must answer 200), a random wait in [0, poll) so the
change lands at a different phase of each poller's clock, then one change adds 203.0.113.k/32 to
the list: the remote file is replaced (os.replace) and every ConfigMap-style directory gets a new
timestamped directory and its `..data` symlink swapped (ln -s + mv -T, old directory removed, as
the kubelet does). The time of the change is taken right after the rename (per directory for the
directory processes). A process has converged when the first 403 for the round's address comes
back; its latency is that response's arrival minus the change (an upper bound; the resolution is
one request interval). A 200 sent after that 403 arrived is a flap. Failures: connection errors,
timeouts, 5xx, any status other than 200/403, over the whole run.

For diagnosis each row also shows, from the logs, the first `reloaded` line of that process after
the change (its time and its duration `ms`), and for a remote process when the list server first
answered it 200 after the change (the poll wait).
"""
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

m = json.load(open(sys.argv[1]))
procs = m["processes"]
poll = float(m["poll"])
rounds = int(m["rounds"])
rate = float(m["rate"])
deadline = float(m["deadline"])
random.seed(m.get("seed", 12))


class State:
    addr = None
    round = 0


state = State()
stop = threading.Event()


class Client(threading.Thread):
    def __init__(self, p):
        super().__init__(daemon=True)
        self.p = p
        self.records = []  # (t_send, t_recv, round, status); status -1 = connection error / timeout
        self.errors = []
        self.first_blocked = {}  # round -> arrival of its first 403

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.p["port"], timeout=5)

    def run(self):
        conn = self.connect()
        interval = 1.0 / rate
        nxt = time.time() + random.random() * interval
        while not stop.is_set():
            now = time.time()
            if nxt > now:
                time.sleep(nxt - now)
            nxt += interval
            if nxt < time.time() - interval:  # fell behind: do not burst
                nxt = time.time() + interval
            rnd, addr = state.round, state.addr
            t_send = time.time()
            try:
                conn.request("GET", "/fleet", headers={"X-Forwarded-For": addr})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = self.connect()
            except (OSError, http.client.HTTPException) as e:
                status = -1
                if len(self.errors) < 5:
                    self.errors.append("%.3f %s" % (t_send, e))
                conn.close()
                conn = self.connect()
                time.sleep(0.02)
            t_recv = time.time()
            self.records.append((t_send, t_recv, rnd, status))
            if status == 403:
                self.first_blocked.setdefault(rnd, t_recv)


def parse_ts(s):
    # 2026-12-03T08:04:33.565838Z -> epoch seconds (UTC)
    import calendar

    s = s.rstrip("Z")
    main, _, frac = s.partition(".")
    t = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def reloads(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                fields = j.get("fields", {})
                if fields.get("message") == "reloaded":
                    out.append((parse_ts(j["timestamp"]), float(fields.get("ms", 0)), fields.get("trigger", "?")))
    except OSError:
        pass
    return out


def fetches(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                t, p, st = line.split()
                if st == "200":
                    out.setdefault(p.split("/")[1], []).append(float(t))
    except OSError:
        pass
    return out


def write_list(path, extra):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(base)
        for a in extra:
            f.write(a + "/32\n")
    os.replace(tmp, path)


base = open(m["base_list"]).read()
clients = [Client(p) for p in procs]
for c in clients:
    c.p["client"] = c
state.round, state.addr = 0, "203.0.113.250"
for c in clients:
    c.start()

changes = []  # per round: {name: t0}
listed = []
problems = []
round_budget = 1.0 + poll + (poll + 6.0) + 0.6
done_rounds = 0
for k in range(1, rounds + 1):
    if time.time() + round_budget > deadline:
        problems.append("stopped after %d of %d rounds: the time bound would be exceeded" % (k - 1, rounds))
        break
    addr = "203.0.113.%d" % k
    state.addr, state.round = addr, k
    time.sleep(1.0)
    for c in clients:
        rs = [r for r in c.records if r[2] == k]
        if not rs or any(r[3] == 403 for r in rs):
            problems.append("round %d: %s is not answering 200 for %s before the change" % (k, c.p["name"], addr))
    time.sleep(random.random() * poll)
    listed.append(addr)
    t0 = {}
    write_list(m["remote_list"], listed)
    t_remote = time.time()
    new_list = os.path.join(m["work"], "list.round%d.txt" % k)
    write_list(new_list, listed)
    script = ['set -e; new=$1; shift; for d in "$@"; do']
    script.append('  old=$(readlink "$d/..data"); ts=..$(date -u +%Y_%m_%d_%H_%M_%S.%N)')
    script.append('  mkdir "$d/$ts"; cp "$new" "$d/$ts/list.txt"; ln -s "$ts" "$d/..data_tmp"')
    script.append('  mv -T "$d/..data_tmp" "$d/..data"; echo "$d $EPOCHREALTIME"; rm -rf "${d:?}/$old"; done')
    dirs = [p["dir"] for p in procs if p["kind"] == "directory"]
    out = subprocess.run(["bash", "-c", "\n".join(script), "swap", new_list] + dirs, check=True,
                         capture_output=True, text=True).stdout
    t_dir = dict(line.rsplit(" ", 1) for line in out.split("\n") if line)
    for p in procs:
        t0[p["name"]] = t_remote if p["kind"] == "remote" else float(t_dir[p["dir"]])
    changes.append(t0)
    limit = time.time() + poll + 6.0
    while time.time() < limit:
        if all(k in c.first_blocked for c in clients):
            break
        time.sleep(0.05)
    time.sleep(0.6)  # watch for flaps
    done_rounds = k

stop.set()
for c in clients:
    c.join(timeout=6)

fetch_log = fetches(m["fetch_log"])
rows = []
fail_total = 0
print("%-5s %-9s %5s %6s %6s %5s %5s  %-5s %8s %9s %9s %9s" % (
    "proc", "kind", "port", "reqs", "failed", "flaps", "round", "addr", "flip_s", "fetch_s", "reload_at", "reload_ms"))
for c in clients:
    p = c.p
    recs = c.records
    failed = [r for r in recs if r[3] == -1 or r[3] >= 500 or r[3] not in (200, 403)]
    fail_total += len(failed)
    rel = reloads(p["log"])
    fl = fetch_log.get(p["name"], [])
    for k in range(1, done_rounds + 1):
        t0 = changes[k - 1][p["name"]]
        rs = [r for r in recs if r[2] == k]
        early = [r for r in rs if r[3] == 403 and r[1] < t0]
        blocked = [r for r in rs if r[3] == 403]
        first = min((r[1] for r in blocked), default=None)
        flaps = len([r for r in rs if r[3] == 200 and first is not None and r[0] > first])
        flip = None if first is None else first - t0
        if early:
            problems.append("%s round %d: blocked before the change" % (p["name"], k))
        r_after = [x for x in rel if x[0] >= t0]
        f_after = [t for t in fl if t >= t0]
        rows.append({"kind": p["kind"], "flip": flip, "flaps": flaps})
        print("%-5s %-9s %5d %6s %6s %5d %5d  %-5s %8s %9s %9s %9s" % (
            p["name"], p["kind"], p["port"],
            len(recs) if k == 1 else "", len(failed) if k == 1 else "", flaps, k, "." + str(k),
            "-" if flip is None else "%.3f" % flip,
            ("%.3f" % (f_after[0] - t0)) if (p["kind"] == "remote" and f_after) else "-",
            ("%.3f" % (r_after[0][0] - t0)) if r_after else "-",
            ("%.0f" % r_after[0][1]) if r_after else "-"))
    for e in c.errors:
        print("      %s error: %s" % (p["name"], e))

print()
ok = True
goals = {"remote": poll + 1.0, "directory": 1.0}
for kind in ("remote", "directory"):
    ks = [r for r in rows if r["kind"] == kind]
    if not ks:
        continue
    flips = [r["flip"] for r in ks if r["flip"] is not None]
    missing = len(ks) - len(flips)
    flaps = sum(r["flaps"] for r in ks)
    med = statistics.median(flips) if flips else float("nan")
    mx = max(flips) if flips else float("nan")
    met = missing == 0 and flaps == 0 and mx <= goals[kind]
    ok &= met
    print("%-9s %2d processes x %d rounds: flip median %.3f s, max %.3f s (goal <= %.1f s), not flipped %d, flaps %d: %s" % (
        kind, len({id(r) for r in ks}) // max(done_rounds, 1), done_rounds, med, mx, goals[kind], missing, flaps,
        "met" if met else "MISSED"))
total = sum(len(c.records) for c in clients)
print("requests %d, failed %d (connection errors, timeouts, 5xx, other statuses): %s" % (
    total, fail_total, "met" if fail_total == 0 else "MISSED"))
ok &= fail_total == 0
if done_rounds < rounds:
    ok = False
for pr in problems:
    print("problem: " + pr)
ok &= not problems
print("goal: %s" % ("met" if ok else "MISSED"))
sys.exit(0 if ok else 1)
