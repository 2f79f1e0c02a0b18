#!/usr/bin/env bash
# What sharing the machine costs a VM: one Debian Linux VM (2 vCPUs on CPUs 0-1, smoke mode)
# booted alone from a dom0less DTB, then the same VM with two more Linux VMs (1 vCPU each, on
# CPUs 2 and 3) booting next to it, under `-icount shift=0,sleep=off` with the instruction-
# counting plugin. The figure that matters is `*_insns`: every instruction CPUs 0 and 1
# executed (the measured VM's guest code and Bulkhead's work for it) until the VM powered off;
# their ratio is what the neighbours cost it. The guest-time figures (`*_init_s`,
# `*_poweroff_s`) are printed too, but they are not a cost: QEMU runs all vCPUs in turn on one
# virtual clock, so busy neighbours stretch everyone's guest time (real CPUs would not).
#
#   scripts/bench-vms.sh [--gic 2|3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

gic=3
while [ $# -gt 0 ]; do
    case "$1" in
        --gic) gic=$2; shift 2 ;;
        *) echo "bench-vms.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
scripts/setup.sh
eval "$(scripts/assets.sh kernel initramfs)"
image=$(scripts/build.sh)
out=${BULKHEAD_CACHE:-$PWD/.cache}/bench
mkdir -p "$out"
append="console=ttyAMA0 bulkhead.test=smoke printk.time=1"
vm() { echo "name=$1,kernel=$KERNEL,initrd=$INITRD,cpus=$2,mem=384M,append=$append"; }

# run NAME VM-SPECS...: boots them, prints NAME_init_s / NAME_poweroff_s of VM "measured".
run() {
    local name=$1 log="$out/vms-$1.log" dtb="$out/vms-$1.dtb"
    shift
    local specs=() host_mib=$(( 512 + 384 * $# + 64 ))
    for spec in "$@"; do specs+=(--vm "$spec"); done
    mapfile -t loaders < <(scripts/mkdom0less.sh --out "$dtb" --gic "$gic" --smp 4 \
        --mem "$host_mib" "${specs[@]}")
    local plugin counts="$log.insns"
    plugin=$(scripts/icount-plugin/build.sh | sed -n 's/^INSN_COUNT_PLUGIN=//p')
    rm -f "$counts"
    local cmd=(qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic,dtb-randomness=off"
        -cpu cortex-a72 -smp 4 -m "${host_mib}M" -icount shift=0,sleep=off -nographic
        -no-reboot -dtb "$dtb" "${loaders[@]}" -kernel "$image"
        -append "bulkhead.console_idle_ms=5000" -plugin "$plugin" -d plugin -D "$counts")
    echo "bench: $name: ${cmd[*]}" >&2
    timeout 600 "${cmd[@]}" </dev/null >"$log" 2>&1 || {
        echo "bench-vms.sh: $name: QEMU failed; log: $log" >&2
        exit 1
    }
    # With one VM its lines pass through unprefixed; with several they carry its name.
    local prefix=""
    [ $# -eq 1 ] || prefix="measured: "
    stamp() {
        tr -d '\r' <"$log" | grep -a "^$prefix.*$1" |
            sed -n 's/^.*\[ *\([0-9][0-9]*\.[0-9]*\)\] .*$/\1/p' | head -1
    }
    local init poweroff
    init=$(stamp 'BULKHEAD-TEST: init reached')
    poweroff=$(stamp 'BULKHEAD-TEST: poweroff')
    [ -n "$init" ] && [ -n "$poweroff" ] && grep -aq "^${prefix}BULKHEAD-TEST: smoke passed" "$log" || {
        echo "bench-vms.sh: $name: the measured VM did not pass its smoke checks; log: $log" >&2
        exit 1
    }
    echo "${name}_init_s=$init"
    echo "${name}_poweroff_s=$poweroff"
    # CPUs 0 and 1 run the measured VM (first-fit placement); afterwards they only sleep.
    awk -F= -v n="$name" '/^insn-count: cpu[01]=/ { sum += $2 } END { print n "_insns=" sum }' "$counts"
}

alone=$(run alone "$(vm measured 2)")
shared=$(run shared "$(vm measured 2)" "$(vm neighbour1 1)" "$(vm neighbour2 1)")
echo "$alone"
echo "$shared"
value() { echo "$1" | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo "ratio_insns=$(ratio "$(value "$shared" shared_insns)" "$(value "$alone" alone_insns)")"
echo "ratio_init=$(ratio "$(value "$shared" shared_init_s)" "$(value "$alone" alone_init_s)")"
echo "ratio_poweroff=$(ratio "$(value "$shared" shared_poweroff_s)" "$(value "$alone" alone_poweroff_s)")"
