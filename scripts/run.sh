#!/usr/bin/env bash
# Runs Bulkhead under QEMU, by default with Debian's arm64 Linux kernel and a busybox initramfs
# as its guest. Installs what is missing on a fresh Debian 12 machine first.
#
#   scripts/run.sh [--board virt|rpi4] [--gic 2|3] [--smp N] [--cpu MODEL] [--no-guest]
#                  [--kernel PATH] [--initrd PATH] [--append "GUEST CMDLINE"] [--mem SIZE]
#                  [--hyp-append "BULKHEAD BOOTARGS"] [--image PATH] [--icount]
#                  [--vm "name=domU1,kernel=PATH[,initrd=PATH][,cpus=N][,mem=SIZE]
#                        [,affinity=CPUS][,append=GUEST CMDLINE]"]...
#                  [-- EXTRA QEMU ARGS]
#       scripts/run.sh --sdcard CARD.img [-- EXTRA QEMU ARGS]
#
# --cpu picks QEMU's CPU model on virt (default cortex-a72; `qemu-system-aarch64 -M virt -cpu
# help` lists them; cortex-a53, -a57, -a72, -a76, neoverse-n1, -v1 and max are tested).
#
# --sdcard boots a Raspberry Pi 4 card (scripts/mkimage-rpi4.sh) the way its firmware would,
# from the card's own files (read with mtools; scripts/boot-sdcard.sh): config.txt's kernel= as
# -kernel, the Pi 4 B's DTB as -dtb, its `initramfs FILE` as -initrd (QEMU writes
# linux,initrd-start/end as the firmware does), cmdline.txt as -append, the card as the SD card;
# console on the mini UART (QEMU's second serial port). No other option applies.
#
# With --vm (repeatable, virt only) the VMs are described the way Xen dom0less users do it: a
# host DTB with one `xen,domain` node per VM (scripts/mkdom0less.sh) and the files placed by
# QEMU's generic loader. `append=` comes last in a --vm value and takes the rest.
#
# The guest image (and initrd) reach Bulkhead as Xen-style multiboot modules in /chosen, written
# by QEMU's `-device guest-loader` - the same command line boots Xen. Exits with QEMU's code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

board=virt gic=3 smp=4 guest=1 kernel="" initrd="" append="" mem=512M hyp_append="" image=""
icount=0 qemu_cpus="" virt_ext=on kernel_addr=0x50000000 initrd_addr=0x58000000 sdcard=""
extra=() vms=() cpu=cortex-a72
caller_dir=$OLDPWD   # `cd` above: relative --vm paths are the caller's
while [ $# -gt 0 ]; do
    case "$1" in
        --board) board=$2; shift 2 ;;
        --gic) gic=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --cpu) cpu=$2; shift 2 ;;
        --qemu-smp) qemu_cpus=$2; shift 2 ;;
        --no-guest) guest=0; shift ;;
        --kernel) kernel=$2; shift 2 ;;
        --initrd) initrd=$2; shift 2 ;;
        --append) append=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --hyp-append) hyp_append=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        --icount) icount=1; shift ;;
        --vm) vms+=("$2"); shift 2 ;;
        --el1) virt_ext=off; shift ;;   # tests: start the image at EL1 (it must say so)
        --sdcard) sdcard=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

scripts/setup.sh

if [ -n "$sdcard" ]; then
    [ -z "$image" ] || { echo "run.sh: --sdcard boots the card's own bulkhead.bin; drop --image" >&2; exit 2; }
    exec scripts/boot-sdcard.sh "$sdcard" "${extra[@]}"
fi
[ -n "$image" ] || image=$(scripts/build.sh)

# Guest RAM size in MiB.
case "$mem" in
    *G) mem_mib=$(( ${mem%G} * 1024 )) ;;
    *M) mem_mib=${mem%M} ;;
    *) mem_mib=$mem ;;
esac

qemu=(qemu-system-aarch64 -no-reboot)
# The console is the UART the DTB's stdout-path names: on virt the PL011 (QEMU's first serial
# port); on raspi4b the mini UART (`serial1`, QEMU's second serial port; the first, the
# PL011, is not used).
serial=()
[ "$board" = rpi4 ] && serial=(-serial null)
# On a terminal QEMU's mux owns Ctrl-A: `Ctrl-A x` quits, `Ctrl-A b` sends a serial break (it
# reaches the guest in focus: SysRq), `Ctrl-A a` sends one Ctrl-A (Bulkhead's console escape:
# type it two or three times for its commands). Piped input gets a plain serial port, unless
# BULKHEAD_QEMU_MUX=1 asks for the mux there too (the tests that send breaks).
if [ -t 0 ] || [ "${BULKHEAD_QEMU_MUX:-0}" = 1 ]; then
    # interactive: serial + monitor on the terminal (Ctrl-A x quits)
    qemu+=(-display none "${serial[@]}" -serial mon:stdio)
else
    qemu+=(-display none -monitor none "${serial[@]}" -serial stdio)
