#!/usr/bin/env bash
# Builds Bulkhead's own test guests into flat binaries (with an arm64 Image header) and ELF
# files under target/guests/.
#   target/guests/psci-probe.bin  - PSCI/SMCCC/abort probe (guests/psci-probe), load at 0x40080000
#   target/guests/psci-probe.elf  - the same, as an ELF64 executable (entry 0x40080000)
# Usage: scripts/build-guests.sh   (prints the path of each binary it built)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." >/dev/null && pwd)
target=aarch64-unknown-none-softfloat
out="$repo/target/guests"
toolchain=1.95.0

sysroot=$(rustc +"$toolchain" --print sysroot)
objcopy="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy"
# rust-objcopy ships with rustc but needs the libLLVM that comes with the llvm-tools component.
if ! "$objcopy" --version >/dev/null 2>&1; then
    rustup component add llvm-tools --toolchain "$toolchain" >&2
fi
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -qx "$target"; then
    rustup target add "$target" --toolchain "$toolchain" >&2
fi

mkdir -p "$out"
build_guest() {
    local name=$1
    (cd "$repo/guests/$name" >/dev/null &&
        cargo +"$toolchain" build --release --target "$target" --target-dir "$out/cargo" >&2)
    local elf="$out/cargo/$target/release/$name"
    "$objcopy" -O binary "$elf" "$out/$name.bin"
    cp "$elf" "$out/$name.elf"
    echo "$out/$name.bin"
}

build_guest psci-probe
