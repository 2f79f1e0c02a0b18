#!/usr/bin/env bash
# Null-hypercall round trip under Bulkhead, in instructions: the probe guest times 1000
# PSCI_VERSION HVCs against the same loop with NOPs, under `-icount shift=0` (1 ns of guest
# time = 1 instruction, guest and hypervisor together).
#
#   scripts/bench-hvc.sh   ->  hvc_roundtrip_insns=N
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
probe=$(scripts/build-guests.sh)
log=$(mktemp)
timeout 300 scripts/run.sh --kernel "$probe" --smp 2 --mem 256M --icount </dev/null >"$log" 2>&1
tr -d '\r' < "$log" | grep -a 'PROBE: hvc_\|PROBE: DONE' >&2
tr -d '\r' < "$log" | sed -n 's/^PROBE: hvc_roundtrip_ns_per_call=\([0-9]*\)/hvc_roundtrip_insns=\1/p'
rm -f "$log"
