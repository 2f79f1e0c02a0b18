#!/usr/bin/env bash
# Builds a Raspberry Pi 4 SD card image that boots Bulkhead at EL2 with a Linux guest, its
# console on the GPIO header's serial pins.
#
# Usage: scripts/mkimage-rpi4.sh [--image IMAGE] [--bundle BUNDLE] [--cmdline "BULKHEAD ARGS"]
#                                [--guest-append "GUEST CMDLINE"] [--no-guest] [--uboot]
#                                [-o OUT=sdcard.img]
#        scripts/mkimage-rpi4.sh IMAGE [OUT]          (the older form)
#   --image         Bulkhead's flat image (default: build it, scripts/build.sh)
#   --bundle        a guest bundle (default: scripts/mkbundle.sh: Debian's arm64 kernel + the
#                   busybox initramfs, 4 vCPUs, 512 MiB, console=ttyAMA0)
#   --guest-append  the default bundle's guest command line (default "console=ttyAMA0")
#   --cmdline       cmdline.txt: Bulkhead's own bootargs (default "loglevel=info")
#   --no-guest      no bundle and no initramfs line: Bulkhead reports "ready" and halts
#   --uboot         boot through Debian's U-Boot (u-boot-rpi) instead: config.txt starts
#                   u-boot.bin, whose boot.scr loads bulkhead.bin, the guest's Image and
#                   initrd.gz, writes them into the DTB as multiboot module nodes (as Xen's
#                   ImageBuilder does for Xen) and boots Bulkhead with booti. Bulkhead's bootargs
#                   are then boot.scr's `setenv bootargs` (cmdline.txt is not used).
#   env: BOOT_MB=128 size of the FAT32 boot partition; EXTRA_FILES="a b" more files for it
# Prints SDCARD=<absolute path> on stdout.
#
# The card: an MBR with one bootable FAT32 (type 0x0c) partition starting at 1 MiB, holding
#   start4.elf fixup4.dat bootcode.bin   the RPi firmware (Debian raspi-firmware)
#   bcm2711-rpi-4-b.dtb                  from Debian's arm64 kernel package, under the names
#   bcm2711-rpi-400.dtb                  the firmware loads on a Pi 4 B, a Pi 400 and a CM4
#   bcm2711-rpi-cm4.dtb                  (the last is Debian's bcm2711-rpi-cm4-io.dtb)
#   config.txt                           below
#   cmdline.txt                          Bulkhead's bootargs (the firmware copies them into
#                                        /chosen/bootargs, adding some of its own)
#   bulkhead.bin                         IMAGE
#   bundle.bin                           the guest bundle (src/bundle.rs)
# No root and no loop devices: the partition is made as a file (mkfs.vfat -C, mtools mcopy) and
# written behind a hand-made MBR. The firmware parts come from scripts/assets.sh rpi4-firmware.
#
# No armstub is configured: start4.elf's built-in arm64 stub enters the image at EL2 with
# x0 = the DTB, and parks CPUs 1-3 on the spin-table (cpu-release-addr 0xe0/0xe8/0xf0).
# `initramfs bundle.bin followkernel` makes the firmware load the bundle into RAM (at an
# address clear of the kernel, despite the name) and write /chosen/linux,initrd-start/end,
# where Bulkhead finds it.
#
# Flash it (replace sdX with the card's device; check with lsblk first, this erases the card):
#   sudo dd if=sdcard.img of=/dev/sdX bs=4M conv=fsync status=progress
# Serial console: GPIO 14 (TXD, pin 8) / 15 (RXD, pin 10) / GND (pin 6), 115200 8N1, 3.3 V.
# With enable_uart=1 and no overlays these pins carry the mini UART (DT alias serial1,
# 0xFE215040, the DTB's stdout-path), which Bulkhead uses as its console.
# Try the card under QEMU first: scripts/run.sh --sdcard sdcard.img
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() {
    printf 'mkimage-rpi4: ERROR: %s\n' "$*" >&2
    exit 1
}

IMAGE="" BUNDLE="" OUT=sdcard.img CMDLINE="loglevel=info" GUEST_APPEND="console=ttyAMA0" guest=1 uboot=0
if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then
    IMAGE=$1
    OUT=${2:-$OUT}
    [ $# -le 2 ] || die "usage: $0 IMAGE [OUT]  (or see --help)"
    set --
fi
while [ $# -gt 0 ]; do
    case "$1" in
        --image) IMAGE=$2; shift 2 ;;
        --bundle) BUNDLE=$2; shift 2 ;;
        --cmdline) CMDLINE=$2; shift 2 ;;
        --guest-append) GUEST_APPEND=$2; shift 2 ;;
        --no-guest) guest=0; shift ;;
        --uboot) uboot=1; shift ;;
        -o) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
