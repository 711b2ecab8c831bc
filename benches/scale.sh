#!/usr/bin/env bash
# Scale: `serve` on the simulator with 1,000 policies polled every second, for 10 minutes by
# default. Every 30 s it prints RSS, CPU per cycle over the last 30 s, cycles and bytes of
# segments; at the end: bytes per stored snapshot, /metrics latency and size, and query
# latency over what was stored. First, the idle figure: the default 29 policies for 60 s.
#   benches/scale.sh [MINUTES=10] [POLICIES=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
policies=${2:-1000}
cargo build --release --quiet
bin=target/release/dictmon
tmp=$(mktemp -d)
pid=
trap 'serve_stop; rm -rf "$tmp"' EXIT
# shellcheck source=benches/serve.sh
. benches/serve.sh
tick=$(getconf CLK_TCK)
rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }

config() { # POLICIES DIR → a config file
    cat >"$tmp/$2.toml" <<TOML
data_dir = "$tmp/$2"
interval = "1s"
[source.simulator]
policies = $1
TOML
    echo "$tmp/$2.toml"
}

serve_start --config "$(config 29 idle)"
sleep 60
echo "idle (29 policies, 1 s interval, 60 s): RSS $(rss_mb) MB"
serve_stop

serve_start --config "$(config "$policies" scale)"
until [[ $(cycles) != "" && $(cycles) -ge 2 ]]; do sleep 0.5; done
printf '\n%6s %8s %8s %14s %12s\n' "t (s)" "RSS MB" cycles "CPU ms/cycle" "store bytes"
t0=$SECONDS
c_prev=$(cycles); cpu_prev=$(cpu_ticks)
while ((SECONDS - t0 < minutes * 60)); do
    sleep 30
    c=$(cycles); cpu=$(cpu_ticks)
    per=$(awk -v d="$((cpu - cpu_prev))" -v n="$((c - c_prev))" -v t="$tick" 'BEGIN { if (n > 0) printf "%.1f", d / t * 1000 / n; else print "-" }')
    printf '%6s %8s %8s %14s %12s\n' "$((SECONDS - t0))" "$(rss_mb)" "$c" "$per" "$(metric dictmon_store_bytes)"
    c_prev=$c; cpu_prev=$cpu
done
m_start=$(date +%s.%N)
size=$(curl -s "$base/metrics" | wc -c)
m_time=$(awk -v s="$m_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", (e - s) * 1000 }')
echo "/metrics: $size bytes in $m_time ms"
serve_stop
rows=$("$bin" query states --data-dir "$tmp/scale" --format csv | tail -n +2 | wc -l)
bytes=$(du -sb "$tmp/scale/segments" | cut -f1)
echo "stored: $rows snapshots in $bytes bytes of segments: $(awk -v b="$bytes" -v r="$rows" 'BEGIN { printf "%.2f", b / r }') bytes/snapshot"
for q in "query states --policy ENTRIES_WRITE" "query states" "status"; do
    s=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$bin" $q --data-dir "$tmp/scale" >/dev/null
    echo "$q: $(awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", (e - s) * 1000 }') ms"
done
