#!/usr/bin/env bash
# All of Bulkhead's benchmarks in one table, under QEMU `-icount shift=0,sleep=off` (one
# instruction = 1 ns of guest time, every run the same), same kernel, initramfs and CPU model
# (cortex-a72) as the native runs:
#   - Linux boot, native QEMU vs Bulkhead (scripts/bench-boot.sh --insns): guest time to /init
#     and to power-off, whole-run instructions, Bulkhead's instructions before the guest's first
#     one (hypervisor boot cost; 1-vCPU rows, where the count is exact), and its exits by kind;
#     for 1/4/8 vCPUs on GICv3 and GICv2;
#   - micro costs from the probe guest (`probe.bench=`, guests/psci-probe/src/bench.rs), 10,000
#     iterations each, GICv3 and GICv2: null HVC, PL011 data-register write, GIC distributor
#     read, IPI round trip between two vCPUs, virtual-timer latency (deadline -> the guest reads
#     the INTID), stage-2 fault (first touch of a 2 MiB block; as many as 1 GiB of RAM holds);
#   - vCPU switches (scripts/bench-switch.sh --no-linux): the cost of switching between two
#     vCPUs of one VM / of two VMs sharing one CPU, without and with FP in use; with the
#     Linux boots also two 4-vCPU Linux VMs on 2 CPUs against one alone on 4 (GICv3);
#   - idle: EL2 instructions per second of guest time while the guest waits in WFI (the probe
#     idles 0 s and 10 s under the instruction-counting plugin; the difference).
#
#   scripts/bench.sh [--quick] [--micro]
#     --quick: Linux boots of 1 and 4 vCPUs on GICv3 only; --micro: no Linux boots.
#     BULKHEAD_IMAGE=PATH benchmarks that image (e.g. another commit's build) for the micro
#     and idle rows.
# Takes ~20 minutes on 2 cores (--quick ~6). Prints the table on stdout; logs go to .cache/bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0 micro_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --micro) micro_only=1; shift ;;
        *) echo "bench.sh: unknown option $1 (--quick, --micro)" >&2; exit 2 ;;
    esac
done

scripts/setup.sh >&2
image=${BULKHEAD_IMAGE:-$(scripts/build.sh)}
probe=$(scripts/build-guests.sh)
plugin=$(scripts/icount-plugin/build.sh | sed -n 's/^INSN_COUNT_PLUGIN=//p')
out=${BULKHEAD_CACHE:-$PWD/.cache}/bench
mkdir -p "$out"
value() { echo "$1" | sed -n "s/^$2=//p" | head -1; }
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3"; }

# The probe guest under Bulkhead with `probe.bench=LIST` (extra guest bootargs after it);
# prints the log. QEMU options as scripts/bench-boot.sh's Bulkhead run.
probe_run() { # GIC APPEND [QEMU ARGS...]
    local gic=$1 append=${2//,/,,} # QEMU option values escape commas by doubling them
    shift 2
    timeout 300 qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic" \
        -cpu cortex-a72 -smp 2 -m 2G -icount shift=0,sleep=off -nographic -no-reboot \
        -device "guest-loader,addr=0x50000000,kernel=$probe,bootargs=$append" \
        -kernel "$image" -append "bulkhead.guest_mem=1G bulkhead.guest_smp=2" "$@" </dev/null |
        tr -d '\r'
}

echo "| figure | GICv3 | GICv2 |"
echo "|---|---|---|"

# Micro costs.
declare -A micro
for gic in 3 2; do
    log="$out/probe-bench-v$gic.log"
    probe_run "$gic" "probe.bench=hvc,uart,gicd,ipi,timer,fault" >"$log"
    grep -q '^PROBE: bench done' "$log" || { echo "bench.sh: probe bench failed, see $log" >&2; exit 1; }
    for name in hvc uart gicd ipi timer fault; do
        micro[$name.$gic]=$(sed -n "s/^PROBE: bench $name iterations=[0-9]* insns_per_op=\([0-9.]*\)$/\1/p" "$log")
    done
done
row "null HVC round trip (insns)" "${micro[hvc.3]}" "${micro[hvc.2]}"
row "PL011 DR write (insns)" "${micro[uart.3]}" "${micro[uart.2]}"
row "GICD read (insns)" "${micro[gicd.3]}" "${micro[gicd.2]}"
row "IPI round trip, 2 vCPUs (insns)" "${micro[ipi.3]}" "${micro[ipi.2]}"
half() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 2 }'; }
row "one IPI: round trip / 2, a WFI exit and wake-up included (insns)" \
    "$(half "${micro[ipi.3]}")" "$(half "${micro[ipi.2]}")"
row "virtual-timer latency (insns)" "${micro[timer.3]}" "${micro[timer.2]}"
row "stage-2 fault, 2 MiB block (insns)" "${micro[fault.3]}" "${micro[fault.2]}"

