#!/usr/bin/env python3
"""Swaps a database file and asks geogate to reload, once a second, until told to stop.

usage: reload_driver.py WORKDIR NDB ADMIN_PORT DONE_FILE OUT_JSONL [SWAPS_BEFORE]

Every second on a fixed cadence (a reload that takes longer is followed at once), the next of
WORKDIR/db0.mmdb .. db{NDB-1}.mmdb replaces WORKDIR/geo.mmdb, and POST /-/reload is sent on
one kept-alive connection to 127.0.0.1:ADMIN_PORT; each answer goes to OUT_JSONL as a line
({"result":"request-failed"} if there was none). Stops when DONE_FILE exists. SWAPS_BEFORE
(default 0) is how many swaps earlier runs made, so that a run started again goes on with the
next file instead of the one already in place.

The file is replaced as an update lands (a new inode renamed over the old name) but through a
hard link, not a copy, and the request goes out from this one process: a copy of the file and
a curl process per reload cost the driver itself about 11 ms of CPU per second (cp 5 ms,
curl 6.5 ms, measured with `perf stat -r 20` on 2026-12-06), CPU that only the reload phase
of the soak paid and that is not geogate's.
"""
import http.client
import json
import os
import sys
import time


def main():
    work, ndb, port, done, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    before = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    geo, tmp = os.path.join(work, "geo.mmdb"), os.path.join(work, "geo.mmdb.tmp")
    conn = None
    n, t0 = 0, time.monotonic()
    with open(out, "a") as log:
        while not os.path.exists(done):
            wait = t0 + n + 1 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if os.path.exists(done):
                break
            src = os.path.join(work, f"db{(before + n + 1) % ndb}.mmdb")
            if os.path.exists(tmp):
                os.unlink(tmp)
            os.link(src, tmp)
            os.replace(tmp, geo)
            answer = None
            for _ in range(2):  # a closed kept-alive connection is opened again once
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("POST", "/-/reload", body=b"")
                    answer = conn.getresponse().read().decode()
                    break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
            log.write((answer if answer else json.dumps({"result": "request-failed"})) + "\n")
            log.flush()
            n += 1


if __name__ == "__main__":
    main()
