#!/usr/bin/env bash
# Reload soak: does swapping the full database every second under load cost requests, latency or memory?
#
# Builds geogate (release), starts an nginx upstream answering 200 and geogate in front of it with a database
# (copied to a temporary directory), then runs wrk twice for the same duration, rotating X-Forwarded-For over
# 10,000 fixed-seed IPv4 addresses:
#   steady   no reloads
#   reload   every second the database file is replaced (a hard link renamed over it, by
#            benches/lib/reload_driver.py, which also sends the POST on a kept-alive connection: the
#            driver adds next to no CPU of its own) by the next of the databases given with --db
#            (default: the shipped geoip/geo-whois-asn-country.mmdb and a copy with --change-fraction of its
#            networks, default 0.001 (about 1,000), pointed at other records by benches/lib/mmdb_reassign.py,
#            scattered as an update's changes are; 0 gives a copy that differs only in its metadata
#            build_epoch) and POST /-/reload is called. Each reload reads and compares the whole database;
#            the table is patched where the networks changed, or built whole when it cannot be (the
#            reload answers say which: "table" in the /-/reload JSON, tallied in the report)
# Reports total requests, errors (statuses other than 200/451, and socket errors: must be 0), p99 steady vs
# reload (ratio <= --p99-ratio, default 1.5), peak memory steady vs reload (RssAnon + RssShmem and VmRSS,
# sampled every 100 ms; the anonymous ratio must be <= --rss-ratio, default 2.5; the VmHWM ratio, which
# includes the start-up compile, is printed for information) and the reload duration_ms from the /-/reload
# answers (median and max; max <= 2000; and the median rested_ms, the part of it the compile spent resting
# under geogate's default reload.compile_cpu_share). Every reload must swap: one refused (for example by the network-drop
# guard, were two databases to count their networks differently) fails the run. Exit 1 if a target is missed.
#
# Alternating schemas: --db A --db B with A a GeoIP2-City-shaped database and B a flat one of the same
# networks. tests/sources.rs writes such a GeoIP2 copy of the shipped database when asked:
#   GEOGATE_FULL_CITY_OUT=/tmp/city.mmdb cargo test --release --test sources full_size_databases
#   benches/reload_soak.sh --duration 120 --db /tmp/city.mmdb --db geoip/geo-whois-asn-country.mmdb
#
# The RSS trend over the reload phase is reported too: the mean VmRSS of every whole 30 s window (about 30
# compile-and-free sawtooth cycles each) fitted with a least-squares line; it must be flat (the last window's
# mean within 10% of the first's). For the 10-minute soak: --steady-duration 60 --duration 600.
#
# usage: benches/reload_soak.sh [--duration 20] [--steady-duration D] [--threads 1] [--connections 32]
#                               [--workers 1] [--upstream-port 18080] [--port 18085] [--admin-port 18086]
#                               [--db FILE]... [--change-fraction 0.001] [--p99-ratio 1.5] [--rss-ratio 2.5]
#                               [--windows 1]
#   --duration     seconds of the reload phase (and of the steady phase unless --steady-duration is given)
#   --windows K    interleave the phases: K steady windows and K reload windows, alternating (steady
#                  first), each phase's windows together as long as the phase; each phase's p50/p99 is
#                  then that of all its requests pooled (from each window's percentiles on a grid of
#                  0.01 % above p90), so drift of the shared host over the run falls on both phases alike
#   --threads  wrk threads      --workers  geogate worker threads
# Talks only to 127.0.0.1; stops its own processes on exit. Needs cargo, curl, python3, and installs
# nginx-light and wrk from Debian's packages when missing. Run on demand, not in CI.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
duration=20 steady_duration= threads=1 conns=32 workers=1 up_port=18080 port=18085 admin_port=18086
dbs=() p99_ratio=1.5 rss_ratio=2.5 change_fraction=0.001 windows=1
while (($#)); do
  case $1 in
    --db) dbs+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
    --p99-ratio) p99_ratio=$2; shift 2 ;;
    --change-fraction) change_fraction=$2; shift 2 ;;
    --rss-ratio) rss_ratio=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --steady-duration) steady_duration=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --upstream-port) up_port=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --admin-port) admin_port=$2; shift 2 ;;
    *) sed -n '2,44p' "$0"; exit 2 ;;
  esac
done
steady_duration=${steady_duration:-$duration}

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for p in "$up_port" "$port" "$admin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "reload_soak: 127.0.0.1:$p is in use; pick other ports (--upstream-port/--port/--admin-port)" >&2
    exit 2
  fi
done

echo "building geogate (release)" >&2
(cd "$repo" && cargo build --release --quiet --bin geogate)
bin=${CARGO_TARGET_DIR:-$repo/target}/release/geogate

