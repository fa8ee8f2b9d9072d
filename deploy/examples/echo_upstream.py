#!/usr/bin/env python3
"""A stand-in upstream for trying geogate: answers every request with the headers it received.

Usage: python3 deploy/examples/echo_upstream.py [PORT]   (default 3000, listens on 127.0.0.1 only)
Standard library only; for demos and manual tests, not for production.
"""
import http.server
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = f"{self.command} {self.path}\n{self.headers}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
