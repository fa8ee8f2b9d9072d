# Sourced by the bench scripts. npm_fetch SPEC DIR: unpacks the npm package SPEC into
# $cache/DIR/package (the caller sets $cache, a directory outside the repository), fetching it
# with `npm pack` when absent. Fails quietly (status 1, a message on stderr) when it cannot.
npm_fetch() {
  local spec=$1 dir=$2
  [[ -d $cache/$dir/package ]] && return 0
  mkdir -p "$cache/$dir"
  echo "fetching $spec into $cache/$dir" >&2
  (cd "$cache/$dir" && npm pack --silent "$spec" >/dev/null 2>&1 && tar xzf ./*.tgz && rm -f ./*.tgz) || {
    echo "cannot fetch $spec" >&2
    rm -rf "${cache:?}/$dir"
    return 1
  }
}
