#!/usr/bin/env bash
# Side-by-side benchmark: geogate against nginx + ngx_http_geoip2_module and HAProxy (map_ip),
# same database, same client addresses, same policy, one worker each, all on 127.0.0.1.
#
# usage: benches/compare/run.sh [--mmdb FILE] [--rounds N] [--duration SECONDS]
#                               [--connections N] [--ips N] [--seed N] [--pin] [--rate R]
#                               [--no-geogate | --candidate URL] [--control] [--tls] [--keep]
#
#   --mmdb FILE      database for every proxy (default geoip/geo-whois-asn-country.mmdb)
#   --rounds N       interleaved rounds over all targets (default 3); figures are medians
#   --duration S     seconds of load per target per round (default 8)
#   --connections N  load connections (default 32), always one load thread
#   --rate R         fixed-rate mode: instead of wrk's saturating load, oha sends R requests/s
#                    to every target with latency correction and the table shows p50/p99/p99.9,
#                    with a line comparing the p99s round by round (README: "p99 by round")
#   --ips N          sampled client addresses (default 10000), --seed N their seed (default 42)
#   --pin            proxies on CPU 1, the load generator and the origin on CPU 0 (needs 2 CPUs)
#   --no-geogate     measure nginx and HAProxy only
#   --candidate URL  measure a proxy you started yourself instead of geogate; it must forward
#                    to http://127.0.0.1:18080 and apply the same policy
#   --control        also measure a second copy of the nginx + geoip2 anchor (same configuration,
#                    port 18085) as the target `control`, compared with the anchors exactly like
#                    geogate: what an identical proxy scores in this run is the run's noise
#   --tls            every target terminates TLS: one throwaway EC P-256 certificate (openssl, in
#                    the scratch directory) for all; nginx `listen ... ssl`, HAProxy `bind ... ssl
#                    crt`, geogate a `tls = { cert, key }` listener, `direct` the origin's own TLS
#                    port 18084; TLS 1.3 only where configurable, the same TLS 1.3 suite order
#                    (AES-256-GCM, AES-128-GCM, ChaCha20) for nginx and HAProxy as rustls uses;
#                    wrk over https with keep-alive. The proxies still speak cleartext to the
#                    origin. Not with --rate or --candidate
#   --keep           keep the scratch directory (configs, logs, raw load-generator output)
#
# Environment: GEOGATE_BIN  the geogate binary (default $CARGO_TARGET_DIR/release/geogate, else
#              target/release/geogate; built if missing)
#              GEOGATE_BENCH_CACHE  where oha is installed (default ~/.cache/geogate-bench), never
#              inside the repository
#
# Ports: 18080 origin, 18081 nginx+geoip2, 18082 HAProxy, 18083 geogate (+ admin 9901);
# with --tls also 18084 (the origin over TLS, the `direct` target); with --control 18085.
# Installs, only when missing: nginx-light libnginx-mod-http-geoip2 haproxy wrk (apt, Debian)
# and maxminddb (pip), with --tls openssl; with --rate also oha (crates.io, `cargo install --locked`, pinned
# version, into $GEOGATE_BENCH_CACHE/oha). No other network access. Every process it starts is
# stopped on exit.
#
# What --rate sends: oha with -q R --latency-correction -c N -z S (one tokio worker thread, the
# counterpart of wrk -t1), HTTP/1.1 keep-alive, GET /bench, every request with the same
# X-Forwarded-For: the first address of the sample (--ips/--seed) that the database does not
# map to RU/BY, so every request is forwarded to the origin and answered 200 (any non-2xx is
# reported). Why one fixed address: oha can vary the URL (--rand-regex-url, --urls-from-file)
# and the body (-Z) per request but not a header, and the proxies take the client address
# only from X-Forwarded-For. Splitting the rate over several oha processes with one address
# each was rejected: their percentiles cannot be merged into the percentiles of the whole
# (oha reports percentiles and a coarse histogram, not its samples), and more generator
# processes on a small machine add scheduling noise to exactly what this mode measures. So
# the rate mode times the common path (lookup, tag, forward); the sampled mix of addresses,
# ~1 % of them blocked, is what the default wrk mode (xff.lua) sends. Latency is counted from
# the moment oha's rate timer releases a request (tokio's timer has 1 ms resolution, so about
# R/1000 requests leave per tick), so the time a request waits for a free connection behind
# a slow response is included (no coordinated omission); a stall of oha itself is not.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

