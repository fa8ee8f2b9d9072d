"""Flask app for the path differential: the routes an ordinary Flask app would declare.

usage: python3 flask_app.py PORT   (Debian's python3-flask; Werkzeug's threaded server on 127.0.0.1)
"""
import json
import sys

from flask import Flask, Response, request

app = Flask(__name__)
# Every method, so the route decision is the router's alone (the harness always POSTs anyway).
ANY = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def echo(route, status=200):
    body = {
        "app": "flask",
        "route": route,
        "path": request.path,  # as the router saw it (Werkzeug decodes PATH_INFO)
        "host_header": request.headers.get("Host"),
        "fw_host": request.host,
        "x_forwarded_for": request.headers.get("X-Forwarded-For"),
        "forwarded": request.headers.get("Forwarded"),
        "x_real_ip": request.headers.get("X-Real-IP"),
        "x_geo_client_ip": request.headers.get("X-Geo-Client-IP"),
        "x_forwarded_host": request.headers.get("X-Forwarded-Host"),
        "fw_remote_ip": request.remote_addr,
    }
    return Response(json.dumps(body), status, {"Content-Type": "application/json", "X-Bench-App": "flask"})


# The protected actions and everything below them (geogate's rule is a segment prefix, so
# /signup/confirm is protected too). `<path:>` takes one or more characters, slashes included.
@app.route("/signup", methods=ANY)
@app.route("/signup/<path:rest>", methods=ANY)
def signup(rest=None):
    return echo("signup")


@app.route("/api/v1/accounts", methods=ANY)
@app.route("/api/v1/accounts/<path:rest>", methods=ANY)
def accounts(rest=None):
    return echo("accounts")


@app.route("/", defaults={"rest": ""}, methods=ANY)
@app.route("/<path:rest>", methods=ANY)
def other(rest):
    return echo("other", 404)


if __name__ == "__main__":
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
