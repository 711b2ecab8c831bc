# Sourced by load.sh and scale.sh: a release `serve` in the background on a free loopback port.
#   serve_start ARGS…   sets $pid and $base (http://127.0.0.1:PORT); the log is $tmp/log
#   metric NAME         a sample of its /metrics ("name{labels}" exactly)
#   serve_stop          SIGTERM, and wait
# The caller sets $tmp (a temporary directory) and removes it.
#   serve_env=(NAME=VALUE …)  optional: the environment of the server (a faked clock …)
serve_start() {
    # env execs dictmon: $! is the server's own pid (VmHWM, kill).
    env ${serve_env[@]+"${serve_env[@]}"} \
        target/release/dictmon serve --listen 127.0.0.1:0 --grpc-listen off "$@" 2>"$tmp/log" &
    pid=$!
    base=
    for _ in $(seq 200); do
        base=$(grep -o 'HTTP on http://[0-9.:]*' "$tmp/log" | head -1 | sed 's/HTTP on //') && [[ -n $base ]] && return
        sleep 0.1
    done
    cat "$tmp/log" >&2
    exit 1
}
metric() { curl -s "$base/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
cycles() { metric 'dict_rate_limit_monitoring_duration_seconds_count{operation="cycle"}'; }
serve_stop() {
    kill "$pid" 2>/dev/null && wait "$pid" || true
    pid=
}
