#!/usr/bin/env bash
# Round trip between two VMs on different CPUs, through Xen-style static shared memory and
# Bulkhead's doorbells: the probe's ping VM writes a message, rings the pong VM (an SPI in its
# vGIC), the pong VM checks it, answers and rings back; 1000 rounds under `-icount shift=0`
# (1 ns of guest time = 1 instruction, guests and hypervisor together).
#
#   scripts/bench-doorbell.sh [--gic 2|3]   ->  doorbell_roundtrip_insns=N
#
# The receivers poll their distributor's pending bit (each poll is an emulated GICD read) and
# `yield` between polls, so the figure includes the waiting side's polling.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
gic=3
[ "${1:-}" = --gic ] && gic=$2
scripts/setup.sh
probe=$(scripts/build-guests.sh)
log=$(mktemp)
shm="shm=pingpong@0x7fe00000+0x200000"
timeout 300 scripts/run.sh --smp 2 --gic "$gic" --icount --hyp-append "bulkhead.console_idle_ms=5000" \
    --vm "name=ping,kernel=$probe,mem=128M,$shm/owner,bell=pong@5,append=probe.pingpong=ping probe.pingpong_rounds=1000" \
    --vm "name=pong,kernel=$probe,mem=128M,$shm,bell=ping@6,append=probe.pingpong=pong probe.pingpong_rounds=1000" \
    </dev/null >"$log" 2>&1
tr -d '\r' <"$log" | grep -a 'pingpong rounds=\|PASS pingpong_answers\|FAIL' >&2 || true
grep -aq 'ping: PROBE: PASS pingpong_answers_match' "$log" || { echo "bench-doorbell.sh: ping-pong failed; log: $log" >&2; exit 1; }
tr -d '\r' <"$log" | sed -n 's/^ping: PROBE: pingpong_ns_per_round=\([0-9]*\)/doorbell_roundtrip_insns=\1/p'
rm -f "$log"
