#!/usr/bin/env bash
# Fetches the guest assets Bulkhead's tests and scripts boot, from Debian's archive,
# without touching the host's apt setup.
#
# Usage: scripts/assets.sh [kernel|initramfs|rpi4-firmware|u-boot-rpi|qemu-plugin-header|all|versions|refresh]...
#   kernel         Debian's arm64 kernel Image (uncompressed, boots as-is) + the BCM2711 DTBs
#                  (bcm2711-rpi-4-b.dtb, bcm2711-rpi-400.dtb, bcm2711-rpi-cm4-io.dtb)
#   initramfs      busybox initramfs (cpio newc + gzip) with tests/guest-init/init as /init
#   rpi4-firmware  start4.elf, fixup4.dat, bootcode.bin from raspi-firmware (non-free-firmware)
#   u-boot-rpi     Debian's U-Boot for 64-bit Raspberry Pis (u-boot-rpi: rpi_arm64/u-boot.bin)
#   qemu-plugin-header  QEMU's qemu-plugin.h, from Debian's source package of the installed QEMU
#   all            kernel, initramfs, rpi4-firmware (the default)
#   versions       print $CACHE/versions.txt
#   refresh        forget the stamps (and the apt lists) so the next run fetches the newest
# Prints the resulting paths as KEY=VALUE lines on stdout (KERNEL=, RPI4_DTB=, RPI400_DTB=,
# RPI_CM4_DTB=, INITRD=,
# BUSYBOX=, RPI4_FIRMWARE_DIR=, UBOOT_RPI=, QEMU_PLUGIN_H=); everything else goes to stderr. Fails loudly on any error.
#
# How: a private APT_CONFIG whose only sources are `[arch=arm64]` bookworm (main,
# non-free-firmware), bookworm-updates and bookworm-security, with Dir::State / Dir::Cache in
# the cache folder (plus a deb-src line for QEMU's source); `apt-get update`, `apt-get download`, `dpkg-deb -x`. No root, no
# `dpkg --add-architecture`. The archive drops superseded (security) kernels, so the kernel
# package is resolved from linux-image-arm64's dependency at run time, and a failed download
# triggers one fresh `apt-get update` and a retry.
#
# Cache: $BULKHEAD_CACHE, default <repo>/.cache. Each asset has a stamp file
# ($CACHE/stamps/<asset>) holding the version it was made from; an asset whose stamp and files
# exist is not fetched again. The initramfs stamp includes a hash of tests/guest-init/init, so
# editing the init script rebuilds it. Versions are recorded in $CACHE/versions.txt.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BULKHEAD_CACHE:-$REPO/.cache}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

APT_DIR=$CACHE/apt
DEB_DIR=$CACHE/debs
STAMP_DIR=$CACHE/stamps
KERNEL_DIR=$CACHE/kernel
BUSYBOX_DIR=$CACHE/busybox
INITRAMFS_DIR=$CACHE/initramfs
FIRMWARE_DIR=$CACHE/rpi4-firmware
VERSIONS=$CACHE/versions.txt
INIT_SCRIPT=$REPO/tests/guest-init/init

log() { printf 'assets: %s\n' "$*" >&2; }
die() {
    printf 'assets: ERROR: %s\n' "$*" >&2
    exit 1
}

need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found (install the Debian package '$2'; scripts/setup.sh does)"
}

# --- private apt ----------------------------------------------------------------------------

