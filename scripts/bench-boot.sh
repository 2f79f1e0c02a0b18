#!/usr/bin/env bash
# Guest boot cost of Bulkhead: the same Debian kernel + test initramfs (smoke mode, same vCPU
# count) booted natively by QEMU and under Bulkhead, both with `-icount shift=0,sleep=off`
# (guest time counts instructions, so the figures do not depend on the host), and the ratios.
#
#   scripts/bench-boot.sh [--smp N] [--gic 2|3] [--insns]
# Prints native_*, bulkhead_* (see scripts/bench-native.sh), the ratios
# ratio_init= and ratio_poweroff=, and Bulkhead's own exit / stage-2 fault counts. --insns also
# counts instructions (scripts/icount-plugin): whole runs, ratio_insns=, and Bulkhead's
# instructions before the guest's first one (bulkhead_insns_to_guest=).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench-native.sh
source scripts/bench-native.sh

smp=4 gic=3 insns=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) smp=$2; shift 2 ;;
        --gic) gic=$2; shift 2 ;;
        --insns) insns=(--insns); shift ;;
        *) echo "bench-boot.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/setup.sh
eval "$(scripts/assets.sh kernel initramfs)"
image=$(scripts/build.sh)
out=${BULKHEAD_CACHE:-$PWD/.cache}/bench
mkdir -p "$out"
append="console=ttyAMA0 bulkhead.test=smoke printk.time=1"

native=$(bench_boot native "$out/native.log" "${insns[@]}" -- \
    qemu-system-aarch64 -M "virt,gic-version=$gic,dtb-randomness=off" -cpu cortex-a72 \
    -smp "$smp" -m 512M -icount shift=0,sleep=off -nographic -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$append")
# Bulkhead runs high (IMAGE_VA, src/mm/layout.rs), the guest low: the plugin marks the switch.
bulkhead=$(BENCH_PLUGIN_ARGS=,guest_below=0x7f0000000000 bench_boot bulkhead "$out/bulkhead.log" "${insns[@]}" -- \
    qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic,dtb-randomness=off" \
    -cpu cortex-a72 -smp "$smp" -m 1280M -icount shift=0,sleep=off -nographic -no-reboot \
    -device "guest-loader,addr=0x50000000,kernel=$KERNEL,bootargs=$append" \
    -device "guest-loader,addr=0x58000000,initrd=$INITRD" \
    -kernel "$image" -append "bulkhead.guest_mem=512M bulkhead.guest_smp=$smp")
echo "$native"
echo "$bulkhead"
value() { echo "$1" | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo "ratio_init=$(ratio "$(value "$bulkhead" bulkhead_init_s)" "$(value "$native" native_init_s)")"
echo "ratio_poweroff=$(ratio "$(value "$bulkhead" bulkhead_poweroff_s)" "$(value "$native" native_poweroff_s)")"
if [ ${#insns[@]} -gt 0 ]; then
    echo "ratio_insns=$(ratio "$(value "$bulkhead" bulkhead_insns_total)" "$(value "$native" native_insns_total)")"
fi
tr -d '\r' < "$out/bulkhead.log" |
    sed -n "s/^bulkhead: guest powered off (vcpu [0-9]*): \(.*\)$/bulkhead_stats=\1/p"
