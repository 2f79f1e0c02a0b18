#!/usr/bin/env bash
# Runs the loom model checks of the concurrent core: the VMID
# allocator (src/vmid/loom_models.rs), the vCPU request/kick protocol and PSCI power state
# (src/vcpu/loom_models.rs), and that protocol with the scheduler and a migrating vCPU
# (src/sched/loom_models.rs). They explore all interleavings of the real code on loom's atomics.
#
#   scripts/test-models.sh            # all models
#   scripts/test-models.sh rollover   # only models whose name contains "rollover"
#
# LOOM_MAX_PREEMPTIONS bounds the preemptions per explored execution (default 3 here; unset it
# with LOOM_MAX_PREEMPTIONS= for an unbounded, much longer, exhaustive search).
set -euo pipefail
cd "$(dirname "$0")/.."

filter="${1:-loom_}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS-3}"
[ -n "$LOOM_MAX_PREEMPTIONS" ] || unset LOOM_MAX_PREEMPTIONS

# A separate target directory: `--cfg loom` changes every crate's flags, and sharing
# target/ would make each plain `cargo test` rebuild everything. Release-level optimisation
# without LTO keeps both the build and the exploration fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_OPT_LEVEL=3
export CARGO_PROFILE_RELEASE_DEBUG=false

exec cargo test --release --lib -- --test-threads=2 "$filter"
