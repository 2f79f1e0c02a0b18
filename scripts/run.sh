#!/usr/bin/env bash
# Runs Bulkhead under QEMU, by default with Debian's arm64 Linux kernel and a busybox initramfs
# as its guest. Installs what is missing on a fresh Debian 12 machine first. Every option is
# checked before anything is installed, built or run; `scripts/run.sh --help` lists them.
#
# The guest image (and initrd) reach Bulkhead as Xen-style multiboot modules in /chosen, written
# by QEMU's `-device guest-loader` - the same command line boots Xen. With --vm the VMs are
# described the way Xen dom0less users do it: a host DTB with one `xen,domain` node per VM
# (scripts/mkdom0less.sh) and the files placed by QEMU's generic loader. --sdcard boots a card's
# own files as the Pi firmware would (scripts/boot-sdcard.sh). Exits with QEMU's code.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/run.sh [OPTIONS] [-- EXTRA QEMU ARGS]
       scripts/run.sh --sdcard CARD.img [-- EXTRA QEMU ARGS]

Boots Bulkhead under QEMU, by default with Debian's arm64 Linux (busybox shell) as its guest.
On a terminal the console is interactive; Ctrl-A x quits QEMU. Exits with QEMU's exit code.

Machine:
  --board virt|rpi4     QEMU virt (default) or raspi4b (4 Cortex-A72, GICv2, fixed)
  --gic 2|3             virt's GIC version (default 3)
  --smp N               virt's CPUs, and the single guest's vCPUs (default 4; GICv2: at most 8)
  --cpu MODEL           virt's CPU model (default cortex-a72; see
                        `qemu-system-aarch64 -M virt -cpu help`)
  --icount              instruction-exact time (-icount shift=0), for benchmarks
  --image PATH          the Bulkhead image to boot (default: build it, scripts/build.sh)

The single guest (the default):
  --no-guest            no guest: Bulkhead reports `ready` and powers off
  --kernel PATH         guest kernel (default: Debian's arm64 Image, fetched into .cache/)
  --initrd PATH         guest initramfs (default: the busybox one, with the default kernel)
  --append "CMDLINE"    guest command line (default "console=ttyAMA0")
  --mem SIZE            guest RAM: a whole number with K, M or G (any case; no suffix = MiB),
                        e.g. 512M, 1g, 262144k (default 512M)

Several VMs (virt only; Xen dom0less), repeatable:
  --vm "name=N,kernel=PATH[,initrd=PATH][,cpus=N][,mem=SIZE][,affinity=CPUS]
        [,format=raw][,shm=ID@IPA+SIZE[/owner]]...[,bell=PEER@SPI]...
        [,on_poweroff=P][,on_reboot=P][,on_crash=P][,append=GUEST CMDLINE]"
                        append= comes last and takes the rest (commas too);
                        P is destroy, restart or preserve (Xen's xl.cfg words);
                        cpus= may exceed --smp (vCPUs share CPUs); affinity=0-1 lets
                        every vCPU run on CPUs 0-1, affinity=0:1:2 gives vCPU i the i-th set

Bulkhead itself:
  --hyp-append "ARGS"   Bulkhead bootargs: loglevel=error|warn|info|debug|trace,
                        bulkhead.vmid_bits=N, bulkhead.console_escape=^A,
                        bulkhead.console_idle_ms=MS, bulkhead.sched_slice_ms=MS,
                        bulkhead.guest_mem=SIZE, bulkhead.guest_smp=N, bulkhead.hotplug_test=N,
                        bulkhead.guest_format=raw|auto, bulkhead.rtc=UNIX_SECONDS,
                        bulkhead.on_poweroff=P, bulkhead.on_reboot=P, bulkhead.on_crash=P,
                        bulkhead.reset_limit=N|off (every key: src/bootargs.rs)

Raspberry Pi 4 card:
  --sdcard CARD.img     boot a card made by scripts/mkimage-rpi4.sh the way its firmware
                        does (raspi4b, console on the mini UART); no other option applies

Relative paths are the caller's. Examples:
  scripts/run.sh                                   # Debian Linux, 4 vCPUs, GICv3
  scripts/run.sh --gic 2 --smp 2 --mem 1G
  scripts/run.sh --kernel ~/Image --initrd rootfs.cpio.gz --append "console=ttyAMA0 rdinit=/bin/sh"
  scripts/run.sh --no-guest -- -s -S               # wait for gdb on :1234
EOF
}

die() {
    echo "run.sh: $*" >&2
    exit 2
}

board=virt gic=3 smp=4 guest=1 kernel="" initrd="" append="" mem=512M hyp_append="" image=""
icount=0 qemu_cpus="" virt_ext=on kernel_addr=0x50000000 initrd_addr=0x58000000 sdcard=""
extra=() vms=() cpu=cortex-a72
given=()   # the options given, for the checks of which apply together
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
while [ $# -gt 0 ]; do
    opt=$1
    case "$opt" in
        --board|--gic|--smp|--cpu|--qemu-smp|--kernel|--initrd|--append|--mem|--hyp-append|\
        --image|--vm|--sdcard)
            [ $# -ge 2 ] || die "$opt needs a value (scripts/run.sh --help)"
            val=$2
            shift 2
            ;;
        *) val=""; shift ;;
    esac
    given+=("$opt")
    case "$opt" in
        --board) board=$val ;;
        --gic) gic=$val ;;
        --smp) smp=$val ;;
        --cpu) cpu=$val ;;
        --qemu-smp) qemu_cpus=$val ;;   # tests: QEMU's CPUs when they differ from the guest's
        --no-guest) guest=0 ;;
        --kernel) kernel=$val ;;
        --initrd) initrd=$val ;;
        --append) append=$val ;;
        --mem) mem=$val ;;
        --hyp-append) hyp_append=$val ;;
        --image) image=$val ;;
        --icount) icount=1 ;;
        --vm) vms+=("$val") ;;
        --el1) virt_ext=off ;;   # tests: start the image at EL1 (it must say so)
        --sdcard) sdcard=$val ;;
        --) extra=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$opt' (scripts/run.sh --help)" ;;
    esac
