#!/usr/bin/env bash
# Slow-client attacks against geogate while legitimate clients keep using it: slowhttptest in
# slow-headers (slowloris, -H), slow-body (R-U-D-Y, -B) and slow-read (-X) mode, each with wrk
# sending legitimate load at the same time, against a baseline of the same load alone.
#
# usage: benches/slow_attacks.sh [--duration S] [--connections N] [--delay-ms MS]
#                                [--attack-connections N] [--attack-rate R] [--origin-port P] [--keep]
#
#   --duration S            seconds of legitimate load per phase (default 30); each attack runs
#                           S + 5 s, starting with the load, so the load sees its ramp and peak
#   --connections N         legitimate wrk connections (default 50), one wrk thread
#   --delay-ms MS           pause before each legitimate request on a connection (default 20;
#                           not part of the measured latency): 50 connections x ~20 ms ~ 2,400
#                           requests/s, a paced load that leaves CPU to spare, so a latency change
#                           is the attack's doing and not the load generator's own queueing.
#                           0 = wrk's usual saturating load
#   --attack-connections N  slowhttptest connections per attack (default 1000)
#   --attack-rate R         slowhttptest connections opened per second (default 200)
#   --origin-port P         the origin's port (default 18080, that of benches/compare; another
#                           when a benchmark running at the same time holds it)
#   --keep                  keep the scratch directory (configs, logs, raw tool output)
#
# Environment: GEOGATE_BIN  the geogate binary (default target/release/geogate; built with
#              `cargo build --release` only if that default is missing)
#
# Phases (all on 127.0.0.1, whole run about 3 minutes with the defaults):
#   baseline   wrk alone
#   slowloris  slowhttptest -H: request heads trickled, a 24-byte header line every 5 s, never
#              finished (geogate's header_read_timeout, 10 s, is the defence)
#   slowbody   slowhttptest -B: POST /form with Content-Length 8192, 10 bytes every 5 s; the
#              origin's /form reads the whole body before answering, as a form handler does
#              (geogate has no request-body timeout; upstream_response_timeout, 30 s, counts
#              from forwarding, body upload included)
#   slowread   slowhttptest -X: GET /large (1 MiB) three times per connection (-k 3), advertising
#              a 512-1024 byte receive window and reading 32 bytes every 5 s (geogate has no
#              response-write timeout)
# Legitimate load (benches/slow_attacks/legit.lua): GET /bench, nine requests in ten from
# X-Forwarded-For 8.8.8.8 (US: tagged, forwarded, 200), one in ten from 77.88.8.8 (RU: 451 from
# geogate). slowhttptest sends no X-Forwarded-For: geogate judges it by its address (the
# listener has on_unresolved = "use-peer"), the default action (tag) forwards it.
#
# Reported per phase: legitimate requests, legitimate errors (statuses other than 2xx and 451,
# and wrk's socket errors: connect, read, write, timeout > 2 s), p50/p99 (wrk --latency, from
# wrk's histogram of every request) and the p99 ratio to the baseline; slowhttptest's
# connections connected/pending/closed over time and how many of its 1 s availability probes
# failed (-p 3: no answer within 3 s); geogate's open connections (geogate_open_connections)
# and RssAnon (/proc/PID/status) at the attack's peak, sampled every 0.5 s.
#
# Goals (exit status 1 when one is missed): 0 legitimate errors, p99 <= 2x the baseline's,
# geogate still running after each phase. Everything shares the machine's CPUs: run it on an
# otherwise idle machine, or the p99s (and so the ratio) measure the other load as much as the
# attacks.
#
# Ports: 18080 origin (nginx; --origin-port), 18095 geogate, 19095 geogate admin; all must be free.
# Installs, only when missing (apt, Debian): slowhttptest wrk nginx-light. No other network
# access. Every process it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
assets=$here/slow_attacks

