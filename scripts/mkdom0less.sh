#!/usr/bin/env bash
# Makes a Xen dom0less host DTB for QEMU virt, the way Xen users (and Xen's ImageBuilder) do:
# dump QEMU's own DTB with `-M ...,dumpdtb=`, add one `xen,domain` node per VM under /chosen
# (Xen's docs/misc/arm/device-tree/booting.txt), and place each VM's files with QEMU's generic
# loader. Bulkhead (like Xen) reads the VMs from that DTB: no other magic is involved.
#
#   scripts/mkdom0less.sh --out FILE --gic 2|3 --smp N --mem MIB [--cpu MODEL] \
#       --vm "name=domU1,kernel=PATH[,initrd=PATH][,cpus=N][,mem=SIZE][,affinity=0-1]
#             [,format=raw][,shm=ID@IPA+SIZE[/owner]]...[,bell=PEER@SPI]...
#             [,on_poweroff=P][,on_reboot=P][,on_crash=P][,append=ARGS]" ...
#
# format=raw boots the kernel file as raw code at RAM base + 0x80000 (`bulkhead,format = "raw"`
# on its module node); by default Bulkhead goes by its header (Image, gzip Image, ELF64).
#
# shm= adds a Xen static shared memory region (`xen,domain-shared-memory-v1`, host memory
# allocated by Bulkhead; the same ID in several VMs is the same memory), bell= a doorbell this
# VM may ring (`bulkhead,doorbell`: PEER gets SPI number SPI), numbered in the order given.
#
# on_poweroff= / on_reboot= / on_crash= set the VM's life-cycle policy (xl.cfg's words:
# destroy, restart, preserve), written as the node's property of that name.
# `append=` must come last: everything after it (commas too) is the guest's command line.
# Prints the QEMU arguments that load the files (`-device loader,...`), one per line; boot with
#   qemu-system-aarch64 -M virt,virtualization=on,gic-version=G -smp N -m MIB \
#       -dtb FILE <those arguments> -kernel bulkhead.bin
#
#   scripts/mkdom0less.sh --check --vm ... [--vm ...]
# only checks the --vm values (names, files, numbers, sizes) and prints the MiB of RAM the VMs
# get together; run.sh calls it before it starts anything.
set -euo pipefail

die() {
    echo "mkdom0less.sh: $*" >&2
    exit 2
}

out="" gic=3 smp=4 mem="" cpu=cortex-a72 vms=() check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=1; shift; continue ;;
        --out|--gic|--smp|--mem|--cpu|--vm) [ $# -ge 2 ] || die "$1 needs a value" ;;
        *) die "unknown argument $1" ;;
    esac
    case "$1" in
        --out) out=$2 ;;
        --gic) gic=$2 ;;
        --smp) smp=$2 ;;
        --mem) mem=$2 ;;
        --cpu) cpu=$2 ;;
        --vm) vms+=("$2") ;;
    esac
    shift 2
