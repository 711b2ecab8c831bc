#!/usr/bin/env bash
# Prints systemd-analyze's exposure score of packaging/dictmon.service and fails above 2.0 (the
# target): shared by packaging/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
score=$(systemd-analyze security --offline=true dictmon.service 2>/dev/null |
    awk '/Overall exposure level/ { print $(NF-2) }')
echo "dictmon.service exposure: ${score:-unknown}"
awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }'
