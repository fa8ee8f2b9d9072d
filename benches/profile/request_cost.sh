#!/usr/bin/env bash
# Cost per proxied request, counted rather than timed: instructions (callgrind's Ir) and allocator
# calls per HTTP/1.1 request that geogate proxies, with the functions they go to.
#
# usage: benches/profile/request_cost.sh [--requests N] [--warmup N] [--connections N]
#                                        [--top K] [--sites K] [--depth D] [--width W] [--keep]
#                                        [--config FILE]
#
#   --requests N     measured requests (default 20000), an exact count
#   --warmup N       requests before the measured ones, same connections (default 10000: ~300 per
#                    connection, past the first 8 KiB read buffer of each, see README.md)
#   --connections N  keep-alive connections, one request in flight on each (default 32)
#   --top K          functions in each table (default 25)
#   --sites K        allocation call chains shown (default 20)
#   --depth D        callers kept per allocation context (callgrind --separate-callersD, default 12)
#   --width W        columns for a function name in the tables (default 110)
#   --keep           keep the scratch directory (callgrind dumps, callgrind_annotate outputs, logs)
#   --config FILE    another geogate configuration of the same shape (default
#                    benches/compare/geogate.toml; e.g. benches/profile/geogate-like-nginx.toml)
#
# env: GEOGATE_BIN  the geogate binary to measure (default target/release/geogate, built with
#                   `cargo build --release` only when that default is missing). It needs symbols
#                   (and debug info for file names: the release profile has debug = 1).
#
# Runs geogate (benches/compare/geogate.toml: proxy 127.0.0.1:18083 -> origin 127.0.0.1:18080, client
# address from X-Forwarded-For trusted from 127.0.0.1, RU/BY -> 451, admin 127.0.0.1:9901) under
# valgrind --tool=callgrind, behind an nginx origin (benches/compare/upstream.nginx.conf). load.py opens
# the connections, sends the warm-up, has callgrind zero its counters (callgrind_control -z), sends the
# measured requests, has callgrind dump (callgrind_control -d) with the connections still open, and
# checks every status. callgrind_tables.py divides the dump by the request count.
# Installs, only when missing: valgrind, nginx-light (apt). Talks only to 127.0.0.1. Every process it
# starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
compare=$repo/benches/compare

