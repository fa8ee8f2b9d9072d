#!/usr/bin/env bash
# Certificate rotation under load: does replacing a TLS listener's certificate and key every
# second, and reloading, cost a single request?
#
# usage: benches/tls_rotation.sh [--duration S] [--connections N] [--pairs N] [--interval S]
#                                [--probe-ms MS] [--trigger both|admin|watch] [--port P]
#                                [--origin-port P] [--admin-port P] [--keep]
#
#   --duration S     seconds of load and rotation (default 60)
#   --connections N  wrk keep-alive connections (default 32), split over the two listeners
#   --pairs N        certificate+key pairs, all signed by one throwaway CA, cycled (default 4)
#   --interval S     seconds between two swaps (default 1; may be fractional)
#   --probe-ms MS    pause between two new-connection probes (default 50)
#   --trigger T      what makes geogate load the new files: `both` (default: POST /-/reload after
#                    each swap, and geogate's file watch), `admin` (the POST; the watch then finds
#                    nothing new) or `watch` (the file watch alone, no POST)
#   --port P         the first TLS listener (default 18096; the second is P+1)
#   --origin-port P  the origin (default 18098), --admin-port P geogate's admin (default 19096)
#   --keep           keep the scratch directory (certificates, configs, logs, raw tool output)
#
# Environment: GEOGATE_BIN  the geogate binary (default $CARGO_TARGET_DIR/release/geogate, else
#              target/release/geogate; built with `cargo build --release` only if missing)
#
# What runs (all on 127.0.0.1): an nginx origin answering 200; geogate (1 worker thread) with
# two TLS listeners in front of it, each with its own files:
#   files   P    tls.crt and tls.key in a directory, each swap two atomic renames (mv -T of a
#                fully written file beside it: key first, then certificate)
#   secret  P+1  a Kubernetes Secret volume's layout: tls.crt -> ..data/tls.crt, ..data -> a
#                timestamped directory; each swap writes a new directory and renames a new
#                ..data symlink over the old one (one atomic rename for both files)
# Load, for --duration seconds:
#   - two wrk processes (-t1, half of --connections each, keep-alive, --timeout 5s), one per
#     listener, GET /bench with X-Forwarded-For 8.8.8.8 (US: tagged, forwarded, 200);
#   - a prober (python3 ssl, one process) that opens a NEW TLS connection every --probe-ms,
#     alternating between the listeners, verifies the chain against the CA and the name
#     `localhost`, sends one request, wants 200, and records which certificate it was served
#     (SHA-256 of the leaf): it must be one of the pairs;
#   - every --interval seconds the next pair is put in place on both listeners and (trigger
#     both/admin) POST /-/reload is called; its JSON answer says whether the snapshot swapped.
# Failures (exit status 1 when any): wrk non-2xx or socket errors (connect, read, write,
# timeout), probe failures (connect, handshake, verification, status other than 200, a
# certificate outside the set), POST /-/reload answers other than 200, geogate exiting. Also
# reported, not judged: reloads by trigger and result (geogate_reloads_total), handshake
# failures counted by geogate, and per swap whether new connections were served the new
# certificate and how soon (the first probe of that listener after the swap that saw it).
#
# Ports: --port, --port + 1, --origin-port, --admin-port; all must be free. Installs, only when
# missing (apt, Debian): wrk nginx-light openssl. No other network access. Every process it
# starts is stopped on exit. A bench, not part of CI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

duration=60 conns=32 pairs=4 interval=1 probe_ms=50 trigger=both port=18096 origin_port=18098 admin_port=19096 keep=0
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --probe-ms) probe_ms=$2; shift 2 ;;
    --trigger) trigger=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --origin-port) origin_port=$2; shift 2 ;;
    --admin-port) admin_port=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "tls_rotation.sh: unknown argument: $1" >&2; usage ;;
  esac
