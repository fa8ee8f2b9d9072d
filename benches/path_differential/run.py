#!/usr/bin/env python3
"""Runs the path differential: every corpus target, straight to each framework app and through
geogate in front of it, then the Host and client-IP header forms. Writes raw results for
report.py. Started by benches/path_differential.sh, which installs the frameworks first.

usage: run.py --bin GEOGATE --db MMDB --corpus corpus.jsonl --out DIR --work DIR
              --frameworks flask,django,... --client-ip 77.88.8.8 [--pidfile FILE]
Framework locations come from the environment the shell script sets (APP_PYTHON,
EXPRESS5_DIR, EXPRESS4_DIR, GO_MUX_BIN). Talks only to 127.0.0.1.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "console.example.com"
TIMEOUT = 5.0  # per request; a server that hangs on a form must not stall the run
WORKERS = 8  # in flight at once: enough to keep two cores busy, few enough for dev servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


# --- raw HTTP over a socket: the target bytes go out exactly as generated ----------------------


def request_bytes(target, xff=None, extra=b""):
    head = b"POST " + target + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
    head += b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n"
    if xff:
        head += b"X-Forwarded-For: " + xff.encode() + b"\r\n"
    return head + extra + b"\r\n{}"


def dechunk(body):
    out, rest = b"", body
    while rest:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            n = int(line.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out, rest = out + rest[:n], rest[n + 2 :]
    return out


def exchange(port, raw):
    """Sends one request, reads one response; never raises (errors become the result)."""
    data, err = b"", None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(raw)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if complete(data):
                    break
    except socket.timeout:
        err = "timeout"
    except OSError as e:
        err = type(e).__name__
    return parse(data, err)


def complete(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    h = head.lower()
    for line in h.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    if b"transfer-encoding: chunked" in h:
        return body.endswith(b"0\r\n\r\n")
    return False


def parse(data, err):
    res = {"status": None, "err": err}
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        res["status"] = int(lines[0].split()[1])
    except (IndexError, ValueError):
        res["err"] = err or ("no-response" if not data else "unparsable")
        return res
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        headers[key] = (headers[key] + ", " if key in headers else "") + value.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", ""):
        body = dechunk(body)
    keep = ("location", "x-geogate-rule", "server", "cache-control", "content-type", "content-length",
            "transfer-encoding")
    res["headers"] = {k: headers[k] for k in keep if k in headers}
    if "x-bench-app" in headers:
        try:
            res["echo"] = json.loads(body)
        except ValueError:
            res["body"] = body[:300].decode("latin-1")
    else:
        res["body"] = body[:300].decode("latin-1")
    return res


# --- processes ---------------------------------------------------------------------------------


class Procs:
    """Everything this run started, stopped in reverse order whatever happens."""

    def __init__(self, pidfile):
        self.pidfile, self.live = pidfile, []

    def start(self, name, cmd, log, **kw):
        f = open(log, "ab")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.live.append((name, p))
        if self.pidfile:  # the shell's trap kills these process groups if we die first
            with open(self.pidfile, "a") as pf:
                pf.write("%d\n" % p.pid)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.live = [(n, q) for n, q in self.live if q is not p]

    def stop_all(self):
        for _, p in reversed(self.live):
            self.stop(p)


def framework_cmd(fw, apps, port):
    env = os.environ
    py = env.get("APP_PYTHON", "/usr/bin/python3")
    table = {
        "flask": ([py, os.path.join(apps, "flask_app.py"), str(port)], None, {}),
        "django": ([py, os.path.join(apps, "django_app.py"), str(port)], None, {}),
        "express": (["node", os.path.join(apps, "express_app.js"), str(port), env.get("EXPRESS5_DIR", ""), "express"],
                    None, {}),
        "express4": (["node", os.path.join(apps, "express_app.js"), str(port), env.get("EXPRESS4_DIR", ""),
                      "express4"], None, {}),
        "go": ([env.get("GO_MUX_BIN", "geogate-bench-mux"), str(port)], None, {}),
        "sinatra": (["ruby", os.path.join(apps, "sinatra_app.rb"), str(port)], None, {"APP_ENV": "production"}),
        "rails": (["puma", "-b", "tcp://127.0.0.1:%d" % port, "-e", "production", "config.ru"],
                  os.path.join(apps, "rails"), {"RAILS_ENV": "production"}),
    }
    return table[fw]


GEOGATE_TOML = """\
# Written by benches/path_differential/run.py from deploy/examples/geogate.toml: the same
# listener trust and sign-up rule, with one framework app as the upstream and free ports.
default_upstream = "console"

