#!/usr/bin/env bash
# Build a release: dist/aionbd-<version>-linux-<arch>.tar.gz holding
#   aionbd (stripped), aionbd-load (the load generator, stripped), README.md,
#   LICENSE, config.toml, deploy/ (the systemd unit and its config, Docker,
#   Kubernetes, Helm, Prometheus), scripts/install.sh and the load scripts
#   (scripts/load-*.sh), SHA256SUMS (of every file in the tarball)
# plus dist/aionbd-<version>-linux-<arch>-debug.tar.gz (aionbd.debug: the
# debug info split off the binary, for symbolizing a crash) and
# dist/SHA256SUMS (of both archives). Every sum is verified at the end, on a
# fresh extraction, and the extracted install.sh is run into a scratch DESTDIR.
#
# Builds with the `dist` profile (Cargo.toml: fat LTO, one codegen unit,
# panic = abort) in its own target directory (target/dist), so ordinary
# builds in target/ are not disturbed, at the lowest CPU priority. A fat-LTO
# build of the whole dependency tree takes several minutes on 2 cores.
#   scripts/release.sh            (NICE=19 TARGET_DIR=target/dist by default)
#   RELEASE_BIN=path [RELEASE_LOAD_BIN=path] scripts/release.sh
#                                 packs those binaries, no build (to test the
#                                 packaging; not for releases; the load
#                                 generator defaults to the one beside RELEASE_BIN)
# dist/ is build output: keep it out of git (/dist in .gitignore).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in cargo objcopy sha256sum tar gzip readelf; do
  command -v "$tool" >/dev/null || { echo "release.sh: $tool is required" >&2; exit 1; }
done

version=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "release.sh: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
arch=$(uname -m)
name=aionbd-$version-linux-$arch
target_dir=${TARGET_DIR:-target/dist}
dist=${DIST_DIR:-dist}

started=$(date +%s)
if [ -n "${RELEASE_BIN:-}" ]; then
  bin=$RELEASE_BIN
  load_bin=${RELEASE_LOAD_BIN:-$(dirname "$RELEASE_BIN")/aionbd-load}
else
  nice -n "${NICE:-19}" cargo build --locked --profile dist -p aionbd -p aionbd-load --target-dir "$target_dir"
  bin=$target_dir/dist/aionbd
  load_bin=$target_dir/dist/aionbd-load
fi
built=$(date +%s)
[ -x "$bin" ] || { echo "release.sh: $bin was not built" >&2; exit 1; }
[ -x "$load_bin" ] || { echo "release.sh: $load_bin was not built" >&2; exit 1; }
reported=$("$bin" --version)
[ "$reported" = "aionbd $version" ] || { echo "release.sh: binary says '$reported', expected 'aionbd $version'" >&2; exit 1; }

# Reproducible archives: fixed owner, order and timestamps.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
pack() {  # pack DIR ENTRY OUT.tar.gz
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --exclude=__pycache__ -C "$1" -cf - "$2" | gzip -9n > "$3"
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/$name
mkdir -p "$root/scripts" "$stage/debug"

# Split the debug info off: aionbd.debug keeps it, the shipped binary is
# stripped of symbols and debug info and names aionbd.debug in .gnu_debuglink
# (gdb finds it beside the binary or in /usr/lib/debug).
objcopy --only-keep-debug "$bin" "$stage/debug/aionbd.debug"
chmod 0644 "$stage/debug/aionbd.debug"
objcopy --strip-all --add-gnu-debuglink="$stage/debug/aionbd.debug" "$bin" "$root/aionbd"
chmod 0755 "$root/aionbd"
objcopy --strip-all "$load_bin" "$root/aionbd-load"
chmod 0755 "$root/aionbd-load"

cp README.md LICENSE config.toml "$root/"
cp -R deploy "$root/deploy"
cp scripts/install.sh scripts/load-common.sh scripts/load-search.sh scripts/load-ingest.sh scripts/load-mixed.sh scripts/load-bulk.sh scripts/load-exact-beside.sh scripts/bench-rebuild-stalls.sh \
  "$root/scripts/"
find "$root" -name __pycache__ -prune -exec rm -rf {} +
(cd "$root" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | xargs sha256sum > "$stage/SHA256SUMS")
mv "$stage/SHA256SUMS" "$root/SHA256SUMS"

mkdir -p "$dist"
pack "$stage" "$name" "$dist/$name.tar.gz"
pack "$stage/debug" aionbd.debug "$dist/$name-debug.tar.gz"
(cd "$dist" && sha256sum "$name.tar.gz" "$name-debug.tar.gz" > SHA256SUMS)

# Verify what was written, from the files on disk.
check=$(mktemp -d)
trap 'rm -rf "$stage" "$check"' EXIT
(cd "$dist" && sha256sum --check --quiet SHA256SUMS)
tar -xzf "$dist/$name.tar.gz" -C "$check"
(cd "$check/$name" && sha256sum --check --quiet SHA256SUMS)
if readelf -SW "$check/$name/aionbd" | grep -qE '\.symtab|\.debug_(info|line|str|abbrev)\b'; then
  echo "release.sh: the packed binary still has symbols or debug info" >&2; exit 1
fi
readelf -S "$check/$name/aionbd" | grep -q '\.gnu_debuglink' || { echo "release.sh: no .gnu_debuglink" >&2; exit 1; }
[ "$("$check/$name/aionbd" --version)" = "aionbd $version" ]
[ "$("$check/$name/aionbd-load" --version)" = "aionbd-load $version" ]
DESTDIR="$check/destdir" "$check/$name/scripts/install.sh" >/dev/null
[ -x "$check/destdir/usr/local/bin/aionbd" ] && [ -f "$check/destdir/etc/systemd/system/aionbd.service" ]

size() { stat -c %s "$1"; }
echo "release.sh: $name in $((built - started)) s of build"
echo "  $dist/$name.tar.gz        $(size "$dist/$name.tar.gz") bytes"
echo "  $dist/$name-debug.tar.gz  $(size "$dist/$name-debug.tar.gz") bytes"
echo "  binary: $(size "$bin") bytes as built, $(size "$root/aionbd") bytes stripped"
echo "  sums verified: $dist/SHA256SUMS and $name/SHA256SUMS ($(wc -l < "$root/SHA256SUMS") files)"
