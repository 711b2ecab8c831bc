#!/usr/bin/env bash
# Forensic queries side by side: dictmon against PostgreSQL 15 and SQLite on the same history,
# in one run. The history is the legacy's (benches/legacy_history.py: 30 policies every
# 5 minutes, 13 months, ~3.42 M snapshots), loaded into
#   - dictmon (`dictmon import`),
#   - PostgreSQL, into the schema `dictmon export` writes (the legacy's: partitioned by month,
#     primary key, a "latest per policy" index), on a loopback port in a temporary directory,
#   - SQLite (a plain table with the legacy's primary key), and SQLite tuned (WITHOUT ROWID
#     clustered on (endpoint_id, response_time), a remaining-% column, ANALYZE).
# Every query is a fresh client process (psql, sqlite3, dictmon), timed 7 times; the median is
# printed, in milliseconds. Output goes to /dev/null. The four queries:
#   one    one policy's 13 months → CSV
#   latest the latest state of every policy (dictmon: the static binary packaging ships; the
#          dynamic one is printed too)
#   below  per policy and month, the samples under 10 % remaining
#   all    every snapshot → CSV (PostgreSQL: COPY … TO STDOUT; dictmon: query states --format pg-csv)
#   benches/forensics_vs_sql.sh [MONTHS=13]
set -euo pipefail
cd "$(dirname "$0")/.."
months=${1:-13}
runs=7
cargo build --release --quiet
bin=$PWD/target/release/dictmon
# The static binary packaging/build.sh ships (glibc, static-pie): no dynamic loader, no shared
# libraries to map, which is most of a short command's time. `latest` is timed with both.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --quiet --target x86_64-unknown-linux-gnu
static_bin=$PWD/target/x86_64-unknown-linux-gnu/release/dictmon
tmp=$(mktemp -d)
chmod 755 "$tmp"
# shellcheck source=benches/postgres.sh
. benches/postgres.sh
cleanup() {
    pg_stop
    rm -rf "$tmp"
}
trap cleanup EXIT

python3 benches/legacy_history.py --months "$months" --out "$tmp/states.csv" >&2
rows=$(($(wc -l <"$tmp/states.csv") - 1))
policy=ENTRIES_WRITE
"$bin" import --data-dir "$tmp/d" --states "$tmp/states.csv" >/dev/null 2>&1
"$bin" export --data-dir "$tmp/d" --out "$tmp/e" >/dev/null 2>&1

# PostgreSQL.
pg_start
psql -f "$tmp/e/schema.sql"
psql -c "COPY dict_rate_limit_states FROM '$tmp/states.csv' WITH (FORMAT csv, HEADER true)"
psql -c "VACUUM ANALYZE dict_rate_limit_states"
psql -c "CREATE TABLE policy_names AS SELECT DISTINCT endpoint_id FROM dict_rate_limit_states"

# SQLite, plain and tuned.
sqlite3 "$tmp/plain.db" <<EOF
CREATE TABLE dict_rate_limit_states (
    endpoint_id text NOT NULL, available_tokens integer NOT NULL, capacity integer NOT NULL,
    refill_tokens integer NOT NULL, refill_period_sec integer NOT NULL, psp_category text NOT NULL,
    utilization_percent real NOT NULL, consumption_rate_per_minute real,
    recovery_eta_seconds real, exhaustion_projection_seconds real,
    response_time text NOT NULL, created_at text NOT NULL,
    PRIMARY KEY (endpoint_id, response_time, created_at));
.mode csv
.import --skip 1 $tmp/states.csv dict_rate_limit_states
CREATE TABLE policy_names AS SELECT DISTINCT endpoint_id FROM dict_rate_limit_states;
EOF
sqlite3 "$tmp/tuned.db" <<EOF
PRAGMA page_size = 16384;
CREATE TABLE staging (
    endpoint_id text, available_tokens integer, capacity integer, refill_tokens integer,
    refill_period_sec integer, psp_category text, utilization_percent real,
    consumption_rate_per_minute real, recovery_eta_seconds real,
    exhaustion_projection_seconds real, response_time text, created_at text);
.mode csv
.import --skip 1 $tmp/states.csv staging
CREATE TABLE dict_rate_limit_states (
    endpoint_id text NOT NULL, available_tokens integer NOT NULL, capacity integer NOT NULL,
    refill_tokens integer NOT NULL, refill_period_sec integer NOT NULL, psp_category text NOT NULL,
    utilization_percent real NOT NULL, consumption_rate_per_minute real,
    recovery_eta_seconds real, exhaustion_projection_seconds real,
    response_time text NOT NULL, created_at text NOT NULL,
    remaining_percent real GENERATED ALWAYS AS (100.0 * available_tokens / capacity) STORED,
    PRIMARY KEY (endpoint_id, response_time, created_at)) WITHOUT ROWID;
INSERT INTO dict_rate_limit_states SELECT * FROM staging ORDER BY endpoint_id, response_time;
DROP TABLE staging;
CREATE TABLE policy_names AS SELECT DISTINCT endpoint_id FROM dict_rate_limit_states;
VACUUM;
ANALYZE;
EOF

# Every store loaded: gigabytes of dirty pages and PostgreSQL's buffers written out now, not by
# the kernel's writeback threads while the queries are timed (on two cores they would take
# turns with the query being measured).
psql -c "CHECKPOINT"
sync

