#!/usr/bin/env bash
# Installs what Bulkhead needs on a fresh Debian 12 machine. Idempotent: each step
# checks first and only installs what is missing. Sourced by run.sh and test.sh.
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

log() { printf 'setup: %s\n' "$*" >&2; }

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq >&2
        apt_updated=1
    fi
}

# QEMU >= 9 (raspi4b, GICv2/v3 virtualization) comes from bookworm-backports.
qemu_ok() {
    command -v qemu-system-aarch64 >/dev/null 2>&1 || return 1
    local major
    major=$(qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [ "${major:-0}" -ge 9 ]
}

if ! qemu_ok; then
    if grep -q 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            log "adding bookworm-backports"
            echo 'deb http://deb.debian.org/debian bookworm-backports main' |
                $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
        fi
        apt_update_once
        log "installing qemu-system-arm from bookworm-backports"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports \
            qemu-system-arm >&2
    else
        apt_update_once
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-system-arm >&2
    fi
    qemu_ok || { log "FATAL: need qemu-system-aarch64 >= 9"; exit 1; }
fi

need_pkgs=()
command -v dtc >/dev/null 2>&1 || need_pkgs+=(device-tree-compiler)
command -v cpio >/dev/null 2>&1 || need_pkgs+=(cpio)
command -v mkfs.vfat >/dev/null 2>&1 || need_pkgs+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need_pkgs+=(mtools)
command -v gzip >/dev/null 2>&1 || need_pkgs+=(gzip)
command -v mkimage >/dev/null 2>&1 || need_pkgs+=(u-boot-tools)   # boot.scr for the U-Boot card
if [ ${#need_pkgs[@]} -gt 0 ]; then
    apt_update_once
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

# RUSTUP_AUTO_INSTALL=0 silently skips targets from rust-toolchain.toml: add them explicitly.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml 2>/dev/null || true)
toolchain=${toolchain:-1.95.0}
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -q aarch64-unknown-none-softfloat; then
    log "rustup target add aarch64-unknown-none-softfloat ($toolchain)"
    rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy >&2 || true
    rustup target add --toolchain "$toolchain" aarch64-unknown-none-softfloat >&2
fi
# rust-objcopy (ELF -> flat Image) ships with rustc but needs the llvm-tools component.
sysroot=$(rustc +"$toolchain" --print sysroot)
if ! "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy" --version >/dev/null 2>&1; then
    log "rustup component add llvm-tools ($toolchain)"
    rustup component add --toolchain "$toolchain" llvm-tools >&2
fi