done
for n in "$duration" "$conns" "$pairs" "$probe_ms" "$port" "$origin_port" "$admin_port"; do
  [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || { echo "tls_rotation.sh: numeric arguments must be positive integers" >&2; exit 2; }
done
[[ $interval =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v i="$interval" 'BEGIN {exit !(i >= 0.1)}' ||
  { echo "tls_rotation.sh: --interval must be a number of seconds >= 0.1" >&2; exit 2; }
((conns >= 2)) || { echo "tls_rotation.sh: --connections must be at least 2 (one per listener)" >&2; exit 2; }
((pairs >= 2)) || { echo "tls_rotation.sh: --pairs must be at least 2" >&2; exit 2; }
case $trigger in both|admin|watch) ;; *) echo "tls_rotation.sh: --trigger is both, admin or watch" >&2; exit 2 ;; esac

log() { printf '[tls-rotation] %s\n' "$*" >&2; }
die() { printf '[tls-rotation] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
  log "installing from Debian: ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${missing[*]} by hand"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in curl ss awk python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
python3 -c 'import ssl; ssl.HAS_TLSv1_3 or exit(1)' 2>/dev/null || die "python3's ssl module cannot speak TLS 1.3"

mmdb="$repo/geoip/geo-whois-asn-country.mmdb"
[[ -f $mmdb ]] || die "no database at $mmdb"
geogate_bin=${GEOGATE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/geogate}
if [[ -n ${GEOGATE_BIN:-} ]]; then
  [[ -x $geogate_bin ]] || die "GEOGATE_BIN=$geogate_bin is not an executable file"
elif [[ ! -x $geogate_bin ]]; then
  log "no release binary; cargo build --release"
  (cd "$repo" && cargo build --release)
fi

port2=$((port + 1))
for p in "$port" "$port2" "$origin_port" "$admin_port"; do
  if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is already in use"; fi
done

# ---------------------------------------------------------------- scratch, cleanup
work=$(mktemp -d /tmp/geogate-tlsrot.XXXXXX)
# shellcheck source=benches/lib/processes.sh
. "$repo/benches/lib/processes.sh"

# ---------------------------------------------------------------- certificates
# One CA, then --pairs leaf pairs (EC P-256, CN and subjectAltName localhost + 127.0.0.1), all
# written before the load starts; the fingerprints are the set a client may be served.
mkdir -p "$work/pki"
cat >"$work/pki/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = geogate tls_rotation bench CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
cat >"$work/pki/leaf.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
EOF
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -config "$work/pki/ca.cnf" -keyout "$work/pki/ca.key" -out "$work/pki/ca.crt"
  for ((i = 0; i < pairs; i++)); do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
      -keyout "$work/pki/$i.key" -out "$work/pki/$i.csr"
    openssl x509 -req -in "$work/pki/$i.csr" -CA "$work/pki/ca.crt" -CAkey "$work/pki/ca.key" \
      -set_serial $((1000 + i)) -days 2 -extfile "$work/pki/leaf.ext" -out "$work/pki/$i.crt"
    openssl verify -CAfile "$work/pki/ca.crt" "$work/pki/$i.crt"
  done
} >"$work/pki/openssl.log" 2>&1 || { tail -n 20 "$work/pki/openssl.log" >&2; die "openssl could not make the certificates"; }
for ((i = 0; i < pairs; i++)); do
  openssl x509 -in "$work/pki/$i.crt" -outform DER | sha256sum | awk -v i="$i" '{print i, $1}'
done >"$work/pki/fingerprints"
log "$pairs certificate+key pairs signed by one CA (EC P-256): $work/pki"

# Layout the listeners read. files/: plain files replaced by rename. secret/: Secret-style links.
mkdir -p "$work/files" "$work/secret"
cp "$work/pki/0.crt" "$work/files/tls.crt"
cp "$work/pki/0.key" "$work/files/tls.key"
secret_gen=0
secret_put() { # pair: a new timestamped directory, ..data renamed onto it, the old one removed
  local i=$1 dir old
  secret_gen=$((secret_gen + 1))
  dir="..$(date -u +%Y_%m_%d_%H_%M_%S).$secret_gen"
  mkdir "$work/secret/$dir"
  cp "$work/pki/$i.crt" "$work/secret/$dir/tls.crt"
  cp "$work/pki/$i.key" "$work/secret/$dir/tls.key"
  old=$(readlink "$work/secret/..data" 2>/dev/null || true)
  ln -s "$dir" "$work/secret/..data_tmp"
  mv -T "$work/secret/..data_tmp" "$work/secret/..data"
  [[ -z $old ]] || rm -rf "${work:?}/secret/$old"
}
secret_put 0
ln -s ..data/tls.crt "$work/secret/tls.crt"
ln -s ..data/tls.key "$work/secret/tls.key"
files_put() { # pair: each file written beside its target, then renamed over it (key first)
  local i=$1
  cp "$work/pki/$i.key" "$work/files/.tls.key.new"
  cp "$work/pki/$i.crt" "$work/files/.tls.crt.new"
  mv -T "$work/files/.tls.key.new" "$work/files/tls.key"
  mv -T "$work/files/.tls.crt.new" "$work/files/tls.crt"
}

# ---------------------------------------------------------------- origin, geogate
cat >"$work/upstream.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/upstream.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/upstream-body;
  proxy_temp_path $work/upstream-proxy;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  default_type text/plain;
  server {
    listen 127.0.0.1:$origin_port backlog=4096;
    location / { return 200 "\$http_x_geo_country"; }
  }
}
EOF
cat >"$work/geogate.toml" <<EOF
# benches/tls_rotation.sh: two TLS listeners, the same policy as benches/compare.
[server]
worker_threads = 1

