#!/usr/bin/env bash
# Runs all of Bulkhead's tests: host unit tests, the QEMU boot tests in tests/ (no-guest boots
# on virt GICv3/GICv2/1 CPU and raspi4b, hotplug, EL1 entry, Debian Linux SMP guests on GICv3
# and GICv2, 1 vCPU, reboot cycle, the PSCI probe guest with 8- and 2-bit VMIDs, the Raspberry
# Pi 4 SD cards booted from their own files) and the loom models of the concurrent core.
# Installs what is missing on a fresh Debian 12 machine first.
#
#   scripts/test.sh              # everything
#   scripts/test.sh --no-models  # skip the loom models (about 2 minutes)
#   scripts/test.sh --models     # only the loom models
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

models=1 others=1
for arg in "$@"; do
    case "$arg" in
        --models) others=0 ;;
        --no-models) models=0 ;;
        *) echo "test.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

scripts/setup.sh
if [ "$others" = 1 ]; then
    # Everything the tests use, fetched once here rather than by parallel tests at once.
    scripts/assets.sh kernel initramfs rpi4-firmware u-boot-rpi >/dev/null
    BULKHEAD_IMAGE=$(scripts/build.sh)
    BULKHEAD_PROBE=$(scripts/build-guests.sh)
    export BULKHEAD_IMAGE BULKHEAD_PROBE
    # Two QEMU boots at a time: each takes one host core under TCG.
    cargo test -- --test-threads=2
fi
if [ "$models" = 1 ]; then
    scripts/test-models.sh
fi
