#!/usr/bin/env bash
# Makes a Xen dom0less host DTB for QEMU virt, the way Xen users (and Xen's ImageBuilder) do:
# dump QEMU's own DTB with `-M ...,dumpdtb=`, add one `xen,domain` node per VM under /chosen
# (Xen's docs/misc/arm/device-tree/booting.txt), and place each VM's files with QEMU's generic
# loader. Bulkhead (like Xen) reads the VMs from that DTB: no other magic is involved.
#
#   scripts/mkdom0less.sh --out FILE --gic 2|3 --smp N --mem MIB [--cpu MODEL] \
#       --vm "name=domU1,kernel=PATH[,initrd=PATH][,cpus=N][,mem=SIZE][,affinity=0-1]
#             [,format=raw][,shm=ID@IPA+SIZE[/owner]]...[,bell=PEER@SPI]...[,append=ARGS]" ...
#
# format=raw boots the kernel file as raw code at RAM base + 0x80000 (`bulkhead,format = "raw"`
# on its module node); by default Bulkhead goes by its header (Image, gzip Image, ELF64).
# shm= adds a Xen static shared memory region (`xen,domain-shared-memory-v1`, host memory
# allocated by Bulkhead; the same ID in several VMs is the same memory), bell= a doorbell this
# VM may ring (`bulkhead,doorbell`: PEER gets SPI number SPI), numbered in the order given.
#
# `append=` must come last: everything after it (commas too) is the guest's command line.
# Prints the QEMU arguments that load the files (`-device loader,...`), one per line; boot with
#   qemu-system-aarch64 -M virt,virtualization=on,gic-version=G -smp N -m MIB \
#       -dtb FILE <those arguments> -kernel bulkhead.bin
set -euo pipefail

out="" gic=3 smp=4 mem="" cpu=cortex-a72 vms=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --gic) gic=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --cpu) cpu=$2; shift 2 ;;
        --vm) vms+=("$2"); shift 2 ;;
        *) echo "mkdom0less.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] && [ -n "$mem" ] && [ ${#vms[@]} -gt 0 ] || {
    echo "mkdom0less.sh: need --out, --mem and at least one --vm" >&2
    exit 2
}

# Size in KiB of SIZE (K/M/G suffix in any case, or bytes).
kib() {
    local v=${1,,}
    case "$v" in
        *k) echo $(( ${v%k} )) ;;
        *m) echo $(( ${v%m} * 1024 )) ;;
        *g) echo $(( ${v%g} * 1024 * 1024 )) ;;
        *) echo $(( v / 1024 )) ;;
    esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic,dumpdtb=$tmp/qemu.dtb" \
    -cpu "$cpu" -smp "$smp" -m "${mem}M" -display none >/dev/null
dtc -q -I dtb -O dts -o "$tmp/host.dts" "$tmp/qemu.dtb"

