#!/usr/bin/env bash
# Fleet convergence: after one blocklist change, how long until every geogate of a fleet blocks, and does any
# request fail meanwhile?
#
# Starts, all on 127.0.0.1:
#   * one origin answering 200 (nginx, or a python server where nginx is missing);
#   * one list server (benches/fleet/list_server.py) serving a CIDR list with ETag / Last-Modified and 304s;
#   * --remote N geogate processes whose blocklist is that URL: [[source]] type = "list", url, cache,
#     poll_interval = --poll (reload.watch = false: the poller triggers their reloads);
#   * --directory N geogate processes whose blocklist is list.txt in their own ConfigMap-style directory
#     (dir/..data -> ..2026_12_03_..., dir/list.txt -> ..data/list.txt) with reload.watch = true and the
#     default reload.debounce.
# Each process: its own listener and admin port, the shipped database as its geo source (--no-db: the list
# alone), client IP from X-Forwarded-For trusted from 127.0.0.1, one rule blocking the list with status 403,
# access log off. benches/fleet/driver.py then puts --rate requests/s on each process (one keep-alive
# connection each, X-Forwarded-For 203.0.113.k, not listed) and runs --rounds rounds of one change adding
# 203.0.113.k/32: the remote file is replaced, every directory's ..data symlink swapped (ln -s + mv -T, the
# old timestamped directory removed). Per process and round it prints the time from the change to the first
# 403 (flip_s), for remote processes when the list server first answered it 200 (fetch_s), and the first
# `reloaded` log line after the change (reload_at, its ms); then median and max per kind, and the goal:
#   every remote process within poll + 1 s, every directory process within 1 s, no flaps, 0 failed requests
#   (connection errors, timeouts, 5xx, any status other than 200/403). Exit 1 if missed, 2 on bad usage.
#
# usage: benches/fleet.sh [--remote 8] [--directory 8] [--poll 2s] [--rounds 5] [--rate 30] [--no-db]
#                         [--debounce D] [--base-port 19100] [--keep]
#   --poll       the remote sources' poll_interval (a geogate duration: 500ms, 2s, 1m)
#   --rate       requests per second per process
#   --debounce   reload.debounce of the directory processes (default: geogate's own, 200ms)
#   --base-port  origin = P, list server = P+1, process i (0-based) listener = P+10+2i, admin = P+11+2i
#   --keep       keep the work directory (configs, logs) and print its path
# The binary: $GEOGATE_BIN, default target/release/geogate (built with cargo build --release only if that
# is missing). The whole run is bounded to 170 s (rounds that would not fit are skipped, and the run then
# fails); every process started here is stopped on exit. Needs python3, curl; nginx optional.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/benches/fleet
n_remote=8 n_dir=8 poll=2s rounds=5 rate=30 base_port=19100 with_db=1 keep=0 debounce=
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2; exit 2; }
while (($#)); do
  case $1 in
    --remote) n_remote=$2; shift 2 ;;
    --directory) n_dir=$2; shift 2 ;;
    --poll) poll=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --debounce) debounce=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --no-db) with_db=0; shift ;;
    --keep) keep=1; shift ;;
    *) usage ;;
  esac
done
for v in "$n_remote" "$n_dir" "$rounds" "$base_port"; do [[ $v =~ ^[0-9]+$ ]] || usage; done
[[ $rate =~ ^[0-9]+([.][0-9]+)?$ ]] || usage
((n_remote + n_dir > 0 && rounds > 0)) || usage
poll_s=$(python3 - "$poll" <<'EOF'
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", sys.argv[1])
if not m:
    sys.exit("bad --poll %r: write e.g. 500ms, 2s, 1m" % sys.argv[1])
print(float(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]])
EOF
) || usage

start=$SECONDS
budget=170
deadline=$(python3 -c "import time; print(time.time() + $budget)")

bin=${GEOGATE_BIN:-$repo/target/release/geogate}
if [[ ! -x $bin ]]; then
  if [[ -n ${GEOGATE_BIN:-} ]]; then echo "fleet: GEOGATE_BIN=$bin is not executable" >&2; exit 2; fi
  echo "fleet: building geogate (release)" >&2
  (cd "$repo" && cargo build --release --quiet --bin geogate)
fi

n=$((n_remote + n_dir))
origin_port=$base_port list_port=$((base_port + 1))
ports=("$origin_port" "$list_port")
for ((i = 0; i < n; i++)); do ports+=($((base_port + 10 + 2 * i)) $((base_port + 11 + 2 * i))); done
for p in "${ports[@]}"; do
  if ((p > 65535)) || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "fleet: 127.0.0.1:$p is in use or invalid; pick another --base-port" >&2
    exit 2
  fi
done

work=$(mktemp -d /tmp/geogate-fleet.XXXXXX)
pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if ((keep)); then echo "fleet: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- data: the base list (1,000 /24s from a fixed seed, none in 203.0.113.0/24) ----------------------------------
awk 'BEGIN { srand(7); n = 0; while (n < 1000) { a = int(1 + rand() * 223); if (a == 10 || a == 127 || a == 203) continue;
  printf "%d.%d.%d.0/24\n", a, int(rand() * 256), int(rand() * 256); n++ } }' >"$work/base.txt"
cp "$work/base.txt" "$work/remote-list.txt"

# --- origin and list server -------------------------------------------------------------------------------------
if command -v nginx >/dev/null; then
  cat >"$work/origin.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/origin.pid;
