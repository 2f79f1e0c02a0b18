#!/usr/bin/env bash
# Where Bulkhead's instructions go in one probe micro-benchmark (`probe.bench=NAME`, see
# guests/psci-probe/src/bench.rs): runs it with 1 and 1+N iterations under `-icount
# shift=0` with the pc-hist plugin (scripts/icount-plugin/pc-hist.c, counting only code at
# Bulkhead's IMAGE_VA, i.e. EL2), subtracts, and prints EL2 instructions per operation by
# function (symbols of the release ELF; inlined code counts for its caller), most first.
# What both runs share (boot, set-up) cancels out.
#
#   scripts/profile-el2.sh NAME [GIC=3] [N=2000] [--pcs]
#     --pcs: also every address, instructions per operation and its symbol (for
#     `llvm-objdump -d` / `addr2line -i` on the ELF).
# Example: scripts/profile-el2.sh hvc  ->  "total 188.0" then "89.5 bulkhead::hyp::run::run_vcpu" ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pcs=0
args=()
for a in "$@"; do
    if [ "$a" = --pcs ]; then pcs=1; else args+=("$a"); fi
done
[ ${#args[@]} -ge 1 ] || { echo "usage: scripts/profile-el2.sh NAME [GIC=3] [N=2000] [--pcs]" >&2; exit 2; }
name=${args[0]} gic=${args[1]:-3} n=${args[2]:-2000}
scripts/setup.sh >&2
image=$(scripts/build.sh)
elf=target/image/aarch64-unknown-none-softfloat/release/bulkhead
probe=$(scripts/build-guests.sh)
plugin=$(scripts/icount-plugin/build.sh | sed -n 's/^PC_HIST_PLUGIN=//p')
nm="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-nm"
[ -x "$nm" ] || nm=llvm-nm
low=$("$nm" "$elf" | sed -n 's/^\([0-9a-f]*\) T __image_start$/\1/p')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The probe under Bulkhead as scripts/bench.sh runs it, with the histogram in $out/ITERS.
run() { # ITERS
    # Same length of bootargs in both runs (leading zeros): the guest DTB Bulkhead builds
    # then costs the same, and cancels out.
    local iters
    iters=$(printf '%010d' "$1")
    timeout 600 qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic" \
        -cpu cortex-a72 -smp ${PROFILE_SMP:-2} -m 2G -icount shift=0,sleep=off -nographic -no-reboot \
        -device "guest-loader,addr=0x50000000,kernel=$probe,bootargs=probe.bench=$name probe.bench_iters=$iters" \
        -kernel "$image" -append "bulkhead.guest_mem=1G bulkhead.guest_smp=2" \
        -plugin "$plugin,low=0x$low" -d plugin -D "$out/$1" </dev/null | tr -d '\r' |
        grep -a "PROBE: bench $name" >&2 || { echo "profile-el2: no '$name' result" >&2; exit 1; }
}
run 1
run $((n + 1))

# Function symbols, addresses in decimal (awk here may be mawk: no hex input; the image's
# addresses stay below 2^53, exact as doubles).
"$nm" -n --demangle --defined-only "$elf" | while read -r addr kind sym; do
    case "$kind" in t | T | w | W) echo "$((16#$addr)) $sym" ;; esac
done >"$out/syms"

awk -v n="$n" -v pcs="$pcs" '
    FILENAME == ARGV[1] { addr[++nsym] = $1 + 0; $1 = ""; name[nsym] = substr($0, 2); next }
    FILENAME == ARGV[2] && $1 == "pc-hist:" { delta[$2] -= $3; next }
    FILENAME == ARGV[3] && $1 == "pc-hist:" { delta[$2] += $3; next }
    function symbol(pc,    lo, hi, mid) {
        lo = 1; hi = nsym
        if (nsym == 0 || pc < addr[1]) return "?"
        while (lo < hi) { mid = int((lo + hi + 1) / 2); if (addr[mid] <= pc) lo = mid; else hi = mid - 1 }
        return name[lo]
    }
    END {
        for (pc in delta) if (delta[pc] != 0) {
            s = symbol(pc + 0); per[s] += delta[pc]; total += delta[pc]
            # mawk prints %x of 32 bits only: the two halves.
            if (pcs) printf "pc %x%08x %.2f %s\n", int(pc / 4294967296), pc % 4294967296, delta[pc] / n, s
        }
        printf "total %.1f\n", total / n
        for (s in per) printf "%.1f %s\n", per[s] / n, s
    }' "$out/syms" "$out/1" "$out/$((n + 1))" >"$out/report"
# "total" first, then functions by cost, then (with --pcs) addresses in order.
grep '^total' "$out/report"
grep -v '^total\|^pc ' "$out/report" | sort -g -r -k1,1
grep '^pc ' "$out/report" | sort -k2,2 || true
