#!/usr/bin/env bash
# Path differential: does geogate's sign-up rule see a request the way real framework routers do?
#
# Generates a corpus of request targets derived from /signup and /api/v1/accounts and from look-alike
# other resources (benches/path_differential/gen_corpus.py), starts one small app per framework on
# 127.0.0.1 (Flask, Django, Express 5 and 4, Go net/http ServeMux, Sinatra, Rails), and for each app
# POSTs every target straight to the app and through geogate (the example config's sign-up rule, an RU
# client in X-Forwarded-For), as raw bytes over a socket. Then sends Host / client-IP header forms through
# a host-scoped copy of the rule. Prints a summary per framework and writes the detailed report.
# The rule is a segment prefix, and each app routes /signup/<anything> to the protected action too.
#   bypass       a framework routes the target to a protected route and geogate forwards it
#   false block  geogate answers 451 (blocked) and no framework routes it to a protected route
#   refusal      geogate answers 400 (its screening before policy, for every client; by design)
# Each list is grouped by the generator's mutation class, the refusals first by reason.
# See benches/path_differential/README.md for the classification and the report files.
#
# usage: benches/path_differential.sh [--frameworks flask,django,express,express4,go,sinatra,rails]
#                                     [--quick] [--out DIR]
#   --quick   protected targets and three look-alikes, no pairwise combinations (~1,500 instead of ~3,700)
#   --out     report directory (default: a new /tmp/geogate-pathdiff.XXXXXX, kept)
# GEOGATE_BIN overrides target/release/geogate (built with cargo build --release --locked when missing).
# Exit 0: no bypass; 1: a bypass; 2: fewer than 4 frameworks started (or a smaller --frameworks
# selection did not all start), or set-up failed.
# Installs what is missing: Debian packages (apt-get) and Express from npm into
# ${XDG_CACHE_HOME:-$HOME/.cache}/geogate-bench/, never into the repository. Talks only to 127.0.0.1;
# stops every server it started on exit. Run on demand, not in CI.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/benches/path_differential
frameworks=flask,django,express,express4,go,sinatra,rails
quick='' out=''
while (($#)); do
  case $1 in
    --frameworks) frameworks=$2; shift 2 ;;
    --quick) quick=--quick; shift ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,26p' "$0"; exit 2 ;;
  esac
done
for fw in ${frameworks//,/ }; do
  case $fw in flask|django|express|express4|go|sinatra|rails) ;; *) echo "unknown framework: $fw" >&2; exit 2 ;; esac
