#!/usr/bin/env bash
# Hostile HTTP clients against `serve` on 13 months of history (29 policies at 5 min):
#
#  1. CLIENTS (default 256) connections ask for one policy's 13-month CSV and read nothing;
#  2. as many ask for the 13-month history page, reading it;
#
# each for SECONDS (default 40), then the clients leave. Throughout, every 0.5 s: serve's RSS,
# and the time `/healthz` takes to answer. Prints peak RSS (VmHWM), RSS once the clients left,
# the slowest `/healthz`, and what the clients got.
#
#   benches/http_flood.sh [CLIENTS=256] [SECONDS=40]
# Exits 1 if RSS passed 128 MB or `/healthz` went unanswered for 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-256}
seconds=${2:-40}
cargo build --release --quiet
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# shellcheck source=benches/serve.sh
. benches/serve.sh

echo "== 13 months of 29 policies at 5 min"
target/release/dictmon simulate --backfill 13mo --data-dir "$tmp/data" | tail -1
ulimit -n 4096
serve_start --data-dir "$tmp/data" --interval 5s
echo "serve at $base, RSS at start $(awk '/^VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$pid/status")"

status=0
flood() { # NAME PATH READ(0|1)
    python3 - "$base" "$2" "$3" "$clients" "$seconds" "$pid" "$1" <<'PY' || status=1
import socket, sys, threading, time, urllib.request
base, path, read, clients, seconds, pid, name = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
host, port = base.removeprefix("http://").split(":")
def rss_kb(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])
statuses, received, lock = {}, [0], threading.Lock()
def client():
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: dictmon\r\nConnection: close\r\n\r\n".encode())
    if not read:
        time.sleep(seconds)   # never reads: the reply piles up in the kernel, then in serve
        s.close()
        return
    got = b""
    while chunk := s.recv(1 << 16):
        got += chunk
    code = got[9:12].decode(errors="replace")
    with lock:
        statuses[code] = statuses.get(code, 0) + 1
        received[0] += len(got)
    s.close()
threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
for t in threads:
    t.start()
slowest, unanswered, start = 0.0, 0, time.monotonic()
while time.monotonic() - start < seconds:
    t0 = time.monotonic()
    try:
        urllib.request.urlopen(base + "/healthz", timeout=5).read()
        slowest = max(slowest, time.monotonic() - t0)
    except Exception:
        unanswered += 1
    time.sleep(0.5)
for t in threads:
    t.join(timeout=60)
time.sleep(5)
hwm, after = rss_kb("VmHWM") / 1024, rss_kb("VmRSS") / 1024
print(f"{name}: {clients} clients for {seconds:.0f} s: peak RSS {hwm:.1f} MB, RSS after they left {after:.1f} MB; "
      f"slowest /healthz {slowest * 1000:.0f} ms, unanswered {unanswered}"
      + (f"; replies {dict(sorted(statuses.items()))}, {received[0] / 1e6:.1f} MB received" if read else ""))
sys.exit(1 if hwm > 128 or unanswered else 0)
PY
}
echo "== 1. $clients clients ask for a 13-month CSV and read nothing"
flood "CSV, not read" "/policy/ENTRIES_WRITE/states.csv?range=13mo" 0
echo "== 2. $clients clients ask for the 13-month history page"
flood "history page" "/policy/ENTRIES_WRITE?range=13mo" 1
serve_stop
exit "$status"
