# shellcheck shell=bash
# Sourced by the bench scripts that drive a fixed rate: finds or installs oha, the latency-corrected
# load generator, and sets $oha_bin. The caller defines log(), die() and $repo.
# Where: $GEOGATE_BENCH_CACHE/oha (default ~/.cache/geogate-bench/oha), never inside the
# repository; else an oha on PATH; else `cargo install --locked` of the pinned version into the
# cache (crates.io, once, ~15 min on 2 CPUs). The version is pinned because the scripts read the
# JSON fields of this one.
oha_version=1.16.0
oha_ensure() {
  local cache flag oha_help
  cache=$(realpath -m "${GEOGATE_BENCH_CACHE:-$HOME/.cache/geogate-bench}")
  [[ $cache/ != "$repo"/* ]] || die "GEOGATE_BENCH_CACHE=$cache is inside the repository; choose a directory outside it"
  mkdir -p "$cache"
  if [[ -x $cache/oha/bin/oha ]]; then
    oha_bin=$cache/oha/bin/oha
  elif command -v oha >/dev/null 2>&1; then
    oha_bin=$(command -v oha)
  else
    command -v cargo >/dev/null 2>&1 || die "a fixed rate needs oha; install cargo (rustup) or put oha on PATH"
    log "installing oha $oha_version from crates.io into $cache/oha (once; ~15 min on 2 CPUs)"
    # default features (rustls): oha 1.16.0 does not build without a TLS feature. From the cache
    # directory, so that no cargo configuration of the repository applies.
    (cd "$cache" && env -u CARGO_TARGET_DIR cargo install --quiet --locked \
      --version "$oha_version" --root "$cache/oha" oha) || die "cargo install oha failed"
    oha_bin=$cache/oha/bin/oha
  fi
  oha_help=$("$oha_bin" --help 2>&1) || die "$oha_bin --help failed"
  for flag in --latency-correction --no-tui --output-format; do
    grep -q -- "$flag" <<<"$oha_help" || die "$oha_bin ($("$oha_bin" --version 2>&1)) has no $flag; need oha $oha_version"
  done
  log "load generator: $("$oha_bin" --version 2>&1) ($oha_bin)"
}
