#!/usr/bin/env bash
# What traces cost a poll cycle ([telemetry.otlp], README "Traces"). `serve` on the built-in
# simulator with POLICIES policies at 1 s, the flapping scenario (alert events every few
# seconds) and a file sink (a delivery span each), for SECS seconds in each of four ways:
# traces off; on, to a collector that takes them (examples/otlp_collector.rs); on, to a port
# that refuses connections; on, to a port that accepts and never answers (every export waits
# its timeout, 2 s). Printed for each: cycles, the whole cycle's mean and the share over
# 100 ms (dictmon_cycle_duration_seconds), the process step's mean (validation, enrichment,
# alerts: where the spans are made), spans exported and dropped.
#   benches/traces.sh [SECS=60] [POLICIES=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
policies=${2:-1000}
cargo build --release --quiet
cargo build --release --quiet --example otlp_collector
tmp=$(mktemp -d)
pid=
collector=
holder=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; [[ -n $collector ]] && kill "$collector" 2>/dev/null; [[ -n $holder ]] && kill "$holder" 2>/dev/null; rm -rf "$tmp"' EXIT
# shellcheck source=benches/serve.sh
. benches/serve.sh

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

run() {
    local label=$1 endpoint=$2
    rm -rf "$tmp/d" "$tmp/events.jsonl"
    {
        printf '[source.simulator]\npolicies = %s\n' "$policies"
        if [[ -n $endpoint ]]; then
            printf '[telemetry.otlp]\nendpoint = "%s"\ntimeout = "2s"\n' "$endpoint"
        fi
    } >"$tmp/c.toml"
    serve_start --data-dir "$tmp/d" --interval 1s --scenario flapping --config "$tmp/c.toml" \
        --events-file "$tmp/events.jsonl"
    sleep "$secs"
    local sum count le100 psum pcount exported dropped
    sum=$(metric 'dictmon_cycle_duration_seconds_sum')
    count=$(metric 'dictmon_cycle_duration_seconds_count')
    le100=$(metric 'dictmon_cycle_duration_seconds_bucket{le="0.1"}')
    psum=$(metric 'dict_rate_limit_monitoring_duration_seconds_sum{operation="process"}')
    pcount=$(metric 'dict_rate_limit_monitoring_duration_seconds_count{operation="process"}')
    exported=$(metric 'dictmon_otlp_spans_exported_total')
    dropped=$(curl -s "$base/metrics" | awk '/^dictmon_otlp_spans_dropped_total/ { s += $2 } END { print s + 0 }')
    serve_stop
    awk -v l="$label" -v s="$sum" -v c="$count" -v le="$le100" -v ps="$psum" -v pc="$pcount" \
        -v e="${exported:-0}" -v d="$dropped" 'BEGIN {
        printf "%-34s %4d cycles, cycle mean %6.2f ms, over 100 ms %4.1f %%, process mean %6.2f ms, spans exported %5d, dropped %5d\n",
            l, c, 1000 * s / c, 100 * (c - le) / c, 1000 * ps / pc, e, d }'
}

echo "traces: $policies policies, 1 s cycles, flapping, a file sink, ${secs} s each ($(date -u +%F))"
run "off" ""
target/release/examples/otlp_collector >"$tmp/collector.log" &
collector=$!
for _ in $(seq 100); do grep -q listening "$tmp/collector.log" && break; sleep 0.1; done
run "on, collector taking spans" "http://$(awk '{ print $3 }' "$tmp/collector.log")"
kill "$collector" && wait "$collector" 2>/dev/null || true
collector=
run "on, collector refusing connections" "http://127.0.0.1:$(free_port)"
port=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64); held = []
while True:
    held.append(s.accept()[0])
' "$port" &
holder=$!
run "on, collector never answering" "http://127.0.0.1:$port"
