#!/usr/bin/env bash
# The legacy's history, imported: 13 months of `dict_rate_limit_states` as PostgreSQL's COPY
# writes it (benches/legacy_history.py: 30 policies every 5 minutes, diurnal traffic with noise
# and bursts, derived columns computed and rounded the legacy's way), then
#   - `dictmon import`: wall time, peak RSS, bytes per snapshot (whole data directory ÷ rows);
#   - `dictmon export` of it: the same rows, byte for byte (compared line by line, sorted: the
#     legacy's own COPY order is its partitions' scan order);
#   - PostgreSQL 15's server-side COPY of the same file into the legacy's partitioned table
#     (primary key included, fsync off as in the tests): wall time, and the ratio;
#   - `zstd -3` and `zstd -19` of the CSV, for scale.
# A PostgreSQL server is started on a free loopback port in a temporary directory and stopped.
#   benches/legacy_import.sh [MONTHS=13]
set -euo pipefail
cd "$(dirname "$0")/.."
months=${1:-13}
cargo build --release --quiet
bin=$PWD/target/release/dictmon
tmp=$(mktemp -d)
chmod 755 "$tmp"
# shellcheck source=benches/postgres.sh
. benches/postgres.sh
cleanup() {
    pg_stop
    rm -rf "$tmp"
}
trap cleanup EXIT
per() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

python3 benches/legacy_history.py --months "$months" --out "$tmp/states.csv"
rows=$(($(wc -l <"$tmp/states.csv") - 1))
csv_bytes=$(stat -c %s "$tmp/states.csv")
echo "legacy CSV: $rows rows, $csv_bytes bytes"

/usr/bin/time -f '%e %M' -o "$tmp/time" "$bin" import --data-dir "$tmp/d" --states "$tmp/states.csv"
read -r import_s import_kb <"$tmp/time"
dir_bytes=$(du -sb "$tmp/d" | cut -f1)
seg_bytes=$(du -sb "$tmp/d/segments" | cut -f1)
echo "dictmon import: $import_s s, peak RSS $((import_kb / 1024)) MB; data directory $dir_bytes bytes: $(per "$dir_bytes" "$rows") B/snapshot ($(per "$seg_bytes" "$rows") B in segments)"

"$bin" export --data-dir "$tmp/d" --out "$tmp/e" >/dev/null
if cmp -s <(head -1 "$tmp/states.csv") <(head -1 "$tmp/e/states.csv") &&
    cmp -s <(tail -n +2 "$tmp/states.csv" | sort) <(tail -n +2 "$tmp/e/states.csv" | sort); then
    echo "export: the same $rows rows, byte for byte"
else
    echo "FAIL: export differs from the imported CSV" >&2
    exit 1
fi

for level in 3 19; do
    z=$(zstd -q -"$level" -T1 -c "$tmp/states.csv" | wc -c)
    echo "zstd -$level of the CSV: $z bytes: $(per "$z" "$rows") B/snapshot"
done

pg_start
psql -f "$tmp/e/schema.sql"
start=$(date +%s.%N)
psql -c "COPY dict_rate_limit_states FROM '$tmp/states.csv' WITH (FORMAT csv, HEADER true)"
pg_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
pg_rows=$(psql -A -t -c "SELECT count(*) FROM dict_rate_limit_states")
pg_bytes=$(psql -A -t -c "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'dict_rate_limit_states'::regclass")
echo "PostgreSQL COPY: $pg_s s for $pg_rows rows; $pg_bytes bytes with its index: $(per "$pg_bytes" "$rows") B/snapshot"
echo "import speed: $(per "$pg_s" "$import_s") × PostgreSQL's COPY"