[[listener]]
name = "files"
address = "127.0.0.1:$port"
tls = { cert = "$work/files/tls.crt", key = "$work/files/tls.key" }
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[[listener]]
name = "secret"
address = "127.0.0.1:$port2"
tls = { cert = "$work/secret/tls.crt", key = "$work/secret/tls.key" }
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[admin]
address = "127.0.0.1:$admin_port"

[[upstream]]
name = "origin"
url = "http://127.0.0.1:$origin_port"

[[source]]
name = "geoip"
type = "mmdb"
path = "$mmdb"

[policy]
default = "tag"
tag = ["country"]

[policy.block]
status = 451

[[rule]]
name = "block-ru-by"
action = "block"
countries = ["RU", "BY"]

[access_log]
enabled = false
EOF
nginx -t -q -p "$work" -e "$work/nginx-test.log" -c "$work/upstream.conf" || die "origin config rejected"
( exec nginx -p "$work" -e "$work/upstream.log" -c "$work/upstream.conf" ) & pid[origin]=$!
( cd "$work" && exec "$geogate_bin" run --config "$work/geogate.toml" >"$work/geogate.log" 2>&1 ) & pid[geogate]=$!
gpid=${pid[geogate]}
admin=http://127.0.0.1:$admin_port
ca=$work/pki/ca.crt

deadline=$((SECONDS + 60))
for p in "$port" "$port2"; do
  until curl -s --cacert "$ca" -o /dev/null --max-time 2 "https://localhost:$p/" --resolve "localhost:$p:127.0.0.1"; do
    for name in origin geogate; do
      if ! kill -0 "${pid[$name]}" 2>/dev/null; then
        tail -n 20 "$work/geogate.log" "$work/upstream.log" >&2 2>/dev/null || true
        die "$name exited during start-up"
      fi
    done
    ((SECONDS < deadline)) || die "geogate did not answer on https://127.0.0.1:$p within 60 s"
    sleep 0.2
  done
done
for p in "$port" "$port2"; do
  body=$(curl -s --cacert "$ca" --resolve "localhost:$p:127.0.0.1" -H 'X-Forwarded-For: 8.8.8.8' \
    -w ' %{http_code}' --max-time 5 "https://localhost:$p/bench" || true)
  [[ $body == "US 200" ]] || die "https://localhost:$p/bench with X-Forwarded-For 8.8.8.8: got '$body', want 200 and the origin seeing US"
