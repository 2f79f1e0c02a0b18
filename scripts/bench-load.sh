#!/usr/bin/env bash
# Bulkhead's boot with Debian's arm64 kernel loaded: instructions executed (all CPUs, all
# exception levels) from power-on to the guest's first instruction, under `-icount shift=0`
# and the instruction-counting TCG plugin. The guest is Debian's kernel (~32 MiB) and the
# busybox initramfs, with the kernel's first instruction changed to branch to three that power
# the machine off (PSCI SYSTEM_OFF over HVC): so the count is Bulkhead's boot, creating and
# loading the VM, entering it, and the short power-off path that follows.
#
#   scripts/bench-load.sh [--smp N] [--image BULKHEAD.BIN]  ->  load_insns_total=
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
smp=1 image=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) smp=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        *) echo "bench-load.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
scripts/setup.sh
[ -n "$image" ] || image=$(scripts/build.sh)
eval "$(scripts/assets.sh kernel initramfs)"
plugin=$(scripts/icount-plugin/build.sh | sed -n 's/^INSN_COUNT_PLUGIN=//p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$KERNEL" "$work/Image"
# code0 (offset 0): b +0x40; at 0x40: movz w0, #8; movk w0, #0x8400, lsl #16; hvc #0.
printf '\x10\x00\x00\x14' | dd of="$work/Image" bs=1 seek=0 conv=notrunc status=none
printf '\x00\x01\x80\x52\x00\x80\xb0\x72\x02\x00\x00\xd4' |
    dd of="$work/Image" bs=1 seek=64 conv=notrunc status=none
timeout 300 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a72 \
    -smp "$smp" -m 1280M -icount shift=0,sleep=off -display none -monitor none -serial stdio \
    -device "guest-loader,addr=0x50000000,kernel=$work/Image,bootargs=console=ttyAMA0" \
    -device "guest-loader,addr=0x58000000,initrd=$INITRD" \
    -kernel "$image" -append "bulkhead.guest_mem=512M bulkhead.guest_smp=$smp" \
    -plugin "$plugin" -d plugin -D "$work/counts" </dev/null >"$work/log" 2>&1 || true
grep -q 'guest powered off' "$work/log" || {
    cat "$work/log" >&2
    echo "bench-load.sh: the guest did not power off" >&2
    exit 1
}
sed -n 's/^insn-count: total=\([0-9]*\).*/load_insns_total=\1/p' "$work/counts"