[server]
shutdown_grace = "1s"

[[listener]]
name = "public"
address = "127.0.0.1:{port}"
client_ip = {{ source = "x-forwarded-for", trusted = ["10.0.0.0/8", "127.0.0.1/32"], on_unresolved = "block" }}

[admin]
address = "127.0.0.1:{admin}"

[[upstream]]
name = "console"
url = "http://127.0.0.1:{app}"

[[upstream]]
name = "api"
url = "http://127.0.0.1:{app}"

[[route]]
path_prefix = "/api/"
upstream = "api"

[[source]]
name = "geoip"
type = "mmdb"
path = "{db}"

[policy]
default = "allow"
tag_headers = {{ country = "X-Geo-Country", subdivision = "X-Geo-Subdivision", restricted = "X-Geo-Restricted", rule = "X-Geo-Rule" }}

[policy.block]
status = 451

[[rule]]
name = "block-signup-ru-by"
action = "block"
countries = ["RU", "BY"]
methods = ["POST"]
paths = ["/signup", "/api/v1/accounts"]
{hosts}json_body = '{{"error":"unavailable_for_legal_reasons","message":"New accounts cannot be opened from your region."}}'

[[rule]]
name = "tag-ru-by"
action = "tag"
countries = ["RU", "BY"]
tag = ["country", "restricted", "rule"]

[reload]
watch = false

