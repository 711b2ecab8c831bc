#!/usr/bin/env bash
# Month end at DICT's fastest cadence, with the clock moved by libfaketime (Debian package
# faketime): the store's worst day, measured.
#
#  1. `simulate --backfill 29d --interval 10s` (29 policies, 7.27 M snapshots) ending at
#     2026-12-31 23:50 UTC: time, peak RSS, bytes per snapshot.
#  2. `serve --interval 1s` on that directory from 23:59:40 for SERVE_SECONDS (default 60): it
#     crosses midnight, the month's and the year's end, and compacts December in the
#     background. Peak RSS (VmHWM), polls stored against seconds elapsed, the widest gap
#     between two stored polls, staleness self-alerts, `verify`.
#  3. 1,000 policies polled every second from 23:58:30 for SCALE_SECONDS (default 180),
#     crossing midnight: peak RSS, and every 15 s the bytes held by live (not yet compacted)
#     blocks.
#
#   benches/month_end.sh [SERVE_SECONDS=60] [SCALE_SECONDS=180]
# Exits 1 if a poll was missed or a staleness alert was raised.
set -euo pipefail
cd "$(dirname "$0")/.."
serve_seconds=${1:-60}
scale_seconds=${2:-180}
lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[[ -e $lib ]] || { echo "needs libfaketime: apt-get install faketime" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/dictmon
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
kb_to_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
# Bytes of live blocks in the segments of a data directory (storage-format.md §3).
live_bytes() {
    python3 - "$1" <<'PY'
import struct, sys, pathlib
total = 0
for seg in pathlib.Path(sys.argv[1], "segments").glob("*.seg"):
    b = seg.read_bytes()
    pos = 32
    while pos + 40 <= len(b) and b[pos:pos + 4] == b"DMBK":
        body, kind = struct.unpack_from("<I", b, pos + 4)[0], b[pos + 30]
        if kind == 1:
            total += 40 + body
        pos += 40 + body
print(total)
PY
}
# shellcheck source=benches/serve.sh
. benches/serve.sh
serve_at() { # START DATA_DIR ARGS… : serve with its clock starting at START; sets $pid, $base
    local start=$1 dir=$2
    shift 2
    serve_env=(LD_PRELOAD="$lib" FAKETIME="@$start" FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=UTC)
    serve_start --data-dir "$dir" "$@"
}
stop() { kill "$pid" && wait "$pid" || true; pid=; }
status=0

echo "== 1. backfill: 29 days of 29 policies every 10 s, ending 2026-12-31 23:50 UTC"
# Clocks start at the given UTC time and run on (libfaketime); monotonic time is untouched.
/usr/bin/time -f '%e %M' -o "$tmp/time" env LD_PRELOAD="$lib" FAKETIME="@2026-12-31 23:50:00" \
    FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=UTC "$bin" simulate --backfill 29d --interval 10s --data-dir "$tmp/month" | tail -1
read -r secs kb <"$tmp/time"
rows=$("$bin" verify --data-dir "$tmp/month" | grep -o '[0-9]* snapshots' | cut -d' ' -f1)
bytes=$(du -sb "$tmp/month/segments" | cut -f1)
echo "backfill: $rows snapshots in $secs s, peak RSS $(kb_to_mb "$kb") MB (target ≤ 256), $(awk -v b="$bytes" -v r="$rows" 'BEGIN { printf "%.3f", b / r }') B/snapshot of segments (target ≤ 0.5)"

echo
echo "== 2. serve at 1 s across midnight, 2026-12-31 23:59:40 + ${serve_seconds} s"
serve_at "2026-12-31 23:59:40" "$tmp/month" --interval 1s
sleep "$serve_seconds"
peak=$(hwm_mb)
stop
csv=$("$bin" query states --data-dir "$tmp/month" --policy POLICIES_LIST --since "2026-12-31T23:59:39Z" --format csv)
polls=$(tail -n +2 <<<"$csv" | wc -l)
gap=$(python3 -c '
import sys, csv, datetime
times = sorted(datetime.datetime.fromisoformat(r["response_time"].replace("Z", "+00:00"))
               for r in csv.DictReader(sys.stdin))
print(max(((b - a).total_seconds() for a, b in zip(times, times[1:])), default=0))' <<<"$csv")
alerts=$(grep -c DICTMON_SOURCE "$tmp/log" || true)
verify=$("$bin" verify --data-dir "$tmp/month" | tail -1)
echo "serve: peak RSS $peak MB (target ≤ 64); $polls polls stored in ${serve_seconds} s; widest gap between polls ${gap} s; $alerts staleness alerts; live bytes left: $(live_bytes "$tmp/month")"
echo "verify: $verify"
awk -v g="$gap" 'BEGIN { exit !(g < 1.9) }' || { echo "FAIL: a poll was missed" >&2; status=1; }
((alerts == 0)) || { echo "FAIL: staleness self-alert" >&2; status=1; }

echo
echo "== 3. 1,000 policies at 1 s across midnight, 2026-12-31 23:58:30 + ${scale_seconds} s"
cat >"$tmp/scale.toml" <<TOML
data_dir = "$tmp/scale"
interval = "1s"
[source.simulator]
policies = 1000
TOML
serve_at "2026-12-31 23:58:30" "$tmp/scale" --config "$tmp/scale.toml"
printf '%6s %8s %14s %14s\n' "t (s)" "RSS MB" "live bytes" "segment bytes"
t0=$SECONDS
max_live=0
while ((SECONDS - t0 < scale_seconds)); do
    sleep 15
    live=$(live_bytes "$tmp/scale")
    ((live > max_live)) && max_live=$live
    printf '%6s %8s %14s %14s\n' "$((SECONDS - t0))" \
        "$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")" "$live" \
        "$(du -sb "$tmp/scale/segments" | cut -f1)"
done
peak=$(hwm_mb)
stop
echo "1,000 policies: peak RSS $peak MB (target ≤ 64); most live bytes seen $max_live; $("$bin" verify --data-dir "$tmp/scale" | tail -1)"
exit "$status"
