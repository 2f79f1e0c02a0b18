#!/usr/bin/env bash
# Writes a Bulkhead guest bundle: one file with the VMs' descriptions and images, for boot
# loaders that load a single extra file and name it in /chosen/linux,initrd-start/end (the
# Raspberry Pi firmware's `initramfs FILE followkernel`, QEMU's -initrd).
#
# Usage: scripts/mkbundle.sh [VM OPTIONS] [--vm [VM OPTIONS]]... [-o OUT=bundle.bin]
#   VM OPTIONS: [--kernel PATH] [--initrd PATH | --no-initrd] [--append "GUEST CMDLINE"]
#               [--cpus N] [--mem SIZE] [--name NAME]
#   defaults: Debian's arm64 kernel and the busybox initramfs (scripts/assets.sh),
#             --append "console=ttyAMA0", --cpus 4, --mem 512M, --name vm0 (vm1, ... for the
#             VMs that --vm starts)
# Prints BUNDLE=<absolute path> on stdout. Bulkhead runs the first VM of a bundle (and says
# that it ignores the others).
#
# Format (src/bundle.rs has the full description): a device tree at offset 0 whose root is
# compatible with "bulkhead,guest-bundle-v1" and whose /chosen holds each VM as Xen's dom0less
# binding describes a domain (docs/misc/arm/device-tree/booting.txt in Xen):
#   vm0 { compatible = "xen,domain"; #address-cells = <2>; #size-cells = <2>;
#         cpus = <N>; memory = <0 KiB>; vpl011;
#         module@OFF { compatible = "multiboot,kernel", "multiboot,module";
#                      reg = <0 OFF 0 SIZE>; bootargs = "..."; };
#         module@OFF { compatible = "multiboot,ramdisk", "multiboot,module"; reg = <...>; }; };
# except that a module's reg is an offset into this file. The images follow the tree, each at
# a 4 KiB boundary. Offsets appear in node names, so the tree's size depends on them: the
# layout is recomputed until it no longer changes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() {
    printf 'mkbundle: ERROR: %s\n' "$*" >&2
    exit 1
}
command -v dtc >/dev/null 2>&1 || die "'dtc' not found (device-tree-compiler; run scripts/setup.sh)"

# Per VM (index v): name, vCPUs, KiB, guest command line; per image (index i): file, kind,
# size, owning VM.
vm_names=() vm_cpus=() vm_kib=() vm_append=()
images=() kinds=() sizes=() owners=()
out=bundle.bin

vm_reset() {
    kernel="" initrd="" no_initrd=0 append="console=ttyAMA0" cpus=4 mem=512M
    name=vm${#vm_names[@]}
}

vm_done() { # checks the options of the VM being described and records it
    if [ -z "$kernel" ]; then
        eval "$("$REPO/scripts/assets.sh" kernel initramfs)"
        kernel=$KERNEL
        [ -n "$initrd" ] || [ "$no_initrd" = 1 ] || initrd=$INITRD
    fi
    [ "$no_initrd" = 1 ] && initrd=""
    [ -f "$kernel" ] || die "$name: kernel '$kernel' is not a file"
    [ -z "$initrd" ] || [ -f "$initrd" ] || die "$name: initrd '$initrd' is not a file"
    [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "$name: --cpus wants a positive number, not '$cpus'"
    [[ "$name" =~ ^[A-Za-z][A-Za-z0-9,._+-]*$ ]] || die "--name '$name' is not a valid node name"
    local n kib
    for n in "${vm_names[@]}"; do [ "$n" != "$name" ] || die "two VMs named $name"; done
    case "$mem" in
        *G) kib=$(( ${mem%G} * 1024 * 1024 )) ;;
        *M) kib=$(( ${mem%M} * 1024 )) ;;
        *K) kib=${mem%K} ;;
        *) die "$name: --mem wants a size like 512M or 1G, not '$mem'" ;;
    esac
    [ "$kib" -gt 0 ] || die "$name: --mem must not be 0"
    local v=${#vm_names[@]} f kind size
    vm_names+=("$name") vm_cpus+=("$cpus") vm_kib+=("$kib") vm_append+=("$append")
    for kind in kernel ramdisk; do
        f=$kernel
        [ "$kind" = kernel ] || f=$initrd
        [ -n "$f" ] || continue
        size=$(stat -c %s "$f")
        [ "$size" -gt 0 ] || die "'$f' is empty"
        images+=("$f") kinds+=("$kind") sizes+=("$size") owners+=("$v")
    done
}

