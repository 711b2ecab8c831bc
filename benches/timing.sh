# Sourced by the side-by-side bench scripts: time_ms CMD… prints the median wall time of
# $runs runs of CMD (output to /dev/null), in milliseconds. EPOCHREALTIME: no process of its
# own around the one timed.
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] }'; }
time_ms() {
    for _ in $(seq "$runs"); do
        local s e
        s=$EPOCHREALTIME
        "$@" >/dev/null
        e=$EPOCHREALTIME
        awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
    done | median
}