done

# ---- every option checked before anything is installed, built or run ----
has() { local o; for o in "${given[@]}"; do [ "$o" = "$1" ] && return 0; done; return 1; }
# An existing file, as an absolute path (QEMU runs from the repository).
file_arg() { # OPTION PATH
    [ -n "$2" ] || die "$1 needs a file name"
    [ -e "$2" ] || die "$1 $2: no such file"
    [ -f "$2" ] || die "$1 $2: not a regular file"
    [ -r "$2" ] || die "$1 $2: not readable"
    realpath -- "$2"
}
# A whole positive number.
number_arg() { # OPTION VALUE
    [[ $2 =~ ^[0-9]+$ ]] && [ "$((10#$2))" -gt 0 ] || die "$1 $2: not a whole number of 1 or more"
}

if [ -n "$sdcard" ]; then
    for o in "${given[@]}"; do
        [ "$o" = --sdcard ] || [ "$o" = -- ] ||
            die "$o does not apply with --sdcard: the card's own files say what boots (its bulkhead.bin, config.txt, cmdline.txt)"
    done
    sdcard=$(file_arg --sdcard "$sdcard")
fi
case "$board" in
    virt) ;;
    rpi4)
        has --gic && die "--gic does not apply to --board rpi4: the Pi 4 has a GIC-400 (GICv2)"
        has --smp && die "--smp does not apply to --board rpi4: the Pi 4 has 4 CPUs (fewer vCPUs: --hyp-append bulkhead.guest_smp=N)"
        has --qemu-smp && die "--qemu-smp does not apply to --board rpi4: the Pi 4 has 4 CPUs"
        has --cpu && die "--cpu does not apply to --board rpi4: the Pi 4's CPUs are Cortex-A72"
        has --vm && die "--vm needs --board virt (on a Pi 4 several VMs come from a bundle: scripts/mkbundle.sh)"
        ;;
    *) die "--board $board: not virt or rpi4" ;;
esac
case "$gic" in 2|3) ;; *) die "--gic $gic: not 2 or 3" ;; esac
number_arg --smp "$smp"
[ -z "$qemu_cpus" ] || number_arg --qemu-smp "$qemu_cpus"
if [ "$gic" = 2 ] && [ "$((10#${qemu_cpus:-$smp}))" -gt 8 ]; then
    die "--smp ${qemu_cpus:-$smp}: GICv2 serves at most 8 CPUs"