requests=20000 warmup=10000 conns=32 top=25 sites=20 depth=12 width=110 keep=0
config=$compare/geogate.toml

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --requests) requests=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --sites) sites=$2; shift 2 ;;
    --depth) depth=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --config) config=$(realpath -m "$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "request_cost.sh: unknown argument: $1" >&2; usage ;;
  esac
done
for v in "$requests" "$conns" "$top" "$sites" "$depth" "$width"; do
  [[ $v =~ ^[0-9]+$ && $v -gt 0 ]] || { echo "request_cost.sh: numeric arguments must be positive integers" >&2; exit 2; }
done
[[ $warmup =~ ^[0-9]+$ ]] || { echo "request_cost.sh: --warmup must be a non-negative integer" >&2; exit 2; }
[[ -f $config ]] || { echo "request_cost.sh: no configuration at $config" >&2; exit 2; }

log() { printf '[request_cost] %s\n' "$*" >&2; }
die() { printf '[request_cost] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
# shellcheck source=benches/lib/prereq.sh
. "$repo/benches/lib/prereq.sh"
missing=()
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
debian_install ${missing[@]+"${missing[@]}"}
require_tools callgrind_control callgrind_annotate curl python3 ss

geogate_binary
bin=$(realpath "$geogate_bin")
nm "$bin" 2>/dev/null | grep ' _rjem_malloc$' >/dev/null ||
  die "$bin has no symbol table (stripped?) or no jemalloc: function names and allocator counts need both"
if ! readelf -S "$bin" 2>/dev/null | grep '\.debug_line' >/dev/null; then
  log "warning: $bin has no debug line info: functions are named, but their files are unknown (???)"
fi

for port in 18080 18083 9901; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
done

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d /tmp/geogate-request-cost.XXXXXX)
stop_grace=20 # geogate under valgrind drains and writes its last dump
# shellcheck source=benches/lib/processes.sh
. "$repo/benches/lib/processes.sh"

# ---------------------------------------------------------------- origin
sed -e "s|{{WORK}}|$work|g" "$compare/upstream.nginx.conf" >"$work/upstream.conf"
( exec nginx -p "$work" -e "$work/upstream.log" -c "$work/upstream.conf" ) & pid[origin]=$!

# ---------------------------------------------------------------- geogate under callgrind
# Only the allocator's public entry points get caller contexts (entry'caller'caller...), so that the
# dump says which call chains allocate; everything else is one function as usual. The run starts
# uninstrumented (start-up and the database compile at near native speed); instrumentation goes on
# before the warm-up, the counters are zeroed after it.
entries=(_rjem_malloc _rjem_mallocx _rjem_calloc _rjem_realloc _rjem_rallocx malloc calloc realloc)
vg_args=(--tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out")
for e in "${entries[@]}"; do vg_args+=("--separate-callers$depth=$e"); done
log "geogate: $bin under $(valgrind --version)"
( cd "$work" && exec valgrind "${vg_args[@]}" "$bin" run --config "$config" >"$work/geogate.log" 2>&1 ) &
pid[geogate]=$!

wait_ready() { # name url proc: up to 120 s for the listener to answer anything
  local name=$1 url=$2 proc=$3 deadline=$((SECONDS + 120))
  until curl -s -o /dev/null --max-time 5 -H 'X-Forwarded-For: 8.8.8.8' "$url/"; do
    if ! kill -0 "${pid[$proc]}" 2>/dev/null; then
      tail -n 20 "$work/$proc.log" >&2 2>/dev/null || true
      die "$name exited during start-up"
    fi
    ((SECONDS < deadline)) || die "$name did not answer on $url within 120 s"
    sleep 0.2
  done
}
wait_ready origin http://127.0.0.1:18080 origin
wait_ready geogate http://127.0.0.1:18083 geogate
gpid=${pid[geogate]} # valgrind execs its tool: this is the process callgrind_control talks to

# ---------------------------------------------------------------- correctness, once
ru_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H 'X-Forwarded-For: 77.88.8.8' http://127.0.0.1:18083/bench || true)
us_code=$(curl -s -o "$work/check.body" -w '%{http_code}' --max-time 30 -H 'X-Forwarded-For: 8.8.8.8' http://127.0.0.1:18083/bench || true)
us_seen=$(cat "$work/check.body" 2>/dev/null || true)
[[ $ru_code == 451 && $us_code == 200 && $us_seen == US ]] ||
  die "geogate does not apply the policy: 77.88.8.8 (RU) -> $ru_code (want 451); 8.8.8.8 (US) -> $us_code (want 200), origin saw X-Geo-Country '$us_seen' (want US)"
log "check: 77.88.8.8 (RU) -> 451, 8.8.8.8 (US) -> 200 and the origin saw X-Geo-Country: US"

# ---------------------------------------------------------------- load
callgrind_control -i on "$gpid" >"$work/control.log" 2>&1 || { cat "$work/control.log" >&2; die "callgrind_control -i on failed"; }
log "load: $warmup warm-up + $requests measured requests over $conns keep-alive connections"
( exec python3 "$here/load.py" --port 18083 --connections "$conns" --warmup "$warmup" --requests "$requests" \
    --timeout $((120 + (warmup + requests) / 100)) --before "callgrind_control -z $gpid" --after "callgrind_control -d measured $gpid" \
    >"$work/load.log" 2>&1 ) &
pid[load]=$!
wait "${pid[load]}" || { cat "$work/load.log" >&2; die "the load failed"; }
unset 'pid[load]'
sed 's/^/[request_cost] /' "$work/load.log" >&2

shopt -s nullglob
dumps=("$work"/callgrind.out.*)
shopt -u nullglob
((${#dumps[@]} == 1)) || die "expected one callgrind dump in $work, found ${#dumps[@]}"
dump=${dumps[0]}
grep -q '^desc: Trigger: .*measured' "$dump" || die "$dump is not the measured window's dump"
stop_all # geogate's last dump (callgrind.out: from the measured dump to exit) is not used

# ---------------------------------------------------------------- report
callgrind_annotate --inclusive=no --threshold=99 "$dump" >"$work/annotate-self.txt" 2>"$work/annotate.log"
callgrind_annotate --inclusive=yes --threshold=99 "$dump" >"$work/annotate-inclusive.txt" 2>>"$work/annotate.log"
callgrind_annotate --tree=caller --threshold=99 "$dump" >"$work/annotate-callers.txt" 2>>"$work/annotate.log"
annotate_total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$work/annotate-self.txt")

python3 "$here/callgrind_tables.py" "$dump" "$requests" --top "$top" --sites "$sites" --width "$width" \
  >"$work/tables.txt" || die "callgrind_tables.py failed"
dump_total=$(awk '/^summary:/ {print $2; exit}' "$dump")
[[ $annotate_total == "$dump_total" ]] ||
  die "callgrind_annotate's PROGRAM TOTALS ($annotate_total) differ from the dump's summary ($dump_total)"

measured_line=$(grep '^measured:' "$work/load.log")
echo
echo "geogate request cost: $bin"
echo "  $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(valgrind --version), $(nproc) CPUs"
echo "  config ${config#"$repo"/} (1 worker thread), origin nginx on 127.0.0.1:18080"
echo "  $warmup warm-up + $requests measured GET /bench over $conns keep-alive connections, HTTP/1.1"
echo "  X-Forwarded-For: $(python3 "$here/load.py" --print-mix)"
echo "  ${measured_line#measured: } (under callgrind)"
echo "  callgrind_annotate PROGRAM TOTALS = dump summary = $dump_total Ir"
echo
cat "$work/tables.txt"
if ((keep)); then
  echo "raw: $dump (callgrind dump of the measured window)"
  echo "     $work/annotate-{self,inclusive,callers}.txt (callgrind_annotate), geogate.log, load.log"
fi