fi
[ "$icount" = 1 ] && qemu+=(-icount shift=0)
case "$board" in
    virt)
        # Host RAM layout: the hypervisor at 0x40080000, QEMU's DTB at 0x48000000 (RAM base +
        # 128 MiB), the guest modules at 0x50000000 (kernel) and 0x58000000 (initrd), and the
        # guest's RAM at the top, above 0x60000000.
        qemu+=(-M "virt,virtualization=$virt_ext,gic-version=$gic" -cpu "$cpu"
               -smp "${qemu_cpus:-$smp}" -m "$(( mem_mib + 512 + 256 ))M")
        ;;
    rpi4)
        # QEMU's raspi4b describes 960 MiB at 0: the hypervisor at 0x80000, the guest modules
        # at 0x10000000 (kernel) and 0x18000000 (initrd), the guest's RAM at the top.
        eval "$(scripts/assets.sh kernel)"
        qemu+=(-M raspi4b -smp 4 -accel tcg,thread=single -dtb "$RPI4_DTB")
        kernel_addr=0x10000000 initrd_addr=0x18000000
        ;;
    *) echo "run.sh: unknown board $board" >&2; exit 2 ;;
esac

if [ ${#vms[@]} -gt 0 ]; then
    [ "$board" = virt ] || { echo "run.sh: --vm needs --board virt" >&2; exit 2; }
    guest=0
    # Host RAM: 512 MiB for the hypervisor, QEMU's DTB and the files, plus every VM's RAM.
    vm_mib=0
    for spec in "${vms[@]}"; do
        size=$(sed -n 's/.*mem=\([0-9]*[KkMmGg]\?\).*/\1/p' <<<"${spec%%append=*}")
        size=${size:-256M}
        case "${size,,}" in
            *g) vm_mib=$(( vm_mib + ${size%[Gg]} * 1024 )) ;;
            *m) vm_mib=$(( vm_mib + ${size%[Mm]} )) ;;
            *k) vm_mib=$(( vm_mib + ${size%[Kk]} / 1024 )) ;;
        esac
    done
    host_mib=$(( 512 + vm_mib + 64 ))
    dtb=$(mktemp --suffix=.dtb)
    vm_args=()
    for spec in "${vms[@]}"; do vm_args+=(--vm "$spec"); done
    repo=$PWD
    mapfile -t loaders < <(cd "$caller_dir" && "$repo/scripts/mkdom0less.sh" --out "$dtb" \
        --gic "$gic" --cpu "$cpu" --smp "${qemu_cpus:-$smp}" --mem "$host_mib" "${vm_args[@]}")
    [ ${#loaders[@]} -gt 0 ] || { echo "run.sh: could not build the dom0less DTB" >&2; exit 2; }
    # The same machine, with the DTB that names the VMs and the files where it says.
    for i in "${!qemu[@]}"; do
        [ "${qemu[$i]}" = "-m" ] && qemu[$((i + 1))]="${host_mib}M"
    done
    qemu+=(-dtb "$dtb" "${loaders[@]}")
fi

if [ "$guest" = 1 ]; then
    if [ -z "$kernel" ]; then
        eval "$(scripts/assets.sh kernel initramfs)"
        kernel=$KERNEL
        [ -n "$initrd" ] || initrd=$INITRD
    fi
    [ -n "$append" ] || append="console=ttyAMA0"
    hyp_append="$hyp_append bulkhead.guest_mem=${mem_mib}M bulkhead.guest_smp=$smp"
    # QEMU option values escape commas by doubling them.
    if [ "$board" = virt ]; then
        qemu+=(-device "guest-loader,addr=$kernel_addr,kernel=$kernel,bootargs=${append//,/,,}")
        [ -n "$initrd" ] && qemu+=(-device "guest-loader,addr=$initrd_addr,initrd=$initrd")
    else
        # raspi4b loads its DTB from a file that guest-loader cannot patch: write the same
        # multiboot module nodes into a copy (root cells: <2 1>) and load the files raw.
        dtb=$(mktemp --suffix=.dtb)
        cp "$RPI4_DTB" "$dtb"
        add_module() { # ADDR FILE KIND [BOOTARGS]
            local node="/chosen/module@${1#0x}"
            fdtput -c "$dtb" "$node"
            fdtput -t s "$dtb" "$node" compatible multiboot,module "multiboot,$3"
            fdtput -t x "$dtb" "$node" reg 0 "${1#0x}" "$(printf %x "$(stat -c %s "$2")")"
            [ -z "${4:-}" ] || fdtput -t s "$dtb" "$node" bootargs "$4"
            qemu+=(-device "loader,file=$2,addr=$1,force-raw=on")
        }
        add_module "$kernel_addr" "$kernel" kernel "$append"
        [ -z "$initrd" ] || add_module "$initrd_addr" "$initrd" ramdisk
        qemu=("${qemu[@]/#$RPI4_DTB/$dtb}")
    fi
fi

qemu+=(-kernel "$image" -append "${hyp_append# }")
echo "+ ${qemu[*]} ${extra[*]}" >&2
exec "${qemu[@]}" "${extra[@]}"