done
log "geogate $("$geogate_bin" --version 2>/dev/null || echo '?') ($geogate_bin), pid $gpid; listeners files :$port, secret :$port2; both answer over TLS, verified against the CA"

# ---------------------------------------------------------------- load, probes, rotation
cat >"$work/probe.py" <<'PY'
# New TLS connections in a loop, alternating over the listeners: verify against the CA and
# the name localhost, one request, 200 wanted; one line per probe:
#   epoch listener pair-index|? status|error-kind handshake-ms
import hashlib, socket, ssl, sys, time
ca, fps, until, pause = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]) / 1000
ports = [(name, int(p)) for name, p in (a.split("=") for a in sys.argv[5:])]
known = {}
for line in open(fps):
    i, fp = line.split()
    known[fp] = i
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
request = b"GET /bench HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 8.8.8.8\r\nConnection: close\r\n\r\n"
n = 0
out = sys.stdout
while time.time() < until:
    name, port = ports[n % len(ports)]
    n += 1
    t0 = time.time()
    pair, status, hs_ms = "-", "", 0.0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                hs_ms = (time.time() - t0) * 1000
                der = s.getpeercert(binary_form=True)
                pair = known.get(hashlib.sha256(der).hexdigest(), "?")
                s.sendall(request)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                parts = line.split()
                status = parts[1] if len(parts) >= 2 and line.startswith("HTTP/") else "bad-response"
    except ssl.SSLCertVerificationError as e:
        status = "verify-failed"
    except ssl.SSLError as e:
        status = "tls-error:" + (e.reason or type(e).__name__)
    except (ConnectionError, OSError) as e:
        status = "io-error:" + type(e).__name__
    out.write(f"{t0:.3f} {name} {pair} {status} {hs_ms:.1f}\n")
    out.flush()
    time.sleep(pause)
PY

curl -s --max-time 5 "$admin/metrics" >"$work/metrics-before.txt" || die "no /metrics from the admin listener"
half=$((conns / 2))
t_start=$(date +%s.%N)
t_end=$(awk -v a="$t_start" -v d="$duration" 'BEGIN {printf "%.3f", a + d}')
log "load: ${duration}s; wrk -t1 -c$half per listener (keep-alive); a new TLS connection every ${probe_ms} ms; a swap every ${interval}s; trigger: $trigger; load average $(cut -d' ' -f1-3 /proc/loadavg)"
( exec wrk -t1 -c"$half" -d"${duration}s" --timeout 5s --latency -H 'X-Forwarded-For: 8.8.8.8' "https://127.0.0.1:$port/bench" ) \
  >"$work/wrk-files.txt" 2>&1 & pid[wrk_files]=$!
( exec wrk -t1 -c"$((conns - half))" -d"${duration}s" --timeout 5s --latency -H 'X-Forwarded-For: 8.8.8.8' "https://127.0.0.1:$port2/bench" ) \
  >"$work/wrk-secret.txt" 2>&1 & pid[wrk_secret]=$!
( exec python3 "$work/probe.py" "$ca" "$work/pki/fingerprints" "$t_end" "$probe_ms" "files=$port" "secret=$port2" ) \
  >"$work/probes.txt" 2>"$work/probe.err" & pid[probe]=$!

