#!/usr/bin/env bash
# HTTP/1.1 framing and forwarding conformance cases for geogate, run with varnishtest
# (Debian/Ubuntu package `varnish`; varnishd itself is not used).
#
#   tests/vtc/run.sh [CASE.vtc ...]        default: every tests/vtc/*.vtc
#
# Environment:
#   GEOGATE_BIN        geogate binary (default: target/release/geogate under the repo root;
#                      this script never builds it)
#   VARNISHTEST        varnishtest binary (default: varnishtest from PATH)
#   VTC_CASE_TIMEOUT   seconds one case may take, geogate start-up included (default 10)
#   VTC_KEEP=1         keep the work directory (configs, geogate logs, varnishtest logs)
#   VTC_VERBOSE=1      print the full varnishtest log of failing cases (default: the tail)
#
# Cases named *.vtc.known-issue assert correct behaviour that geogate does not have yet; the
# default run lists them (KNOWN) without running them. Run one by naming it:
#   tests/vtc/run.sh tests/vtc/upstream-cl-te.vtc.known-issue
#
# Wiring, per case: the script picks two free loopback ports, writes a geogate config whose
# one listener is 127.0.0.1:<gg_port> and whose one upstream is http://127.0.0.1:<up_port>,
# starts geogate and waits until it accepts connections, then runs varnishtest on the case
# with the macros
#   ${gg_sock}  "127.0.0.1 <gg_port>"   for  client cN -connect "${gg_sock}"
#   ${up_sock}  "127.0.0.1 <up_port>"   for  server sN -listen  "${up_sock}"
# (and ${gg_addr} ${gg_port} ${up_addr} ${up_port}). The case's scripted server is geogate's
# upstream; its clients talk to geogate. Afterwards geogate is stopped (TERM, then KILL) and
# a geogate that died during the case fails the case.
#
# Policy in the generated config: the client address is read from X-Forwarded-For, trusted
# from 127.0.0.1 (the peer is the client when there is no header); 127.0.0.0/8 is FR,
# 203.0.113.0/24 is RU; RU is blocked with 451, every forwarded request is tagged with
# X-Geo-Country. No database is needed.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${GEOGATE_BIN:-$root/target/release/geogate}
vt=${VARNISHTEST:-varnishtest}
case_timeout=${VTC_CASE_TIMEOUT:-10}

if [[ ! -x $bin ]]; then
    echo "run.sh: geogate binary not found or not executable: $bin (set GEOGATE_BIN)" >&2
    exit 2
fi
if ! command -v "$vt" >/dev/null 2>&1; then
    echo "run.sh: varnishtest not found (apt-get install varnish, or set VARNISHTEST)" >&2
    exit 2
fi

