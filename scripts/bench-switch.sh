#!/usr/bin/env bash
# What sharing a physical CPU between vCPUs costs, under QEMU `-icount shift=0,sleep=off`
# (one instruction = 1 ns of guest time, every run the same; cortex-a72):
#   - vCPU switch, same VM: the probe's IPI ping-pong (`probe.bench=ipi`, both vCPUs wait in
#     WFI; guests/psci-probe/src/bench.rs) with its two vCPUs on one CPU (`-smp 1`) and on two
#     (`-smp 2`). On one CPU a round trip holds two switches (ping: vCPU 0 -> 1, pong: back),
#     so the switch figure is (one CPU - two CPUs) / 2: what a switch costs beyond the
#     cross-CPU wake-up it replaces. `ipi_fp`: the same with an FP/SIMD instruction on each
#     side per round trip, so lazily switched FP state moves on every switch.
#   - vCPU switch, other VM: the doorbell ping-pong of two 1-vCPU probe VMs over shared memory
#     (`probe.pingpong=`, waiting in WFI: `probe.pingpong_wait=wfi`) on one CPU and on two;
#     the same arithmetic; `_fp`: each side uses FP/SIMD before each ring.
#   - Linux boot: two Debian VMs of 4 vCPUs each on 2 CPUs against one such VM alone on 4
#     CPUs (smoke mode to power-off, dom0less DTB as scripts/bench-vms.sh makes it): guest
#     time to power-off (printk stamps) and whole-run instructions (the counting plugin).
#     `ratio_insns_per_vm` = shared instructions / (2 x alone): the overcommit overhead (1.0 =
#     none). Guest-time ratios are QEMU's round robin too (see bench-vms.sh), not a cost.
#
#   scripts/bench-switch.sh [--gic 2|3] [--iters N] [--no-linux | --linux-only]
#     -> key=value lines (*_insns per operation); a run that fails prints KEY=failed with its
#        log and the script exits 1 after the others.
# Takes ~2 minutes without Linux, ~10 with. Logs go to .cache/bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

gic=3 iters=10000 linux=1 micro=1
while [ $# -gt 0 ]; do
    case "$1" in
        --gic) gic=$2; shift 2 ;;
        --iters) iters=$2; shift 2 ;;
        --no-linux) linux=0; shift ;;
        --linux-only) micro=0; shift ;;
        *) echo "bench-switch.sh: unknown option $1 (--gic 2|3, --iters N, --no-linux, --linux-only)" >&2; exit 2 ;;
    esac
done
scripts/setup.sh >&2
image=${BULKHEAD_IMAGE:-$(scripts/build.sh)}
probe=${BULKHEAD_PROBE:-$(scripts/build-guests.sh)}
out=${BULKHEAD_CACHE:-$PWD/.cache}/bench
mkdir -p "$out"
failed=0
fail() { # KEY LOG
    echo "$1=failed"
    echo "bench-switch.sh: $1 failed; log: $2" >&2
    failed=1
}
half_difference() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a - b) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# Same VM: the probe alone (guest-loader, 2 vCPUs) on CPUS physical CPUs.
same_vm() { # CPUS -> ipi_insns and ipi_fp_insns of that run
    local cpus=$1 log="$out/switch-same-v$gic-smp$1.log"
    timeout 600 qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic" \
        -cpu cortex-a72 -smp "$cpus" -m 1G -icount shift=0,sleep=off -nographic -no-reboot \
        -device "guest-loader,addr=0x50000000,kernel=$probe,bootargs=probe.bench=ipi,,ipi_fp probe.bench_iters=$iters" \
        -kernel "$image" -append "bulkhead.guest_mem=256M bulkhead.guest_smp=2" </dev/null 2>&1 |
        tr -d '\r' >"$log" || true
    local name
    for name in ipi ipi_fp; do
        grep -q "^PROBE: bench $name pongs=" "$log" && { fail "same_vm_${name}_smp$cpus" "$log"; continue; }
        local value
        value=$(sed -n "s/^PROBE: bench $name iterations=$iters insns_per_op=\([0-9.]*\)$/\1/p" "$log")
        [ -n "$value" ] || { fail "same_vm_${name}_smp$cpus" "$log"; continue; }
        echo "same_vm_${name}_smp${cpus}_insns=$value"
    done
}

# Other VM: ping and pong VMs (1 vCPU each) on CPUS physical CPUs; EXTRA guest bootargs.
other_vm() { # CPUS NAME EXTRA
    local cpus=$1 name=$2 extra=$3 log="$out/switch-$2-v$gic-smp$1.log"
    local shm="shm=pingpong@0x7fe00000+0x200000" rounds=$((iters / 10))
    local args="probe.pingpong_rounds=$rounds probe.pingpong_wait=wfi $extra"
    timeout 600 scripts/run.sh --image "$image" --smp "$cpus" --gic "$gic" --icount \
        --hyp-append "bulkhead.console_idle_ms=5000" \
        --vm "name=ping,kernel=$probe,mem=128M,$shm/owner,bell=pong@5,append=probe.pingpong=ping $args" \
        --vm "name=pong,kernel=$probe,mem=128M,$shm,bell=ping@6,append=probe.pingpong=pong $args" \
        </dev/null 2>&1 | tr -d '\r' >"$log" || true
    local value
    value=$(sed -n 's/^ping: PROBE: pingpong_ns_per_round=\([0-9]*\)$/\1/p' "$log")
    if grep -q '^ping: PROBE: PASS pingpong_answers_match' "$log" && [ -n "$value" ]; then
        echo "${name}_smp${cpus}_insns=$value"
    else
        fail "${name}_smp$cpus" "$log"
    fi
}

