#!/usr/bin/env bash
# Forensics figures: `query` of one policy over 13 months and `export` of everything, wall time
# and peak memory (GNU time), on simulated history (29 policies every 5 minutes). Memory must be
# flat in the amount of history, so the export runs on 1, 4 and 13 months.
# Usage: bash benches/forensics.sh   (release build; about a minute; writes only under a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/dictmon
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -1; }
printf '%-34s %10s %12s %12s\n' "command" "rows" "wall (s)" "peak RSS (MB)"
for span in 1mo 4mo 13mo; do
    "$bin" simulate --backfill "$span" --data-dir "$work/$span" >/dev/null
    rows=$("$bin" query states --data-dir "$work/$span" --format pg-csv --policy ENTRIES_WRITE | tail -n +2 | wc -l)
    for run in 1 2 3; do
        read -r wall rss < <(measure "$bin" export --data-dir "$work/$span" --out "$work/out-$span")
        total=$(($(wc -l <"$work/out-$span/states.csv") - 1))
        printf '%-34s %10s %12s %12.1f\n' "export $span (run $run)" "$total" "$wall" "$(awk "BEGIN { print $rss / 1024 }")"
    done
    for run in 1 2 3; do
        read -r wall rss < <(measure "$bin" query states --data-dir "$work/$span" --policy ENTRIES_WRITE --format pg-csv)
        printf '%-34s %10s %12s %12.1f\n' "query one policy $span (run $run)" "$rows" "$wall" "$(awk "BEGIN { print $rss / 1024 }")"
    done
done
