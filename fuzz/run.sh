#!/usr/bin/env bash
# Runs cargo-fuzz targets on the stable toolchain (no sanitizer):
#   fuzz/run.sh SECONDS [TARGET...]      all targets when none is named
# Each corpus (fuzz/corpus/TARGET, not committed) is seeded from fuzz/seeds/TARGET and the
# repository's own fixtures. Prints one line per target (runs, time, corpus size); on a crash
# prints the end of libFuzzer's log and the reproducer's path, and exits 1.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

seed() {
    local t=$1
    mkdir -p "corpus/$t" logs
    case $t in
        segment_decode) cp ../tests/fixtures/*.seg "corpus/$t/" ;;
        dict_xml | dict_signature) cp ../tests/fixtures/dict/*.xml "corpus/$t/" ;;
        config_toml) cp ../packaging/dictmon.toml "corpus/$t/" ;;
    esac
    if compgen -G "seeds/$t/*" >/dev/null; then
        cp seeds/"$t"/* "corpus/$t/"
    fi
}

cargo fuzz build -s none
failed=0
for t in "${targets[@]}"; do
    seed "$t"
    log="logs/$t.log"
    if cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        printf 'fuzz %-16s %6ss  %10s runs  corpus %s files  no crash\n' "$t" "$secs" "${runs:-?}" "$(find "corpus/$t" -type f | wc -l)"
    else
        echo "fuzz $t: CRASH (log fuzz/$log)"
        # The panic and libFuzzer's verdict, not the input's dump.
        grep -E -A2 "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | cut -c1-300
        failed=1
    fi
done
exit "$failed"
