#!/usr/bin/env bash
# Builds insn-count.so, the instruction-counting QEMU plugin (see insn-count.c), and
# pc-hist.so, the per-address histogram (pc-hist.c), and prints INSN_COUNT_PLUGIN=<path> and
# PC_HIST_PLUGIN=<path>. Idempotent: rebuilds only when the source or header changed.
# Needs gcc, glib's headers (libglib2.0-dev, installed here if missing) and QEMU's
# qemu-plugin.h, which no Debian binary package ships: scripts/assets.sh qemu-plugin-header
# takes it from Debian's source package of the installed QEMU.
#
# Usage: scripts/icount-plugin/build.sh [OUT_DIR=$BULKHEAD_CACHE/icount-plugin]
# Then:  qemu-system-aarch64 ... -plugin "$INSN_COUNT_PLUGIN" -d plugin -D counts.txt
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${BULKHEAD_CACHE:-$REPO/.cache}
OUT=${1:-$CACHE/icount-plugin}
die() {
    printf 'icount-plugin: ERROR: %s\n' "$*" >&2
    exit 1
}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists glib-2.0 2>/dev/null || missing+=(libglib2.0-dev)
if [ ${#missing[@]} -gt 0 ]; then
    printf 'icount-plugin: installing %s\n' "${missing[*]}" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2 ||
        die "cannot install ${missing[*]}"
fi

eval "$("$REPO/scripts/assets.sh" qemu-plugin-header)"
[ -f "$QEMU_PLUGIN_H" ] || die "qemu-plugin.h not found"

mkdir -p "$OUT"
# Builds $OUT/NAME.so from NAME.c when it is missing or older than its inputs.
build() { # NAME
    local so=$OUT/$1.so
    if [ ! -f "$so" ] || [ "$HERE/$1.c" -nt "$so" ] || [ "$QEMU_PLUGIN_H" -nt "$so" ]; then
        # shellcheck disable=SC2046 # pkg-config prints several flags
        gcc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC \
            -I"$(dirname "$QEMU_PLUGIN_H")" $(pkg-config --cflags glib-2.0) \
            -o "$so.tmp" "$HERE/$1.c" || die "gcc failed"
        mv "$so.tmp" "$so"
        printf 'icount-plugin: built %s\n' "$so" >&2
    fi
}
build insn-count
build pc-hist
echo "INSN_COUNT_PLUGIN=$OUT/insn-count.so"
echo "PC_HIST_PLUGIN=$OUT/pc-hist.so"