duration=30 conns=50 delay_ms=20 attack_conns=1000 attack_rate=200 origin_port=18080 keep=0
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --delay-ms) delay_ms=$2; shift 2 ;;
    --attack-connections) attack_conns=$2; shift 2 ;;
    --attack-rate) attack_rate=$2; shift 2 ;;
    --origin-port) origin_port=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "slow_attacks.sh: unknown argument: $1" >&2; usage ;;
  esac
done
for n in "$duration" "$conns" "$attack_conns" "$attack_rate" "$origin_port"; do
  [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || { echo "slow_attacks.sh: numeric arguments must be positive integers" >&2; exit 2; }
done
[[ $delay_ms =~ ^[0-9]+$ ]] || { echo "slow_attacks.sh: --delay-ms must be a non-negative integer" >&2; exit 2; }

log() { printf '[slow] %s\n' "$*" >&2; }
die() { printf '[slow] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
missing=()
command -v slowhttptest >/dev/null 2>&1 || missing+=(slowhttptest)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
if ((${#missing[@]})); then
  log "installing from Debian: ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${missing[*]} by hand"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in curl ss awk; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

mmdb="$repo/geoip/geo-whois-asn-country.mmdb"
[[ -f $mmdb ]] || die "no database at $mmdb"
geogate_bin=${GEOGATE_BIN:-$repo/target/release/geogate}
if [[ -n ${GEOGATE_BIN:-} ]]; then
  [[ -x $geogate_bin ]] || die "GEOGATE_BIN=$geogate_bin is not an executable file"
elif [[ ! -x $geogate_bin ]]; then
  log "no release binary; cargo build --release"
  (cd "$repo" && cargo build --release)
fi

# file descriptors: slowhttptest and geogate each hold one per attack connection, geogate one
# more per forwarded request (its upstream connection), nginx two per /form request
need_fds=$((2 * attack_conns + 2 * conns + 1024))
if (($(ulimit -n) < need_fds)); then
  ulimit -n "$need_fds" 2>/dev/null || die "ulimit -n is $(ulimit -n); need $need_fds (raise the hard limit)"
fi

for port in "$origin_port" 18095 19095; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
done

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d /tmp/geogate-slow.XXXXXX)
chmod 755 "$work" # the nginx worker (nobody when run as root) serves $work/www
declare -A pid=()
stop_one() { # name: TERM, up to 5 s, then KILL
  local name=$1 p deadline
  p=${pid[$name]:-}
  [[ -n $p ]] || return 0
  kill -TERM "$p" 2>/dev/null || true
  deadline=$((SECONDS + 5))
  while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then
    log "$name (pid $p) ignored SIGTERM; SIGKILL"
    kill -KILL "$p" 2>/dev/null || true
    pkill -KILL -P "$p" 2>/dev/null || true # an nginx master killed hard leaves its worker behind
  fi
  wait "$p" 2>/dev/null || true
  unset "pid[$name]"
}
stop_all() {
  local name
  for name in "${!pid[@]}"; do stop_one "$name"; done
}
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if ((keep)) || ((rc != 0)); then log "scratch directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- configs, start
mkdir -p "$work/www"
head -c 1048576 /dev/zero | tr '\0' 'x' >"$work/www/large.bin"
chmod 755 "$work/www" && chmod 644 "$work/www/large.bin"
sed -e "s|{{WORK}}|$work|g" -e "s|{{ORIGIN_PORT}}|$origin_port|g" "$assets/upstream.nginx.conf" >"$work/upstream.conf"
sed -e "s|{{MMDB}}|$mmdb|g" -e "s|{{ORIGIN_PORT}}|$origin_port|g" "$assets/geogate.toml" >"$work/geogate.toml"
nginx -t -q -p "$work" -e "$work/nginx-test.log" -c "$work/upstream.conf" || die "origin config rejected"

( exec nginx -p "$work" -e "$work/upstream.log" -c "$work/upstream.conf" ) & pid[origin]=$!
( cd "$work" && exec "$geogate_bin" run --config "$work/geogate.toml" >"$work/geogate.log" 2>&1 ) & pid[geogate]=$!
gpid=${pid[geogate]}

proxy=http://127.0.0.1:18095
admin=http://127.0.0.1:19095
deadline=$((SECONDS + 60))
until curl -s -o /dev/null --max-time 2 "$proxy/" -H 'X-Forwarded-For: 8.8.8.8'; do
  for p in origin geogate; do
    if ! kill -0 "${pid[$p]}" 2>/dev/null; then
      tail -n 20 "$work/$p.log" "$work/upstream.log" >&2 2>/dev/null || true
      die "$p exited during start-up"
    fi
  done
  ((SECONDS < deadline)) || die "geogate did not answer on $proxy within 60 s"
  sleep 0.2
done
log "geogate $("$geogate_bin" --version 2>/dev/null || echo '?') ($geogate_bin), pid $gpid; origin nginx pid ${pid[origin]}"

# ---------------------------------------------------------------- correctness, once
us_ip=8.8.8.8 ru_ip=77.88.8.8
check() { # label url [curl args...] -> "code size" (the body in $work/check.body)
  local url=$2; shift 2 # $1 names the check for the reader
  curl -s -o "$work/check.body" -w '%{http_code} %{size_download}\n' --max-time 5 "$@" "$url" || true
}
read -r code _ < <(check us "$proxy/bench" -H "X-Forwarded-For: $us_ip")
[[ $code == 200 && $(cat "$work/check.body") == US ]] || die "$us_ip: got $code '$(cat "$work/check.body")', want 200 and the origin seeing X-Geo-Country: US"
read -r code _ < <(check ru "$proxy/bench" -H "X-Forwarded-For: $ru_ip")
[[ $code == 451 ]] || die "$ru_ip: got $code, want 451 (RU blocked)"
read -r code _ < <(check direct "$proxy/")
[[ $code == 200 ]] || die "a request without X-Forwarded-For (what slowhttptest sends): got $code, want 200"
read -r code _ < <(check form "$proxy/form" -d 'a=b')
[[ $code == 200 ]] || die "POST /form: got $code, want 200"
read -r code size < <(check large "$proxy/large")
[[ $code == 200 && $size == 1048576 ]] || die "GET /large: got $code with $size bytes, want 200 with 1048576"
log "checks: $us_ip -> 200 (tagged US), $ru_ip -> 451, no XFF -> 200, POST /form -> 200, GET /large -> 1 MiB"

# ---------------------------------------------------------------- phases
metric_open() { curl -s --max-time 1 "$admin/metrics" | awk '$1 == "geogate_open_connections" {printf "%d", $2; f=1} END {if (!f) printf "-1"}'; }
rss_anon_kb() { awk '$1 == "RssAnon:" {print $2; f=1} END {if (!f) print -1}' "/proc/$gpid/status" 2>/dev/null || echo -1; }
sampler() { # every 0.5 s: seconds since start, geogate_open_connections, established sockets on :18095, RssAnon kB
  local t0=$EPOCHREALTIME
  while :; do
    printf '%s %s %s %s\n' "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')" \
      "$(metric_open)" "$(ss -Htn state established '( sport = :18095 )' | wc -l)" "$(rss_anon_kb)"
    sleep 0.5
  done
}
clk_tck=$(getconf CLK_TCK)
ticks() { # pid -> utime + stime in clock ticks (0 when unknown)
  if [[ -n $1 && -r /proc/$1/stat ]]; then sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; else echo 0; fi
}
strip_ansi() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g'; }

attack_len=$((duration + 5))
attack_args() {
  local common=(-c "$attack_conns" -r "$attack_rate" -p 3 -l "$attack_len" -g)
  case $1 in
    slowloris) echo "-H ${common[*]} -i 5 -x 24 -u $proxy/" ;;
    slowbody) echo "-B ${common[*]} -i 5 -x 10 -s 8192 -t POST -u $proxy/form" ;;
    slowread) echo "-X ${common[*]} -k 3 -w 512 -y 1024 -n 5 -z 32 -u $proxy/large" ;;
  esac
}

fail=()
declare -A R=() # phase.key -> value
run_phase() {
  local phase=$1 args
  log "phase $phase: ${duration}s of legitimate load${2:+, with slowhttptest $(attack_args "$phase")}"
  R[$phase.rss_before]=$(rss_anon_kb)
  local g0 o0 opid t0 wall
  opid=$(pgrep -P "${pid[origin]}" 2>/dev/null | head -1 || true)
  g0=$(ticks "$gpid") o0=$(ticks "$opid") t0=$EPOCHREALTIME
  ( sampler ) >"$work/$phase.samples" & pid[sampler]=$!
  if [[ $phase != baseline ]]; then
    read -r -a args <<<"$(attack_args "$phase")"
    ( cd "$work" && exec slowhttptest "${args[@]}" -o "$work/$phase" ) >"$work/$phase.slowhttptest.out" 2>&1 & pid[attack]=$!
  fi
  ( exec wrk -t1 -c "$conns" -d "${duration}s" --timeout 2s --latency -s "$assets/legit.lua" "$proxy/bench" \
      -- "$delay_ms" "$us_ip" "$ru_ip" ) >"$work/$phase.wrk.out" 2>&1 & pid[wrk]=$!
  wait "${pid[wrk]}" || log "wrk exited with $?"
  unset "pid[wrk]"
  if [[ -n ${pid[attack]:-} ]]; then
    local deadline=$((SECONDS + attack_len + 15))
    while kill -0 "${pid[attack]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    kill -0 "${pid[attack]}" 2>/dev/null && log "slowhttptest still running after ${attack_len}+15 s; stopping it"
    stop_one attack
  fi
  stop_one sampler
  wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}')
  R[$phase.cpu_geogate]=$(awk -v a="$g0" -v b="$(ticks "$gpid")" -v d="$wall" -v h="$clk_tck" 'BEGIN {printf "%d", 100 * (b - a) / h / d}')
  R[$phase.cpu_origin]=$(awk -v a="$o0" -v b="$(ticks "$opid")" -v d="$wall" -v h="$clk_tck" 'BEGIN {printf "%d", 100 * (b - a) / h / d}')
  R[$phase.load]=$(cut -d' ' -f1 /proc/loadavg)
  curl -s --max-time 2 "$admin/metrics" >"$work/$phase.metrics" || true
  # geogate's own counts, cumulative since start-up: upstream timeouts (504) and rejections
  R[$phase.m_timeouts]=$(awk '/^geogate_upstream_errors_total/ && /kind="timeout"/ {n += $2} END {printf "%d", n}' "$work/$phase.metrics")
  R[$phase.m_rejected]=$(awk '/^geogate_rejected_total/ {n += $2} END {printf "%d", n}' "$work/$phase.metrics")
  # drain: the next phase starts from an idle geogate (up to 30 s)
  local deadline=$((SECONDS + 30)) open
  while open=$(metric_open) && [[ $open != 0 ]] && ((SECONDS < deadline)); do sleep 0.5; done
  R[$phase.open_after]=$open
  R[$phase.rss_after]=$(rss_anon_kb)
  R[$phase.drain_s]=$((SECONDS - deadline + 30))
  if ! kill -0 "$gpid" 2>/dev/null; then
    fail+=("geogate exited during $phase")
    tail -n 20 "$work/geogate.log" >&2 || true
    die "geogate exited during $phase"
  fi

  # wrk
  local line
  line=$(grep '^RESULT ' "$work/$phase.wrk.out" || true)
  [[ -n $line ]] || { cat "$work/$phase.wrk.out" >&2; die "no result from wrk in $phase"; }
  local kv
  for kv in ${line#RESULT }; do R[$phase.${kv%%=*}]=${kv#*=}; done
  R[$phase.errors]=$((${R[$phase.bad_status]} + ${R[$phase.connect]} + ${R[$phase.read]} + ${R[$phase.write]} + ${R[$phase.timeout]}))
  # geogate at the attack's peak: the sample with the most open connections (the latest of equals)
  read -r "R[$phase.peak_t]" "R[$phase.peak_open]" "R[$phase.peak_estab]" "R[$phase.peak_rss]" < <(
    awk '$2 >= m {m = $2; l = $0} END {print l}' "$work/$phase.samples")
  R[$phase.max_rss]=$(awk '$4 > m {m = $4} END {print m + 0}' "$work/$phase.samples")
  if [[ $phase != baseline ]]; then
    local csv=$work/$phase.csv
    [[ -s $csv ]] || { tail -n 20 "$work/$phase.slowhttptest.out" >&2; die "no CSV from slowhttptest in $phase"; }
    # Seconds,Closed,Pending,Connected,Service Available (connections when the probe answered, 0 when not)
    read -r "R[$phase.a_peak]" "R[$phase.a_peak_t]" "R[$phase.a_pending]" "R[$phase.a_closed]" "R[$phase.a_end]" "R[$phase.a_unavail]" "R[$phase.a_rows]" < <(
      awk -F, 'NR > 1 {if ($4 > pk) {pk = $4; pkt = $1} if ($3 > pd) pd = $3; cl = $2; end = $1; rows++; if ($5 == 0) un++}
               END {printf "%d %d %d %d %d %d %d\n", pk, pkt, pd, cl, end, un, rows}' "$csv")
    R[$phase.a_exit]=$(strip_ansi <"$work/$phase.slowhttptest.out" | awk -F': *' '/^Exit status/ {print $2}' | tail -1)
    R[$phase.a_timeline]=$(awk -F, 'NR > 1 && ($1 % 5 == 0 || $1 == 1) {printf "%s%ss %d/%d/%d%s", sep, $1, $4, $3, $2, ($5 == 0 ? " DOWN" : ""); sep = ", "}' "$csv")
  fi
  log "  legitimate: ${R[$phase.requests]} requests, ${R[$phase.errors]} errors, p50 ${R[$phase.p50_us]} us, p99 ${R[$phase.p99_us]} us; geogate peak ${R[$phase.peak_open]} open connections, RssAnon ${R[$phase.peak_rss]} kB"
}

run_phase baseline
for phase in slowloris slowbody slowread; do run_phase "$phase" attack; done

# ---------------------------------------------------------------- report
ms() { awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
base_p99=${R[baseline.p99_us]}
((base_p99 > 0)) || base_p99=1

echo
echo "geogate under slow-client attacks ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $geogate_bin)"
echo "legitimate load: wrk -t1 -c $conns, ${delay_ms} ms pause per request per connection, ${duration} s per phase, GET /bench, 1 in 10 from RU (451)"
echo "attacks: slowhttptest -c $attack_conns -r $attack_rate -l $attack_len -p 3 (availability probe: answer within 3 s)"
echo "geogate [limits]: shipped defaults (header_read_timeout 10s, max_connections 10000, upstream_response_timeout 30s, ...)"
echo
echo "legitimate clients"
printf '%-10s %9s %7s %6s %6s %7s %7s %9s %9s %6s %s\n' phase requests req/s errors status socket 451s p50_ms p99_ms ratio goal
for phase in baseline slowloris slowbody slowread; do
  ratio=$(awk -v a="${R[$phase.p99_us]}" -v b="$base_p99" 'BEGIN {printf "%.2f", a / b}')
  rps=$(awk -v n="${R[$phase.requests]}" -v d="${R[$phase.duration_us]}" 'BEGIN {printf "%d", n / (d / 1e6)}')
  sock=$((${R[$phase.connect]} + ${R[$phase.read]} + ${R[$phase.write]} + ${R[$phase.timeout]}))
  verdict=ok
  if ((${R[$phase.errors]} > 0)); then verdict="MISSED (errors)"; fail+=("$phase: ${R[$phase.errors]} legitimate errors"); fi
  if [[ $phase != baseline ]] && awk -v r="$ratio" 'BEGIN {exit !(r > 2)}'; then
    verdict="MISSED (p99 > 2x)"; fail+=("$phase: p99 ${ratio}x the baseline's")
  fi
  [[ $phase == baseline ]] && ratio=1.00
  printf '%-10s %9d %7d %6d %6d %7d %7d %9s %9s %6s %s\n' "$phase" "${R[$phase.requests]}" "$rps" "${R[$phase.errors]}" \
    "${R[$phase.bad_status]}" "$sock" "${R[$phase.blocked]}" "$(ms "${R[$phase.p50_us]}")" "$(ms "${R[$phase.p99_us]}")" "$ratio" "$verdict"
done
echo "(errors = status + socket; status: neither 2xx nor 451; socket: wrk connect/read/write/timeout (2 s) errors)"
echo
echo "attack (slowhttptest) and geogate"
printf '%-10s %9s %8s %7s %7s %7s | %9s %6s %10s %9s %9s %9s %5s %5s %5s %4s %s\n' phase connected pending closed unavail ended_s \
  open_peak at_s estab_peak rss_peak rss_max rss_before cpu% orig% load 504s rss_after_drain
for phase in baseline slowloris slowbody slowread; do
  if [[ $phase == baseline ]]; then
    a=(- - - - -)
  else
    a=("${R[$phase.a_peak]}@${R[$phase.a_peak_t]}s" "${R[$phase.a_pending]}" "${R[$phase.a_closed]}" \
       "${R[$phase.a_unavail]}/${R[$phase.a_rows]}" "${R[$phase.a_end]}")
  fi
  printf '%-10s %9s %8s %7s %7s %7s | %9s %6s %10s %9s %9s %9s %5s %5s %5s %4s %s\n' "$phase" "${a[@]}" \
    "${R[$phase.peak_open]}" "${R[$phase.peak_t]}" "${R[$phase.peak_estab]}" "$(mib "${R[$phase.peak_rss]}")M" \
    "$(mib "${R[$phase.max_rss]}")M" "$(mib "${R[$phase.rss_before]}")M" "${R[$phase.cpu_geogate]}" "${R[$phase.cpu_origin]}" \
    "${R[$phase.load]}" "${R[$phase.m_timeouts]}" "$(mib "${R[$phase.rss_after]}")M (${R[$phase.open_after]} open after ${R[$phase.drain_s]}s)"
done
echo "(connected: slowhttptest's peak @ second; pending: its peak; closed: at its end; unavail: probe rows"
echo " with the service unavailable / rows; ended_s: its last second; open_peak: geogate_open_connections"
echo " at its peak, legitimate ones included; estab_peak: established sockets on :18095 then; rss: geogate's"
echo " RssAnon in MiB then (peak), the phase's highest (max), before the phase, after the drain;"
echo " cpu%/orig%: geogate's / the origin worker's CPU over the phase, 100 = one CPU; load: 1-min load average"
echo " at the phase's end, everything on the machine included; 504s: geogate_upstream_errors_total{kind=timeout},"
echo " cumulative since start-up)"
echo
for phase in slowloris slowbody slowread; do
  echo "$phase: slowhttptest exit: ${R[$phase.a_exit]:-?}"
  echo "  timeline (second connected/pending/closed): ${R[$phase.a_timeline]}"
done
echo
if ((${#fail[@]})); then
  echo "GOALS MISSED:"
  printf '  %s\n' "${fail[@]}"
  keep=1
  exit 1
fi
echo "all goals met: 0 legitimate errors, p99 <= 2x the baseline under every attack"