error_log $work/origin.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port backlog=4096; location / { return 200 "ok\n"; } }
}
EOF
  nginx -c "$work/origin.conf" 2>>"$work/origin.err" & pids+=($!)
  origin_kind=nginx
else
  python3 - "$origin_port" 2>>"$work/origin.err" <<'EOF' & pids+=($!)
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
  origin_kind=python
fi
python3 "$here/list_server.py" "$list_port" "$work/remote-list.txt" "$work/fetch.log" 2>"$work/list_server.err" & pids+=($!)

wait_http() { # url seconds pid-to-watch
  local until=$((SECONDS + $2))
  until curl -fso /dev/null "$1"; do
    if ((SECONDS >= until)) || ! kill -0 "$3" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
}
wait_http "http://127.0.0.1:$origin_port/" 10 "${pids[0]}" || { echo "fleet: origin not up" >&2; cat "$work/origin.err" >&2; exit 1; }
wait_http "http://127.0.0.1:$list_port/x" 10 "${pids[1]}" || { echo "fleet: list server not up" >&2; cat "$work/list_server.err" >&2; exit 1; }

# --- geogate processes --------------------------------------------------------------------------------------------
db_source=
if ((with_db)); then
  db_source="[[source]]
name = \"geoip\"
type = \"mmdb\"
path = \"$repo/geoip/geo-whois-asn-country.mmdb\"
"
fi
manifest_procs=()
gg_pids=()
for ((i = 0; i < n; i++)); do
  if ((i < n_remote)); then kind=remote name=r$i; else kind=directory name=d$((i - n_remote)); fi
  d=$work/$name
  mkdir -p "$d"
  port=$((base_port + 10 + 2 * i)) admin=$((base_port + 11 + 2 * i))
  if [[ $kind == remote ]]; then
    list_source="[[source]]
name = \"blocklist\"
type = \"list\"
url = \"http://127.0.0.1:$list_port/$name/list.txt\"
cache = \"cache/list.txt\"
poll_interval = \"$poll\"
timeout = \"2s\""
    watch=false
  else
    ts=..$(date -u +%Y_%m_%d_%H_%M_%S.%N)
    mkdir -p "$d/cm/$ts"
    cp "$work/base.txt" "$d/cm/$ts/list.txt"
    ln -s "$ts" "$d/cm/..data"
    ln -s ..data/list.txt "$d/cm/list.txt"
    list_source="[[source]]
name = \"blocklist\"
type = \"list\"
path = \"cm/list.txt\""
    watch=true
    [[ -z $debounce ]] || watch="true
debounce = \"$debounce\""
  fi
  cat >"$d/geogate.toml" <<EOF
default_upstream = "origin"

[[listener]]
name = "$name"
address = "127.0.0.1:$port"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"], on_unresolved = "block" }

[admin]
address = "127.0.0.1:$admin"

[[upstream]]
name = "origin"
url = "http://127.0.0.1:$origin_port"

$db_source
$list_source

[policy]
default = "allow"

[[rule]]
name = "blocklist"
action = "block"
lists = ["blocklist"]
status = 403

[reload]
watch = $watch

[access_log]
enabled = false
EOF
  (cd "$d" && GEOGATE_LOG=info exec "$bin" run --config geogate.toml 2>"$d/geogate.log") & pids+=($!); gg_pids+=($!)
  manifest_procs+=("{\"name\": \"$name\", \"kind\": \"$kind\", \"port\": $port, \"admin\": $admin, \"log\": \"$d/geogate.log\", \"dir\": \"$d/cm\"}")
done
for ((i = 0; i < n; i++)); do
  admin=$((base_port + 11 + 2 * i))
  if ! wait_http "http://127.0.0.1:$admin/readyz" 60 "${gg_pids[$i]}"; then
    echo "fleet: geogate process $i (admin 127.0.0.1:$admin) not ready" >&2
    tail -n 20 "$work"/[rd]*/geogate.log >&2 || true
    exit 1
  fi
done
ready_s=$((SECONDS - start))

manifest=$work/manifest.json
{
  printf '{"work": "%s", "poll": %s, "rounds": %d, "rate": %s, "deadline": %s,\n' "$work" "$poll_s" "$rounds" "$rate" "$deadline"
  printf ' "remote_list": "%s", "base_list": "%s", "fetch_log": "%s",\n' "$work/remote-list.txt" "$work/base.txt" "$work/fetch.log"
  printf ' "processes": [%s]}\n' "$(IFS=,; echo "${manifest_procs[*]}")"
} >"$manifest"

echo "fleet: $(date -u +%FT%TZ) geogate $("$bin" --version | awk '{print $2}') ($bin), $n_remote remote (poll $poll)" \
  "+ $n_dir directory processes, database: $( ((with_db)) && echo shipped || echo none), origin $origin_kind," \
  "$rate req/s each, debounce ${debounce:-default}, $rounds rounds; all ready after ${ready_s} s on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# In the background, so that a signal interrupts the wait and the trap stops everything at once.
python3 "$here/driver.py" "$manifest" & driver=$!; pids+=("$driver")
rc=0
wait "$driver" || rc=$?
for ((i = 0; i < n; i++)); do
  if ! kill -0 "${gg_pids[$i]}" 2>/dev/null; then echo "fleet: geogate process $i exited during the run" >&2; rc=1; fi
done
echo "fleet: $(date -u +%FT%TZ) done in $((SECONDS - start)) s, load average $(cut -d' ' -f1-3 /proc/loadavg), exit $rc"
exit "$rc"