mmdb="$repo/geoip/geo-whois-asn-country.mmdb"
rounds=3 duration=8 conns=32 nips=10000 seed=42 pin=0 with_geogate=1 candidate="" control=0 keep=0 rate="" tls=0

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --mmdb) mmdb=$(realpath "$2"); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --ips) nips=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --rate) rate=$2; shift 2 ;;
    --no-geogate) with_geogate=0; shift ;;
    --candidate) candidate=${2%/}; with_geogate=0; shift 2 ;;
    --control) control=1; shift ;;
    --tls) tls=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage ;;
  esac
done
for n in "$rounds" "$duration" "$conns" "$nips" "$seed" ${rate:+"$rate"}; do
  [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || { echo "run.sh: numeric arguments must be positive integers" >&2; exit 2; }
done
[[ -f $mmdb ]] || { echo "run.sh: no database at $mmdb" >&2; exit 2; }
if ((pin)) && (($(nproc) < 2)); then echo "run.sh: --pin needs at least 2 CPUs" >&2; exit 2; fi
if ((tls)) && [[ -n $rate || -n $candidate ]]; then
  echo "run.sh: --tls does not combine with --rate or --candidate" >&2; exit 2
fi

log() { printf '[compare] %s\n' "$*" >&2; }
die() { printf '[compare] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
# shellcheck source=benches/lib/prereq.sh
. "$repo/benches/lib/prereq.sh"
geoip2_so=/usr/lib/nginx/modules/ngx_http_geoip2_module.so
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
[[ -f $geoip2_so ]] || missing+=(libnginx-mod-http-geoip2)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
[[ -n $rate ]] || command -v wrk >/dev/null 2>&1 || missing+=(wrk)
((tls == 0)) || command -v openssl >/dev/null 2>&1 || missing+=(openssl)
debian_install ${missing[@]+"${missing[@]}"}
require_tools curl taskset python3 ss
if ! python3 -c 'import maxminddb' >/dev/null 2>&1; then
  log "installing the maxminddb reader from PyPI"
  python3 -m pip install -q maxminddb || die "pip install maxminddb failed"
fi

geogate_bin=""
((with_geogate == 0)) || geogate_binary

# --rate: oha (benches/lib/oha.sh: the cache, else PATH, else installed from crates.io once)
oha_bin=""
if [[ -n $rate ]]; then
  # shellcheck source=benches/lib/oha.sh
  . "$repo/benches/lib/oha.sh"
  oha_ensure
fi

# the ports must be free: a leftover process would be measured instead of ours
ports=(18080 18081 18082)
((tls)) && ports+=(18084)
((with_geogate)) && ports+=(18083 9901)
((control)) && ports+=(18085)
for port in "${ports[@]}"; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
done

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d /tmp/geogate-compare.XXXXXX)
# shellcheck source=benches/lib/processes.sh
. "$repo/benches/lib/processes.sh"

# `exec` inside the backgrounded subshell makes $! the pid of the program itself
proxy_cpu() { if ((pin)); then exec taskset -c 1 "$@"; else exec "$@"; fi; }
load_cpu_exec() { if ((pin)); then exec taskset -c 0 "$@"; else exec "$@"; fi; }
load_cpu() { if ((pin)); then taskset -c 0 "$@"; else "$@"; fi; }

# ---------------------------------------------------------------- data and configs
log "database: $mmdb"
python3 "$here/geodata.py" map "$mmdb" >"$work/geo.map" 2>"$work/geodata-map.log"
python3 "$here/geodata.py" ips "$mmdb" "$nips" "$seed" >"$work/ips.txt" 2>"$work/geodata-ips.log"
ip_share=$(tail -1 "$work/geodata-ips.log")
log "${ip_share#geodata: }"

render() { # template -> file, placeholders {{WORK}} {{MMDB}} {{MAP}}
  sed -e "s|{{WORK}}|$work|g" -e "s|{{MMDB}}|$mmdb|g" -e "s|{{MAP}}|$work/geo.map|g" "$1" >"$2"
}
render "$here/upstream.nginx.conf" "$work/upstream.conf"
render "$here/nginx-geoip2.conf" "$work/nginx-geoip2.conf"
render "$here/haproxy.cfg" "$work/haproxy.cfg"

geogate_conf="$here/geogate.toml"
if ((with_geogate)) && { ((tls)) || [[ $mmdb != "$(realpath "$repo/geoip/geo-whois-asn-country.mmdb")" ]]; }; then
  # same configuration, other database or TLS: a copy in the scratch directory, the repo file untouched
  geogate_conf="$work/geogate.toml"
  sed "s|^path = .*\.mmdb\"|path = \"$mmdb\"|" "$here/geogate.toml" >"$geogate_conf"
  grep -q "^path = \"$mmdb\"" "$geogate_conf" || die "could not point the geogate config at $mmdb"
fi

# --tls: one throwaway certificate for every target, and each configuration told to use it
curl_tls=()
if ((tls)); then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/tls.key" -out "$work/tls.crt" 2>"$work/openssl.log" || die "openssl could not make a certificate"
  cat "$work/tls.crt" "$work/tls.key" >"$work/tls.pem" # HAProxy wants both in one file
  curl_tls=(--cacert "$work/tls.crt")
  # the TLS 1.3 suites in rustls' (ring provider's) order, for the servers that let us say so
  suites=TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
  nginx_ssl="ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key; ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites $suites;"
  sed -i "s|^\( *\)listen 127.0.0.1:18081 backlog=4096;|\1listen 127.0.0.1:18081 ssl backlog=4096;\n\1$nginx_ssl|" "$work/nginx-geoip2.conf"
  grep -q 'listen 127.0.0.1:18081 ssl' "$work/nginx-geoip2.conf" || die "could not turn on TLS in nginx-geoip2.conf"
  # the origin keeps its cleartext port for the proxies and gets a TLS one for `direct`
  sed -i "s|^\( *\)listen 127.0.0.1:18080 backlog=4096;|&\n\1listen 127.0.0.1:18084 ssl backlog=4096;\n\1$nginx_ssl|" "$work/upstream.conf"
  grep -q 'listen 127.0.0.1:18084 ssl' "$work/upstream.conf" || die "could not add a TLS port to upstream.conf"
  sed -i "s|^\( *\)bind 127.0.0.1:18082\$|\1bind 127.0.0.1:18082 ssl crt $work/tls.pem ssl-min-ver TLSv1.3 ciphersuites $suites|" "$work/haproxy.cfg"
  grep -q 'bind 127.0.0.1:18082 ssl crt' "$work/haproxy.cfg" || die "could not turn on TLS in haproxy.cfg"
  if ((with_geogate)); then
    sed -i "s|^address = \"127.0.0.1:18083\"\$|&\ntls = { cert = \"$work/tls.crt\", key = \"$work/tls.key\" }|" "$geogate_conf"
    grep -q '^tls = ' "$geogate_conf" || die "could not turn on TLS in the geogate configuration"
  fi
fi

# --control: the anchor's own configuration (after any TLS edit) on another port, own files
if ((control)); then
  sed -e "s|127.0.0.1:18081|127.0.0.1:18085|" -e "s|$work/nginx-|$work/control-|g" \
    "$work/nginx-geoip2.conf" >"$work/control.conf"
  grep -q '127.0.0.1:18085' "$work/control.conf" || die "could not move the control's listener to 18085"
fi

# ---------------------------------------------------------------- start
((control == 0)) || nginx -t -q -p "$work" -e "$work/nginx-test.log" -c "$work/control.conf" || die "control config rejected"
nginx -t -q -p "$work" -e "$work/nginx-test.log" -c "$work/nginx-geoip2.conf" || die "nginx+geoip2 config rejected"
haproxy -c -q -f "$work/haproxy.cfg" || die "haproxy config rejected"

( load_cpu_exec nginx -p "$work" -e "$work/upstream.log" -c "$work/upstream.conf" ) & pid[upstream]=$!
( proxy_cpu nginx -p "$work" -e "$work/nginx-geoip2.log" -c "$work/nginx-geoip2.conf" ) & pid[nginx]=$!
( proxy_cpu haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 ) & pid[haproxy]=$!
if ((control)); then
  ( proxy_cpu nginx -p "$work" -e "$work/control.log" -c "$work/control.conf" ) & pid[control]=$!
fi
if ((with_geogate)); then
  ( cd "$work" && proxy_cpu "$geogate_bin" run --config "$geogate_conf" >"$work/geogate.log" 2>&1 ) & pid[geogate]=$!
fi

declare -A url=([direct]=http://127.0.0.1:18080 [nginx]=http://127.0.0.1:18081 [haproxy]=http://127.0.0.1:18082)
((tls)) && url=([direct]=https://127.0.0.1:18084 [nginx]=https://127.0.0.1:18081 [haproxy]=https://127.0.0.1:18082)
proxies=(nginx haproxy)
if ((with_geogate)); then url[geogate]=$( ((tls)) && echo https || echo http)://127.0.0.1:18083; proxies+=(geogate); fi
if [[ -n $candidate ]]; then url[candidate]=$candidate; proxies+=(candidate); fi
if ((control)); then url[control]=$( ((tls)) && echo https || echo http)://127.0.0.1:18085; proxies+=(control); fi
targets=(direct "${proxies[@]}")

wait_ready() { # target process: up to 60 s for the listener to answer anything
  local target=$1 proc=$2 deadline=$((SECONDS + 60))
  until curl -s ${curl_tls[@]+"${curl_tls[@]}"} -o /dev/null --max-time 2 "${url[$target]}/" -H 'X-Forwarded-For: 8.8.8.8'; do
    if [[ -n $proc ]] && ! kill -0 "${pid[$proc]}" 2>/dev/null; then
      tail -n 20 "$work/$proc.log" >&2 2>/dev/null || true
      die "$proc exited during start-up"
    fi
    ((SECONDS < deadline)) || die "$target did not answer on ${url[$target]} within 60 s"
    sleep 0.2
  done
}
for t in "${targets[@]}"; do
  case $t in direct) wait_ready direct upstream ;; candidate) wait_ready candidate "" ;; *) wait_ready "$t" "$t" ;; esac
