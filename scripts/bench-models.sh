#!/usr/bin/env bash
# Host benchmarks of the VMID allocator: fast path ns/call with 1 and 2 threads
# (and proof it takes no lock), rollover and slow-path cost for 4/16/64/256 simulated CPUs.
# Built with the release settings (`bench` profile). Numbers are wall time on this host.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench models "$@"
