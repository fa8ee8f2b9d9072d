#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a bounded time each; exits non-zero on a crash.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      default 60 s, all targets
#
# Needs cargo-fuzz (installed from crates.io if missing). libFuzzer and the sanitizer need
# `-Z` flags, i.e. a nightly compiler; on the stable toolchain here RUSTC_BOOTSTRAP=1 unlocks
# them (set below unless the caller set it). The committed seeds in fuzz/corpus/<target>/ are
# read, never written: what a run discovers goes to fuzz/target/corpus/<target>/ (git-ignored,
# kept between runs); crashes land in fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(client_ip_xff client_ip_forwarded client_ip_header proxy_protocol cidr_list config mmdb path_normalize h1_wire)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"

cargo fuzz build
failed=()
for t in "${targets[@]}"; do
    echo "=== $t: ${seconds}s"
    mkdir -p "corpus/$t" "target/corpus/$t"
    dict=()
    [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
    # -max_len: the mmdb target needs room for a whole (small) database; others stay small.
    max_len=4096
    [ "$t" = mmdb ] && max_len=65536
    if ! cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- -max_total_time="$seconds" -max_len="$max_len" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" 2>&1 | tee "/tmp/geogate-fuzz-$t.log" \
        | grep -E "^(#[0-9]+\s+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written)"; then
        :
    fi
    # A crash, or a run that never reached libFuzzer's closing DONE line (build or start failure).
    if grep -qE "Test unit written|SUMMARY: libFuzzer|deadly signal|panicked" "/tmp/geogate-fuzz-$t.log" \
        || ! grep -qE "^#[0-9]+[[:space:]]+DONE" "/tmp/geogate-fuzz-$t.log"; then
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "CRASHES in: ${failed[*]} (inputs under fuzz/artifacts/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s without a crash"