fi
[[ $cpu =~ ^[A-Za-z0-9._-]+$ ]] || die "--cpu '$cpu': not a CPU model name"
if has --cpu && command -v qemu-system-aarch64 >/dev/null 2>&1 &&
    ! qemu-system-aarch64 -M virt -cpu help 2>/dev/null | awk '{print $1}' | grep -qxF -- "$cpu"; then
    die "--cpu $cpu: QEMU has no such CPU model (qemu-system-aarch64 -M virt -cpu help)"
fi
# Guest RAM in MiB from SIZE: a whole number with an optional K/M/G suffix in any case.
mem_mib() { # OPTION SIZE
    local size=${2,,} n unit
    [[ $size =~ ^([0-9]+)([kmg]?)(i?b)?$ ]] ||
        die "$1 $2: not a size like 512M, 1G or 262144K (a whole number; 1.5G is 1536M)"
    n=$((10#${BASH_REMATCH[1]})) unit=${BASH_REMATCH[2]}
    case "$unit" in
        k) [ $((n % 1024)) = 0 ] || die "$1 $2: not a whole number of MiB"; n=$((n / 1024)) ;;
        g) n=$((n * 1024)) ;;
    esac
    [ "$n" -gt 0 ] || die "$1 $2: no memory"
    [ "$n" -le $((1024 * 1024)) ] || die "$1 $2: more than 1 TiB"
    echo "$n"
}
mem_mib=$(mem_mib --mem "$mem")
[ -z "$image" ] || image=$(file_arg --image "$image")
[ -z "$kernel" ] || kernel=$(file_arg --kernel "$kernel")
[ -z "$initrd" ] || initrd=$(file_arg --initrd "$initrd")
if [ ${#vms[@]} -gt 0 ]; then
    for o in --kernel --initrd --append --mem --no-guest; do
        has "$o" && die "$o does not apply with --vm: give each VM its kernel=, initrd=, mem= and append="
    done
    # Relative kernel=/initrd= are the caller's: checked (and later read) from here. The
    # check prints the MiB of RAM the VMs get together.
    vm_args=()
    for spec in "${vms[@]}"; do vm_args+=(--vm "$spec"); done
    vm_mib=$("$repo/scripts/mkdom0less.sh" --check "${vm_args[@]}") || exit 2
elif [ "$guest" = 0 ]; then
    for o in --kernel --initrd --append --mem; do
        has "$o" && die "$o does not apply with --no-guest"
    done
fi
caller_dir=$PWD
cd "$repo"

scripts/setup.sh

if [ -n "$sdcard" ]; then
    exec scripts/boot-sdcard.sh "$sdcard" "${extra[@]}"
fi
[ -n "$image" ] || image=$(scripts/build.sh)

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
        # Semihosting's exit call: a run where no VM can start ends QEMU with a failure status.
        qemu+=(-semihosting-config enable=on,target=native)
        hyp_append="$hyp_append bulkhead.semihosting=1"
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
    host_mib=$(( 512 + vm_mib + 64 ))
    dtb=$(mktemp --suffix=.dtb)
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
    # The guest's size, unless the caller's bootargs say it (the first of a key counts).
    [[ " $hyp_append" = *" bulkhead.guest_mem="* ]] || hyp_append+=" bulkhead.guest_mem=${mem_mib}M"
    [[ " $hyp_append" = *" bulkhead.guest_smp="* ]] || hyp_append+=" bulkhead.guest_smp=$smp"
    # QEMU option values escape commas by doubling them.
    if [ "$board" = virt ]; then
        qemu+=(-device "guest-loader,addr=$kernel_addr,kernel=${kernel//,/,,},bootargs=${append//,/,,}")
        [ -n "$initrd" ] && qemu+=(-device "guest-loader,addr=$initrd_addr,initrd=${initrd//,/,,}")
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
            qemu+=(-device "loader,file=${2//,/,,},addr=$1,force-raw=on")
        }
        add_module "$kernel_addr" "$kernel" kernel "$append"
        [ -z "$initrd" ] || add_module "$initrd_addr" "$initrd" ramdisk
        qemu=("${qemu[@]/#$RPI4_DTB/$dtb}")
    fi
fi

qemu+=(-kernel "$image" -append "${hyp_append# }")
# Shell-quoted, so the line can be pasted.
{ printf '+'; printf ' %q' "${qemu[@]}" "${extra[@]}"; printf '\n'; } >&2
exec "${qemu[@]}" "${extra[@]}"
