# shellcheck shell=bash disable=SC2154
# Sourced by the bench scripts: stops what a script started, whichever way it exits.
# The caller defines log(), $work (its scratch directory) and $keep (1 keeps $work), records each
# process it starts as pid[name]=PID, and may set stop_grace (seconds between SIGTERM and SIGKILL,
# default 5) before sourcing. On exit every recorded process gets SIGTERM, then SIGKILL (with the
# children of an nginx master) after the grace; $work is removed unless kept or the script failed.
declare -A pid=()
stop_all() {
  local name p deadline
  for name in "${!pid[@]}"; do kill -TERM "${pid[$name]}" 2>/dev/null || true; done
  deadline=$((SECONDS + ${stop_grace:-5}))
  for name in "${!pid[@]}"; do
    p=${pid[$name]}
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      log "$name (pid $p) ignored SIGTERM; SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      # an nginx master killed hard leaves its worker behind
      pkill -KILL -P "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
  pid=()
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