done
log "all targets answer: ${targets[*]}"

# ---------------------------------------------------------------- correctness, once
ru_ip=77.88.8.8 us_ip=8.8.8.8
[[ $(python3 "$here/geodata.py" country "$mmdb" "$ru_ip") == RU ]] || ru_ip=$(python3 "$here/geodata.py" pick "$mmdb" RU)
[[ $(python3 "$here/geodata.py" country "$mmdb" "$us_ip") == US ]] || us_ip=$(python3 "$here/geodata.py" pick "$mmdb" US)
bad=0
for t in "${proxies[@]}"; do
  ru_code=$(curl -s ${curl_tls[@]+"${curl_tls[@]}"} -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Forwarded-For: $ru_ip" "${url[$t]}/bench" || true)
  us_code=$(curl -s ${curl_tls[@]+"${curl_tls[@]}"} -o "$work/check-$t.body" -w '%{http_code}' --max-time 5 -H "X-Forwarded-For: $us_ip" "${url[$t]}/bench" || true)
  us_seen=$(cat "$work/check-$t.body" 2>/dev/null || true)
  if [[ $ru_code == 451 && $us_code == 200 && $us_seen == US ]]; then
    log "check $t: $ru_ip (RU) -> 451, $us_ip (US) -> 200, origin saw X-Geo-Country: US"
  else
    log "check $t FAILED: $ru_ip (RU) -> $ru_code (want 451); $us_ip (US) -> $us_code (want 200), origin saw X-Geo-Country: '${us_seen}' (want US)"
    bad=1
  fi
done
if [[ -n $rate ]]; then
  # the one address the rate mode sends: the first of the sample that is not blocked
  rate_ip="" rate_cc=""
  while read -r a; do
    cc=$(python3 "$here/geodata.py" country "$mmdb" "$a")
    if [[ $cc != - && $cc != RU && $cc != BY ]]; then rate_ip=$a rate_cc=$cc; break; fi
  done < <(head -n 50 "$work/ips.txt")
  [[ -n $rate_ip ]] || die "none of the first 50 sampled addresses is outside RU/BY"
  for t in "${proxies[@]}"; do
    code=$(curl -s -o "$work/check-rate-$t.body" -w '%{http_code}' --max-time 5 -H "X-Forwarded-For: $rate_ip" "${url[$t]}/bench" || true)
    seen=$(cat "$work/check-rate-$t.body" 2>/dev/null || true)
    if [[ $code == 200 && $seen == "$rate_cc" ]]; then
      log "check $t: $rate_ip ($rate_cc, the --rate address) -> 200, origin saw X-Geo-Country: $rate_cc"
    else
      log "check $t FAILED: $rate_ip ($rate_cc) -> $code (want 200), origin saw X-Geo-Country: '${seen}' (want $rate_cc)"
      bad=1
    fi
  done
fi
((bad == 0)) || die "a proxy does not apply the policy; not measuring"
if ((tls)); then
  # what wrk's OpenSSL will negotiate with each target (the same library defaults as s_client)
  declare -A negotiated=()
  for t in "${targets[@]}"; do
    hostport=${url[$t]#https://}
    negotiated[$t]=$(openssl s_client -connect "$hostport" -servername localhost -CAfile "$work/tls.crt" \
      -verify_return_error </dev/null 2>&1 |
      awk '/^New, / {v=$2; c=$NF; sub(/,$/, "", v)} /^Server Temp Key:/ {g=$4; sub(/,$/, "", g)}
           /^Verify return code: 0 / {ok=1} END {if (ok && v != "" && c != "") print v, c, "(key exchange " g ")"}')
    [[ -n ${negotiated[$t]} ]] || die "no TLS handshake with $t at $hostport"
    log "TLS $t: ${negotiated[$t]}"
  done
  first=${negotiated[${targets[0]}]}
  for t in "${targets[@]}"; do
    [[ ${negotiated[$t]%% (*} == "${first%% (*}" ]] || die "$t negotiates ${negotiated[$t]}, ${targets[0]} $first: not comparable"
  done
fi

# ---------------------------------------------------------------- load
to_us() { # wrk latency (e.g. 812.00us, 1.20ms, 1.01s) -> integer microseconds
  awk '{v=$1; m=1; if (v ~ /us$/) {sub(/us$/,"",v)} else if (v ~ /ms$/) {sub(/ms$/,"",v); m=1000}
        else if (v ~ /m$/) {sub(/m$/,"",v); m=60000000} else if (v ~ /s$/) {sub(/s$/,"",v); m=1000000}
        printf "%d", v*m + 0.5}' <<<"$1"
}
results="$work/results.txt" # round target rps p50_us p99_us non2xx total socket_errors proxy_user proxy_sys origin_ticks [p999_us aborted]
# CPU accounting: the serving process of each proxy (nginx: its one worker) and the origin's
# worker, in clock ticks from /proc/PID/stat (utime, stime), read around each wrk run. On a
# machine where wrk, the origin and the proxy share the CPUs, the CPU a proxy spends per request
# decides its throughput more than anything else, and it is far less noisy than req/s.
clk_tck=$(getconf CLK_TCK)
serving_pid() {
  case $1 in
    nginx | control) pgrep -P "${pid[$1]:-0}" 2>/dev/null | head -1 ;;
    haproxy) echo "${pid[haproxy]}" ;;
    geogate) echo "${pid[geogate]:-}" ;;
    origin) pgrep -P "${pid[upstream]}" 2>/dev/null | head -1 ;;
    *) echo "" ;;
  esac
}
ticks() { # pid -> "utime stime" (0 0 when unknown)
  if [[ -n $1 && -r /proc/$1/stat ]]; then sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; else echo "0 0"; fi
}
: >"$results"
ntargets=${#targets[@]}
oha_figures() { # oha JSON -> "rps p50_us p99_us p999_us non2xx total errors aborted"
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
status = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
errors = d.get("errorDistribution") or {}
aborted = sum(v for k, v in errors.items() if "deadline" in k)  # in flight when -z ran out
pct = d.get("latencyPercentiles") or {}
us = lambda k: round(pct[k] * 1e6) if pct.get(k) is not None else 0
print(round(d["summary"]["requestsPerSec"] or 0), us("p50"), us("p99"), us("p99.9"),
      sum(v for k, v in status.items() if not 200 <= k < 300), sum(status.values()),
      sum(errors.values()) - aborted, aborted)
PY
}
if [[ -n $rate ]]; then
  load_desc="oha -q $rate --latency-correction -c$conns, 1 thread"
else
  load_desc="wrk -t1 -c$conns"
fi
log "load: $rounds round(s) x ${ntargets} targets x ${duration}s, $load_desc$( ((pin)) && echo ', pinned')"
((pin)) || [[ -z $rate ]] || log "unpinned: oha, the origin and the proxy share the CPUs; their scheduling is part of every latency"
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < ntargets; i++)); do
    t=${targets[$(((i + r - 1) % ntargets))]} # rotate the order from round to round
    ppid=$(serving_pid "$t"); opid=$(serving_pid origin)
    if [[ -n $rate ]]; then
      raw="$work/oha-r$r-$t.json"
      read -r pu0 ps0 < <(ticks "$ppid"); read -r ou0 os0 < <(ticks "$opid")
      ( TOKIO_WORKER_THREADS=1 load_cpu_exec timeout $((duration + 30)) \
        "$oha_bin" -z "${duration}s" -q "$rate" --latency-correction -c "$conns" -t 5s --no-tui \
        --output-format json -H "X-Forwarded-For: $rate_ip" "${url[$t]}/bench" >"$raw" 2>"$raw.err" ) &
      pid[oha]=$!
      wait "${pid[oha]}" || { cat "$raw.err" >&2; die "oha failed against $t"; }
      unset 'pid[oha]'
      read -r pu1 ps1 < <(ticks "$ppid"); read -r ou1 os1 < <(ticks "$opid")
      read -r rps p50 p99 p999 non2xx total errs aborted < <(oha_figures "$raw") || die "cannot read $raw"
      echo "$r $t $rps $p50 $p99 $non2xx $total $errs $((pu1 - pu0)) $((ps1 - ps0)) $((ou1 + os1 - ou0 - os0)) $p999 $aborted" >>"$results"
      log "round $r $t: $rps req/s (asked $rate), p50 $p50 us, p99 $p99 us, p99.9 $p999 us, non-2xx $non2xx/$total$( ((errs)) && echo ", errors $errs")"
      continue
    fi
    raw="$work/wrk-r$r-$t.txt"
    read -r pu0 ps0 < <(ticks "$ppid"); read -r ou0 os0 < <(ticks "$opid")
    # in the background so that a signal reaches the trap at once instead of after the load
    ( GEO_IPS="$work/ips.txt" load_cpu_exec timeout $((duration + 30)) \
      wrk -t1 -c"$conns" -d"${duration}s" --timeout 5s --latency -s "$here/xff.lua" "${url[$t]}/bench" >"$raw" 2>&1 ) &
    pid[wrk]=$!
    wait "${pid[wrk]}" || { cat "$raw" >&2; die "wrk failed against $t"; }
    unset 'pid[wrk]'
    read -r pu1 ps1 < <(ticks "$ppid"); read -r ou1 os1 < <(ticks "$opid")
    rps=$(awk '/^Requests\/sec:/ {printf "%d", $2 + 0.5}' "$raw")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$raw")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$raw")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$raw")
    total=$(awk '/ requests in / {print $1}' "$raw")
    errs=$(awk '/Socket errors:/ {s=0; for (k=1;k<=NF;k++) if ($k ~ /^[0-9]+,?$/) s+=$k; print s}' "$raw")
    echo "$r $t ${rps:-0} ${p50:-0} ${p99:-0} ${non2xx:-0} ${total:-0} ${errs:-0} $((pu1 - pu0)) $((ps1 - ps0)) $((ou1 + os1 - ou0 - os0))" >>"$results"
    log "round $r $t: ${rps:-?} req/s, p50 ${p50:-?} us, p99 ${p99:-?} us, non-2xx ${non2xx:-0}/${total:-?}${errs:+, socket errors $errs}"
  done
