#!/usr/bin/env bash
# Builds a Raspberry Pi 4 SD card image that boots IMAGE (the Bulkhead flat binary) at EL2.
#
# Usage: scripts/mkimage-rpi4.sh IMAGE [OUT=sdcard.img]
#   env: EXTRA_FILES="a b ..."  more files for the boot partition (e.g. a guest Image/initrd)
#        KERNEL_ADDRESS=0x80000 where the firmware loads IMAGE (config.txt kernel_address)
#        BOOT_MB=64             size of the FAT32 boot partition
#
# The card: an MBR with one bootable FAT32 (type 0x0c) partition starting at 1 MiB, holding
#   start4.elf fixup4.dat bootcode.bin   the RPi firmware (Debian raspi-firmware)
#   bcm2711-rpi-4-b.dtb                  from Debian's arm64 kernel package
#   config.txt                           arm_64bit=1, enable_uart=1, kernel=bulkhead.bin, ...
#   bulkhead.bin                         IMAGE
# No root and no loop devices: the partition is made as a file (mkfs.vfat -C, mtools mcopy) and
# written behind a hand-made MBR. The firmware parts come from scripts/assets.sh rpi4-firmware.
#
# No armstub is configured: start4.elf's built-in arm64 stub enters the image at EL2 with
# x0 = the DTB, and parks CPUs 1-3 on the spin-table (cpu-release-addr 0xe0/0xe8/0xf0).
#
# Flash it (replace sdX with the card's device; check with lsblk first, this erases the card):
#   sudo dd if=sdcard.img of=/dev/sdX bs=4M conv=fsync status=progress
# Serial console: GPIO 14 (TXD) / 15 (RXD) / GND, 115200 8N1, 3.3 V. With enable_uart=1 and no
# overlays these pins carry the mini UART (DT alias serial1, 0xFE215040, the DTB's stdout-path),
# not the PL011 (serial0, 0xFE201000) that QEMU's raspi4b connects to -serial.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() {
    printf 'mkimage-rpi4: ERROR: %s\n' "$*" >&2
    exit 1
}

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 IMAGE [OUT=sdcard.img]"
IMAGE=$1
OUT=${2:-sdcard.img}
KERNEL_ADDRESS=${KERNEL_ADDRESS:-0x80000}
BOOT_MB=${BOOT_MB:-64}
[ -f "$IMAGE" ] || die "IMAGE '$IMAGE' is not a file"
for tool in mkfs.vfat mcopy mdir; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (dosfstools / mtools; run scripts/setup.sh)"
done
# FAT32 needs at least 65525 clusters: with 512-byte clusters that is 32 MiB + the FATs.
[ "$BOOT_MB" -ge 40 ] || die "BOOT_MB must be >= 40 for FAT32"

eval "$("$REPO/scripts/assets.sh" kernel rpi4-firmware)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/config.txt" <<EOF
# Bulkhead on a Raspberry Pi 4 (written by scripts/mkimage-rpi4.sh).
# 64-bit: the firmware enters the kernel at EL2 through its built-in armstub (no armstub= line).
arm_64bit=1
# UART on GPIO 14/15: the mini UART (/chosen/stdout-path serial1); the firmware then holds
# the core clock steady so its baud rate stays right.
enable_uart=1
kernel=bulkhead.bin
kernel_address=$KERNEL_ADDRESS
device_tree=bcm2711-rpi-4-b.dtb
EOF

# The boot partition as a file.
part=$tmp/boot.img
part_sectors=$((BOOT_MB * 2048))
mkfs.vfat -C -F 32 -s 1 -n BULKHEAD -i 0b0075ed "$part" $((BOOT_MB * 1024)) >/dev/null ||
    die "mkfs.vfat failed"
export MTOOLS_SKIP_CHECK=1
files=("$RPI4_FIRMWARE_DIR/start4.elf" "$RPI4_FIRMWARE_DIR/fixup4.dat"
    "$RPI4_FIRMWARE_DIR/bootcode.bin" "$RPI4_DTB" "$tmp/config.txt")
for f in ${EXTRA_FILES:-}; do
    [ -f "$f" ] || die "EXTRA_FILES: '$f' is not a file"
    files+=("$f")
done
mcopy -i "$part" -o "${files[@]}" ::/ || die "mcopy failed"
mcopy -i "$part" -o "$IMAGE" ::/bulkhead.bin || die "mcopy of IMAGE failed"

# MBR partition entry helpers: little-endian 32-bit and CHS (255 heads, 63 sectors/track;
# past cylinder 1023 the conventional "use LBA" marker fe ff ff).
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
chs() {
    local lba=$1 c h s
    c=$((lba / (255 * 63)))
    h=$(((lba / 63) % 255))
    s=$((lba % 63 + 1))
    if [ "$c" -gt 1023 ]; then
        printf '\\xfe\\xff\\xff'
    else
        printf '\\x%02x\\x%02x\\x%02x' "$h" $((s | ((c >> 2) & 0xc0))) $((c & 255))
    fi
}

start=2048 # 1 MiB alignment
total_sectors=$((start + part_sectors))
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
truncate -s $((total_sectors * 512)) "$OUT"
{
    printf '\x42\x55\x4c\x4b'           # disk signature "BULK" at 0x1b8
    printf '\x00\x00'                   # reserved
    printf '\x80'                       # bootable
    printf "$(chs $start)"              # first sector, CHS
    printf '\x0c'                       # type: FAT32 (LBA)
    printf "$(chs $((total_sectors - 1)))" # last sector, CHS
    printf "$(le32 $start)"             # first sector, LBA
    printf "$(le32 $part_sectors)"      # sector count
    head -c 48 /dev/zero                # entries 2-4 unused
    printf '\x55\xaa'                   # boot signature
} | dd of="$OUT" bs=1 seek=$((0x1b8)) conv=notrunc status=none
dd if="$part" of="$OUT" bs=1M seek=1 conv=notrunc status=none

# Check what we wrote: the partition table and the files, read back through the MBR offset.
[ "$(od -An -tx1 -j 510 -N 2 "$OUT" | tr -d ' \n')" = 55aa ] || die "MBR signature missing"
listing=$(mdir -i "$OUT@@$((start * 512))" -b ::/) || die "cannot read the FAT partition back"
for f in start4.elf fixup4.dat bootcode.bin bcm2711-rpi-4-b.dtb config.txt bulkhead.bin; do
    grep -qi "/$f\$" <<<"$listing" || die "$f missing from the boot partition"
done
echo "mkimage-rpi4: wrote $OUT ($((total_sectors / 2048)) MiB; FAT32 boot partition at 1 MiB)" >&2
echo "SDCARD=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
