#!/usr/bin/env bash
# Regenerates the device-tree fixtures in tests/data/ (see tests/data/README.md for what each
# one is). Needs qemu-system-aarch64 >= 9, dtc/fdtput (device-tree-compiler) and the Debian
# assets (scripts/assets.sh kernel initramfs). QEMU adds random rng-seed/kaslr-seed properties,
# so a regenerated virt DTB differs from the committed one in those bytes only.
#
# Usage: scripts/make-test-dtbs.sh [OUT_DIR=tests/data]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/tests/data}
QEMU=${QEMU:-qemu-system-aarch64}

die() {
    printf 'make-test-dtbs: ERROR: %s\n' "$*" >&2
    exit 1
}
for tool in "$QEMU" dtc fdtput fdtget; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (run scripts/setup.sh)"
done

eval "$("$REPO/scripts/assets.sh" kernel initramfs)"
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# QEMU's `dumpdtb=` writes the DTB exactly as the machine would hand it to the image in x0,
# then exits.
dump_virt() { # GIC_VERSION OUT [extra QEMU args...]
    local gic=$1 out=$2
    shift 2
    "$QEMU" -M "virt,gic-version=$gic,virtualization=on,dumpdtb=$out" -cpu cortex-a72 -smp 4 -m 1G \
        -display none -serial null -monitor none "$@" >/dev/null 2>&1 || true
    [ -s "$out" ] || die "QEMU did not dump $out"
}

dump_virt 3 "$OUT/virt-gicv3.dtb"
dump_virt 2 "$OUT/virt-gicv2.dtb"

# The way the hypervisor gets its guest: QEMU's guest-loader (as for Xen) adds
# /chosen/module@ADDR nodes, "multiboot,kernel" (with the guest's bootargs) and
# "multiboot,ramdisk"; the hypervisor's own -append stays in /chosen/bootargs.
dump_virt 3 "$OUT/virt-gicv3-guest-loader.dtb" \
    -kernel "$KERNEL" -append "loglevel=info" \
    -device "guest-loader,addr=0x48000000,kernel=$KERNEL,bootargs=console=ttyAMA0 bulkhead.test=smoke" \
    -device "guest-loader,addr=0x4c000000,initrd=$INITRD"

cp "$RPI4_DTB" "$OUT/bcm2711-rpi-4-b.dtb"

# QEMU raspi4b loads the -dtb file and patches it: it fills /memory@0 (Debian's has reg size 0)
# with the RAM below the VideoCore carve-out (0x3c000000 = 960 MiB for the default 2 GiB board),
# and disables nodes of devices it does not model (thermal, rng200, genet, pcie).
"$QEMU" -M "raspi4b,dumpdtb=$OUT/raspi4b-qemu.dtb" -smp 4 -dtb "$RPI4_DTB" -kernel "$KERNEL" \
    -display none -serial null -monitor none >/dev/null 2>&1 || true
[ -s "$OUT/raspi4b-qemu.dtb" ] || die "QEMU did not dump raspi4b-qemu.dtb"

# raspi4b-qemu-initrd.dtb: the same with `-initrd` (a 1 MiB file, so the fixture does not
# change with the initramfs) and `-append`: QEMU writes /chosen/linux,initrd-start/end (two
# cells) and bootargs, as the Pi firmware does for `initramfs FILE` and cmdline.txt.
head -c 1048576 /dev/zero >"$tmp/initrd-1m"
"$QEMU" -M "raspi4b,dumpdtb=$OUT/raspi4b-qemu-initrd.dtb" -smp 4 -dtb "$RPI4_DTB" -kernel "$KERNEL" \
    -initrd "$tmp/initrd-1m" -append "loglevel=info" \
    -display none -serial null -monitor none >/dev/null 2>&1 || true
[ -s "$OUT/raspi4b-qemu-initrd.dtb" ] || die "QEMU did not dump raspi4b-qemu-initrd.dtb"

# bcm2711-firmware-initrd.dtb: Debian's DTB with /chosen as the Pi firmware fills it in:
# one-cell linux,initrd-start/end (values seen on a Pi 4) and bootargs. No RAM is described
# (Debian's memory@0 has size 0; the firmware fills it in), so such an initrd is "not in RAM".
cp "$RPI4_DTB" "$OUT/bcm2711-firmware-initrd.dtb"
fdtput -t x "$OUT/bcm2711-firmware-initrd.dtb" /chosen linux,initrd-start 2eff0000
fdtput -t x "$OUT/bcm2711-firmware-initrd.dtb" /chosen linux,initrd-end 2f10f8f4
fdtput -t s "$OUT/bcm2711-firmware-initrd.dtb" /chosen bootargs "loglevel=info"

# bundle-tiny.bin: a guest bundle written by scripts/mkbundle.sh from two 12-byte files.
printf 'tiny kernel\n' >"$tmp/tiny-kernel"
printf 'tiny initrd\n' >"$tmp/tiny-initrd"
"$REPO/scripts/mkbundle.sh" --kernel "$tmp/tiny-kernel" --initrd "$tmp/tiny-initrd" \
    --append "console=ttyAMA0 quiet" --cpus 2 --mem 64M -o "$OUT/bundle-tiny.bin" >/dev/null
# bundle-two-vms.bin: two VMs, the first without an initrd, the second named "other".
"$REPO/scripts/mkbundle.sh" --kernel "$tmp/tiny-kernel" --no-initrd \
    --vm --kernel "$tmp/tiny-kernel" --initrd "$tmp/tiny-initrd" --cpus 1 --name other \
    -o "$OUT/bundle-two-vms.bin" >/dev/null

# Broken inputs for error paths. Both start from a compact copy of virt-gicv3.dtb (QEMU pads
# its DTB to 1 MiB; recompiling drops the padding).
dtc -q -I dtb -O dtb -o "$tmp/virt-compact.dtb" "$OUT/virt-gicv3.dtb"

# truncated.dtb: a valid header whose totalsize is larger than the file (cut in the middle of
# the structure block).
size=$(stat -c %s "$tmp/virt-compact.dtb")
head -c $((size / 2)) "$tmp/virt-compact.dtb" >"$OUT/truncated.dtb"

# no-memory.dtb: a valid DTB without any /memory node.
cp "$tmp/virt-compact.dtb" "$OUT/no-memory.dtb"
for node in $(fdtget -l "$OUT/no-memory.dtb" /); do
    case "$node" in memory | memory@*) fdtput -r "$OUT/no-memory.dtb" "/$node" ;; esac
done
if fdtget -l "$OUT/no-memory.dtb" / | grep -q '^memory'; then die "no-memory.dtb still has /memory"; fi

# Sanity: every valid fixture decompiles; the truncated one must not.
for f in virt-gicv3 virt-gicv2 virt-gicv3-guest-loader bcm2711-rpi-4-b raspi4b-qemu \
    raspi4b-qemu-initrd bcm2711-firmware-initrd no-memory; do
    dtc -q -I dtb -O dts -o /dev/null "$OUT/$f.dtb" || die "$f.dtb does not decompile"
done
if dtc -q -I dtb -O dts -o /dev/null "$OUT/truncated.dtb" 2>/dev/null; then die "truncated.dtb decompiles"; fi

echo "make-test-dtbs: wrote $(cd "$OUT" && ls ./*.dtb | tr '\n' ' ') to $OUT ($("$QEMU" --version | head -1))" >&2
