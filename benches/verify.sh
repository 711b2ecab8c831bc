#!/usr/bin/env bash
# `verify` speed on one core: every block of every segment decoded (checksums, every column,
# every derived value through its predictor), every catalog table read.
#
#  1. 13 months at 5 minutes (`simulate --backfill 13mo`, 29 policies, ≈ 3.3 M snapshots);
#  2. a month at 10 s (`simulate --backfill 29d --interval 10s`, ≈ 7.27 M snapshots), where
#     each row's rate window holds 90 pairs instead of 3.
#
# Each `taskset -c 0 dictmon verify` runs RUNS times (default 5); the median wall time and
# snapshots per second are printed, process start and catalog included.
#
#   benches/verify.sh [RUNS=5]
# Exits 1 if a median is below 10 M snapshots/s (the target of issue 16).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --quiet
bin=$PWD/target/release/dictmon
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
measure() {
    local name=$1 dir=$2 rows times median
    rows=$("$bin" verify --data-dir "$dir" | grep -o '[0-9]* snapshots' | cut -d' ' -f1)
    times=()
    for _ in $(seq "$runs"); do
        times+=("$( { /usr/bin/time -f %e taskset -c 0 "$bin" verify --data-dir "$dir" >/dev/null; } 2>&1 )")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    awk -v n="$name" -v r="$rows" -v m="$median" -v all="${times[*]}" 'BEGIN {
        printf "%s: %d snapshots, median %.2f s of %s: %.1f M snapshots/s\n", n, r, m, all, r / m / 1e6
    }'
    awk -v r="$rows" -v m="$median" 'BEGIN { exit !(r / m < 10e6) }' && status=1
    return 0
}
"$bin" simulate --backfill 13mo --data-dir "$tmp/5m" >/dev/null
measure "13 months at 5 min" "$tmp/5m"
"$bin" simulate --backfill 29d --interval 10s --data-dir "$tmp/10s" >/dev/null
measure "a month at 10 s" "$tmp/10s"
exit $status