done
[ ${#vms[@]} -gt 0 ] || die "need at least one --vm"
[ "$check" = 1 ] || { [ -n "$out" ] && [ -n "$mem" ]; } || die "need --out and --mem"

# Size in KiB of SIZE: a whole number with a K/M/G suffix in any case, or bytes without one.
kib() {
    local v=${1,,}
    [[ $v =~ ^[0-9]+[kmg]?$ ]] || return 1
    case "$v" in
        *k) echo $(( 10#${v%k} )) ;;
        *m) echo $(( 10#${v%m} * 1024 )) ;;
        *g) echo $(( 10#${v%g} * 1024 * 1024 )) ;;
        *) echo $(( 10#$v / 1024 )) ;;
    esac
}
is_number() { [[ $1 =~ ^(0x[0-9a-fA-F]+|[0-9]+)$ ]]; }

# Splits one --vm value into the vm_* variables, checking each field; dies naming the VM.
parse_vm() { # SPEC
    local spec=$1 rest=$1 field kib_
    vm_name="" vm_kernel="" vm_initrd="" vm_cpus=1 vm_mem=256M vm_affinity="" vm_format=""
    vm_append="console=ttyAMA0" vm_shms=() vm_bells=() vm_policies=()
    while [ -n "$rest" ]; do
        case "$rest" in
            append=*) vm_append=${rest#append=}; rest="" ; continue ;;
        esac
        field=${rest%%,*}
        [ "$field" = "$rest" ] && rest="" || rest=${rest#*,}
        case "$field" in
            name=*) vm_name=${field#name=} ;;
            kernel=*) vm_kernel=${field#kernel=} ;;
            initrd=*) vm_initrd=${field#initrd=} ;;
            cpus=*) vm_cpus=${field#cpus=} ;;
            mem=*) vm_mem=${field#mem=} ;;
            affinity=*) vm_affinity=${field#affinity=} ;;
            format=*) vm_format=${field#format=} ;;
            shm=*) vm_shms+=("${field#shm=}") ;;
            bell=*) vm_bells+=("${field#bell=}") ;;
            on_poweroff=* | on_reboot=* | on_crash=*)
                [[ ${field#*=} =~ ^[a-z-]+$ ]] || die "VM $vm_name: $field is not a policy word like destroy, restart or preserve"
                vm_policies+=("${field%%=*} = \"${field#*=}\";") ;;
            *) die "unknown VM field '$field' in '$spec' (name=, kernel=, initrd=, cpus=, mem=, affinity=, format=, shm=, bell=, on_poweroff=, on_reboot=, on_crash=, append=)" ;;
        esac
    done
    # A device tree node name (Devicetree Specification v0.4, 2.2.1), without commas.
    [[ $vm_name =~ ^[A-Za-z0-9._+-]+$ ]] ||
        die "VM '$spec' needs name= (letters, digits, '.', '_', '+' and '-')"
    [ -n "$vm_kernel" ] || die "VM $vm_name: needs kernel="
    [ -f "$vm_kernel" ] || die "VM $vm_name: no kernel file '$vm_kernel' (from $PWD)"
    [ -z "$vm_initrd" ] || [ -f "$vm_initrd" ] || die "VM $vm_name: no initrd file '$vm_initrd' (from $PWD)"
    [[ $vm_cpus =~ ^[0-9]+$ ]] || die "VM $vm_name: cpus=$vm_cpus is not a whole number"
    kib_=$(kib "$vm_mem") && [ $((kib_ % 1024)) = 0 ] && [ "$kib_" -gt 0 ] ||
        die "VM $vm_name: mem=$vm_mem is not a size like 256M or 1G (a whole number of MiB)"
    [ -z "$vm_affinity" ] || [[ $vm_affinity =~ ^[0-9,:-]+$ ]] ||
        die "VM $vm_name: affinity=$vm_affinity is not CPU numbers like 2, 0-1 or 2:3"
    [ -z "$vm_format" ] || [ "$vm_format" = raw ] || [ "$vm_format" = auto ] ||
        die "VM $vm_name: format=$vm_format is not raw or auto"
    local shm bell
    for shm in "${vm_shms[@]}"; do
        [[ $shm =~ ^[A-Za-z0-9_.-]+@(0x[0-9a-fA-F]+|[0-9]+)\+(0x[0-9a-fA-F]+|[0-9]+)(/owner|/borrower)?$ ]] ||
            die "VM $vm_name: shm=$shm is not ID@IPA+SIZE[/owner]"
    done
    for bell in "${vm_bells[@]}"; do
        [[ $bell =~ ^[A-Za-z0-9_-]+@[0-9]+$ ]] || die "VM $vm_name: bell=$bell is not PEER@SPI"
    done
}

if [ "$check" = 1 ]; then
    total_kib=0
    for spec in "${vms[@]}"; do
        parse_vm "$spec"
        total_kib=$((total_kib + $(kib "$vm_mem")))
    done
    echo $((total_kib / 1024))
    exit 0
fi

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
        parse_vm "$spec"
        name=$vm_name kernel=$vm_kernel initrd=$vm_initrd cpus=$vm_cpus vmmem=$vm_mem
        affinity=$vm_affinity format=$vm_format append=$vm_append shms=("${vm_shms[@]}") bells=("${vm_bells[@]}")
        policies=("${vm_policies[@]}")
        # Relative paths are the caller's; QEMU runs elsewhere.
        kernel=$(realpath "$kernel")
        [ -z "$initrd" ] || initrd=$(realpath "$initrd")
        echo "  $name {"
        echo "    compatible = \"xen,domain\";"
        echo "    #address-cells = <2>; #size-cells = <2>;"
        echo "    memory = <0 $(kib "$vmmem")>;"
        echo "    cpus = <$cpus>;"
        echo "    vpl011;"
        for policy in "${policies[@]}"; do echo "    $policy"; done
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
        printf '%s\n' -device "loader,file=${kernel//,/,,},addr=$(printf 0x%x "$addr"),force-raw=on" >>"$tmp/args"
        addr=$(align $((addr + size)))
        if [ -n "$initrd" ]; then
            size=$(stat -c %s "$initrd")
            printf '    module@%x { compatible = "multiboot,ramdisk", "multiboot,module"; reg = <0 0x%x 0 0x%x>; };\n' \
                "$addr" "$addr" "$size"
            printf '%s\n' -device "loader,file=${initrd//,/,,},addr=$(printf 0x%x "$addr"),force-raw=on" >>"$tmp/args"
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
cat "$tmp/args"
