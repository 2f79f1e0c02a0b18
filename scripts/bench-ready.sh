#!/usr/bin/env bash
# Bulkhead's own boot cost: instructions executed (all CPUs, all exception levels) from
# power-on to the `bulkhead: ready` line and power-off, with no guest, under `-icount shift=0`
# and the instruction-counting TCG plugin. Also prints the image size.
#
#   scripts/bench-ready.sh [--smp N] [--gic 2|3]   ->  image_bytes=, ready_insns_total=
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
smp=4 gic=3
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) smp=$2; shift 2 ;;
        --gic) gic=$2; shift 2 ;;
        *) echo "bench-ready.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
scripts/setup.sh
image=$(scripts/build.sh)
plugin=$(scripts/icount-plugin/build.sh | sed -n 's/^INSN_COUNT_PLUGIN=//p')
counts=$(mktemp)
log=$(mktemp)
timeout 120 qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic" -cpu cortex-a72 \
    -smp "$smp" -m 1G -icount shift=0,sleep=off -display none -monitor none -serial stdio \
    -kernel "$image" -plugin "$plugin" -d plugin -D "$counts" </dev/null >"$log" 2>&1
grep -q '^bulkhead: ready: ' "$log" || { cat "$log" >&2; echo "bench-ready.sh: no ready line" >&2; exit 1; }
echo "image_bytes=$(stat -c %s "$image")"
sed -n 's/^insn-count: total=\([0-9]*\).*/ready_insns_total=\1/p' "$counts"
rm -f "$counts" "$log"