[access_log]
enabled = true
sample = 0.0
"""


def start_geogate(procs, args, fw, app_port, host_scoped):
    port, admin = free_port(), free_port()
    tag = "hosts" if host_scoped else "paths"
    cfg = os.path.join(args.work, "geogate-%s-%s.toml" % (fw, tag))
    hosts = 'hosts = ["%s"]\n' % HOST if host_scoped else ""
    with open(cfg, "w") as f:
        f.write(GEOGATE_TOML.format(port=port, admin=admin, app=app_port, db=args.db, hosts=hosts))
    p = procs.start("geogate", [args.bin, "run", "--config", cfg], os.path.join(args.work, "geogate-%s-%s.log" % (fw, tag)))
    end = time.monotonic() + 30
    while time.monotonic() < end and p.poll() is None:
        try:
            if urllib.request.urlopen("http://127.0.0.1:%d/readyz" % admin, timeout=1).status == 200:
                return p, port, admin
        except OSError:
            time.sleep(0.2)
    procs.stop(p)
    return None, None, None


def counters(admin):
    """(requests geogate has sent upstream so far, {refusal reason: count}), from its metrics: the
    upstream-duration histogram counts every attempt, geogate_rejected_total counts refusals by
    reason. None for what is not there."""
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=2).read().decode()
    except OSError:
        return None, None
    upstream, rejected = [], {}
    for line in text.splitlines():
        if line.startswith("geogate_upstream_duration_seconds_count"):
            upstream.append(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("geogate_rejected_total{"):
            labels, _, value = line.rpartition(" ")
            reason = labels.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in labels else labels
            rejected[reason] = rejected.get(reason, 0.0) + float(value)
    return (sum(upstream) if upstream else None), (rejected if "geogate_rejected_total" in text else None)


def measured(admin, send):
    """Runs send() (one exchange through geogate, nothing else in flight) and records on its
    result what geogate's counters say happened: "forwarded" (the upstream counter moved) and,
    for an answer geogate made, "refusal" (the geogate_rejected_total reason that moved;
    "http_parser" for a 400 that moved neither counter: the HTTP parser refused the request
    before geogate's handler saw it)."""
    up0, rej0 = counters(admin)
    res = send()
    up1, rej1 = counters(admin)
    if up0 is not None and up1 is not None:
        res["forwarded"] = up1 > up0
    if rej0 is not None and rej1 is not None:
        moved = sorted(r for r in rej1 if rej1[r] > rej0.get(r, 0.0))
        if moved:
            res["refusal"] = ",".join(moved)
        elif res.get("status") == 400 and res.get("forwarded") is False:
            res["refusal"] = "http_parser"
    return res


def settle_400s(rows, gport, admin, client_ip, corpus_by_id):
    """A 400 without the app's echo is geogate's refusal (its JSON, or the HTTP parser's bare
    400) or the app server's own error forwarded (puma, node and Werkzeug answer malformed
    targets with bare 400s too). Re-send each one alone and read geogate's counters: whether it
    forwarded, and the refusal reason it counted. The re-sent answer's status is kept too
    ("settled_status"), so a flaky answer shows."""
    for r in rows:
        via = r["via"]
        if via.get("status") != 400 or "echo" in via:
            continue
        target = bytes.fromhex(corpus_by_id[r["id"]]["target_hex"])
        again = measured(admin, lambda: exchange(gport, request_bytes(target, xff=client_ip)))
        for k in ("forwarded", "refusal"):
            if k in again:
                via[k] = again[k]
        via["settled_status"] = again.get("status")


# --- the Host and client-IP forms --------------------------------------------------------------


def host_forms(client_ip):
    """(name, raw request) pairs. Each Host form goes to /signup, where the host-scoped rule's
    verdict shows the host geogate judged, and to /public, which is forwarded, so the app's echo
    shows the Host it was given next to the judged one (geogate's X-Forwarded-Host)."""
    xff = b"X-Forwarded-For: " + client_ip.encode() + b"\r\n"
    tail = b"Content-Length: 2\r\nConnection: close\r\n" + xff + b"\r\n{}"

    def req(line, *headers):
        return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + tail

    c, o = b"Host: console.example.com", b"Host: other.example.com"
    forms = []
    for path in (b"/signup", b"/public"):
        line = b"POST " + path + b" HTTP/1.1"

        def absolute(authority):
            return b"POST http://" + authority + path + b" HTTP/1.1"

        forms += [(name + ":" + path.decode(), raw) for name, raw in [
            ("baseline-console", req(line, c)),
            ("baseline-other", req(line, o)),
            ("absolute-other+host-console", req(absolute(b"other.example.com"), c)),
            ("absolute-console+host-other", req(absolute(b"console.example.com"), o)),
            ("absolute-console-port+host-other", req(absolute(b"console.example.com:8080"), o)),
            ("absolute-upper+host-other", req(absolute(b"CONSOLE.EXAMPLE.COM"), o)),
            ("two-hosts-console-first", req(line, c, o)),
            ("two-hosts-other-first", req(line, o, c)),
            ("http10-no-host", req(b"POST " + path + b" HTTP/1.0")),
            ("http11-no-host", req(line)),
            ("empty-host", req(line, b"Host:")),
            ("host-pct-dot", req(line, b"Host: console%2eexample.com")),
            ("host-upper", req(line, b"Host: CONSOLE.EXAMPLE.COM")),
            ("host-trailing-dot", req(line, b"Host: console.example.com.")),
            ("host-port", req(line, b"Host: console.example.com:8080")),
            ("host-empty-port", req(line, b"Host: console.example.com:")),
            ("host-comma-list", req(line, b"Host: console.example.com, other.example.com")),
            ("host-userinfo", req(line, b"Host: other.example.com@console.example.com")),
            ("host-fullwidth-dot", req(line, "Host: console\uff0eexample.com".encode())),
            ("host-tab", req(line, b"Host:\tconsole.example.com\t")),
            ("host-space-before-colon", req(line, b"Host : console.example.com")),
            ("xfh-console+host-other", req(line, o, b"X-Forwarded-Host: console.example.com")),
            # Client-IP headers a client adds itself (the balancer then appends the real client to
            # X-Forwarded-For); the app's echo shows which of them survive geogate.
            ("spoofed-client-ip-headers", req(line, c, b"X-Real-IP: 8.8.8.8", b"Forwarded: for=8.8.8.8",
                                              b"X-Geo-Client-IP: 8.8.8.8", b"X-Forwarded-For: 8.8.8.8")),
        ]]
    return forms


# --- main --------------------------------------------------------------------------------------


def run_framework(procs, args, fw, corpus, apps):
    logdir = args.work
    port = free_port()
    cmd, cwd, extra_env = framework_cmd(fw, apps, port)
    app = procs.start(fw, cmd, os.path.join(logdir, "app-%s.log" % fw), cwd=cwd, env={**os.environ, **extra_env})
    if not wait_port(port, app, 60):
        procs.stop(app)
        return {"framework": fw, "started": False, "why": "app did not listen (see app-%s.log)" % fw}
    gg, gport, admin = start_geogate(procs, args, fw, port, host_scoped=False)
    if gg is None:
        procs.stop(app)
        return {"framework": fw, "started": False, "why": "geogate did not become ready"}
    t0 = time.monotonic()
    rows = []

    def one(item):
        target = bytes.fromhex(item["target_hex"])
        return {"id": item["id"], "direct": exchange(port, request_bytes(target)),
                "via": exchange(gport, request_bytes(target, xff=args.client_ip))}

    with ThreadPoolExecutor(WORKERS) as pool:
        rows = list(pool.map(one, corpus))
    settle_400s(rows, gport, admin, args.client_ip, {c["id"]: c for c in corpus})
    procs.stop(gg)
    with open(os.path.join(args.out, "raw", fw + ".jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")

    hosts = []
    gg, gport, admin = start_geogate(procs, args, fw, port, host_scoped=True)
    if gg is not None:
        for name, raw in host_forms(args.client_ip):  # one at a time, so the counters are its own
            direct = raw.replace(b"X-Forwarded-For: " + args.client_ip.encode() + b"\r\n", b"")
            hosts.append({"form": name, "request": raw.decode("latin-1"), "direct": exchange(port, direct),
                          "via": measured(admin, lambda: exchange(gport, raw))})
        procs.stop(gg)
    with open(os.path.join(args.out, "raw", fw + ".hosts.jsonl"), "w") as f:
        for r in hosts:
            f.write(json.dumps(r) + "\n")
    procs.stop(app)
    return {"framework": fw, "started": True, "seconds": round(time.monotonic() - t0, 1),
            "version": args.versions.get(fw, "")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for a in ("--bin", "--db", "--corpus", "--out", "--work", "--frameworks", "--client-ip"):
        ap.add_argument(a, required=True)
    ap.add_argument("--pidfile")
    ap.add_argument("--versions", default="{}", help="JSON {framework: version} for the report")
    args = ap.parse_args()
    args.versions = json.loads(args.versions)
    os.makedirs(os.path.join(args.out, "raw"), exist_ok=True)
    # A private copy of the apps: frameworks (Rails above all) may write next to their code,
    # and nothing of a run may land in the repository.
    apps = os.path.join(args.work, "apps")
    shutil.copytree(os.path.join(HERE, "apps"), apps, dirs_exist_ok=True)
    with open(args.corpus) as f:
        corpus = [json.loads(line) for line in f]

    procs = Procs(args.pidfile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    runs = []
    try:
        for fw in args.frameworks.split(","):
            print("path_differential: %s: %d targets" % (fw, len(corpus)), file=sys.stderr, flush=True)
            r = run_framework(procs, args, fw, corpus, apps)
            if not r["started"]:
                print("path_differential: %s did not start: %s" % (fw, r["why"]), file=sys.stderr)
            runs.append(r)
    finally:
        procs.stop_all()
    with open(os.path.join(args.out, "runs.json"), "w") as f:
        json.dump({"client_ip": args.client_ip, "host": HOST, "runs": runs}, f, indent=1)
    shutil.copy(args.corpus, os.path.join(args.out, "corpus.jsonl"))


if __name__ == "__main__":
    main()