# Files go one after another from RAM base + 256 MiB, 2 MiB aligned, clear of the hypervisor
# (at RAM base) and QEMU's DTB (RAM base + 128 MiB).
addr=$((0x50000000))
align() { echo $(( ($1 + 0x1fffff) & ~0x1fffff )); }
{
    echo "/ { chosen {"
    for spec in "${vms[@]}"; do
        name="" kernel="" initrd="" cpus=1 vmmem=256M affinity="" append="console=ttyAMA0" format=""
        shms=() bells=()
        rest=$spec
        while [ -n "$rest" ]; do
            case "$rest" in
                append=*) append=${rest#append=}; rest="" ; continue ;;
            esac
            field=${rest%%,*}
            [ "$field" = "$rest" ] && rest="" || rest=${rest#*,}
            case "$field" in
                name=*) name=${field#name=} ;;
                kernel=*) kernel=${field#kernel=} ;;
                initrd=*) initrd=${field#initrd=} ;;
                cpus=*) cpus=${field#cpus=} ;;
                mem=*) vmmem=${field#mem=} ;;
                affinity=*) affinity=${field#affinity=} ;;
                format=*) format=${field#format=} ;;
                shm=*) shms+=("${field#shm=}") ;;
                bell=*) bells+=("${field#bell=}") ;;
                *) echo "mkdom0less.sh: unknown VM field '$field' in '$spec'" >&2; exit 2 ;;
            esac
        done
        [ -n "$name" ] && [ -f "$kernel" ] || {
            echo "mkdom0less.sh: VM '$spec' needs name= and an existing kernel=" >&2
            exit 2
        }
        [ -z "$initrd" ] || [ -f "$initrd" ] || {
            echo "mkdom0less.sh: VM $name: no initrd file '$initrd'" >&2
            exit 2
        }
        # Relative paths are the caller's; QEMU runs elsewhere.
        kernel=$(realpath "$kernel")
        [ -z "$initrd" ] || initrd=$(realpath "$initrd")
        echo "  $name {"
        echo "    compatible = \"xen,domain\";"
        echo "    #address-cells = <2>; #size-cells = <2>;"
        echo "    memory = <0 $(kib "$vmmem")>;"
        echo "    cpus = <$cpus>;"
        echo "    vpl011;"
        for ((i = 0; i < ${#shms[@]}; i++)); do
            shm=${shms[$i]} role=borrower
            case "$shm" in */owner) role=owner; shm=${shm%/owner} ;; */borrower) shm=${shm%/borrower} ;; esac
            id=${shm%%@*} where=${shm#*@}
            ipa=${where%%+*} size=${where#*+}
            printf '    shm@%d { compatible = "xen,domain-shared-memory-v1"; role = "%s"; xen,shm-id = "%s"; xen,shared-mem = <0x0 %s 0x0 %s>; };\n' \
                "$i" "$role" "$id" "$ipa" "$size"
        done
        for ((i = 0; i < ${#bells[@]}; i++)); do
            printf '    bell@%d { compatible = "bulkhead,doorbell"; peer = "%s"; bulkhead,spi = <%s>; };\n' \
                "$i" "${bells[$i]%@*}" "${bells[$i]#*@}"
        done
        size=$(stat -c %s "$kernel")
        printf '    module@%x { compatible = "multiboot,kernel", "multiboot,module"; reg = <0 0x%x 0 0x%x>; bootargs = "%s";%s };\n' \
            "$addr" "$addr" "$size" "${append//\"/\\\"}" "${format:+ bulkhead,format = \"$format\";}"
        echo "-device loader,file=$kernel,addr=$(printf 0x%x "$addr"),force-raw=on" >>"$tmp/args"
        addr=$(align $((addr + size)))
        if [ -n "$initrd" ]; then
            size=$(stat -c %s "$initrd")
            printf '    module@%x { compatible = "multiboot,ramdisk", "multiboot,module"; reg = <0 0x%x 0 0x%x>; };\n' \
                "$addr" "$addr" "$size"
            echo "-device loader,file=$initrd,addr=$(printf 0x%x "$addr"),force-raw=on" >>"$tmp/args"
            addr=$(align $((addr + size)))
        fi
        # affinity=2:3 pins vCPU 0 on CPU 2 and vCPU 1 on CPU 3; a single set (affinity=2-3)
        # applies to every vCPU.
        if [ -n "$affinity" ]; then
            IFS=: read -r -a sets <<<"$affinity"
            for ((v = 0; v < cpus; v++)); do
                set=${sets[$v]:-${sets[0]}}
                echo "    vcpu$v { compatible = \"xen,vcpu\"; id = <$v>; hard-affinity = \"$set\"; };"
            done
        fi
        echo "  };"
    done
    echo "}; };"
} >"$tmp/domains.dtsi"
cat "$tmp/host.dts" "$tmp/domains.dtsi" >"$tmp/dom0less.dts"
dtc -q -I dts -O dtb -o "$out" "$tmp/dom0less.dts"
tr ' ' '\n' <"$tmp/args"