done

# ---------------------------------------------------------------- report
rss_kb() { # resident set of a process and its children (nginx: master + its one worker), kB
  local list=$1 kid
  for kid in $(pgrep -P "$1" 2>/dev/null || true); do list+=",$kid"; done
  { ps -o rss= -p "$list" 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'
}
worker_rss_kb() { # the nginx worker alone (the process that serves and holds the database pages)
  local w; w=$(pgrep -P "$1" 2>/dev/null || true)
  w=${w%%$'\n'*}
  if [[ -n $w ]]; then rss_kb "$w"; else echo 0; fi
}
declare -A rss=([direct]=- [candidate]=-)
rss[nginx]="$(worker_rss_kb "${pid[nginx]}")"
rss[haproxy]=$(rss_kb "${pid[haproxy]}")
((with_geogate)) && rss[geogate]=$(rss_kb "${pid[geogate]}")
((control)) && rss[control]="$(worker_rss_kb "${pid[control]}")"

median() { # target column -> median over rounds
  awk -v t="$1" -v c="$2" '$2 == t {print $c}' "$results" | sort -n |
    awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 + 0.5}'
}
declare -A med_rps med_p99
# the targets compared with the anchors: geogate or the --candidate, then the --control copy
compared=()
((with_geogate)) && compared+=(geogate)
[[ -z $candidate ]] || compared+=(candidate)
((control == 0)) || compared+=(control)
if [[ -n $rate ]]; then
  declare -A med_p50 med_p999
  echo
  echo "geogate comparison at a fixed rate: $(basename "$mmdb"), $rounds round(s) x ${duration}s, oha -q $rate --latency-correction -c$conns (1 thread), $(nproc) CPUs$( ((pin)) && echo ', pinned (proxies CPU 1, oha+origin CPU 0)' || echo ', unpinned')"
  echo "every request: GET /bench, X-Forwarded-For: $rate_ip ($rate_cc, first unblocked address of the sample), keep-alive"
  printf '%-10s %10s %9s %9s %11s %18s %7s %10s\n' target "req/s" "p50 µs" "p99 µs" "p99.9 µs" "non-2xx/total" errors "RSS kB" # µ: 2 bytes
  slow=()
  for t in "${targets[@]}"; do
    med_rps[$t]=$(median "$t" 3); med_p50[$t]=$(median "$t" 4); med_p99[$t]=$(median "$t" 5); med_p999[$t]=$(median "$t" 12)
    read -r non2xx total errs aborted < <(awk -v t="$t" '$2 == t {b += $6; n += $7; e += $8; a += $13} END {print b + 0, n + 0, e + 0, a + 0}' "$results")
    printf '%-10s %10s %8s %8s %10s %18s %7s %10s\n' "$t" "${med_rps[$t]}" "${med_p50[$t]}" "${med_p99[$t]}" "${med_p999[$t]}" "$non2xx/$total" "$errs" "${rss[$t]:--}"
    ((${med_rps[$t]} * 100 >= rate * 98)) || slow+=("$t")
  done
  ratio_line() { # percentile name candidate nginx haproxy
    awk -v q="$1" -v name="$2" -v c="$3" -v n="$4" -v h="$5" 'BEGIN {
      best = n < h ? n : h
      printf "%-5s ratio  %s/nginx %.2f   %s/haproxy %.2f   %s/best %.2f   (lower is better)\n", q, name, c / n, name, c / h, name, c / best
    }'
  }
  for c in "${compared[@]}"; do
    ratio_line p50 "$c" "${med_p50[$c]}" "${med_p50[nginx]}" "${med_p50[haproxy]}"
    ratio_line p99 "$c" "${med_p99[$c]}" "${med_p99[nginx]}" "${med_p99[haproxy]}"
    ratio_line p99.9 "$c" "${med_p999[$c]}" "${med_p999[nginx]}" "${med_p999[haproxy]}"
    # Round by round: the targets of one round ran back to back, so they met much the same
    # host. Counting wins per round and the geometric mean of the per-round ratios shows how
    # much of a median ratio is one lucky or unlucky round. Three targets with the same tail
    # would each be the lowest of the three in about a third of the rounds.
    awk -v name="$c" '$2 == name || $2 == "nginx" || $2 == "haproxy" {p[$1, $2] = $5; r[$1] = 1}
      END {
        for (k in r) {
          if (!((k, name) in p) || !((k, "nginx") in p) || !((k, "haproxy") in p)) continue
          c = p[k, name]; n = p[k, "nginx"]; h = p[k, "haproxy"]; b = n < h ? n : h
          rounds++; wn += c <= n; wh += c <= h; wb += c <= b; lg += log(c / b)
        }
        if (rounds) printf "p99 by round: %s at or below nginx in %d of %d rounds, HAProxy %d, both %d; geometric mean of %s/(the round'"'"'s better anchor) %.2f\n", name, wn, rounds, wh, wb, name, exp(lg / rounds)
      }' "$results"
  done
  ((${#slow[@]} == 0)) || echo "below 98 % of the asked $rate req/s (the target or oha fell behind; the backlog is in the latencies): ${slow[*]}"
  echo "req/s = completed responses / duration (median); latencies from oha's scheduled send time (medians over rounds)."
else
  echo
  echo "geogate comparison: $(basename "$mmdb"), $rounds round(s) x ${duration}s, wrk -t1 -c$conns, $(nproc) CPUs$( ((pin)) && echo ', pinned (proxies CPU 1, wrk+origin CPU 0)' || echo ', unpinned')"
  ((tls)) && echo "TLS terminated by every target (direct: the origin's TLS port), keep-alive: ${negotiated[${targets[0]}]}"
  echo "client addresses: ${ip_share#geodata: }"
  printf '%-10s %10s %9s %9s %26s %10s\n' target "req/s" "p50 µs" "p99 µs" "non-2xx (blocked)/total" "RSS kB" # µ: 2 bytes
  for t in "${targets[@]}"; do
    med_rps[$t]=$(median "$t" 3); med_p99[$t]=$(median "$t" 5)
    p50=$(median "$t" 4)
    read -r blocked total errs < <(awk -v t="$t" '$2 == t {b += $6; n += $7; e += $8} END {print b + 0, n + 0, e + 0}' "$results")
    share=$(awk -v b="$blocked" -v n="$total" 'BEGIN {printf "%.2f", n ? 100 * b / n : 0}')
    printf '%-10s %10s %8s %8s %26s %10s\n' "$t" "${med_rps[$t]}" "$p50" "${med_p99[$t]}" "$blocked/$total ($share%)" "${rss[$t]:--}"
    ((errs == 0)) || echo "  ($t: $errs wrk socket errors over all rounds)"
  done
  for c in "${compared[@]}"; do
    awk -v name="$c" -v c="${med_rps[$c]}" -v n="${med_rps[nginx]}" -v h="${med_rps[haproxy]}" \
        -v cp="${med_p99[$c]}" -v np="${med_p99[nginx]}" -v hp="${med_p99[haproxy]}" 'BEGIN {
      best = n > h ? n : h; bestp = np < hp ? np : hp
      printf "req/s ratio  %s/nginx %.2f   %s/haproxy %.2f   %s/best %.2f\n", name, c / n, name, c / h, name, c / best
      printf "p99 ratio    %s/nginx %.2f   %s/haproxy %.2f   %s/best %.2f   (lower is better)\n", name, cp / np, name, cp / hp, name, cp / bestp
    }'
  done
fi
echo "RSS after the load: nginx (and control) = its one worker; haproxy, geogate = the process (+ children)."
echo
echo "CPU per request over all rounds (µs; clock ticks of 1/$clk_tck s from /proc, so ±1 tick per run):"
printf '%-10s %10s %10s %10s %12s %12s\n' target "proxy user" "proxy sys" "proxy all" "all / nginx" "origin all"
nginx_all=$(awk -v hz="$clk_tck" '$2 == "nginx" {n += $7; c += $9 + $10} END {if (n) printf "%.6f", c * 1e6 / hz / n}' "$results")
for t in "${targets[@]}"; do
  awk -v t="$t" -v hz="$clk_tck" -v ng="${nginx_all:-0}" '$2 == t {n += $7; u += $9; s += $10; o += $11}
    END {if (!n) exit; k = 1e6 / hz / n
         if (t == "direct" || t == "candidate") printf "%-10s %10s %10s %10s %12s %12.1f\n", t, "-", "-", "-", "-", o * k
         else printf "%-10s %10.1f %10.1f %10.1f %12s %12.1f\n", t, u * k, s * k, (u + s) * k,
                     (ng > 0 ? sprintf("%.2f", (u + s) * k / ng) : "-"), o * k}' "$results"
done
if ((tls && with_geogate)); then
  awk -v hz="$clk_tck" -v ng="${nginx_all:-0}" '$2 == "geogate" {n += $7; c += $9 + $10}
    END {if (!n || ng <= 0) exit; r = c * 1e6 / hz / n / ng
         printf "TLS goal (issue #19): geogate CPU per request <= 1.10x nginx: %.2fx, %s\n", r, r <= 1.10 ? "met" : "missed"}' "$results"
fi
