#!/usr/bin/env python3
"""The remote list for benches/fleet.sh: serves one file, whatever the path, with ETag / Last-Modified.

usage: list_server.py PORT FILE LOG

The file is read on every request (so replacing it with os.replace is the change); the ETag is the
SHA-256 of its content, and If-None-Match (preferred) or If-Modified-Since answer 304. Each request
is logged to LOG as "epoch_seconds path status" (the path names the geogate process: /r3/list.txt),
so the driver can split a remote process's convergence into poll wait and apply time.
Listens on 127.0.0.1 only.
"""
import email.utils
import hashlib
import http.server
import os
import sys
import threading
import time

port, path, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(log_path, "a", buffering=1)
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        try:
            with open(path, "rb") as f:
                body = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except OSError:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = '"%s"' % hashlib.sha256(body).hexdigest()[:32]
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        fresh = False
        if inm is not None:
            fresh = etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
        elif ims is not None:
            try:
                fresh = int(mtime) <= email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                fresh = False
        status = 304 if fresh else 200
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0" if fresh else str(len(body)))
        self.end_headers()
        if not fresh:
            self.wfile.write(body)
        with lock:
            log.write("%.6f %s %d\n" % (time.time(), self.path, status))

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


Server(("127.0.0.1", port), Handler).serve_forever()