KERNEL_ADDRESS=${KERNEL_ADDRESS:-0x80000}
BOOT_MB=${BOOT_MB:-128}
for tool in mkfs.vfat mcopy mdir; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (dosfstools / mtools; run scripts/setup.sh)"
done
# FAT32 needs at least 65525 clusters: with 512-byte clusters that is 32 MiB + the FATs.
[ "$BOOT_MB" -ge 40 ] || die "BOOT_MB must be >= 40 for FAT32"
case "$CMDLINE" in *$'\n'*) die "--cmdline must be one line" ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "$IMAGE" ]; then
    IMAGE=$("$REPO/scripts/build.sh") || die "scripts/build.sh failed"
fi
[ -f "$IMAGE" ] || die "IMAGE '$IMAGE' is not a file"
[ "$uboot" = 0 ] || [ -z "$BUNDLE" ] || die "--uboot loads the guest's files itself: no --bundle"
if [ "$uboot" = 1 ]; then
    command -v mkimage >/dev/null 2>&1 || die "'mkimage' not found (u-boot-tools; run scripts/setup.sh)"
fi
if [ "$guest" = 1 ] && [ "$uboot" = 0 ] && [ -z "$BUNDLE" ]; then
    BUNDLE=$tmp/bundle.bin
    "$REPO/scripts/mkbundle.sh" --cpus 4 --mem 512M --append "$GUEST_APPEND" -o "$BUNDLE" >/dev/null ||
        die "scripts/mkbundle.sh failed"
fi
[ "$guest" = 0 ] || [ "$uboot" = 1 ] || [ -f "$BUNDLE" ] || die "BUNDLE '$BUNDLE' is not a file"

eval "$("$REPO/scripts/assets.sh" kernel initramfs rpi4-firmware)"
[ "$uboot" = 0 ] || eval "$("$REPO/scripts/assets.sh" u-boot-rpi)"

