#!/usr/bin/env bash
# The catalog's alert history read whole: `dictmon query alerts` over ALERTS alerts (default
# 10,000: 30 policies, two alerts a day each for 13 months is 23,000) imported from a legacy
# alerts CSV, each run a fresh process, median of 7, output to /dev/null. Then how much of one
# run is decoding the catalog's JSON values (perf, when installed): the figure behind the
# choice of JSON for catalog records (ARCHITECTURE.md, "Decisions").
#   benches/alerts.sh [ALERTS=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
alerts=${1:-10000}
runs=7
cargo build --release --quiet
bin=$PWD/target/release/dictmon
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$alerts" "$tmp" <<'PY'
import sys, uuid, datetime
n, out = int(sys.argv[1]), sys.argv[2]
start = datetime.datetime(2025, 11, 1, tzinfo=datetime.timezone.utc)
policies = [f"POLICY_{i:02d}" for i in range(30)]
with open(f"{out}/states.csv", "w") as f:
    f.write("endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,"
            "utilization_percent,consumption_rate_per_minute,recovery_eta_seconds,"
            "exhaustion_projection_seconds,response_time,created_at\n")
    for p in policies:
        t = start.isoformat()
        f.write(f"{p},50,100,1,60,C,50.00,,,,{t},{t}\n")
with open(f"{out}/alerts.csv", "w") as f:
    f.write("id,endpoint_id,severity,available_tokens,capacity,utilization_percent,psp_category,"
            "message,created_at,resolved,resolved_at,resolution_notes,cause\n")
    step = datetime.timedelta(days=395) / n
    for i in range(n):
        p = policies[i % len(policies)]
        opened = start + step * i
        resolved = opened + datetime.timedelta(minutes=20)
        sev = "CRITICAL" if i % 3 == 0 else "WARNING"
        f.write(f"{uuid.uuid5(uuid.NAMESPACE_URL, str(i))},{p},{sev},8,100,92.00,C,"
                f"\"{p}: {sev} at 8.0% remaining (8/100 tokens)\",{opened.isoformat()},true,"
                f"{resolved.isoformat()},recovered to 25.0% remaining,threshold\n")
PY
"$bin" import --data-dir "$tmp/d" --states "$tmp/states.csv" --alerts "$tmp/alerts.csv" >/dev/null 2>&1

# shellcheck source=benches/timing.sh
. benches/timing.sh
count=$("$bin" query alerts --data-dir "$tmp/d" --format json | wc -l)
echo "$count alerts in the catalog ($(stat -c %s "$tmp/d/catalog.redb") bytes)"
echo "query alerts --format json: $(time_ms "$bin" query alerts --data-dir "$tmp/d" --format json) ms"
echo "query alerts (table): $(time_ms "$bin" query alerts --data-dir "$tmp/d") ms"
echo "status (open alerts only): $(time_ms "$bin" status --data-dir "$tmp/d") ms"
if command -v perf >/dev/null 2>&1; then
    perf record -q -o "$tmp/perf.data" "$bin" query alerts --data-dir "$tmp/d" --format json >/dev/null 2>&1 || true
    share=$(perf report -i "$tmp/perf.data" --no-children --stdio --sort sym 2>/dev/null \
        | awk '/serde_json|serde_core|deserialize/ { gsub("%", "", $1); s += $1 } END { printf "%.0f", s }')
    echo "share of one run's samples in JSON decoding (serde): ${share} %"
fi
