#!/usr/bin/env bash
# `cargo run --target aarch64-unknown-none-softfloat` runner: turns the ELF cargo built into the
# flat Image and boots it through scripts/run.sh (no guest unless arguments say otherwise).
set -euo pipefail
elf=$1; shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
objcopy="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy"
"$objcopy" -O binary "$elf" "$elf.bin"
[ $# -gt 0 ] || set -- --no-guest
exec "$repo/scripts/run.sh" --image "$elf.bin" "$@"
