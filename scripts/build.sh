#!/usr/bin/env bash
# Builds the Bulkhead image: target/image/bulkhead.bin (flat, with a Linux arm64 Image header).
# Uses its own target dir so it can run from inside `cargo test` without waiting on its lock.
# `--debug`: the unoptimised build instead (target/image/bulkhead-debug.bin; see build.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="$PWD/target/image"
profile=release flags=(--release) bin=bulkhead.bin
case "${1:-}" in
    "") ;;
    --debug) profile=debug flags=() bin=bulkhead-debug.bin ;;
    *) echo "build.sh: unknown argument $1 (only --debug)" >&2; exit 2 ;;
esac
cargo build "${flags[@]}" --target aarch64-unknown-none-softfloat --bin bulkhead >&2
elf="$CARGO_TARGET_DIR/aarch64-unknown-none-softfloat/$profile/bulkhead"
objcopy="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy"
"$objcopy" -O binary "$elf" "$CARGO_TARGET_DIR/$bin"
echo "$CARGO_TARGET_DIR/$bin"
