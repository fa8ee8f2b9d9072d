#!/usr/bin/env python3
"""Exercises deploy/kubernetes/base/refresh-geoip.sh against a local HTTP server.

Serves files from a temporary directory on 127.0.0.1 (with ETag / If-None-Match support),
runs the script with ONESHOT=1 and checks: a good database is installed by rename, an
unchanged one costs a 304 and keeps the file, a too-small or non-MaxMind download is
refused and the old file kept, an HTTP error keeps the old file. Needs sh, curl, grep, tail
(fails without them).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path.cwd()
SCRIPT = ROOT / "deploy" / "kubernetes" / "base" / "refresh-geoip.sh"
DB = ROOT / "geoip" / "geo-whois-asn-country.mmdb"


class Handler(http.server.BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}
    log: list[tuple[str, int]] = []

    def do_GET(self) -> None:  # noqa: N802
        body = self.served.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            self.log.append((self.path, 404))
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            self.log.append((self.path, 304))
            return
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.log.append((self.path, 200))

    def log_message(self, *args) -> None:  # quiet
        pass


def main() -> int:
    # A missing tool is a failure, not a pass: the script under test needs them all in the
    # image, and .ci/deploy-checks.sh installs curl when it is missing.
    missing = [tool for tool in ("sh", "curl", "grep", "tail") if shutil.which(tool) is None]
    if missing:
        print(f"test_refresher: FAIL (not installed: {', '.join(missing)})")
        return 1
    good = DB.read_bytes()
    Handler.served = {
        "/good.mmdb": good,
        "/tiny.mmdb": b"\xab\xcd\xefMaxMind.com" + b"x" * 100,
        "/garbage.mmdb": os.urandom(2_000_000),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    failures = passed = 0
    with tempfile.TemporaryDirectory() as tmp:
        vol = Path(tmp)
        dest = vol / "geo-whois-asn-country.mmdb"
        dest.write_bytes(b"old database")

        def run(url_path: str) -> int:
            env = dict(os.environ, GEOIP_URL=f"http://127.0.0.1:{port}{url_path}", GEOIP_DIR=str(vol),
                       ONESHOT="1", MIN_BYTES="1000000",
                       no_proxy="127.0.0.1", NO_PROXY="127.0.0.1")
            p = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
            return p.returncode

        def expect(what: str, ok: bool) -> None:
            nonlocal failures, passed
            print(f"  {'ok  ' if ok else 'FAIL'} {what}")
            if ok:
                passed += 1
            else:
                failures += 1

        rc = run("/tiny.mmdb")
        expect("too-small download refused, old file kept", rc != 0 and dest.read_bytes() == b"old database")
        rc = run("/garbage.mmdb")
        expect("download without MaxMind metadata refused, old file kept", rc != 0 and dest.read_bytes() == b"old database")
        rc = run("/missing.mmdb")
        expect("HTTP 404 fails, old file kept", rc != 0 and dest.read_bytes() == b"old database")
        inode_before = dest.stat().st_ino
        rc = run("/good.mmdb")
        expect("good database installed", rc == 0 and dest.read_bytes() == good)
        expect("installed by rename (new inode, not rewritten in place)", dest.stat().st_ino != inode_before)
        expect("no temporary file left behind", not any(p.name.endswith(".download") for p in vol.iterdir()))
        Handler.log.clear()
        rc = run("/good.mmdb")
        expect("unchanged database: conditional request answered 304, file kept",
               rc == 0 and Handler.log == [("/good.mmdb", 304)] and dest.read_bytes() == good)
        env = dict(os.environ, GEOIP_URL="", GEOIP_DIR=str(vol), ONESHOT="1")
        p = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
        expect("empty GEOIP_URL keeps the file and succeeds", p.returncode == 0 and dest.read_bytes() == good)
    server.shutdown()
    print(f"test_refresher: {passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