vm_reset
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=$2; shift 2 ;;
        --initrd) initrd=$2; shift 2 ;;
        --no-initrd) no_initrd=1; shift ;;
        --append) append=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --vm) vm_done; vm_reset; shift ;;
        -o) out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
vm_done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A dts string literal: backslashes and quotes escaped.
dts_string() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
cells64() { printf '0x%x 0x%x' $(($1 >> 32)) $(($1 & 0xffffffff)); }

write_tree() { # OFFSETS...
    local offsets=("$@") v i
    {
        echo '/dts-v1/;'
        echo '/ {'
        echo '    compatible = "bulkhead,guest-bundle-v1";'
        echo '    #address-cells = <2>;'
        echo '    #size-cells = <2>;'
        echo '    chosen {'
        for v in "${!vm_names[@]}"; do
            echo "        ${vm_names[$v]} {"
            echo '            compatible = "xen,domain";'
            echo '            #address-cells = <2>;'
            echo '            #size-cells = <2>;'
            echo "            cpus = <${vm_cpus[$v]}>;"
            echo "            memory = <$(cells64 "${vm_kib[$v]}")>;"
            echo '            vpl011;'
            for i in "${!images[@]}"; do
                [ "${owners[$i]}" = "$v" ] || continue
                printf '            module@%x {\n' "${offsets[$i]}"
                echo "                compatible = \"multiboot,${kinds[$i]}\", \"multiboot,module\";"
                echo "                reg = <$(cells64 "${offsets[$i]}") $(cells64 "${sizes[$i]}")>;"
                [ "${kinds[$i]}" != kernel ] || echo "                bootargs = $(dts_string "${vm_append[$v]}");"
                echo '            };'
            done
            echo '        };'
        done
        echo '    };'
        echo '};'
    } >"$tmp/bundle.dts"
    dtc -q -I dts -O dtb -o "$tmp/tree.dtb" "$tmp/bundle.dts" || die "dtc failed on $tmp/bundle.dts"
}

align() { echo $(( ($1 + 4095) / 4096 * 4096 )); }
layout() { # TREE_SIZE -> offsets
    local at i
    at=$(align "$1")
    for i in "${!images[@]}"; do
        printf '%s ' "$at"
        at=$(align $((at + sizes[i])))
    done
}

read -ra offsets <<<"$(layout 0)"
for _ in 1 2 3 4 5; do
    write_tree "${offsets[@]}"
    read -ra again <<<"$(layout "$(stat -c %s "$tmp/tree.dtb")")"
    [ "${again[*]}" != "${offsets[*]}" ] || break
    offsets=("${again[@]}")
done
[ "${again[*]}" = "${offsets[*]}" ] || die "layout did not settle"

cp "$tmp/tree.dtb" "$tmp/out"
for i in "${!images[@]}"; do
    truncate -s "${offsets[$i]}" "$tmp/out"
    cat "${images[$i]}" >>"$tmp/out"
done
mkdir -p "$(dirname "$out")"
mv "$tmp/out" "$out"

for v in "${!vm_names[@]}"; do
    summary="${vm_names[$v]}: ${vm_cpus[$v]} vCPUs, $((vm_kib[v] / 1024)) MiB"
    for i in "${!images[@]}"; do
        [ "${owners[$i]}" = "$v" ] || continue
        summary+=", ${kinds[$i]} $(basename "${images[$i]}") (${sizes[$i]} bytes at ${offsets[$i]})"
    done
    echo "mkbundle: $summary, bootargs \"${vm_append[$v]}\"" >&2
done
echo "mkbundle: wrote $out ($(stat -c %s "$out") bytes)" >&2
echo "BUNDLE=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
