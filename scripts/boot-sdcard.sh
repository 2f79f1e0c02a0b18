#!/usr/bin/env bash
# Boots a Raspberry Pi 4 SD card image under QEMU raspi4b the way the Pi firmware boots it,
# from the card's own files. Run it as `scripts/run.sh --sdcard CARD` (which installs what is
# missing first).
#
# Usage: scripts/boot-sdcard.sh CARD.img [EXTRA QEMU ARGS...]
#
# What QEMU stands in for (the firmware, start4.elf, cannot run under QEMU): it reads the first
# MBR partition (FAT) with mtools and follows config.txt:
#   kernel=FILE                 -> -kernel FILE (entered at EL2, x0 = DTB; CPUs 1-3 on the
#                                  spin-table, as the firmware's armstub leaves them)
#   device_tree=FILE            -> -dtb FILE (default bcm2711-rpi-4-b.dtb, a Pi 4 B's)
#   initramfs FILE [ADDRESS]    -> -initrd FILE: QEMU writes /chosen/linux,initrd-start/end
#   cmdline=FILE                -> -append "$(cat FILE)" (default cmdline.txt) into /chosen/bootargs
#   the card itself             -> -drive if=sd (for U-Boot, whose boot.scr reads the card)
# The console is the mini UART (the DTB's stdout-path), QEMU's second serial port; the first
# (the PL011) goes nowhere. The firmware's own additions to bootargs, and its RAM above 1 GiB,
# are not imitated (QEMU describes 960 MiB at 0).
set -euo pipefail

die() {
    printf 'boot-sdcard: ERROR: %s\n' "$*" >&2
    exit 1
}
[ $# -ge 1 ] || die "usage: $0 CARD.img [EXTRA QEMU ARGS...]"
card=$1
shift
[ -f "$card" ] || die "'$card' is not a file"
command -v mcopy >/dev/null 2>&1 || die "'mcopy' not found (mtools; run scripts/setup.sh)"
[ "$(od -An -tx1 -j 510 -N 2 "$card" | tr -d ' \n')" = 55aa ] || die "$card: no MBR signature"
# First partition entry at 0x1be: type at +4, first LBA (little-endian) at +8.
type=$(od -An -tx1 -j $((0x1be + 4)) -N 1 "$card" | tr -d ' \n')
case "$type" in 0b|0c|0e|06) ;; *) die "$card: partition 1 has type 0x$type, not FAT" ;; esac
lba=$(od -An -tu4 --endian=little -j $((0x1be + 8)) -N 4 "$card" | tr -d ' \n')
fat="$card@@$((lba * 512))"
export MTOOLS_SKIP_CHECK=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
get() { # FILE-ON-CARD -> local path
    local name=$1
    mcopy -i "$fat" -n "::/$name" "$tmp/$(basename "$name")" 2>/dev/null || die "$card: no $name on the boot partition"
    echo "$tmp/$(basename "$name")"
}

config=$(get config.txt)
# config.txt: key=value lines, '#' comments; the initramfs line is "initramfs FILE [ADDRESS]".
value() { sed -n "s/^[[:space:]]*$1=\\([^#[:space:]]*\\).*/\\1/p" "$config" | tail -1; }
kernel_name=$(value kernel)
[ -n "$kernel_name" ] || die "config.txt has no kernel= line"
dtb_name=$(value device_tree)
cmdline_name=$(value cmdline)
initrd_name=$(sed -n 's/^[[:space:]]*initramfs[[:space:]]\+\([^#[:space:]]*\).*/\1/p' "$config" | tail -1)

qemu=(qemu-system-aarch64 -M raspi4b -smp 4 -accel tcg,thread=single -no-reboot -display none)
if [ -t 0 ]; then
    qemu+=(-serial null -serial mon:stdio)       # Ctrl-A x quits
else
    qemu+=(-monitor none -serial null -serial stdio)
fi
qemu+=(-kernel "$(get "$kernel_name")" -dtb "$(get "${dtb_name:-bcm2711-rpi-4-b.dtb}")")
[ -z "$initrd_name" ] || qemu+=(-initrd "$(get "$initrd_name")")
cmdline=$(get "${cmdline_name:-cmdline.txt}")
qemu+=(-append "$(head -1 "$cmdline")")
# The card itself, for a kernel= that reads it (U-Boot's boot.scr); its writes are discarded.
# QEMU takes only SD images a power of two long (mkimage-rpi4.sh makes them so).
size=$(stat -c %s "$card")
if [ $((size & (size - 1))) = 0 ]; then
    qemu+=(-drive "if=sd,format=raw,snapshot=on,file=${card//,/,,}")   # QEMU doubles commas
else
    echo "boot-sdcard: $card is not a power of two long: not attached as the SD card" >&2
fi
{ printf '+'; printf ' %q' "${qemu[@]}" "$@"; printf '\n'; } >&2   # pasteable
# Not exec: the trap removes the extracted files when QEMU ends.
"${qemu[@]}" "$@"