# vCPU switches: (ping-pong on one CPU - on two) / 2, see scripts/bench-switch.sh.
declare -A switch
for gic in 3 2; do
    result=$(BULKHEAD_IMAGE=$image BULKHEAD_PROBE=$probe scripts/bench-switch.sh --gic "$gic" --no-linux) ||
        echo "bench.sh: bench-switch.sh --gic $gic failed; logs in $out/switch-*" >&2
    for key in same_vm_switch same_vm_switch_fp other_vm_switch other_vm_switch_fp; do
        switch[$key.$gic]=$(value "$result" "${key}_insns")
    done
done
for key in same_vm_switch same_vm_switch_fp other_vm_switch other_vm_switch_fp; do
    case $key in
        same_vm_switch) what="vCPU switch, same VM (IPI ping-pong, 1 CPU vs 2; insns)" ;;
        same_vm_switch_fp) what="vCPU switch, same VM, FP in use (insns)" ;;
        other_vm_switch) what="vCPU switch, other VM (doorbell ping-pong, 1 CPU vs 2; insns)" ;;
        other_vm_switch_fp) what="vCPU switch, other VM, FP in use (insns)" ;;
    esac
    row "$what" "${switch[$key.3]:-failed}" "${switch[$key.2]:-failed}"
done

# Idle: the same run idling 0 s and 100 s of guest time; a hundredth of the difference is what
# a second of an idle guest costs (EL2, all CPUs; the guest's own part is a few instructions).
declare -A idle
for gic in 3 2; do
    for ms in 0 100000; do
        counts="$out/idle-v$gic-$ms.insns"
        probe_run "$gic" "probe.bench=idle probe.bench_idle_ms=$ms" \
            -plugin "$plugin" -d plugin -D "$counts" >"$out/idle-v$gic-$ms.log"
        idle[$gic.$ms]=$(sed -n 's/^insn-count: total=\([0-9]*\).*/\1/p' "$counts")
    done
done
row "idle guest in WFI: EL2 insns per guest second" \
    "$(((idle[3.100000] - idle[3.0]) / 100))" "$(((idle[2.100000] - idle[2.0]) / 100))"

# Linux boots.
[ "$micro_only" = 1 ] && exit 0
configs=("3 1" "3 4" "3 8" "2 1" "2 4" "2 8")
[ "$quick" = 1 ] && configs=("3 1" "3 4")
echo
echo "| Linux boot | native /init | native off | Bulkhead /init | Bulkhead off | ratio /init | ratio off | native insns | Bulkhead insns | ratio insns | hyp insns to guest | Bulkhead exits |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for config in "${configs[@]}"; do
    read -r gic smp <<<"$config"
    result=$(scripts/bench-boot.sh --gic "$gic" --smp "$smp" --insns)
    echo "$result" >"$out/boot-v$gic-smp$smp.txt"
    # Only one CPU makes the plugin's mark exact (see insn-count.c, guest_below=).
    to_guest=-
    [ "$smp" = 1 ] && to_guest=$(value "$result" bulkhead_insns_to_guest)
    printf '| GICv%s, %s vCPU | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$gic" "$smp" \
        "$(value "$result" native_init_s)" "$(value "$result" native_poweroff_s)" \
        "$(value "$result" bulkhead_init_s)" "$(value "$result" bulkhead_poweroff_s)" \
        "$(value "$result" ratio_init)" "$(value "$result" ratio_poweroff)" \
        "$(value "$result" native_insns_total)" "$(value "$result" bulkhead_insns_total)" \
        "$(value "$result" ratio_insns)" "$to_guest" \
        "$(value "$result" bulkhead_stats | sed 's/, [0-9]* VMID rollovers.*//')"
done

# Overcommit: two 4-vCPU VMs on 2 CPUs against one alone on 4 (full run only).
[ "$quick" = 1 ] && exit 0
echo
echo "| Linux boot, overcommitted (GICv3) | alone: 4 vCPUs on 4 CPUs, off | shared: 2 x 4 vCPUs on 2 CPUs, later VM off | ratio off | ratio insns per VM |"
echo "|---|---|---|---|---|"
result=$(BULKHEAD_IMAGE=$image BULKHEAD_PROBE=$probe scripts/bench-switch.sh --gic 3 --linux-only) ||
    echo "bench.sh: bench-switch.sh --linux-only failed; logs in $out/switch-linux-*" >&2
shared_off=$(printf '%s\n' "$(value "$result" shared_domU1_poweroff_s)" \
    "$(value "$result" shared_domU2_poweroff_s)" | sort -g | tail -1)
printf '| two Debian VMs, smoke to power-off | %s | %s | %s | %s |\n' \
    "$(value "$result" alone_domU1_poweroff_s)" "$shared_off" \
    "$(value "$result" linux_ratio_poweroff)" "$(value "$result" linux_ratio_insns_per_vm)"
