#!/usr/bin/env bash
# Builds the Debian package and the static binary:
#   target/debian/dictmon_<version>-1_amd64.deb   (cargo-deb; the release binary, dynamic)
#   target/static/dictmon                        (glibc, statically linked: copy and run)
# Usage: packaging/build.sh [--deb-only] [--debug]
#   --deb-only  skip the static binary
#   --debug     package the debug build already made by `cargo test` (CI checks the package's
#               contents with lintian without a release build)
# Needs cargo-deb 3.8 (installed here when missing; pinned, as it is to refuse --profile dev one
# day).
set -euo pipefail
cd "$(dirname "$0")/.."

deb_only=false profile=release
for arg in "$@"; do
    case "$arg" in
        --deb-only) deb_only=true ;;
        --debug) profile=debug ;;
        *) echo "usage: $0 [--deb-only] [--debug]" >&2; exit 2 ;;
    esac
done

command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked

if [[ $profile == release ]]; then
    build=(--release) deb=() bin=target/release/dictmon
else
    # cargo-deb 3.8 maps target/release/ in the assets to the dev profile's directory (with a
    # warning that it is meant for releases).
    build=() deb=(--profile dev) bin=target/debug/dictmon
fi
cargo build "${build[@]}" --locked

# What the package ships besides the binary, generated from it: man pages, completions, and the
# example configuration with the data in /var/lib/dictmon.
out=target/packaging
rm -rf "$out" && mkdir -p "$out/man" "$out/completions"
"$bin" debug man-pages --out "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash > "$out/completions/dictmon.bash"
"$bin" completions zsh > "$out/completions/_dictmon"
"$bin" completions fish > "$out/completions/dictmon.fish"
sed 's|^data_dir = .*|data_dir = "/var/lib/dictmon"|' packaging/dictmon.toml > "$out/dictmon.toml"
grep -q '^data_dir = "/var/lib/dictmon"$' "$out/dictmon.toml"
"$bin" config check "$out/dictmon.toml" >/dev/null

cargo deb --no-build --locked --strip "${deb[@]}"
ls -l target/debian/*.deb

if ! $deb_only; then
    # Static glibc: the explicit --target keeps crt-static away from build
    # scripts and proc-macros.
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target x86_64-unknown-linux-gnu
    mkdir -p target/static
    cp target/x86_64-unknown-linux-gnu/release/dictmon target/static/dictmon
    strip target/static/dictmon
    ldd target/static/dictmon 2>&1 | grep -Eq 'not a dynamic executable|statically linked'
    echo "static binary: target/static/dictmon, $(stat -c %s target/static/dictmon) bytes ($(ldd target/static/dictmon 2>&1 | xargs))"
fi