# The U-Boot route: a boot script in the style of Xen's ImageBuilder (scripts/uboot-script-gen
# there): load every file, describe the guest under /chosen with `fdt mknode` / `fdt set`,
# booti. The DTB is the firmware's (${fdt_addr}), moved to ${fdt_addr_r} and grown for the new
# nodes; /chosen gets <2 2> cells for the module regs, as ImageBuilder gives it.
# U-Boot's environment on the Pi 4 (include/configs/rpi.h): kernel_addr_r 0x80000,
# fdt_addr_r 0x2600000; the guest's files go to 256 MiB and 384 MiB, clear of Bulkhead's
# image and heap (the first 18 MiB) and of U-Boot, which relocated itself to the top of RAM.
uboot_script() {
    local kernel_addr=0x10000000 initrd_addr=0x18000000
    cat <<EOF_SCRIPT
# Bulkhead through U-Boot (written by scripts/mkimage-rpi4.sh --uboot).
echo "Bulkhead: loading the hypervisor and its guest"
fatload mmc 0:1 \${kernel_addr_r} bulkhead.bin
fdt addr \${fdt_addr}
fdt move \${fdt_addr} \${fdt_addr_r} 0x40000
fdt addr \${fdt_addr_r}
fdt resize 4096
fdt set /chosen \#address-cells <0x2>
fdt set /chosen \#size-cells <0x2>
EOF_SCRIPT
    if [ "$guest" = 1 ]; then
        local escaped=${GUEST_APPEND//\\/\\\\}
        escaped=${escaped//\"/\\\"}
        cat <<EOF_SCRIPT
fatload mmc 0:1 $kernel_addr Image
fdt mknode /chosen module@${kernel_addr#0x}
fdt set /chosen/module@${kernel_addr#0x} compatible "multiboot,kernel" "multiboot,module"
fdt set /chosen/module@${kernel_addr#0x} reg <0x0 $kernel_addr 0x0 0x\${filesize}>
fdt set /chosen/module@${kernel_addr#0x} bootargs "$escaped"
fatload mmc 0:1 $initrd_addr initrd.gz
fdt mknode /chosen module@${initrd_addr#0x}
fdt set /chosen/module@${initrd_addr#0x} compatible "multiboot,ramdisk" "multiboot,module"
fdt set /chosen/module@${initrd_addr#0x} reg <0x0 $initrd_addr 0x0 0x\${filesize}>
EOF_SCRIPT
    fi
    cat <<EOF_SCRIPT
setenv bootargs "$CMDLINE"
booti \${kernel_addr_r} - \${fdt_addr_r}
EOF_SCRIPT
}

{
    cat <<EOF_CONFIG
# Bulkhead on a Raspberry Pi 4 (written by scripts/mkimage-rpi4.sh).
# 64-bit: the firmware enters the kernel at EL2 through its built-in armstub (no armstub= line).
arm_64bit=1
# UART on GPIO 14/15: the mini UART (/chosen/stdout-path serial1), Bulkhead's console. The
# firmware then holds the VPU core clock steady and sets the mini UART up for 115200 baud.
enable_uart=1
# The GIC-400 (Bulkhead runs guests on its virtualization extensions), not the legacy
# interrupt controller. The Pi 4's default; said here because Bulkhead depends on it.
enable_gic=1
# No device_tree= line: the firmware picks the board's own DTB (bcm2711-rpi-4-b.dtb,
# bcm2711-rpi-400.dtb or bcm2711-rpi-cm4.dtb), so one card serves the Pi 4 B, Pi 400 and CM4.
EOF_CONFIG
    if [ "$uboot" = 1 ]; then
        cat <<'EOF_CONFIG'
# U-Boot (Debian u-boot-rpi, rpi_arm64) runs boot.scr, which loads Bulkhead and the guest.
kernel=u-boot.bin
EOF_CONFIG
    else
        cat <<EOF_CONFIG
kernel=bulkhead.bin
kernel_address=$KERNEL_ADDRESS
EOF_CONFIG
    fi
    if [ "$guest" = 1 ] && [ "$uboot" = 0 ]; then
        cat <<'EOF_CONFIG'
# The guest bundle: loaded into RAM, its place written to /chosen/linux,initrd-start/end.
initramfs bundle.bin followkernel
EOF_CONFIG
    fi
} >"$tmp/config.txt"
printf '%s\n' "$CMDLINE" >"$tmp/cmdline.txt"

# The boot partition as a file.
part=$tmp/boot.img
part_sectors=$((BOOT_MB * 2048))
mkfs.vfat -C -F 32 -s 1 -n BULKHEAD -i 0b0075ed "$part" $((BOOT_MB * 1024)) >/dev/null ||
    die "mkfs.vfat failed"
export MTOOLS_SKIP_CHECK=1
files=("$RPI4_FIRMWARE_DIR/start4.elf" "$RPI4_FIRMWARE_DIR/fixup4.dat"
    "$RPI4_FIRMWARE_DIR/bootcode.bin" "$RPI4_DTB" "$tmp/config.txt" "$tmp/cmdline.txt")
for f in ${EXTRA_FILES:-}; do
    [ -f "$f" ] || die "EXTRA_FILES: '$f' is not a file"
    files+=("$f")
done
mcopy -i "$part" -o "${files[@]}" ::/ || die "mcopy failed"
mcopy -i "$part" -o "$IMAGE" ::/bulkhead.bin || die "mcopy of IMAGE failed"
mcopy -i "$part" -o "$RPI400_DTB" ::/bcm2711-rpi-400.dtb || die "mcopy of the Pi 400 DTB failed"
mcopy -i "$part" -o "$RPI_CM4_DTB" ::/bcm2711-rpi-cm4.dtb || die "mcopy of the CM4 DTB failed"
if [ "$uboot" = 1 ]; then
    uboot_script >"$tmp/boot.cmd"
    mkimage -A arm64 -O linux -T script -C none -n "Bulkhead" -d "$tmp/boot.cmd" "$tmp/boot.scr" >/dev/null ||
        die "mkimage (boot.scr) failed"
    mcopy -i "$part" -o "$UBOOT_RPI" "$tmp/boot.cmd" "$tmp/boot.scr" ::/ || die "mcopy of U-Boot failed"
    if [ "$guest" = 1 ]; then
        mcopy -i "$part" -o "$KERNEL" ::/Image || die "mcopy of the guest kernel failed"
        mcopy -i "$part" -o "$INITRD" ::/initrd.gz || die "mcopy of the guest initrd failed"
    fi
elif [ "$guest" = 1 ]; then
    mcopy -i "$part" -o "$BUNDLE" ::/bundle.bin || die "mcopy of the bundle failed (BOOT_MB too small?)"
fi

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
# The file is a power of two long (the space after the partition stays unallocated): QEMU's
# raspi4b only takes such SD card images (-drive if=sd), e.g. for the U-Boot route.
card_bytes=1048576
while [ "$card_bytes" -lt $((total_sectors * 512)) ]; do card_bytes=$((card_bytes * 2)); done
truncate -s "$card_bytes" "$OUT"
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
expected=(start4.elf fixup4.dat bootcode.bin bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb bcm2711-rpi-cm4.dtb
    config.txt cmdline.txt bulkhead.bin)
if [ "$uboot" = 1 ]; then
    expected+=(u-boot.bin boot.scr)
    [ "$guest" = 0 ] || expected+=(Image initrd.gz)
elif [ "$guest" = 1 ]; then
    expected+=(bundle.bin)
fi
for f in "${expected[@]}"; do
    grep -qi "/$f\$" <<<"$listing" || die "$f missing from the boot partition"
done
echo "mkimage-rpi4: wrote $OUT ($((card_bytes >> 20)) MiB; FAT32 boot partition at 1 MiB;" \
    "cmdline.txt \"$CMDLINE\"${BUNDLE:+; guest bundle $(stat -c %s "$BUNDLE") bytes})" >&2
echo "SDCARD=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