# shellcheck source=benches/timing.sh
. benches/timing.sh

one_pg="COPY (SELECT * FROM dict_rate_limit_states WHERE endpoint_id = '$policy' ORDER BY response_time) TO STDOUT WITH (FORMAT csv, HEADER true)"
one_sql="SELECT * FROM dict_rate_limit_states WHERE endpoint_id = '$policy' ORDER BY response_time;"
# Latest: one index probe per policy (the best plan each engine offers; DISTINCT ON over the
# partitions, or a GROUP BY join, take seconds).
latest_pg="SELECT s.* FROM policy_names p CROSS JOIN LATERAL (SELECT * FROM dict_rate_limit_states s WHERE s.endpoint_id = p.endpoint_id ORDER BY s.response_time DESC LIMIT 1) s"
latest_sql="SELECT s.* FROM policy_names p JOIN dict_rate_limit_states s ON s.endpoint_id = p.endpoint_id AND s.response_time = (SELECT max(response_time) FROM dict_rate_limit_states WHERE endpoint_id = p.endpoint_id);"
below_pg="SELECT endpoint_id, date_trunc('month', response_time) AS month, count(*) FILTER (WHERE 100.0 * available_tokens / capacity < 10) FROM dict_rate_limit_states GROUP BY 1, 2 ORDER BY 1, 2"
below_sql="SELECT endpoint_id, substr(response_time, 1, 7) AS month, sum(100.0 * available_tokens / capacity < 10) FROM dict_rate_limit_states GROUP BY 1, 2 ORDER BY 1, 2;"
below_tuned="SELECT endpoint_id, substr(response_time, 1, 7) AS month, sum(remaining_percent < 10) FROM dict_rate_limit_states GROUP BY 1, 2 ORDER BY 1, 2;"
all_pg="COPY (SELECT * FROM dict_rate_limit_states) TO STDOUT WITH (FORMAT csv, HEADER true)"
all_sql="SELECT * FROM dict_rate_limit_states;"

# The answers agree (row counts).
one_rows=$("$bin" query states --data-dir "$tmp/d" --policy "$policy" --format pg-csv | tail -n +2 | wc -l)
[[ $one_rows == $(psql -c "$one_pg" | tail -n +2 | wc -l) ]] || { echo "FAIL: one-policy rows differ" >&2; exit 1; }
below_dictmon=$("$bin" query summary --data-dir "$tmp/d" --by month --below 10 --format csv | tail -n +2 | awk -F, '{ s += $NF } END { print s }')
below_postgres=$(psql -A -t -F, -c "$below_pg" | awk -F, '{ s += $NF } END { print s }')
[[ $below_dictmon == "$below_postgres" ]] || { echo "FAIL: samples under 10 %: dictmon $below_dictmon, PostgreSQL $below_postgres" >&2; exit 1; }

echo "$rows snapshots, $months months, 30 policies; one policy: $one_rows rows; samples under 10 %: $below_dictmon"
printf '%-8s %12s %12s %14s %12s %10s\n' query PostgreSQL SQLite "SQLite tuned" dictmon "PG/dictmon"
row() {
    local name=$1 p=$2 s=$3 st=$4 d=$5
    printf '%-8s %12s %12s %14s %12s %10s\n' "$name" "$p" "$s" "$st" "$d" "$(awk -v a="$p" -v b="$d" 'BEGIN { printf "%.1f×", a / b }')"
}
row one "$(time_ms psql -c "$one_pg")" "$(time_ms sqlite3 -csv -header "$tmp/plain.db" "$one_sql")" \
    "$(time_ms sqlite3 -csv -header "$tmp/tuned.db" "$one_sql")" \
    "$(time_ms "$bin" query states --data-dir "$tmp/d" --policy "$policy" --format pg-csv)"
latest_static=$(time_ms "$static_bin" status --data-dir "$tmp/d")
row latest "$(time_ms psql -c "$latest_pg")" "$(time_ms sqlite3 "$tmp/plain.db" "$latest_sql")" \
    "$(time_ms sqlite3 "$tmp/tuned.db" "$latest_sql")" "$latest_static"
row below "$(time_ms psql -c "$below_pg")" "$(time_ms sqlite3 "$tmp/plain.db" "$below_sql")" \
    "$(time_ms sqlite3 "$tmp/tuned.db" "$below_tuned")" \
    "$(time_ms "$bin" query summary --data-dir "$tmp/d" --by month --below 10)"
all_d=$(time_ms "$bin" query states --data-dir "$tmp/d" --format pg-csv)
row all "$(time_ms psql -c "$all_pg")" "$(time_ms sqlite3 -csv "$tmp/plain.db" "$all_sql")" \
    "$(time_ms sqlite3 -csv "$tmp/tuned.db" "$all_sql")" "$all_d"
echo "dictmon, every snapshot → pg-csv: $(awk -v r="$rows" -v ms="$all_d" 'BEGIN { printf "%.2f", r / ms / 1000 }') M rows/s"
echo "latest (dictmon status): static binary $latest_static ms, dynamic (target/release) $(time_ms "$bin" status --data-dir "$tmp/d") ms"
echo "process start alone (dictmon --version): static $(time_ms "$static_bin" --version) ms, dynamic $(time_ms "$bin" --version) ms; sqlite3 doing nothing: $(time_ms sqlite3 "$tmp/tuned.db" "SELECT 1;") ms"
