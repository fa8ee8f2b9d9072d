#!/usr/bin/env bash
# Where a proxy's CPU goes by system call, at a fixed request rate: geogate and nginx + geoip2 side
# by side, each sampled with `perf record -e cpu-clock -g` while oha drives it. It answers one
# question with a measurement: how much of the kernel time per request is the cost of entering and
# leaving the kernel and of epoll, the part that batching the calls (io_uring) could remove, and how
# much is the socket work itself (TCP over loopback, waking the peer), which stays either way.
#
# usage: benches/profile/kernel_split.sh [--rate R] [--duration S] [--sample S] [--connections N]
#                                        [--rounds N] [--config FILE] [--keep]
#
#   --rate R         requests per second, oha with latency correction (default 24800: half of nginx's
#                    saturated req/s on the 2-core bench host, the rate of step 10's p99 goal)
#   --duration S     seconds of load per proxy per round (default 10)
#   --sample S       seconds sampled by perf, starting 2 s into the load (default 6)
#   --connections N  keep-alive connections (default 32)
#   --rounds N       rounds, each proxy once per round, order alternating (default 2); the samples
#                    of all rounds are added up per proxy
#   --config FILE    another geogate configuration of the same shape (default
#                    benches/compare/geogate.toml; e.g. benches/profile/geogate-like-nginx.toml)
#   --keep           keep the scratch directory (perf data, perf script output, oha JSON, logs)
#
# env: GEOGATE_BIN  the geogate binary (default target/release/geogate, built when missing;
#                   benches/lib/prereq.sh)
#      GEOGATE_BENCH_CACHE  where oha is installed (benches/lib/oha.sh)
#
# Runs the origin (benches/compare/upstream.nginx.conf, 127.0.0.1:18080), nginx + geoip2
# (benches/compare/nginx-geoip2.conf, 18081) and geogate (benches/compare/geogate.toml, 18083, admin
# 9901) on the shipped database, one worker each, unpinned, as `benches/compare/run.sh --rate`
# does; every request is GET /bench with X-Forwarded-For: 8.8.8.8 (US: forwarded and tagged).
# Installs, only when missing: nginx-light, libnginx-mod-http-geoip2, linux-perf (apt), oha
# (crates.io). Talks only to 127.0.0.1. Every process it starts is stopped on exit. Needs root (or
# kernel.perf_event_paranoid <= 1) for kernel call chains.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
compare=$repo/benches/compare

