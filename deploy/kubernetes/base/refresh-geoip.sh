#!/bin/sh
# geoip-refresher: keeps geogate's database in a shared volume up to date.
#
# Every REFRESH_INTERVAL_SECONDS (first run at start) it downloads GEOIP_URL (with the
# previous ETag, so an unchanged file costs a 304) into a temporary file IN THE SAME
# DIRECTORY, checks it looks like a MaxMind DB of a sane size, and renames it over
# $GEOIP_DIR/$GEOIP_FILE. rename(2) is atomic: geogate never sees a half-written file.
# geogate's file watch then reloads it off the request path, and refuses it (keeping the
# old snapshot, counting geogate_reloads_total{result="refused"|"failed"}) if it fails to
# load or lost more than [reload] max_network_drop_percent of its networks.
#
# Environment:
#   GEOIP_URL                 URL of the .mmdb; empty = keep the current file, only idle
#   GEOIP_DIR                 volume directory (default /var/lib/geogate)
#   GEOIP_FILE                file name geogate reads (default geo-whois-asn-country.mmdb)
#   REFRESH_INTERVAL_SECONDS  seconds between attempts (default 86400)
#   MIN_BYTES                 smallest acceptable download (default 1000000)
#   ONESHOT=1                 one attempt, exit status = its result (for tests and jobs)
#
# Needs only sh, curl (>= 7.68 for ETags) and grep: runs in curlimages/curl.
set -eu

GEOIP_URL=${GEOIP_URL:-}
GEOIP_DIR=${GEOIP_DIR:-/var/lib/geogate}
GEOIP_FILE=${GEOIP_FILE:-geo-whois-asn-country.mmdb}
REFRESH_INTERVAL_SECONDS=${REFRESH_INTERVAL_SECONDS:-86400}
MIN_BYTES=${MIN_BYTES:-1000000}
ONESHOT=${ONESHOT:-0}

dest="$GEOIP_DIR/$GEOIP_FILE"
tmp="$GEOIP_DIR/.$GEOIP_FILE.download"
etag="$GEOIP_DIR/.$GEOIP_FILE.etag"

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) geoip-refresher: $*" >&2; }

refresh_once() {
  rm -f "$tmp" "$etag.new"
  set -- --silent --show-error --location --fail --max-time 300 \
    --retry 3 --retry-delay 10 --etag-save "$etag.new" --output "$tmp" --write-out '%{http_code}'
  # Only send If-None-Match when the file it belongs to is still there.
  if [ -s "$etag" ] && [ -s "$dest" ]; then set -- "$@" --etag-compare "$etag"; fi
  if ! code=$(curl "$@" "$GEOIP_URL"); then
    log "download failed (HTTP ${code:-none}); keeping the current database"
    rm -f "$tmp" "$etag.new"
    return 1
  fi
  if [ "$code" = 304 ]; then
    log "not modified"
    rm -f "$tmp" "$etag.new"
    return 0
  fi
  size=$(wc -c <"$tmp" | tr -d ' ')
  if [ "$size" -lt "$MIN_BYTES" ]; then
    log "refusing download: $size bytes < MIN_BYTES=$MIN_BYTES"
    rm -f "$tmp" "$etag.new"
    return 1
  fi
  # The MaxMind DB metadata marker ("\xab\xcd\xefMaxMind.com") sits near the end.
  if ! tail -c 131072 "$tmp" | grep -q 'MaxMind\.com'; then
    log "refusing download: no MaxMind DB metadata marker"
    rm -f "$tmp" "$etag.new"
    return 1
  fi
  chmod 0444 "$tmp"
  mv -f "$tmp" "$dest"
  if [ -s "$etag.new" ]; then mv -f "$etag.new" "$etag"; else rm -f "$etag.new" "$etag"; fi
  log "installed new database ($size bytes)"
  return 0
}

trap 'log "stopping"; exit 0' TERM INT

while :; do
  rc=0
  if [ -n "$GEOIP_URL" ]; then
    refresh_once || rc=$?
  else
    log "GEOIP_URL is empty; keeping $dest as it is"
  fi
  if [ "$ONESHOT" = 1 ]; then exit "$rc"; fi
  # Sleep in the background so SIGTERM is handled at once.
  sleep "$REFRESH_INTERVAL_SECONDS" &
  wait $! || true
done