work=$(mktemp -d /tmp/geogate-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- data: two byte-different copies of the full database, and the client addresses ---------------------------
if ((${#dbs[@]} == 0)); then
cp "$repo/geoip/geo-whois-asn-country.mmdb" "$work/db0.mmdb"
python3 "$repo/benches/lib/mmdb_reassign.py" "$work/db0.mmdb" "$work/db1.mmdb" "$change_fraction" >&2
ndb=2
else
  for i in "${!dbs[@]}"; do cp "${dbs[$i]}" "$work/db$i.mmdb"; done
  ndb=${#dbs[@]}
fi
cp "$work/db0.mmdb" "$work/geo.mmdb"
awk 'BEGIN { srand(42); n = 0; while (n < 10000) { a = int(1 + rand() * 223); if (a == 10 || a == 127) continue;
  printf "%d.%d.%d.%d\n", a, int(rand() * 256), int(rand() * 256), 1 + int(rand() * 254); n++ } }' >"$work/ips.txt"

cat >"$work/soak.lua" <<'EOF'
-- Each request carries the next client address in X-Forwarded-For; statuses are tallied per thread.
local threads = {}
function setup(thread) table.insert(threads, thread) end
local ips = {}
for line in io.lines(os.getenv("IPS_FILE")) do ips[#ips + 1] = line end
local i = math.random(#ips)
ok, blocked, bad = 0, 0, 0
request = function()
  i = i % #ips + 1
  return wrk.format("GET", "/api/v1/instances", { ["X-Forwarded-For"] = ips[i] })
end
response = function(status)
  if status == 200 then ok = ok + 1 elseif status == 451 then blocked = blocked + 1 else bad = bad + 1 end
end
done = function(summary, latency, requests)
  local o, k, b = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); k = k + t:get("blocked"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT total=%d ok=%d blocked=%d bad_status=%d sock_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, o, k, b, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  local grid = os.getenv("GRID_FILE")
  if grid and grid ~= "" then
    -- This window's percentiles: every 1 % to 89, every 0.01 % from 90, and the max.
    local f = io.open(grid, "w")
    f:write(string.format("n %d %d %d %d %d\n", summary.requests, o, k, b, e.connect + e.read + e.write + e.timeout))
    for p = 1, 89 do f:write(string.format("%.2f %d\n", p, latency:percentile(p))) end
    for q = 9000, 9999 do f:write(string.format("%.2f %d\n", q / 100, latency:percentile(q / 100))) end
    f:write(string.format("100.00 %d\n", latency.max))
    f:close()
  end
end
EOF

# --- processes ----------------------------------------------------------------------------------------------------
cat >"$work/upstream.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$up_port backlog=4096; location / { return 200 "ok\n"; } }
}
EOF
cat >"$work/geogate.toml" <<EOF
[server]
worker_threads = $workers

[[listener]]
name = "soak"
address = "127.0.0.1:$port"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[admin]
address = "127.0.0.1:$admin_port"

[[upstream]]
name = "origin"
url = "http://127.0.0.1:$up_port"

[[source]]
name = "geoip"
type = "mmdb"
path = "geo.mmdb"

[policy]
default = "tag"
tag = ["country"]

[[rule]]
name = "block-ru-by"
action = "block"
countries = ["RU", "BY"]

[reload]
watch = false

[access_log]
enabled = false
EOF

nginx -c "$work/upstream.conf" & pids+=($!)
GEOGATE_LOG=warn "$bin" run --config "$work/geogate.toml" 2>"$work/geogate.err" & gg=$!; pids+=("$gg")
deadline=$((SECONDS + 60))
until curl -fso /dev/null "http://127.0.0.1:$admin_port/readyz" && curl -fso /dev/null "http://127.0.0.1:$up_port/"; do
  ((SECONDS < deadline)) || { echo "reload_soak: geogate or nginx not ready within 60 s" >&2; cat "$work/geogate.err" >&2; exit 1; }
  kill -0 "$gg" 2>/dev/null || { echo "reload_soak: geogate exited" >&2; cat "$work/geogate.err" >&2; exit 1; }
  sleep 0.2
done

# Samples VmRSS into $1, and RssAnon + RssShmem into $1.anon, every 100 ms until $2 exists.
sample_rss() {
  while [[ ! -e $2 && -d $work ]]; do
    awk -v t="$EPOCHREALTIME" -v anon="$1.anon" '/^VmRSS:/ {print $2, t} /^RssAnon:|^RssShmem:/ {a += $2}
      END {print a, t >> anon}' "/proc/$gg/status" >>"$1" 2>/dev/null || true
    sleep 0.1
  done
}
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$gg/status"; }
run_wrk() { # seconds [grid file]
  (cd "$work" && IPS_FILE=ips.txt GRID_FILE=${2:-} wrk -t"$threads" -c"$conns" -d"$1s" -s soak.lua \
    "http://127.0.0.1:$port/api/v1/instances")
}
# The RESULT line of all the windows in $@ (grid files) pooled: totals summed, p50/p99 of every
# request together (each window's percentile grid read as its distribution, weighted by its count).
pooled() {
  python3 - "$@" <<'PY'
import bisect, sys
wins = []
for path in sys.argv[1:]:
    rows = [l.split() for l in open(path)]
    head = [int(x) for x in rows[0][1:]]
    grid = [(float(p), int(v)) for p, v in rows[1:]]
    wins.append((head, grid))
tot = [sum(h[i] for h, _ in wins) for i in range(5)]
# Per window: its grid's values (non-decreasing) and percentiles, to read its CDF at any x.
cdfs = [(h[0], [v for _, v in g], [p / 100 for p, _ in g]) for h, g in wins]
def below(x):  # how many requests of all windows took at most x microseconds
    total = 0.0
    for n, vs, ps in cdfs:
        i = bisect.bisect_right(vs, x)
        total += n * (ps[i - 1] if i else 0.0)
    return total
values = sorted({v for _, vs, _ in cdfs for v in vs})
def quantile(q):  # the smallest grid value under which a fraction q of all requests fall
    lo, hi = 0, len(values) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if below(values[mid]) >= q * tot[0]:
            hi = mid
        else:
            lo = mid + 1
    return values[lo]
print(f"RESULT total={tot[0]} ok={tot[1]} blocked={tot[2]} bad_status={tot[3]} sock_errors={tot[4]} "
      f"p50_us={quantile(0.50)} p99_us={quantile(0.99)} max_us={values[-1]}")
PY
}
field() { sed -n "s/.*[ ]$2=\([0-9]*\).*/\1/p" <<<"$1"; }

echo "warm-up 3 s" >&2
run_wrk 3 >/dev/null

window() { # steady|reload seconds [grid file]: wrk over one window; in a reload window the
  # driver swaps the database and reloads every second meanwhile
  local phase=$1 driver=
  shift
  rm -f "$work/$phase.done"
  sample_rss "$work/rss.$phase" "$work/$phase.done" & local sampler=$!
  if [[ $phase == reload ]]; then
    touch "$work/reloads.jsonl"
    local before; before=$(grep -c . "$work/reloads.jsonl" || true)
    python3 "$repo/benches/lib/reload_driver.py" "$work" "$ndb" "$admin_port" "$work/reload.done" \
      "$work/reloads.jsonl" "$before" & driver=$!
  fi
  run_wrk "$@" | grep '^RESULT'
  touch "$work/$phase.done"; wait "$sampler"
  [[ -z $driver ]] || wait "$driver"
}
if ((windows <= 1)); then
  echo "steady phase ${steady_duration} s" >&2
  steady=$(window steady "$steady_duration")
  hwm_steady=$(hwm)
  echo "reload phase ${duration} s (database swapped and reloaded every second)" >&2
  reload=$(window reload "$duration")
else
  ws=$((steady_duration / windows)) wr=$((duration / windows))
  echo "interleaved: $windows steady windows of ${ws} s and $windows reload windows of ${wr} s, alternating" >&2
  for ((k = 0; k < windows; k++)); do
    window steady "$ws" "$work/grid.steady.$k" >/dev/null
    ((k == 0)) && hwm_steady=$(hwm)
    window reload "$wr" "$work/grid.reload.$k" >/dev/null
    echo "  window $((k + 1)) of $windows done" >&2
  done
  steady=$(pooled "$work"/grid.steady.*) reload=$(pooled "$work"/grid.reload.*)
  steady_duration=$((ws * windows)) duration=$((wr * windows))
fi
hwm_reload=$(hwm)
sleep 3 # does the memory of the last compile go back once reloads stop?
rss_after=$(awk '/^VmRSS:/ {print $2}' "/proc/$gg/status")

# --- report -------------------------------------------------------------------------------------------------------
peak() { sort -n "$1" | tail -1 | cut -d' ' -f1; }
reloads=$(python3 - "$work/reloads.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if r.get("result") == "ok"]
for r in rows:
    if r.get("result") != "ok":
        print("not swapped:", json.dumps(r)[:300], file=sys.stderr)
d = sorted(r["duration_ms"] for r in ok)
rested = sorted(r.get("rested_ms", 0.0) for r in ok)
gens = [r["generation"] for r in ok]
def kind(r):
    t = r.get("table")
    return next(iter(t)) if isinstance(t, dict) else (t or "unknown")
kinds = {}
for r in ok:
    kinds[kind(r)] = kinds.get(kind(r), 0) + 1
print(len(rows), len(ok), f"{statistics.median(d):.0f}" if d else "nan", f"{max(d):.0f}" if d else "nan",
      (max(gens) if gens else 0), ",".join(f"{k}={v}" for k, v in sorted(kinds.items())) or "none",
      f"{statistics.median(rested):.0f}" if rested else "nan")
EOF
)
read -r n_reloads n_ok med_ms max_ms last_gen table_kinds med_rested <<<"$reloads"
s_total=$(field "$steady" total) r_total=$(field "$reload" total)
s_err=$(($(field "$steady" bad_status) + $(field "$steady" sock_errors)))
r_err=$(($(field "$reload" bad_status) + $(field "$reload" sock_errors)))
s_p99=$(field "$steady" p99_us) r_p99=$(field "$reload" p99_us)
s_rss=$(peak "$work/rss.steady") r_rss=$(peak "$work/rss.reload")
s_anon=$(peak "$work/rss.steady.anon") r_anon=$(peak "$work/rss.reload.anon")
read -r slope first_mean last_mean windows <<<"$(python3 - "$work/rss.reload" <<'EOF'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
t0 = rows[0][1]
sums = {}
for rss, t in rows:
    w = int((t - t0) // 30)
    total, count = sums.get(w, (0.0, 0))
    sums[w] = (total + rss, count + 1)
# Only whole windows: the last one may be a few samples long.
ws = sorted(sums)[:-1] if len(sums) > 2 else sorted(sums)
xs = [w * 0.5 for w in ws]  # minutes
ys = [sums[w][0] / sums[w][1] for w in ws]
n = len(xs)
mx, my = sum(xs) / n, sum(ys) / n
var = sum((x - mx) ** 2 for x in xs)
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
print(f"{slope:.0f}", int(ys[0]), int(ys[-1]), n)
EOF
)"

printf '\n%-8s %10s %8s %10s %8s %8s %8s %12s %13s\n' phase requests errors req/s p50_us p99_us max_us peak_rss_kb peak_anon_kb
for ph in steady reload; do
  line=${!ph}; rss_var=$([[ $ph == steady ]] && echo "$s_rss" || echo "$r_rss")
  anon_var=$([[ $ph == steady ]] && echo "$s_anon" || echo "$r_anon")
  secs=$([[ $ph == steady ]] && echo "$steady_duration" || echo "$duration")
  printf '%-8s %10s %8s %10s %8s %8s %8s %12s %13s\n' "$ph" "$(field "$line" total)" \
    "$(($(field "$line" bad_status) + $(field "$line" sock_errors)))" "$(($(field "$line" total) / secs))" \
    "$(field "$line" p50_us)" "$(field "$line" p99_us)" "$(field "$line" max_us)" "$rss_var" "$anon_var"
done
echo "VmHWM after steady ${hwm_steady} kB, after reload ${hwm_reload} kB; VmRSS 3 s after the last reload ${rss_after} kB"
echo "reloads: ${n_reloads} posted, ${n_ok} ok (last generation ${last_gen}); duration_ms median ${med_ms} (of which rested ${med_rested}: reload.compile_cpu_share), max ${max_ms}; table ${table_kinds}"
fail=0
check() { if awk "BEGIN {exit !($2)}"; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi; }
check "errors steady+reload = $((s_err + r_err)) (must be 0)" "$s_err + $r_err == 0"
check "every reload swapped ($n_ok of $n_reloads ok)" "$n_ok == $n_reloads && $n_ok > 0"
check "p99 reload/steady = $(awk "BEGIN {printf \"%.2f\", $r_p99 / $s_p99}") (<= $p99_ratio)" "$r_p99 <= $p99_ratio * $s_p99"
check "peak RssAnon+RssShmem reload/steady = $(awk "BEGIN {printf \"%.2f\", $r_anon / $s_anon}") (<= $rss_ratio)" "$r_anon <= $rss_ratio * $s_anon"
echo "info peak VmRSS reload/steady = $(awk "BEGIN {printf \"%.2f\", $r_rss / $s_rss}") (mapped database pages included)"
check "reload duration max ${max_ms} ms (<= 2000)" "$max_ms <= 2000"
echo "mean RSS per 30 s window over the reload phase: first ${first_mean} kB, last ${last_mean} kB, ${windows} windows, slope ${slope} kB/min"
check "RSS flat: last window's mean within 10% of the first's" "$last_mean <= 1.1 * $first_mean"
# For information: against the high-water mark after the steady phase, which includes the start-up compile.
echo "info VmHWM reload/steady = $(awk "BEGIN {printf \"%.2f\", $hwm_reload / $hwm_steady}") (start-up compile included)"
echo "total requests $((s_total + r_total))"
exit "$fail"