done
has() { [[ ",$frameworks," == *",$1,"* ]]; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/geogate-bench
# Debian's python3 carries the Debian framework packages; a pyenv/venv python3 earlier on PATH does not.
app_python=/usr/bin/python3

# --- install what is missing ---------------------------------------------------------------------------
need=()
pymod() { [[ -x $app_python ]] && "$app_python" -c "import $1" 2>/dev/null; }
rbreq() { command -v ruby >/dev/null && ruby -e "$1" 2>/dev/null; }
has flask && ! pymod flask && need+=(python3-flask)
has django && ! pymod django && need+=(python3-django)
has go && ! command -v go >/dev/null && need+=(golang-go)
has sinatra && ! rbreq 'require "sinatra/base"' && need+=(ruby-sinatra)
has rails && ! rbreq 'require "rails"; require "action_controller/railtie"' && need+=(ruby-rails)
{ has sinatra || has rails; } && ! command -v puma >/dev/null && need+=(puma)
{ has express || has express4; } && ! command -v npm >/dev/null && need+=(nodejs npm)
if ((${#need[@]})); then
  echo "path_differential: installing ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Express majors side by side, each in its own prefix under the cache dir.
for major in 5 4; do
  name=express; [[ $major == 4 ]] && name=express4
  has $name || continue
  dir=$cache/express$major
  if [[ ! -f $dir/node_modules/express/package.json ]]; then
    echo "path_differential: npm install express@$major into $dir" >&2
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund --no-save "express@$major" >/dev/null)
  fi
  export "EXPRESS${major}_DIR=$dir/node_modules/express"
done
if has go; then
  # Built in the cache dir (not the repo); rebuilt when main.go changes. The go.mod's go line is the
  # toolchain's own version, so a Go 1.22+ toolchain gets the 1.22 mux semantics.
  gdir=$cache/go-mux
  mkdir -p "$gdir"
  gover=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
  if ! cmp -s "$here/apps/go/main.go" "$gdir/main.go" || [[ ! -x $gdir/geogate-bench-mux ]]; then
    cp "$here/apps/go/main.go" "$gdir/main.go"
    printf 'module geogatebenchmux\n\ngo %s\n' "$gover" >"$gdir/go.mod"
    (cd "$gdir" && go build -o geogate-bench-mux .)
  fi
  export GO_MUX_BIN=$gdir/geogate-bench-mux
fi
export APP_PYTHON=$app_python

# --- geogate ----------------------------------------------------------------------------------------
bin=${GEOGATE_BIN:-$repo/target/release/geogate}
if [[ ! -x $bin ]]; then
  [[ -n ${GEOGATE_BIN:-} ]] && { echo "GEOGATE_BIN=$bin is not executable" >&2; exit 2; }
  echo "path_differential: building geogate (cargo build --release --locked)" >&2
  (cd "$repo" && cargo build --release --locked --quiet --bin geogate)
fi
db=$repo/geoip/geo-whois-asn-country.mmdb
client_ip=77.88.8.8 # the README's RU example; checked against the shipped database below
if [[ $("$bin" lookup --db "$db" "$client_ip" | cut -f2) != RU ]]; then
  echo "path_differential: $client_ip is not RU in $db; pick another RU address" >&2
  exit 2
fi

out=${out:-$(mktemp -d /tmp/geogate-pathdiff.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$out/work # configs, server logs, the app copies; kept with the report for diagnosis
rm -rf "$work" "$out/raw"
mkdir -p "$work"
# A copy, so that a concurrent rebuild of target/release cannot swap the binary mid-run.
cp "$bin" "$work/geogate"

pidfile=$work/pids runner=''
cleanup() {
  [[ -n $runner ]] && kill "$runner" 2>/dev/null && wait "$runner" 2>/dev/null
  # Whatever the runner left (it stops its own servers; this is for a runner killed hard).
  if [[ -f $pidfile ]]; then
    while read -r p; do kill -- "-$p" 2>/dev/null || true; done <"$pidfile"
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

versions=$(
  v() { "$@" 2>/dev/null | head -1 || true; }
  printf '{'
  printf '"flask":"%s",' "$(v "$app_python" -c 'import flask,werkzeug;print("Flask",flask.__version__,"Werkzeug",werkzeug.__version__)')"
  printf '"django":"%s",' "$(v "$app_python" -c 'import django;print("Django",django.__version__,"runserver")')"
  printf '"express":"%s",' "$(v node -p "'Express '+require('${EXPRESS5_DIR:-/nonexistent}/package.json').version+' node '+process.version")"
  printf '"express4":"%s",' "$(v node -p "'Express '+require('${EXPRESS4_DIR:-/nonexistent}/package.json').version+' node '+process.version")"
  printf '"go":"%s",' "$(v go env GOVERSION) ServeMux"
  printf '"sinatra":"%s",' "$(v ruby -e 'require "sinatra/base"; require "puma/const"; puts "Sinatra #{Sinatra::VERSION} puma #{Puma::Const::PUMA_VERSION}"')"
  printf '"rails":"%s"' "$(v ruby -e 'require "rails"; require "puma/const"; puts "Rails #{Rails.version} puma #{Puma::Const::PUMA_VERSION}"')"
  printf '}'
)

python3 "$here/gen_corpus.py" $quick >"$work/corpus.jsonl"
echo "path_differential: $(wc -l <"$work/corpus.jsonl") targets x {direct, via geogate} per framework; report in $out" >&2
# Bounded: a hung server costs at most the per-request timeout, the whole run at most this.
timeout 1800 python3 "$here/run.py" --bin "$work/geogate" --db "$db" --corpus "$work/corpus.jsonl" --out "$out" \
  --work "$work" --frameworks "$frameworks" --client-ip "$client_ip" --pidfile "$pidfile" --versions "$versions" &
runner=$!
wait "$runner" || { rc=$?; runner=; echo "path_differential: runner failed ($rc)" >&2; exit 2; }
runner=
python3 "$here/report.py" "$out"
