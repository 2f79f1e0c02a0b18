#!/usr/bin/env bash
# Native baseline: boots Debian's arm64 kernel + the test initramfs directly on QEMU virt (no
# hypervisor) in smoke mode and reports guest-time figures that are the same on every run.
#
# Usage: scripts/bench-native.sh [--insns] [--smp N] [--mem SIZE] [--gic 2|3]
#   --insns  also count executed instructions with scripts/icount-plugin (slower: ~2x wall)
# Output (stdout, machine-readable):
#   native_init_s=0.822413       guest time of "BULKHEAD-TEST: init reached" (/init started)
#   native_poweroff_s=1.852870   guest time of "BULKHEAD-TEST: poweroff" (smoke test done)
#   native_wall_s=5.4            host wall time of the whole QEMU run (noisy, for information)
#   native_insns_total=...       with --insns: instructions executed by all vCPUs
#   native_insns_cpuN=...        with --insns: per vCPU
#   NAME_insns_to_guest=...      with --insns and BENCH_PLUGIN_ARGS=,guest_below=ADDR: all
#                                vCPUs' instructions before the guest's first one
#
# Why guest time: with `-icount shift=0` every instruction advances the guest clock by 1 ns, so
# the timestamps the kernel prints measure work done, not host speed. `sleep=off` makes idle
# time jump to the next timer instead of following the host clock, and `dtb-randomness=off`
# drops the random rng-seed/kaslr-seed; then runs agree to ~0.01% (about 50 us of 0.86 s). They
# are not bit-identical with -smp > 1: round-robin TCG still switches vCPUs on a host-time kick
# timer, so the interleaving varies slightly (the first difference shows up during the kernel's
# X.509 key loading). A hypervisor variant should use the same -icount/-M options.
#
# For other variants (e.g. the same guest under Bulkhead), source this file and call
#   bench_boot NAME LOGFILE [--insns] -- QEMU_COMMAND...
# which runs the command (it must power off by itself), checks the smoke markers and prints
# NAME_init_s=, NAME_poweroff_s=, NAME_wall_s= (and NAME_insns_* with --insns); it returns
# non-zero (after a message on stderr) when the run failed or the markers are missing.

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}

bench_die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    return 1
}

# Guest timestamp (seconds) of the first kernel-log line containing TEXT in LOG, e.g. 0.822413
# from "[    0.822413] BULKHEAD-TEST: init reached". Empty when absent.
bench_timestamp() { # LOG TEXT
    tr -d '\r' <"$1" | grep -a -F -- "$2" | sed -n 's/^.*\[ *\([0-9][0-9]*\.[0-9]*\)\] .*$/\1/p' | head -1
}

# bench_boot NAME LOG [--insns] -- CMD...: runs CMD (a QEMU command line booting the test
# guest with bulkhead.test=smoke printk.time=1), and prints NAME_* figures.
bench_boot() {
    local name=$1 log=$2 insns=0
    shift 2
    if [ "${1:-}" = --insns ]; then
        insns=1
        shift
    fi
    [ "${1:-}" = -- ] || bench_die "bench_boot NAME LOG [--insns] -- QEMU_COMMAND..." || return 1
    shift
    local cmd=("$@") counts="$log.insns"
    if [ "$insns" = 1 ]; then
        local plugin
        plugin=$("$BENCH_REPO/scripts/icount-plugin/build.sh" | sed -n 's/^INSN_COUNT_PLUGIN=//p')
        rm -f "$counts"
        cmd+=(-plugin "$plugin${BENCH_PLUGIN_ARGS:-}" -d plugin -D "$counts")
    fi
    printf 'bench: %s: %s\n' "$name" "${cmd[*]}" >&2
    local start end rc=0
    start=$(date +%s.%N)
    timeout "$BENCH_TIMEOUT" "${cmd[@]}" </dev/null >"$log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    [ "$rc" = 0 ] || bench_die "$name: QEMU exited with $rc (timeout $BENCH_TIMEOUT s: 124); log: $log" || return 1
    grep -a -q 'BULKHEAD-TEST: smoke passed' "$log" ||
        bench_die "$name: no 'BULKHEAD-TEST: smoke passed' in $log" || return 1

    local init_s poweroff_s
    init_s=$(bench_timestamp "$log" 'BULKHEAD-TEST: init reached')
    poweroff_s=$(bench_timestamp "$log" 'BULKHEAD-TEST: poweroff')
    [ -n "$init_s" ] && [ -n "$poweroff_s" ] ||
        bench_die "$name: markers without timestamps in $log (printk.time=1?)" || return 1
    echo "${name}_init_s=$init_s"
    echo "${name}_poweroff_s=$poweroff_s"
    echo "${name}_wall_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
    if [ "$insns" = 1 ]; then
        [ -s "$counts" ] || bench_die "$name: no instruction counts in $counts" || return 1
        sed -n 's/^insn-count: total=\([0-9]*\).*/'"$name"'_insns_total=\1/p; s/^insn-count: cpu\([0-9]*\)=\([0-9]*\)$/'"$name"'_insns_cpu\1=\2/p; s/^insn-count: first_guest_total=\([0-9]*\)$/'"$name"'_insns_to_guest=\1/p' "$counts"
    fi
}

bench_native_main() {
    local insns=() smp=4 mem=512M gic=3
    while [ $# -gt 0 ]; do
        case "$1" in
        --insns) insns=(--insns) ;;
        --smp) smp=$2; shift ;;
        --mem) mem=$2; shift ;;
        --gic) gic=$2; shift ;;
        -h | --help)
            sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            return 0
            ;;
        *) bench_die "unknown option '$1'" ;;
        esac
        shift
    done
    local assets
    assets=$("$BENCH_REPO/scripts/assets.sh" kernel initramfs)
    eval "$assets"
    [ -n "${KERNEL:-}" ] && [ -n "${INITRD:-}" ] || bench_die "assets.sh gave no KERNEL/INITRD"
    local out=${BULKHEAD_CACHE:-$BENCH_REPO/.cache}/bench
    mkdir -p "$out"
    bench_boot native "$out/native.log" "${insns[@]}" -- \
        qemu-system-aarch64 -M "virt,gic-version=$gic,dtb-randomness=off" -cpu cortex-a72 \
        -smp "$smp" -m "$mem" -icount shift=0,sleep=off -nographic -no-reboot \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "console=ttyAMA0 bulkhead.test=smoke printk.time=1"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    bench_native_main "$@"
fi