# the rotation, in this shell: swap both listeners to the next pair, then (both/admin) POST
: >"$work/swaps.txt" # epoch pair http_code answer-json
swaps=0 next_at=$t_start
while :; do
  next_at=$(awk -v a="$next_at" -v i="$interval" 'BEGIN {printf "%.3f", a + i}')
  now=$(date +%s.%N)
  # the last swap leaves at least 2 s of load in which to see it
  awk -v n="$next_at" -v e="$t_end" 'BEGIN {exit !(n <= e - 2)}' || break
  sleep "$(awk -v n="$next_at" -v t="$now" 'BEGIN {d = n - t; printf "%.3f", (d > 0 ? d : 0)}')"
  kill -0 "$gpid" 2>/dev/null || die "geogate exited during the rotation (see $work/geogate.log)"
  swaps=$((swaps + 1))
  i=$((swaps % pairs))
  files_put "$i"
  secret_put "$i"
  t_swap=$(date +%s.%N)
  if [[ $trigger != watch ]]; then
    answer=$(curl -s -X POST -w '\n%{http_code}' --max-time 10 "$admin/-/reload" || echo $'\n000')
    code=${answer##*$'\n'}
    json=${answer%$'\n'*}
    echo "$t_swap $i $code ${json//[[:space:]]/}" >>"$work/swaps.txt"
  else
    echo "$t_swap $i - -" >>"$work/swaps.txt"
  fi
done
log "$swaps swaps done; waiting for the load to finish"
for name in wrk_files wrk_secret probe; do
  wait "${pid[$name]}" || log "$name exited with status $?"
  unset "pid[$name]"
done
sleep 1 # a last watch-triggered reload (debounce) lands in the metrics
kill -0 "$gpid" 2>/dev/null || die "geogate exited during the run (see $work/geogate.log)"
curl -s --max-time 5 "$admin/metrics" >"$work/metrics.txt" || die "no /metrics from the admin listener"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
fail=()
wrk_figures() { # file -> "requests non2xx socket_errors rps p99"
  awk '/ requests in / {n = $1}
       /Non-2xx or 3xx responses:/ {x = $NF}
       /Socket errors:/ {for (k = 1; k <= NF; k++) if ($k ~ /^[0-9]+,?$/) s += $k}
       /^Requests\/sec:/ {r = $2}
       $1 == "99%" {p = $2}
       END {printf "%d %d %d %d %s\n", n, x, s, r + 0.5, p == "" ? "-" : p}' "$1"
}
echo
echo "TLS certificate rotation under load: $(date -u '+%Y-%m-%d %H:%M UTC'), ${duration}s, $(nproc) CPUs, load average at the end $load_end"
echo "geogate: $geogate_bin (1 worker thread), $pairs pairs (one CA) cycled every ${interval}s, trigger: $trigger"
printf '%-22s %10s %8s %14s %8s %9s\n' "wrk (keep-alive)" requests "req/s" "non-2xx" "socket errors" "p99"
for l in files secret; do
  read -r n x s r p < <(wrk_figures "$work/wrk-$l.txt")
  printf '%-22s %10s %8s %14s %8s %9s\n' "$l" "$n" "$r" "$x" "$s" "$p"
  ((n > 0)) || fail+=("wrk on $l completed no request")
  ((x == 0 && s == 0)) || fail+=("wrk on $l: $x non-2xx, $s socket errors")
done

# probes: per listener, totals, failures by kind, certificates seen
awk '{n[$2]++; if ($4 == "200" && $3 != "?" && $3 != "-") ok[$2]++; else bad[$2 " " $3 " " $4]++; seen[$2 " " $3]++}
     END {for (l in n) printf "probe %s %d %d\n", l, n[l], ok[l] + 0
          for (k in bad) printf "bad %s %d\n", k, bad[k]
          for (k in seen) printf "seen %s %d\n", k, seen[k]}' "$work/probes.txt" >"$work/probe-summary.txt"
echo
printf '%-22s %10s %8s %14s\n' "new TLS connections" probes ok failed
for l in files secret; do
  read -r _ _ n ok < <(grep "^probe $l " "$work/probe-summary.txt" || echo "probe $l 0 0")
  printf '%-22s %10s %8s %14s\n' "$l" "$n" "$ok" "$((n - ok))"
  ((n > 0)) || fail+=("no probe completed on $l")
  ((n == ok)) || fail+=("$((n - ok)) probes failed on $l")
done
if grep -q '^bad ' "$work/probe-summary.txt"; then
  echo "failed probes (listener, certificate index, status or error, count):"
  grep '^bad ' "$work/probe-summary.txt" | sed 's/^bad /  /'
fi
[[ -s $work/probe.err ]] && { echo "prober stderr:"; head -n 5 "$work/probe.err"; fail+=("the prober wrote to stderr"); }
echo "certificates served to new connections (pair: probes): $(awk '/^seen/ {printf "%s %s: %s; ", $2, $3, $4}' "$work/probe-summary.txt")"

# swaps: did the reload answer say swapped; did new connections get the new pair, how soon
python3 - "$work/swaps.txt" "$work/probes.txt" "$trigger" >"$work/swap-report.txt" <<'PY' || fail+=("swap report failed")
import json, statistics, sys
swaps = [l.split(" ", 3) for l in open(sys.argv[1]) if l.strip()]
probes = [l.split() for l in open(sys.argv[2]) if l.strip()]
trigger = sys.argv[3]
results, codes, durations = {}, {}, []
for t, i, code, js in swaps:
    codes[code] = codes.get(code, 0) + 1
    if js != "-":
        try:
            a = json.loads(js)
            results[a.get("result")] = results.get(a.get("result"), 0) + 1
            durations.append(float(a.get("duration_ms", 0)))
        except ValueError:
            results["unreadable"] = results.get("unreadable", 0) + 1
seen_delay, unseen = {"files": [], "secret": []}, {"files": 0, "secret": 0}
for k, (t, i, _, _) in enumerate(swaps):
    t = float(t)
    t_next = float(swaps[k + 1][0]) if k + 1 < len(swaps) else float("inf")
    for l in seen_delay:
        hit = next((float(p[0]) for p in probes if p[1] == l and p[2] == i and t <= float(p[0]) < t_next), None)
        if hit is None:
            unseen[l] += 1
        else:
            seen_delay[l].append((hit - t) * 1000)
print(f"swaps {len(swaps)}")
if trigger != "watch":
    print("reload answers (HTTP status: count) " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())))
    print("reload answers (result: count) " + ", ".join(f"{r}: {n}" for r, n in sorted(results.items(), key=str)))
    if durations:
        print(f"reload duration_ms median {statistics.median(durations):.1f}, max {max(durations):.1f}")