known=()
if (($# > 0)); then
    cases=("$@")
else
    shopt -s nullglob
    cases=("$here"/*.vtc)
    known=("$here"/*.vtc.known-issue)
    shopt -u nullglob
fi
if ((${#cases[@]} == 0)); then
    echo "run.sh: no cases" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/geogate-vtc.XXXXXX")
gg_pid=""
vt_pid=""

stop_geogate() {
    [[ -n $gg_pid ]] || return 0
    if kill -0 "$gg_pid" 2>/dev/null; then
        kill -TERM "$gg_pid" 2>/dev/null
        for _ in $(seq 30); do
            kill -0 "$gg_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$gg_pid" 2>/dev/null
    fi
    wait "$gg_pid" 2>/dev/null
    gg_pid=""
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ -n $vt_pid ]]; then
        kill -TERM "$vt_pid" 2>/dev/null
        wait "$vt_pid" 2>/dev/null
    fi
    stop_geogate
    if [[ ${VTC_KEEP:-0} == 1 || ${failed:-0} -gt 0 ]]; then
        echo "logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: bind port 0, read what the kernel gave, release it.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    else
        local p
        while :; do
            p=$((20000 + RANDOM % 30000))
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
        done
    fi
}

write_config() { # file gg_port up_port
    cat >"$1" <<EOF
[server]
worker_threads = 1
shutdown_grace = "1s"

[[listener]]
name = "vtc"
address = "127.0.0.1:$2"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[admin]
enabled = false

[[upstream]]
name = "vtc-server"
url = "http://127.0.0.1:$3"

[[source]]
name = "loopback"
type = "list"
entries = ["127.0.0.0/8"]
set = { country = "FR" }

[[source]]
name = "blocked-net"
type = "list"
entries = ["203.0.113.0/24"]
set = { country = "RU" }

[policy]
default = "tag"
tag = ["country"]

[[rule]]
name = "block-ru"
action = "block"
countries = ["RU"]
status = 451

[limits]
header_read_timeout = "3s"
upstream_connect_timeout = "2s"
upstream_response_timeout = "3s"

[reload]
watch = false

[access_log]
enabled = false
EOF
}

wait_listening() { # port pid
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

passed=0
failed=0
failures=()
start_all=$(date +%s.%N)

for vtc in "${cases[@]}"; do
    name=$(basename "$vtc")
    name=${name%.known-issue}
    name=${name%.vtc}
    dir="$work/$name"
    mkdir -p "$dir"
    t0=$(date +%s.%N)
    reason=""

    gg_port=$(free_port)
    up_port=$(free_port)
    while [[ $up_port == "$gg_port" ]]; do up_port=$(free_port); done
    write_config "$dir/geogate.toml" "$gg_port" "$up_port"

    "$bin" run --config "$dir/geogate.toml" >"$dir/geogate.log" 2>&1 &
    gg_pid=$!
    if ! wait_listening "$gg_port" "$gg_pid"; then
        reason="geogate did not start listening on 127.0.0.1:$gg_port"
    else
        # timeout(1) is the backstop; varnishtest -t is the case's own limit.
        timeout -k 2 $((case_timeout + 5)) "$vt" -t "$case_timeout" \
            -D "gg_addr=127.0.0.1" -D "gg_port=$gg_port" -D "gg_sock=127.0.0.1 $gg_port" \
            -D "up_addr=127.0.0.1" -D "up_port=$up_port" -D "up_sock=127.0.0.1 $up_port" \
            -v "$vtc" >"$dir/varnishtest.log" 2>&1 &
        vt_pid=$!
        wait "$vt_pid"
        rc=$?
        vt_pid=""
        if ((rc == 124 || rc == 137)) || grep -q 'TIMED OUT' "$dir/varnishtest.log"; then
            reason="timed out after ${case_timeout}s"
        elif ((rc != 0)); then
            reason=$(grep -m1 -E '^-+ ' "$dir/varnishtest.log" | sed -E 's/^-+ +//')
            [[ -n $reason ]] || reason="varnishtest exit $rc"
        elif ! kill -0 "$gg_pid" 2>/dev/null; then
            reason="geogate exited during the case"
        fi
    fi
    stop_geogate

    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    if [[ -z $reason ]]; then
        passed=$((passed + 1))
        printf 'PASS  %-34s %6ss\n' "$name" "$secs"
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf 'FAIL  %-34s %6ss  %s\n' "$name" "$secs" "$reason"
        if [[ ${VTC_VERBOSE:-0} == 1 ]]; then
            sed 's/^/      | /' "$dir/varnishtest.log"
        else
            grep -E '^(-+|\*+) ' "$dir/varnishtest.log" | tail -n 12 | sed 's/^/      | /'
        fi
        grep -E '"level":"(WARN|ERROR)"' "$dir/geogate.log" | tail -n 3 | sed 's/^/      | geogate: /'
    fi
done

for k in "${known[@]}"; do
    printf 'KNOWN %-34s         not run: %s\n' "$(basename "$k" .vtc.known-issue)" \
        "$(sed -n '1s/^varnishtest "\(.*\)"$/\1/p' "$k" | cut -c1-70)..."
done

total=$(awk -v a="$start_all" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "----"
echo "$((passed + failed)) cases, $passed passed, $failed failed, ${#known[@]} known issues not run (${total}s)"
if ((failed > 0)); then
    echo "failed: ${failures[*]}"
    exit 1
fi
exit 0
