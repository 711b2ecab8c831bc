#!/usr/bin/env bash
# The catalog's two writers (ARCHITECTURE.md): the monitor commits once a cycle, each notify
# worker after each delivery. redb takes one write transaction at a time, so a cycle's commit
# may wait for a worker's. Measured here: `serve` on the built-in simulator at 1 s with the
# flapping scenario (alerts open and resolve all the time) for SECS seconds, once without
# sinks and once with three file sinks (each fsyncs its file and commits its progress per
# batch); printed, the cycle's persist time (store append + catalog commit, fsync on) as
# mean and the share of cycles over 50 ms, from dict_rate_limit_monitoring_duration_seconds.
#   benches/catalog_writers.sh [SECS=60]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cargo build --release --quiet
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# shellcheck source=benches/serve.sh
. benches/serve.sh

run() {
    local label=$1 config=$2
    rm -rf "$tmp/d"
    serve_start --data-dir "$tmp/d" --interval 1s --scenario flapping --config "$config"
    sleep "$secs"
    local sum count le50 delivered
    sum=$(metric 'dict_rate_limit_monitoring_duration_seconds_sum{operation="persist"}')
    count=$(metric 'dict_rate_limit_monitoring_duration_seconds_count{operation="persist"}')
    le50=$(metric 'dict_rate_limit_monitoring_duration_seconds_bucket{operation="persist",le="0.05"}')
    delivered=$(curl -s "$base/metrics" | awk '/^dictmon_events_delivered_total/ { s += $2 } END { print s + 0 }')
    serve_stop
    awk -v l="$label" -v s="$sum" -v c="$count" -v le="$le50" -v d="$delivered" 'BEGIN {
        printf "%-22s %5d cycles, persist mean %6.2f ms, over 50 ms %5.1f %%, events delivered %d\n",
            l, c, 1000 * s / c, 100 * (c - le) / c, d }'
}

printf '' >"$tmp/none.toml"
{
    for i in 1 2 3; do
        printf '[[notify.file]]\nname = "f%s"\npath = "%s/events-%s.jsonl"\n' "$i" "$tmp" "$i"
    done
} >"$tmp/sinks.toml"
run "no sink" "$tmp/none.toml"
run "three file sinks" "$tmp/sinks.toml"
