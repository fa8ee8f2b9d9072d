# shellcheck shell=bash
# Sourced by the bench scripts: what a script needs before it starts anything. The caller
# defines log(), die() and $repo.

# debian_install PKG...: installs the named Debian packages (the caller lists only the missing
# ones; none named, nothing done). One `apt-get update` first.
debian_install() {
  (($#)) || return 0
  log "installing from Debian: $*"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# require_tools TOOL...: stops the script unless every TOOL is on PATH.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
  done
}

# geogate_binary: sets $geogate_bin to the geogate to measure. $GEOGATE_BIN when set (it must be
# executable; never built); otherwise $CARGO_TARGET_DIR/release/geogate, else
# target/release/geogate, built with `cargo build --release` only when it is missing (a stale
# one is not rebuilt: build first yourself).
geogate_binary() {
  if [[ -n ${GEOGATE_BIN:-} ]]; then
    geogate_bin=$GEOGATE_BIN
    [[ -x $geogate_bin ]] || die "GEOGATE_BIN=$geogate_bin is not an executable file"
  else
    geogate_bin=${CARGO_TARGET_DIR:-$repo/target}/release/geogate
    if [[ ! -x $geogate_bin ]]; then
      log "no release binary at $geogate_bin; cargo build --release"
      (cd "$repo" && cargo build --release) || die "cargo build --release failed"
    fi
  fi
}