write_apt_config() {
    mkdir -p "$APT_DIR/etc/sources.list.d" "$APT_DIR/etc/preferences.d" "$APT_DIR/etc/apt.conf.d" \
        "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$DEB_DIR"
    [ -f "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"
    local src="[arch=arm64 signed-by=$KEYRING]"
    cat >"$APT_DIR/etc/sources.list" <<EOF
deb $src $MIRROR $SUITE main non-free-firmware
deb $src $MIRROR $SUITE-updates main non-free-firmware
deb $src $SECURITY_MIRROR $SUITE-security main non-free-firmware
deb-src [signed-by=$KEYRING] $MIRROR $SUITE-backports main
EOF
    : >"$APT_DIR/state/status"
    # Everything apt reads or writes is redirected into the cache, so the host's sources,
    # pins, lists and dpkg database are neither used nor modified.
    cat >"$APT_DIR/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
APT::Get::AllowUnauthenticated "false";
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Dir::Etc "$APT_DIR/etc";
Dir::Etc::sourcelist "$APT_DIR/etc/sources.list";
Dir::Etc::sourceparts "$APT_DIR/etc/sources.list.d";
Dir::Etc::preferences "$APT_DIR/etc/preferences";
Dir::Etc::preferencesparts "$APT_DIR/etc/preferences.d";
Dir::Etc::parts "$APT_DIR/etc/apt.conf.d";
Dir::State "$APT_DIR/state";
Dir::State::status "$APT_DIR/state/status";
Dir::Cache "$APT_DIR/cache";
Debug::NoLocking "true";
EOF
    # apt drops to the _apt user for downloads, which cannot write into a root-owned cache.
    if [ "$(id -u)" = 0 ]; then
        echo 'APT::Sandbox::User "root";' >>"$APT_DIR/apt.conf"
    fi
}

apt_private() { APT_CONFIG=$APT_DIR/apt.conf "$@"; }

apt_updated_now=0
apt_update() {
    write_apt_config
    log "apt-get update (private arm64 lists in $APT_DIR)"
    apt_private apt-get update -qq -o APT::Update::Error-Mode=any >&2 || die "apt-get update failed"
    date -u +%FT%TZ >"$APT_DIR/updated"
    apt_updated_now=1
}

apt_ready() {
    if [ ! -f "$APT_DIR/updated" ] || [ ! -f "$APT_DIR/apt.conf" ]; then
        apt_update
    fi
}

# Candidate version of a package in the private lists.
pkg_version() {
    apt_private apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -1
}

# Downloads PKG's candidate .deb into $DEB_DIR and prints its path. Retries once after a fresh
# `apt-get update` (the lists may name a version the archive has since dropped).
download_deb() {
    local pkg=$1 try ver deb part
    for try in 1 2; do
        ver=$(pkg_version "$pkg")
        if [ -n "$ver" ]; then
            # Files are named PKG_VERSION_ARCH.deb with ':' (epoch) escaped; ARCH may be "all".
            deb=$(find "$DEB_DIR" -maxdepth 1 -name "${pkg}_${ver//:/%3a}_*.deb" | head -1)
            if [ -n "$deb" ]; then
                printf '%s\n' "$deb"
                return 0
            fi
            log "downloading $pkg $ver"
            part=$DEB_DIR/partial.$$
            rm -rf "$part"
            mkdir -p "$part"
            if (cd "$part" && apt_private apt-get download -qq "$pkg=$ver" >&2); then
                deb=$(find "$part" -maxdepth 1 -name '*.deb' | head -1)
                [ -n "$deb" ] || die "apt-get download $pkg=$ver produced no .deb"
                mv "$deb" "$DEB_DIR/"
                rm -rf "$part"
                printf '%s\n' "$DEB_DIR/$(basename "$deb")"
                return 0
            fi
            rm -rf "$part"
        fi
        [ "$try" = 1 ] && [ "$apt_updated_now" = 0 ] || break
        log "$pkg: not found or download failed; refreshing the lists"
        apt_update
    done
    die "cannot download arm64 package '$pkg'"
}

# The versioned kernel package linux-image-arm64 currently depends on
# (e.g. linux-image-6.1.0-41-arm64).
resolve_kernel_pkg() {
    local dep
    dep=$(apt_private apt-cache show --no-all-versions linux-image-arm64 2>/dev/null |
        sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/^ *//; s/ .*//' |
        grep -E '^linux-image-[0-9].*-arm64$' | head -1)
    if [ -z "$dep" ] && [ "$apt_updated_now" = 0 ]; then
        apt_update
        dep=$(apt_private apt-cache show --no-all-versions linux-image-arm64 2>/dev/null |
            sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/^ *//; s/ .*//' |
            grep -E '^linux-image-[0-9].*-arm64$' | head -1)
    fi
    [ -n "$dep" ] || die "cannot resolve linux-image-arm64's kernel dependency"
    printf '%s\n' "$dep"
}

# --- stamps and versions -----------------------------------------------------------------------

stamp_ok() { # ASSET FILE... : stamp present and every file exists
    local asset=$1
    shift
    [ -s "$STAMP_DIR/$asset" ] || return 1
    local f
    for f in "$@"; do [ -s "$f" ] || return 1; done
}

stamp_write() { # ASSET VALUE
    mkdir -p "$STAMP_DIR"
    printf '%s\n' "$2" >"$STAMP_DIR/$1"
}

record_version() { # KEY VALUE
    mkdir -p "$CACHE"
    touch "$VERSIONS"
    grep -v "^$1=" "$VERSIONS" >"$VERSIONS.tmp" || true
    printf '%s=%s\n' "$1" "$2" >>"$VERSIONS.tmp"
    sort "$VERSIONS.tmp" >"$VERSIONS"
    rm -f "$VERSIONS.tmp"
}

extract_deb() { # DEB DIR
    rm -rf "$2"
    mkdir -p "$2"
    dpkg-deb -x "$1" "$2" || die "dpkg-deb -x $1 failed"
}

# --- assets ------------------------------------------------------------------------------------

# An arm64 Linux Image has the magic "ARM\x64" at offset 0x38.
check_arm64_image() {
    local magic
    magic=$(od -An -tx1 -j 0x38 -N 4 "$1" | tr -d ' \n')
    [ "$magic" = 41524d64 ] || die "$1 is not an uncompressed arm64 Image (magic at 0x38: $magic)"
}

do_kernel() {
    # The BCM2711 boards' DTBs: Raspberry Pi 4 B, Pi 400, and CM4 (on its IO board).
    local dtbs=(bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb bcm2711-rpi-cm4-io.dtb)
    if stamp_ok kernel "$KERNEL_DIR/Image" "${dtbs[@]/#/$KERNEL_DIR/}"; then
        log "kernel: cached ($(cat "$STAMP_DIR/kernel"))"
    else
        apt_ready
        local pkg deb ver tmp vmlinuz dtb
        pkg=$(resolve_kernel_pkg)
        deb=$(download_deb "$pkg")
        ver=$(dpkg-deb -f "$deb" Version)
        tmp=$CACHE/extract/$pkg
        extract_deb "$deb" "$tmp"
        vmlinuz=$(find "$tmp/boot" -name 'vmlinuz-*' | head -1)
        [ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $deb"
        check_arm64_image "$vmlinuz"
        mkdir -p "$KERNEL_DIR"
        for name in "${dtbs[@]}"; do
            dtb=$(find "$tmp/usr/lib" -path "*/broadcom/$name" | head -1)
            [ -n "$dtb" ] || die "no broadcom/$name in $deb"
            cp "$dtb" "$KERNEL_DIR/$name.tmp" && mv "$KERNEL_DIR/$name.tmp" "$KERNEL_DIR/$name"
        done
        cp "$vmlinuz" "$KERNEL_DIR/Image.tmp" && mv "$KERNEL_DIR/Image.tmp" "$KERNEL_DIR/Image"
        rm -rf "$tmp"
        record_version kernel "$pkg $ver"
        stamp_write kernel "$pkg $ver"
        log "kernel: $pkg $ver"
    fi
    echo "KERNEL=$KERNEL_DIR/Image"
    echo "RPI4_DTB=$KERNEL_DIR/bcm2711-rpi-4-b.dtb"
    echo "RPI400_DTB=$KERNEL_DIR/bcm2711-rpi-400.dtb"
    echo "RPI_CM4_DTB=$KERNEL_DIR/bcm2711-rpi-cm4-io.dtb"
}

do_busybox() {
    if stamp_ok busybox "$BUSYBOX_DIR/busybox"; then
        log "busybox: cached ($(cat "$STAMP_DIR/busybox"))"
    else
        apt_ready
        local deb ver tmp
        deb=$(download_deb busybox-static)
        ver=$(dpkg-deb -f "$deb" Version)
        tmp=$CACHE/extract/busybox-static
        extract_deb "$deb" "$tmp"
        [ -f "$tmp/bin/busybox" ] || die "no /bin/busybox in $deb"
        mkdir -p "$BUSYBOX_DIR"
        cp "$tmp/bin/busybox" "$BUSYBOX_DIR/busybox"
        chmod 755 "$BUSYBOX_DIR/busybox"
        rm -rf "$tmp"
        record_version busybox-static "$ver"
        stamp_write busybox "busybox-static $ver"
        log "busybox: busybox-static $ver"
    fi
    echo "BUSYBOX=$BUSYBOX_DIR/busybox"
}

do_initramfs() {
    [ -f "$INIT_SCRIPT" ] || die "$INIT_SCRIPT missing"
    do_busybox >/dev/null
    local want
    want="$(cat "$STAMP_DIR/busybox") init-sha256=$(sha256sum "$INIT_SCRIPT" | cut -d' ' -f1)"
    if stamp_ok initramfs "$INITRAMFS_DIR/initrd.gz" && [ "$(cat "$STAMP_DIR/initramfs")" = "$want" ]; then
        log "initramfs: cached"
    else
        need_tool cpio cpio
        need_tool gzip gzip
        local root=$CACHE/extract/initramfs-root
        rm -rf "$root"
        mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,root,etc,usr/bin,usr/sbin}
        cp "$BUSYBOX_DIR/busybox" "$root/bin/busybox"
        # The applet links are made by /init (`busybox --install -s`) at boot: the arm64
        # binary cannot run on the build host. /bin/sh must exist before that, for /init's #!.
        ln -s busybox "$root/bin/sh"
        install -m 755 "$INIT_SCRIPT" "$root/init"
        # The kernel's built-in initramfs already has /dev/console; add it too when we can, so
        # the archive also works with kernels built without that default.
        if [ "$(id -u)" = 0 ]; then
            mknod -m 600 "$root/dev/console" c 5 1
        fi
        mkdir -p "$INITRAMFS_DIR"
        (cd "$root" && find . -print0 | LC_ALL=C sort -z |
            cpio --null -o -H newc --owner=0:0 --quiet) | gzip -9 -n >"$INITRAMFS_DIR/initrd.gz.tmp"
        mv "$INITRAMFS_DIR/initrd.gz.tmp" "$INITRAMFS_DIR/initrd.gz"
        rm -rf "$root"
        stamp_write initramfs "$want"
        log "initramfs: built $(stat -c %s "$INITRAMFS_DIR/initrd.gz") bytes"
    fi
    echo "INITRD=$INITRAMFS_DIR/initrd.gz"
}

do_rpi4_firmware() {
    local files=(start4.elf fixup4.dat bootcode.bin)
    if stamp_ok rpi4-firmware "${files[@]/#/$FIRMWARE_DIR/}"; then
        log "rpi4-firmware: cached ($(cat "$STAMP_DIR/rpi4-firmware"))"
    else
        apt_ready
        local deb ver tmp f src
        deb=$(download_deb raspi-firmware)
        ver=$(dpkg-deb -f "$deb" Version)
        tmp=$CACHE/extract/raspi-firmware
        extract_deb "$deb" "$tmp"
        mkdir -p "$FIRMWARE_DIR"
        for f in "${files[@]}"; do
            src=$(find "$tmp" -name "$f" -type f | head -1)
            [ -n "$src" ] || die "no $f in $deb"
            cp "$src" "$FIRMWARE_DIR/$f"
        done
        rm -rf "$tmp"
        record_version raspi-firmware "$ver"
        stamp_write rpi4-firmware "raspi-firmware $ver"
        log "rpi4-firmware: raspi-firmware $ver"
    fi
    echo "RPI4_FIRMWARE_DIR=$FIRMWARE_DIR"
}

do_uboot_rpi() {
    local dir=$CACHE/u-boot-rpi
    if stamp_ok u-boot-rpi "$dir/u-boot.bin"; then
        log "u-boot-rpi: cached ($(cat "$STAMP_DIR/u-boot-rpi"))"
    else
        apt_ready
        local deb ver tmp src
        deb=$(download_deb u-boot-rpi)
        ver=$(dpkg-deb -f "$deb" Version)
        tmp=$CACHE/extract/u-boot-rpi
        extract_deb "$deb" "$tmp"
        src=$tmp/usr/lib/u-boot/rpi_arm64/u-boot.bin
        [ -f "$src" ] || die "no usr/lib/u-boot/rpi_arm64/u-boot.bin in $deb"
        mkdir -p "$dir"
        cp "$src" "$dir/u-boot.bin"
        rm -rf "$tmp"
        record_version u-boot-rpi "$ver"
        stamp_write u-boot-rpi "u-boot-rpi $ver"
        log "u-boot-rpi: u-boot-rpi $ver"
    fi
    echo "UBOOT_RPI=$dir/u-boot.bin"
}

# QEMU's plugin API header (qemu-plugin.h) for scripts/icount-plugin. No Debian binary package
# ships it, so it is taken from Debian's source package of the installed QEMU (the deb-src
# bookworm-backports line above; setup.sh installs QEMU from there). Version-matched: the
# header's QEMU_PLUGIN_VERSION must be one the running QEMU accepts.
do_qemu_plugin_header() {
    local dir=$CACHE/qemu-plugin hdr
    hdr=$dir/qemu-plugin.h
    local installed
    installed=$(dpkg-query -W -f '${source:Version}' qemu-system-arm 2>/dev/null || true)
    [ -n "$installed" ] || die "qemu-system-arm is not installed (run scripts/setup.sh)"
    if stamp_ok qemu-plugin-header "$hdr" && [ "$(cat "$STAMP_DIR/qemu-plugin-header")" = "qemu $installed" ]; then
        log "qemu-plugin.h: cached (qemu $installed)"
    else
        apt_ready
        local ver tmp orig
        ver=$installed
        tmp=$CACHE/extract/qemu-src
        rm -rf "$tmp"
        mkdir -p "$tmp"
        log "downloading the qemu $ver source package for qemu-plugin.h"
        # Only the upstream tarball is needed. The archive may already have dropped this
        # backport's .dsc/.debian.tar (404) while keeping the shared orig tarball, which apt
        # still fetches and checks against the Sources index: accept that partial result.
        (cd "$tmp" && apt_private apt-get source --download-only -qq "qemu=$ver" >&2) ||
            log "apt-get source reported errors; looking for the orig tarball anyway"
        if ! find "$tmp" -maxdepth 1 -name 'qemu_*.orig.tar.*' | grep -q .; then
            apt_update
            (cd "$tmp" && apt_private apt-get source --download-only -qq "qemu=$ver" >&2) || true
        fi
        orig=$(find "$tmp" -maxdepth 1 -name 'qemu_*.orig.tar.*' | head -1)
        [ -n "$orig" ] || die "no qemu orig tarball downloaded"
        tar -xf "$orig" -C "$tmp" --wildcards '*/include/qemu/qemu-plugin.h' ||
            die "no include/qemu/qemu-plugin.h in $orig"
        mkdir -p "$dir"
        find "$tmp" -path '*/include/qemu/qemu-plugin.h' -exec cp {} "$hdr" \;
        [ -s "$hdr" ] || die "qemu-plugin.h extraction failed"
        rm -rf "$tmp"
        record_version qemu-plugin-header "qemu $ver"
        stamp_write qemu-plugin-header "qemu $installed"
        log "qemu-plugin.h: from qemu $ver"
    fi
    echo "QEMU_PLUGIN_H=$hdr"
}

main() {
    need_tool apt-get apt
    need_tool dpkg-deb dpkg
    need_tool od coreutils
    mkdir -p "$CACHE"
    [ $# -gt 0 ] || set -- all
    local cmd
    for cmd in "$@"; do
        case "$cmd" in
        kernel) do_kernel ;;
        busybox) do_busybox ;;
        initramfs | initrd) do_initramfs ;;
        rpi4-firmware | firmware) do_rpi4_firmware ;;
        u-boot-rpi) do_uboot_rpi ;;
        qemu-plugin-header) do_qemu_plugin_header ;;
        all)
            do_kernel
            do_initramfs
            do_rpi4_firmware
            ;;
        versions) cat "$VERSIONS" ;;
        refresh)
            rm -rf "$STAMP_DIR" "$APT_DIR/updated"
            log "stamps cleared; the next run fetches the newest versions"
            ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
        *) die "unknown subcommand '$cmd' (kernel|initramfs|rpi4-firmware|u-boot-rpi|qemu-plugin-header|all|versions|refresh)" ;;
        esac
    done
}

main "$@"