value() { echo "$1" | sed -n "s/^$2=//p" | head -1; }

if [ "$micro" = 1 ]; then
    same=$(same_vm 2; same_vm 1)
    echo "$same"
    other=$(other_vm 2 other_vm_pingpong ""; other_vm 1 other_vm_pingpong "";
            other_vm 2 other_vm_pingpong_fp "probe.pingpong_fp=1"; other_vm 1 other_vm_pingpong_fp "probe.pingpong_fp=1")
    echo "$other"
    all=$(printf '%s\n%s\n' "$same" "$other")
    echo "$all" | grep -q '=failed' && failed=1
    for pair in "same_vm_ipi same_vm_switch" "same_vm_ipi_fp same_vm_switch_fp" \
        "other_vm_pingpong other_vm_switch" "other_vm_pingpong_fp other_vm_switch_fp"; do
        read -r from to <<<"$pair"
        one=$(value "$all" "${from}_smp1_insns")
        two=$(value "$all" "${from}_smp2_insns")
        if [ -n "$one" ] && [ -n "$two" ]; then
            echo "${to}_insns=$(half_difference "$one" "$two")"
        fi
    done
fi

[ "$linux" = 1 ] || exit "$failed"

# Linux boot: the dom0less DTB and the plugin's whole-run count, as in bench-vms.sh.
eval "$(scripts/assets.sh kernel initramfs)"
plugin=$(scripts/icount-plugin/build.sh | sed -n 's/^INSN_COUNT_PLUGIN=//p')
append="console=ttyAMA0 bulkhead.test=smoke printk.time=1"
vm() { echo "name=$1,kernel=$KERNEL,initrd=$INITRD,cpus=4,mem=384M,append=$append"; }
boot() { # NAME SMP VM-NAMES... -> NAME_VM_poweroff_s per VM, NAME_insns
    local name=$1 smp=$2 log="$out/switch-linux-$1.log" dtb="$out/switch-linux-$1.dtb"
    shift 2
    local specs=() host_mib=$((512 + 384 * $# + 64)) vmname
    for vmname in "$@"; do specs+=(--vm "$(vm "$vmname")"); done
    mapfile -t loaders < <(scripts/mkdom0less.sh --out "$dtb" --gic "$gic" --smp "$smp" \
        --mem "$host_mib" "${specs[@]}")
    local counts="$log.insns"
    rm -f "$counts"
    local cmd=(qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic,dtb-randomness=off"
        -cpu cortex-a72 -smp "$smp" -m "${host_mib}M" -icount shift=0,sleep=off -nographic
        -no-reboot -dtb "$dtb" "${loaders[@]}" -kernel "$image"
        -append "bulkhead.console_idle_ms=5000" -plugin "$plugin" -d plugin -D "$counts")
    echo "bench: $name: ${cmd[*]}" >&2
    timeout 1800 "${cmd[@]}" </dev/null 2>&1 | tr -d '\r' >"$log" || true
    local prefix="" ok=1
    for vmname in "$@"; do
        [ $# -eq 1 ] || prefix="$vmname: "
        local off
        off=$(grep -a "^$prefix.*BULKHEAD-TEST: poweroff" "$log" |
            sed -n 's/^.*\[ *\([0-9][0-9]*\.[0-9]*\)\] .*$/\1/p' | head -1)
        if [ -n "$off" ] && grep -aq "^${prefix}BULKHEAD-TEST: smoke passed" "$log"; then
            echo "${name}_${vmname}_poweroff_s=$off"
        else
            ok=0
        fi
    done
    local total
    total=$(sed -n 's/^insn-count: total=\([0-9]*\).*/\1/p' "$counts" 2>/dev/null || true)
    if [ "$ok" = 1 ] && [ -n "$total" ]; then
        echo "${name}_insns=$total"
    else
        fail "linux_$name" "$log"
    fi
}
alone=$(boot alone 4 domU1)
shared=$(boot shared 2 domU1 domU2)
echo "$alone"
echo "$shared"
alone_off=$(value "$alone" alone_domU1_poweroff_s)
shared_off=$(printf '%s\n' "$(value "$shared" shared_domU1_poweroff_s)" \
    "$(value "$shared" shared_domU2_poweroff_s)" | sort -g | tail -1)
alone_insns=$(value "$alone" alone_insns)
shared_insns=$(value "$shared" shared_insns)
if [ -n "$alone_off" ] && [ -n "$shared_off" ] && [ -n "$alone_insns" ] && [ -n "$shared_insns" ]; then
    echo "linux_ratio_poweroff=$(ratio "$shared_off" "$alone_off")"
    echo "linux_ratio_insns_per_vm=$(ratio "$shared_insns" "$((2 * alone_insns))")"
else
    failed=1
fi
exit "$failed"
