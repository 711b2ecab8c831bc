#!/usr/bin/env bash
# /metrics and /api/v1/policies under concurrent scrapers while `serve` polls every second:
# wrk's latency percentiles and errors for each endpoint, and whether the poll cycle kept its
# pace (cycles run, mean cycle time before and during the load). Loopback only, bounded in
# time; exits 1 on any HTTP error or missed cycle.
#   benches/load.sh [SECONDS=30] [CONNECTIONS_PER_ENDPOINT=16]
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
conns=${2:-16}
command -v wrk >/dev/null || { echo "load.sh needs wrk: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
tmp=$(mktemp -d)
pid=
trap 'serve_stop; rm -rf "$tmp"' EXIT
# shellcheck source=benches/serve.sh
. benches/serve.sh
serve_start --data-dir "$tmp/data" --interval 1s
cycle_sum() { metric 'dict_rate_limit_monitoring_duration_seconds_sum{operation="cycle"}'; }
until [[ $(cycles) != "" && $(cycles) -ge 5 ]]; do sleep 0.5; done

# Baseline: the cycle's mean time with no load.
c0=$(cycles); s0=$(cycle_sum); sleep 10; c1=$(cycles); s1=$(cycle_sum)
idle_mean=$(awk -v a="$s0" -v b="$s1" -v n="$((c1 - c0))" 'BEGIN { printf "%.2f", (b - a) / n * 1000 }')

c2=$(cycles); s2=$(cycle_sum)
scrapers=()
for path in /metrics /api/v1/policies; do
    wrk -t1 -c"$conns" -d"${secs}s" --latency "$base$path" >"$tmp/wrk$(echo "$path" | tr / _)" &
    scrapers+=($!)
done
wait "${scrapers[@]}"
c3=$(cycles); s3=$(cycle_sum)
load_mean=$(awk -v a="$s2" -v b="$s3" -v n="$((c3 - c2))" 'BEGIN { printf "%.2f", (b - a) / n * 1000 }')

status=0
printf '\n%-18s %10s %8s %8s %8s %8s %8s\n' endpoint "req/s" p50 p75 p90 p99 errors
for path in /metrics /api/v1/policies; do
    f="$tmp/wrk$(echo "$path" | tr / _)"
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$f")
    pct() { awk -v p="$1" '$1 == p { print $2 }' "$f"; }
    errors=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$f")
    printf '%-18s %10s %8s %8s %8s %8s %8s\n' "$path" "$rps" "$(pct 50%)" "$(pct 75%)" "$(pct 90%)" "$(pct 99%)" "$errors"
    if ((errors > 0)); then
        status=1
        grep -E 'Non-2xx|Socket errors' "$f"
    fi
done
ran=$((c3 - c2))
printf '\npoll cycles during %ss of load: %s (1 s interval); mean cycle %s ms idle, %s ms under load\n' \
    "$secs" "$ran" "$idle_mean" "$load_mean"
if ((ran < secs - 2)); then
    echo "the poll cycle fell behind under load" >&2
    status=1
fi
exit "$status"
