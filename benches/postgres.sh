# Sourced by legacy_import.sh and forensics_vs_sql.sh: a throw-away PostgreSQL server (Debian's
# newest installed) on a free loopback port, in $tmp/pg, fsync off.
#   pg_start   initdb and start it (as user postgres when run as root: $tmp is given to it);
#              defines psql (client on it, UTC, stops on the first error)
#   pg_stop    stop it (for the caller's EXIT trap; nothing if it never started)
# The caller sets $tmp (a temporary directory) and removes it.
pg=
pg_as=
pg_start() {
    pg=$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort | tail -1)")
    if [[ $(id -u) == 0 ]]; then
        chown -R postgres:postgres "$tmp"
        pg_as="runuser -u postgres --"
    fi
    $pg_as "$pg/initdb" --auth=trust --username=postgres --encoding=UTF8 --locale=C --no-sync -D "$tmp/pg" >/dev/null
    pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $pg_as "$pg/pg_ctl" -w -D "$tmp/pg" -l "$tmp/pg/log" \
        -o "-p $pg_port -h 127.0.0.1 -k $tmp/pg -c fsync=off -c full_page_writes=off" start >/dev/null
}
psql() { PGTZ=UTC "$pg/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"; }
pg_stop() {
    [[ -n $pg ]] && $pg_as "$pg/pg_ctl" -D "$tmp/pg" -m fast stop >/dev/null 2>&1 || true
}