rate=24800 duration=10 sample=6 conns=32 rounds=2 keep=0
hz=4999 # perf's cpu-clock samples per second of CPU
config=$compare/geogate.toml

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --sample) sample=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --config) config=$(realpath -m "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "kernel_split.sh: unknown argument: $1" >&2; usage ;;
  esac
done
for v in "$rate" "$duration" "$sample" "$conns" "$rounds"; do
  [[ $v =~ ^[0-9]+$ && $v -gt 0 ]] || { echo "kernel_split.sh: numeric arguments must be positive integers" >&2; exit 2; }
done
[[ -f $config ]] || { echo "kernel_split.sh: no configuration at $config" >&2; exit 2; }
((sample + 2 < duration)) || { echo "kernel_split.sh: --sample must end at least 1 s before the load (sample + 2 < duration)" >&2; exit 2; }

log() { printf '[kernel_split] %s\n' "$*" >&2; }
die() { printf '[kernel_split] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
# shellcheck source=benches/lib/prereq.sh
. "$repo/benches/lib/prereq.sh"
geoip2_so=/usr/lib/nginx/modules/ngx_http_geoip2_module.so
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
[[ -f $geoip2_so ]] || missing+=(libnginx-mod-http-geoip2)
command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
debian_install ${missing[@]+"${missing[@]}"}
require_tools curl python3 ss perf
# shellcheck source=benches/lib/oha.sh
. "$repo/benches/lib/oha.sh"
oha_ensure

geogate_binary
bin=$(realpath "$geogate_bin")

for port in 18080 18081 18083 9901; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
done

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d /tmp/geogate-kernel-split.XXXXXX)
# shellcheck source=benches/lib/processes.sh
. "$repo/benches/lib/processes.sh"

# ---------------------------------------------------------------- start
mmdb=$repo/geoip/geo-whois-asn-country.mmdb
for f in upstream.nginx.conf nginx-geoip2.conf; do
  sed -e "s|{{WORK}}|$work|g" -e "s|{{MMDB}}|$mmdb|g" "$compare/$f" >"$work/$f"
done
nginx -t -q -p "$work" -e "$work/nginx-test.log" -c "$work/nginx-geoip2.conf" || die "nginx+geoip2 config rejected"
( exec nginx -p "$work" -e "$work/upstream.log" -c "$work/upstream.nginx.conf" ) & pid[upstream]=$!
( exec nginx -p "$work" -e "$work/nginx.log" -c "$work/nginx-geoip2.conf" ) & pid[nginx]=$!
( cd "$work" && exec "$bin" run --config "$config" >"$work/geogate.log" 2>&1 ) & pid[geogate]=$!

declare -A url=([origin]=http://127.0.0.1:18080 [nginx]=http://127.0.0.1:18081 [geogate]=http://127.0.0.1:18083)
wait_ready() { # target process: up to 60 s for the listener to answer anything
  local target=$1 proc=$2 deadline=$((SECONDS + 60))
  until curl -s -o /dev/null --max-time 2 "${url[$target]}/" -H 'X-Forwarded-For: 8.8.8.8'; do
    kill -0 "${pid[$proc]}" 2>/dev/null || { tail -n 20 "$work/$proc.log" >&2 2>/dev/null || true; die "$proc exited during start-up"; }
    ((SECONDS < deadline)) || die "$target did not answer on ${url[$target]} within 60 s"
    sleep 0.2
  done
}
wait_ready origin upstream; wait_ready nginx nginx; wait_ready geogate geogate

# the serving process: nginx's one worker, geogate itself
serving_pid() { if [[ $1 == nginx ]]; then pgrep -P "${pid[nginx]}" | head -1; else echo "${pid[geogate]}"; fi; }
for t in nginx geogate; do
  seen=$(curl -s --max-time 5 -H 'X-Forwarded-For: 8.8.8.8' "${url[$t]}/bench" || true)
  [[ $seen == US ]] || die "$t: 8.8.8.8 should be forwarded with X-Geo-Country: US; the origin saw '$seen'"
done
log "check: both proxies forward 8.8.8.8 with X-Geo-Country: US"

# ---------------------------------------------------------------- load and samples
declare -A served=() # req/s oha got through, summed over the rounds
log "load: $rounds round(s) x 2 proxies x ${duration}s, oha -q $rate --latency-correction -c$conns (1 thread); perf samples ${sample}s from 2 s in"
for ((r = 1; r <= rounds; r++)); do
  order=(geogate nginx); ((r % 2)) || order=(nginx geogate)
  for t in "${order[@]}"; do
    spid=$(serving_pid "$t")
    [[ -n $spid ]] || die "no serving process for $t"
    ( TOKIO_WORKER_THREADS=1 exec timeout $((duration + 30)) "$oha_bin" -z "${duration}s" -q "$rate" \
      --latency-correction -c "$conns" -t 5s --no-tui --output-format json \
      -H 'X-Forwarded-For: 8.8.8.8' "${url[$t]}/bench" >"$work/oha-r$r-$t.json" 2>"$work/oha-r$r-$t.err" ) &
    pid[oha]=$!
    sleep 2
    perf record -q -e cpu-clock -F "$hz" -g -p "$spid" -o "$work/perf-r$r-$t.data" -- sleep "$sample" \
      >"$work/perf-r$r-$t.log" 2>&1 || die "perf record failed on $t (see $work/perf-r$r-$t.log)"
    wait "${pid[oha]}" || { cat "$work/oha-r$r-$t.err" >&2; die "oha failed against $t"; }
    unset 'pid[oha]'
    perf script -F ip,sym,dso -i "$work/perf-r$r-$t.data" >"$work/script-r$r-$t.txt" 2>/dev/null ||
      die "perf script failed on $t"
    got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["summary"]["requestsPerSec"] or 0))' "$work/oha-r$r-$t.json")
    served[$t]=$((${served[$t]:-0} + got))
    log "round $r $t: $got req/s (asked $rate)"
  done
done

# ---------------------------------------------------------------- report
args=() targets=()
for t in geogate nginx; do
  files=("$work"/script-r*-"$t".txt)
  targets+=("$t=$(IFS=,; echo "${files[*]}")")
  # what oha got through, averaged over the rounds: the requests the samples are divided by
  mean=$((served[$t] / rounds))
  args+=(--achieved "$t=$mean")
  ((mean * 100 >= rate * 98)) || log "warning: $t served $mean req/s of the $rate asked: it (or oha) fell behind"
done
echo
echo "CPU by where it was spent, at $rate req/s (oha -c$conns), $rounds round(s) x ${sample}s sampled per proxy, $(nproc) CPUs, $(uname -r)"
echo "geogate: ${config#"$repo"/}"
python3 "$here/kernel_split.py" --rate "$rate" --seconds $((sample * rounds)) --hz "$hz" "${args[@]}" "${targets[@]}"
