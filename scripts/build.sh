#!/usr/bin/env bash
# Builds the Bulkhead image: target/image/bulkhead.bin (flat, with a Linux arm64 Image header).
# Uses its own target dir so it can run from inside `cargo test` without waiting on its lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="$PWD/target/image"
cargo build --release --target aarch64-unknown-none-softfloat --bin bulkhead >&2
elf="$CARGO_TARGET_DIR/aarch64-unknown-none-softfloat/release/bulkhead"
objcopy="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy"
"$objcopy" -O binary "$elf" "$CARGO_TARGET_DIR/bulkhead.bin"
echo "$CARGO_TARGET_DIR/bulkhead.bin"
