#!/usr/bin/env bash
# The packaging acceptance test (as root, on Debian): builds the .deb and the static binary,
# runs lintian, then in a clean Debian root made by debootstrap (cached in
# ${DICTMON_DEBOOTSTRAP_CACHE:-~/.cache/dictmon/bookworm-minbase.tar}) installs the package,
# starts the installed binary as the dictmon user on the simulator, scrapes /metrics, upgrades
# over itself, removes and purges, checking what is left after each step. Ends with the
# systemd-analyze exposure score of the unit and the static binary's size.
# About 15 minutes on 2 cores the first time (two release builds, debootstrap), ~10 after.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || fail "run as root (debootstrap and chroot)"
for tool in lintian debootstrap curl; do
    command -v "$tool" >/dev/null || fail "$tool missing: apt-get install lintian debootstrap curl"
done

step "build"
packaging/build.sh
deb=$(ls -t target/debian/dictmon_*_amd64.deb | head -1)
echo "$deb: $(stat -c %s "$deb") bytes"

step "lintian"
lintian --fail-on error,warning --info "$deb"

step "static binary"
ldd target/static/dictmon 2>&1 | grep -E 'not a dynamic executable|statically linked'
target/static/dictmon --version

step "a clean Debian root"
cache=${DICTMON_DEBOOTSTRAP_CACHE:-$HOME/.cache/dictmon/bookworm-minbase.tar}
work=$(mktemp -d)
root=$work/root
cleanup() {
    [[ -n ${server:-} ]] && kill "$server" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$root"
if [[ ! -f $cache ]]; then
    mkdir -p "$(dirname "$cache")"
    debootstrap --variant=minbase bookworm "$work/fresh" http://deb.debian.org/debian
    tar -C "$work/fresh" -cf "$cache.part" . && mv "$cache.part" "$cache"
    rm -rf "$work/fresh"
fi
tar -C "$root" -xf "$cache"
mount -t proc proc "$root/proc"
in_root() { chroot "$root" "$@"; }
cp "$deb" "$root/tmp/dictmon.deb"
cp target/static/dictmon "$root/tmp/dictmon-static"

step "the static binary runs on the bare root"
in_root /tmp/dictmon-static --version

step "install"
in_root dpkg -i /tmp/dictmon.deb
check_installed() {
    in_root test -x /usr/bin/dictmon || fail "no /usr/bin/dictmon"
    in_root getent passwd dictmon | grep -q ':/var/lib/dictmon:/usr/sbin/nologin$' || fail "no dictmon system user"
    [[ $(in_root stat -c '%U:%G %a' /var/lib/dictmon) == "dictmon:dictmon 750" ]] || fail "/var/lib/dictmon: $(in_root stat -c '%U:%G %a' /var/lib/dictmon)"
    in_root dpkg-query -W -f='${Conffiles}\n' dictmon | grep -q /etc/dictmon/dictmon.toml || fail "the config is not a conffile"
    in_root test -f /usr/lib/systemd/system/dictmon.service || fail "no systemd unit"
    in_root test -f /usr/share/man/man1/dictmon.1.gz || fail "no man page"
    in_root test -f /usr/share/bash-completion/completions/dictmon || fail "no bash completion"
    in_root test -f /usr/share/dictmon/grafana-dashboard.json || fail "no dashboard"
    in_root /usr/bin/dictmon config check /etc/dictmon/dictmon.toml
}
check_installed

step "run the installed binary as dictmon, on the simulator"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# chroot --userspec execs dictmon itself, so the SIGTERM below reaches it (runuser would not
# pass it on).
chroot --userspec=dictmon:dictmon "$root" /usr/bin/dictmon serve --config /etc/dictmon/dictmon.toml \
    --listen "127.0.0.1:$port" --grpc-listen off --interval 1s &
server=$!
for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^dict_rate_limit_available_tokens{'; then break; fi
    sleep 0.2
done
metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || fail "no /metrics"
grep -q '^dict_rate_limit_available_tokens{endpoint_id="ENTRIES_WRITE"' <<<"$metrics" || fail "no bucket gauges"
echo "$(grep -c '^dict_rate_limit_' <<<"$metrics") dict_rate_limit_* series scraped"
kill -TERM "$server"; wait "$server" || fail "serve did not stop cleanly"
server=
[[ -n $(in_root find /var/lib/dictmon/segments -name '*.seg' -user dictmon) ]] || fail "no segment written by dictmon"

step "an operator in the dictmon group reads the data with no flags (the installed config names it)"
in_root useradd --create-home --groups dictmon alice
chroot --userspec=alice:alice --groups=dictmon "$root" /bin/sh -c 'cd /tmp && /usr/bin/dictmon status' |
    grep -q '^ENTRIES_WRITE ' || fail "status as a member of dictmon did not read /var/lib/dictmon"
chroot --userspec=alice:alice --groups=dictmon "$root" /bin/sh -c 'cd /tmp && /usr/bin/dictmon verify' >/dev/null ||
    fail "verify as a member of dictmon failed"
# (chroot --userspec alone would give alice her groups from the user database, dictmon among
# them: the outsider is another user.)
in_root useradd --create-home bob
if refused=$(chroot --userspec=bob:bob "$root" /bin/sh -c 'cd /tmp && /usr/bin/dictmon status' 2>&1); then
    fail "a user outside the dictmon group read /var/lib/dictmon"
fi
grep -qi 'permission denied' <<<"$refused" || fail "bob was refused for another reason: $refused"
in_root userdel --remove alice
in_root userdel --remove bob

step "upgrade over itself (a local change to the config is kept)"
echo "# local change" >> "$root/etc/dictmon/dictmon.toml"
in_root dpkg -i --force-confold /tmp/dictmon.deb
check_installed
grep -q '^# local change$' "$root/etc/dictmon/dictmon.toml" || fail "the upgrade replaced the edited config"
[[ -n $(in_root find /var/lib/dictmon/segments -name '*.seg') ]] || fail "the upgrade lost the data"

step "remove: the binary goes, data and config stay"
in_root dpkg -r dictmon
in_root test ! -e /usr/bin/dictmon || fail "/usr/bin/dictmon left after remove"
in_root test ! -e /usr/lib/systemd/system/dictmon.service || fail "unit left after remove"
[[ -n $(in_root find /var/lib/dictmon/segments -name '*.seg') ]] || fail "remove deleted the data"
in_root test -f /etc/dictmon/dictmon.toml || fail "remove deleted the config"

step "purge: data and config go"
in_root dpkg -P dictmon
in_root test ! -e /var/lib/dictmon || fail "/var/lib/dictmon left after purge"
in_root test ! -e /etc/dictmon/dictmon.toml || fail "config left after purge"
left=$(in_root sh -c 'ls /etc/dictmon 2>/dev/null; dpkg -S dictmon 2>/dev/null' || true)
[[ -z $left ]] || fail "left after purge: $left"
echo "left on purpose: the dictmon system user ($(in_root getent passwd dictmon))"

step "systemd unit hardening"
packaging/unit-exposure.sh || fail "the unit's exposure is above 2.0"

step "done"
echo "package: $deb ($(stat -c %s "$deb") bytes); static binary: target/static/dictmon ($(stat -c %s target/static/dictmon) bytes)"
