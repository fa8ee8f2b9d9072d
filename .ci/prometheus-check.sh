#!/usr/bin/env bash
# The shipped dashboard and alerts against a real Prometheus: run from the repository root
# (CI: `bash .ci/prometheus-check.sh`, a step of .ci/run).
#
# Installs Debian's `prometheus` package when `prometheus` is not on PATH (apt needs root;
# one `apt-get update` first). Builds the debug binary (`cargo build --locked --bin geogate`,
# under $CARGO_TARGET_DIR when set), or runs $GEOGATE_BIN when given. Then, on 127.0.0.1 only, on free ports chosen at run time:
#   * a stand-in upstream (python3 -m http.server, also serving a remote list geogate polls);
#   * geogate with a config written here: X-Forwarded-For trusted from 127.0.0.1 (so the
#     workload chooses each client's country), the shipped database geoip/, a dry-run rule
#     (FR, would block), a block rule (RU), a tag rule (DE), default allow, and a route
#     /dead/ to a port nothing listens on, a remote list it polls, and a second listener
#     terminating TLS with a throwaway self-signed certificate (openssl, installed when missing);
#   * prometheus scraping geogate's admin port every second as job "geogate", with
#     deploy/prometheus/alerts.yml as its rule file. The one change to the copy it loads:
#     the recording group's own `interval: 1m` becomes 1s, so its rules are evaluated within
#     this run (at 1m the first evaluation can be a minute away, and the ratios need two);
#     every expression is the shipped one.
# .ci/prometheus_check.py then checks, before and after a scripted workload (allowed,
# tagged, blocked, dry-run, rejected, unresolved, an upstream error, a reload), that every
# metric the dashboard and alerts name is in Prometheus's first scrape of geogate, and that
# every dashboard panel query and every alert and recording rule parses and returns at least
# one series through /api/v1/query (its header documents how Grafana variables are filled
# in, and why alerts are evaluated with `bool` on their comparisons).
# Every wait is bounded; every process started here is stopped on exit. Ends with the line
# `prometheus-check: N passed, M failed` and a non-zero status on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus-check: ${missing[*]} not installed and apt-get cannot install it (needs root)" >&2
    exit 1
  fi
  echo "installing ${missing[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
prometheus --version 2>&1 | head -n 1

# GEOGATE_BIN: a binary to use instead of building the debug one (as tests/vtc/run.sh).
bin=${GEOGATE_BIN:-}
if [[ -z $bin ]]; then
  cargo build --locked --bin geogate
  bin=${CARGO_TARGET_DIR:-target}/debug/geogate
fi
[[ -x $bin ]] || { echo "prometheus-check: $bin was not built" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Each had 5 s to stop on SIGTERM; whatever is left is killed.
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Six ports: upstream, proxy, admin, prometheus, a closed one for the dead upstream, and a TLS
# listener (its certificate's expiry series and panel need one).
mapfile -t ports < <(python3 .ci/prometheus_check.py ports 6)
up_port=${ports[0]} proxy_port=${ports[1]} admin_port=${ports[2]} prom_port=${ports[3]} dead_port=${ports[4]}
tls_port=${ports[5]}

mkdir "$work/www"
# A remote list served by the stand-in upstream: its download series exist from the start.
printf '192.0.2.0/24\n' >"$work/www/extra.txt"
cp "$work/www/extra.txt" "$work/extra.cache" # a cache from an earlier run, as after a restart
# A throwaway self-signed pair for the TLS listener (30 days: the expiry alert does not fire).
if ! openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=ci.geogate.example" \
  -addext "subjectAltName=DNS:ci.geogate.example" -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1; then
  echo "prometheus-check: openssl could not make a certificate" >&2
  exit 1
fi
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$up_port" >"$work/upstream.log" 2>&1 &
pids+=($!)

cat >"$work/geogate.toml" <<EOF
[[listener]]
name = "public"
address = "127.0.0.1:$proxy_port"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[[listener]]
name = "tls"
address = "127.0.0.1:$tls_port"
tls = { cert = "$work/tls.crt", key = "$work/tls.key" }

[admin]
address = "127.0.0.1:$admin_port"

[reload]
watch = false

[[upstream]]
name = "app"
url = "http://127.0.0.1:$up_port"

[[upstream]]
name = "dead"
url = "http://127.0.0.1:$dead_port"

[[route]]
path_prefix = "/dead/"
upstream = "dead"

[[source]]
name = "geoip"
type = "mmdb"
path = "$PWD/geoip/geo-whois-asn-country.mmdb"

[[source]]
name = "extra"
type = "list"
url = "http://127.0.0.1:$up_port/extra.txt"
cache = "$work/extra.cache"

[policy]
default = "allow"

[policy.block]
status = 451

[[rule]]
name = "try-fr"
action = "block"
dry_run = true
countries = ["FR"]

[[rule]]
name = "block-ru"
action = "block"
countries = ["RU"]

[[rule]]
name = "tag-de"
action = "tag"
countries = ["DE"]
tag = ["country", "rule"]
EOF

# The workload's addresses must be where the database places them (prometheus_check.py's
# ADDRESSES); a newer database that moved one fails here, by name, not as a puzzling count.
lookup=$("$bin" lookup --config "$work/geogate.toml" 8.8.8.8 194.25.2.129 77.88.8.8 212.27.48.10)
echo "$lookup"
for want in "8.8.8.8 US" "194.25.2.129 DE" "77.88.8.8 RU" "212.27.48.10 FR"; do
  grep -q "^${want% *}	${want#* }	" <<<"$lookup" || { echo "prometheus-check: geogate lookup does not place $want" >&2; exit 1; }
done

"$bin" run --config "$work/geogate.toml" >"$work/geogate.log" 2>&1 &
pids+=($!)

cp deploy/prometheus/alerts.yml "$work/alerts.yml"
sed -i 's/^\(    interval:\) 1m$/\1 1s/' "$work/alerts.yml"
if [[ $(diff deploy/prometheus/alerts.yml "$work/alerts.yml" | grep -c '^>') != 1 ]]; then
  echo "prometheus-check: expected exactly one 'interval: 1m' line in deploy/prometheus/alerts.yml" >&2
  exit 1
fi
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $work/alerts.yml
scrape_configs:
  - job_name: geogate
    static_configs:
      - targets: ["127.0.0.1:$admin_port"]
EOF

# geogate first: Prometheus's first scrape must find it serving, before any request.
if ! python3 .ci/prometheus_check.py wait-http "http://127.0.0.1:$admin_port/readyz" 20; then
  echo "prometheus-check: geogate never became ready; its log:" >&2
  cat "$work/geogate.log" >&2
  exit 1
fi

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
if ! python3 .ci/prometheus_check.py wait-http "http://127.0.0.1:$prom_port/-/ready" 30; then
  echo "prometheus-check: prometheus never became ready; its log:" >&2
  cat "$work/prometheus.log" >&2
  exit 1
fi

status=0
python3 .ci/prometheus_check.py run --prometheus "http://127.0.0.1:$prom_port" \
  --proxy "127.0.0.1:$proxy_port" --admin "127.0.0.1:$admin_port" \
  --dashboard deploy/grafana/geogate-dashboard.json --alerts deploy/prometheus/alerts.yml --timeout 120 || status=$?
if ((status)); then
  echo "--- geogate log (last 40 lines)"
  tail -n 40 "$work/geogate.log"
  echo "--- prometheus log (last 40 lines)"
  tail -n 40 "$work/prometheus.log"
fi
exit "$status"
