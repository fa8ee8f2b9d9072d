#!/usr/bin/env bash
# Worker runtimes side by side: geogate with `worker_threads = N` as one work-stealing runtime
# (`server.runtime = "shared"`) against N single-threaded runtimes on their own SO_REUSEPORT
# sockets (`"per-core"`), same binary, same origin, same load, interleaved rounds.
#
# usage: benches/compare/workers.sh [--workers 2] [--rounds 3] [--duration 8] [--connections 64]
#
# Everything else is benches/compare/run.sh's setup: the nginx origin (upstream.nginx.conf) on
# 127.0.0.1:18080, geogate from geogate.toml on 127.0.0.1:18083 (its worker_threads and runtime
# rewritten), wrk -t1 with xff.lua over 10,000 sampled client addresses (seed 42) of
# geoip/geo-whois-asn-country.mmdb. Per mode: median req/s and p99 over the rounds, and CPU per
# request (user + system from /proc/PID/stat over all rounds, in clock ticks of 1/100 s).
# Needs nginx, wrk, python3 with maxminddb (run.sh installs them). Talks only to 127.0.0.1 and
# stops what it starts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
workers=2 rounds=3 duration=8 conns=64
while (($#)); do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
for tool in nginx wrk python3 curl; do command -v $tool >/dev/null || { echo "workers.sh: $tool missing (benches/compare/run.sh installs it)" >&2; exit 1; }; done
bin=${GEOGATE_BIN:-$repo/target/release/geogate}
[[ -x $bin ]] || (cd "$repo" && cargo build --release)
mmdb=$repo/geoip/geo-whois-asn-country.mmdb
work=$(mktemp -d /tmp/geogate-workers.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { printf '[workers] %s\n' "$*" >&2; }

python3 "$here/geodata.py" ips "$mmdb" 10000 42 >"$work/ips.txt" 2>/dev/null
export GEO_IPS=$work/ips.txt
mkdir -p "$work/upstream-body" "$work/upstream-proxy"
sed "s#{{WORK}}#$work#g" "$here/upstream.nginx.conf" >"$work/upstream.conf"
nginx -c "$work/upstream.conf" -p "$work" & pids+=($!)
modes=(shared per-core)
for m in "${modes[@]}"; do
  sed -e "s#^worker_threads = 1#worker_threads = $workers\nruntime = \"$m\"#" -e "s#\.\./\.\./geoip#$repo/geoip#" \
    "$here/geogate.toml" >"$work/$m.toml"
  grep -q "runtime = \"$m\"" "$work/$m.toml" || { echo "workers.sh: could not set the runtime in geogate.toml" >&2; exit 1; }
done
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print int(n); else if (v ~ /ms$/) print int(n * 1000); else print int(n * 1000000) }'; }
declare -A rps p99 cpu reqs
for m in "${modes[@]}"; do cpu[$m]=0 reqs[$m]=0 rps[$m]="" p99[$m]=""; done
for ((r = 1; r <= rounds; r++)); do
  for m in "${modes[@]}"; do
    "$bin" run --config "$work/$m.toml" >"$work/$m.log" 2>&1 & gpid=$!
    for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18083/ && break; sleep 0.1; done
    wrk -t1 -c"$conns" -d2s -s "$here/xff.lua" http://127.0.0.1:18083/bench >/dev/null 2>&1 || true # warm-up
    before=$(ticks $gpid)
    out=$(wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$here/xff.lua" http://127.0.0.1:18083/bench)
    after=$(ticks $gpid)
    kill $gpid; wait $gpid 2>/dev/null || true
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rate=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
    tail=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    cpu[$m]=$((cpu[$m] + after - before)) reqs[$m]=$((reqs[$m] + n))
    rps[$m]+="$rate " p99[$m]+="$tail "
    log "round $r $m: $rate req/s, p99 $tail us, $((after - before)) ticks for $n requests"
  done
done
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
printf '\ngeogate worker_threads = %s, wrk -t1 -c%s, %s round(s) x %ss, %s CPUs, %s\n' "$workers" "$conns" "$rounds" "$duration" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-10s %8s %8s %12s\n' runtime req/s 'p99 us' 'CPU us/req'
for m in "${modes[@]}"; do
  printf '%-10s %8s %8s %12s\n' "$m" "$(median "${rps[$m]}")" "$(median "${p99[$m]}")" \
    "$(awk -v t="${cpu[$m]}" -v n="${reqs[$m]}" 'BEGIN { printf "%.1f", t * 10000 / n }')"
done