for l, d in seen_delay.items():
    if d:
        print(f"{l}: new pair served to a new connection after {len(d)} of {len(swaps)} swaps; "
              f"first probe with it {statistics.median(d):.0f} ms after the swap (median), {max(d):.0f} ms (max); "
              f"not seen before the next swap: {unseen[l]}")
    else:
        print(f"{l}: the new pair was never seen by a probe ({unseen[l]} swaps)")
bad_codes = sum(n for c, n in codes.items() if c not in ("200", "-"))
print(f"bad_codes {bad_codes}")
PY
grep -v '^bad_codes' "$work/swap-report.txt"
bad_codes=$(awk '/^bad_codes/ {print $2}' "$work/swap-report.txt")
((${bad_codes:-0} == 0)) || fail+=("$bad_codes POST /-/reload answers were not 200")
echo "geogate_reloads_total (trigger/result: count): $(awk -F'[{}]' '/^geogate_reloads_total\{/ {
    split($2, kv, ","); t = r = ""
    for (k in kv) {split(kv[k], x, "="); gsub(/"/, "", x[2]); if (x[1] == "trigger") t = x[2]; if (x[1] == "result") r = x[2]}
    v = $3 + 0; if (v > 0) printf "%s/%s: %d; ", t, r, v}' "$work/metrics.txt")"
hs_failures() { awk -F'[{}]' '/^geogate_tls_handshake_failures_total\{/ {v = $3 + 0; s += v; if (v > 0) printf "%s: %d; ", $2, v} END {if (!s) printf "0"}' "$1"; }
echo "geogate_tls_handshake_failures_total: before the load $(hs_failures "$work/metrics-before.txt"), at the end $(hs_failures "$work/metrics.txt")"

echo
if ((${#fail[@]})); then
  for f in "${fail[@]}"; do echo "FAILED: $f"; done
  exit 1
fi
echo "no failed request: every wrk request 2xx with no socket error, every new TLS connection verified and answered 200"
