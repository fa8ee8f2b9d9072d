#!/usr/bin/env python3
"""Exact-count HTTP/1.1 keep-alive load for benches/profile/request_cost.sh.

Opens --connections keep-alive connections to 127.0.0.1:--port, sends exactly --warmup requests,
runs the --before command (every answer read, every connection idle), sends exactly --requests
requests over the same connections, runs the --after command, then closes the connections. One
request in flight per connection. Every answer is checked: 200 for an allowed client address,
451 for the blocked one. Request i of the whole run (warm-up first) carries in X-Forwarded-For:

  i % 100 == 99  -> 77.88.8.8 (RU, blocked: 451)               1 % of the requests
  otherwise      -> ALLOWED[i % 16], 16 addresses in 9 countries, 99 % (200)

A request counts once its whole response has been read. Exits non-zero (and says why) on any
unexpected status, a closed connection, a failed hook command, or when --timeout seconds pass.
Prints one line per phase. Only ever connects to 127.0.0.1.
"""

import argparse
import selectors
import shlex
import socket
import subprocess
import sys
import time

BLOCKED = "77.88.8.8"  # RU
ALLOWED = [  # country in the shipped database (geoip/geo-whois-asn-country.mmdb)
    "8.8.8.8",  # US
    "1.1.1.1",  # AU
    "9.9.9.9",  # US
    "208.67.222.222",  # US
    "80.80.80.80",  # NL
    "81.2.69.142",  # GB
    "2.16.0.1",  # NL
    "200.160.2.3",  # BR
    "202.12.27.33",  # JP
    "41.0.0.1",  # ZA
    "151.101.1.1",  # US
    "91.198.174.192",  # NL
    "130.104.1.1",  # BE
    "193.0.6.139",  # NL
    "2001:4860:4860::8888",  # US
    "2a00:1450:4001::1",  # IE
]
BLOCK_EVERY = 100


def address(i):
    return BLOCKED if i % BLOCK_EVERY == BLOCK_EVERY - 1 else ALLOWED[i % len(ALLOWED)]


class Conn:
    __slots__ = ("sock", "buf", "out", "index", "want")

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.out = b""
        self.index = -1
        self.want = 0


def parse(buf):
    """(status, bytes consumed) of one complete response at the start of buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise RuntimeError(f"not an HTTP/1.x response: {head[0]!r}")
    status = int(parts[1])
    length, chunked, close = 0, False, False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and "close" in value:
            close = True
    if close:
        raise RuntimeError(f"server asked to close the connection (status {status})")
    pos = end + 4
    if not chunked:
        return (status, pos + length) if len(buf) >= pos + length else None
    while True:  # chunked body: size line, data, CRLF ... 0 CRLF (no trailers expected) CRLF
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:  # last chunk, then optional trailer lines, then an empty line
            eol = buf.find(b"\r\n\r\n", pos - 2)
            return None if eol < 0 else (status, eol + 4)
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


def run_phase(sel, conns, templates, count, first, deadline, label):
    """Sends exactly `count` requests (request indices first..first+count-1) over `conns`."""
    sent = done = ok = blocked = 0

    def send_next(c):
        nonlocal sent
        c.index = first + sent
        sent += 1
        a = address(c.index)
        c.want = 451 if a == BLOCKED else 200
        c.out = templates[a]
        sel.modify(c.sock, selectors.EVENT_WRITE, c)

    for c in conns[:count]:
        send_next(c)
    start = time.monotonic()
    while done < count:
        now = time.monotonic()
        if now > deadline:
            raise SystemExit(f"load.py: {label}: timed out with {done}/{count} answered")
        for key, mask in sel.select(timeout=min(1.0, deadline - now)):
            c = key.data
            if c is None:  # an idle connection became readable: only a close or junk can come
                raise SystemExit(f"load.py: {label}: an idle connection became readable (closed by the server?)")
            if mask & selectors.EVENT_WRITE:
                n = c.sock.send(c.out)
                c.out = c.out[n:]
                if not c.out:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            data = c.sock.recv(65536)
            if not data:
                raise SystemExit(f"load.py: {label}: the server closed a connection after {done} answers")
            c.buf += data
            got = parse(c.buf)
            if got is None:
                continue
            status, used = got
            c.buf = c.buf[used:]
            if c.buf:
                raise SystemExit(f"load.py: {label}: bytes after a response (unsolicited data)")
            if status != c.want:
                raise SystemExit(f"load.py: {label}: request {c.index} ({address(c.index)}) got {status},"
                                 f" want {c.want}")
            done += 1
            if status == 451:
                blocked += 1
            else:
                ok += 1
            if sent < count:
                send_next(c)
            else:
                sel.modify(c.sock, selectors.EVENT_READ, None)  # idle: nothing expected
    seconds = time.monotonic() - start
    print(f"{label}: requests={done} ok={ok} blocked={blocked} connections={min(len(conns), count)} "
          f"seconds={seconds:.2f} req/s={done / seconds if seconds else 0:.0f}", flush=True)
    return first + sent


def run_hook(command, label):
    if not command:
        return
    r = subprocess.run(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SystemExit(f"load.py: {label} command failed ({r.returncode}): {command}\n{r.stdout}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int)
    ap.add_argument("--requests", type=int, help="measured requests")
    ap.add_argument("--warmup", type=int, default=0, help="requests before the measured ones, same connections")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--before", default="", help="command run after the warm-up, before the measured requests"
                    " (every connection idle, all answers read)")
    ap.add_argument("--after", default="", help="command run after the measured requests, connections still open")
    ap.add_argument("--path", default="/bench")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    ap.add_argument("--print-mix", action="store_true", help="print the address cycle and exit")
    args = ap.parse_args()
    if args.print_mix:
        print(f"every {BLOCK_EVERY}th request from {BLOCKED} (RU, 451); the others cycle over"
              f" {len(ALLOWED)} allowed addresses (200): {' '.join(ALLOWED)}")
        return 0
    if args.port is None or args.requests is None:
        ap.error("--port and --requests are required")
    if args.requests < 1 or args.connections < 1 or args.warmup < 0:
        ap.error("--requests and --connections must be positive, --warmup not negative")

    host = f"127.0.0.1:{args.port}"
    templates = {
        a: f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {a}\r\n\r\n".encode()
        for a in ALLOWED + [BLOCKED]
    }
    deadline = time.monotonic() + args.timeout
    sel = selectors.DefaultSelector()
    conns = [Conn(args.port) for _ in range(args.connections)]
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, None)
    nxt = 0
    if args.warmup:
        nxt = run_phase(sel, conns, templates, args.warmup, nxt, deadline, "warm-up")
    run_hook(args.before, "--before")
    nxt = run_phase(sel, conns, templates, args.requests, nxt, deadline, "measured")
    run_hook(args.after, "--after")
    for c in conns:
        sel.unregister(c.sock)
        c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
