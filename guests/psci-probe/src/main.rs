//! psci-probe: a test guest for Bulkhead's PSCI, SMCCC and stage-2 abort handling.
//!
//! Boot contract: a flat binary with an arm64 Image header (text_offset 0x80000; also built
//! as an ELF with the same addresses), loaded at IPA 0x4008_0000 and entered at its first
//! byte at EL1h, MMU off, DAIF masked, x0 = DTB. It prints one `PROBE: PASS|FAIL <check>`
//! line per check, then `PROBE: DONE pass=N fail=M`, then calls PSCI SYSTEM_OFF. With
//! `probe.reboots=N` in /chosen/bootargs it first runs N SYSTEM_RESET cycles (printing
//! `PROBE: BOOT-DONE` each time), and DONE carries the totals of all boots.
//! With `probe.chaos=N [probe.seed=S]` it first performs N hostile operations (chaos.rs) and
//! prints `PROBE: chaos done ops=N faults=F`; the checks must then still pass.
//! With `probe.memcheck=MIB` every boot verifies the RAM pattern of the boot before and
//! writes its own over MIB MiB (memcheck.rs), printing `PROBE: memcheck boot=N verified=P`.
//! With `probe.pingpong=ping|pong [probe.pingpong_rounds=N]` it first exchanges N messages
//! with another VM over shared memory and doorbells (exchange.rs). `probe.touch_ipa=ADDR`
//! adds a check that a load from ADDR aborts. `probe.crash=runaway|pvpanic` crashes on purpose
//! right after the boot line (crash.rs). `probe.zeroed_ram=1` adds a check that RAM nothing was
//! loaded into reads as zero (fidelity.rs). `probe.bench=hvc,gicd,...` runs micro-benchmarks
//! instead of the checks (bench.rs). For hypervisors that share CPUs: `probe.spin=FROM-TO`
//! counts busy-loop iterations over a window of virtual milliseconds instead of the checks
//! (spin.rs); `probe.fpcheck=ROUNDS` checks, instead of the checks, that FP/SIMD/SVE
//! registers survive many yields of the CPU on every vCPU (fpcheck.rs); `probe.memloop=MS`
//! re-verifies memcheck's pages on every vCPU for MS ms before the checks (memloop.rs).
//! When the DTB describes doorbells (or none),
//! the checks include the doorbell call's error codes.
//!
//! Runs with the MMU off, so every data access is Device memory: the target is built with
//! strict alignment, and the code avoids read-modify-write atomics (exclusives).

#![no_std]
#![no_main]

mod bench;
mod chaos;
mod checks;
mod console;
mod crash;
mod doorbell;
mod exchange;
mod fidelity;
mod fpcheck;
mod gic;
mod hostile;
mod machine;
mod memcheck;
mod memloop;
mod psci;
mod spin;
mod vectors;

use core::arch::global_asm;
use core::panic::PanicInfo;

use checks::Tally;
use machine::{BootRecord, Machine};

/// Stack size for each of the two CPUs the probe runs on.
const STACK_BYTES: usize = 16 * 1024;

// Entry points. Both set SP_EL1 to their own stack and VBAR_EL1 to the probe's vectors, then
// call Rust with x0 unchanged (the DTB for the primary, the CPU_ON context id for a secondary).
// The stacks are in .bss, which link.ld keeps inside the file, so nothing needs clearing.
//
// `probe_hvc_loop(count)` / `probe_nop_loop(count)`: the null-hypercall timing loops. They keep
// the count in x19 (saved), because SMCCC 1.0 callees may clobber x4-x17.
global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    // An arm64 Image header (Linux Documentation/arch/arm64/booting.rst), so loaders place
    // the probe by it. image_size 0 (an old-style header): text_offset is 0x80000 and the
    // file is the whole footprint (.bss is inside it, see link.ld).
    b probe_start           // code0
    .long 0                 // code1
    .quad 0x80000           // text_offset
    .quad 0                 // image_size
    .quad 0                 // flags
    .quad 0, 0, 0           // res2-res4
    .ascii "ARM\x64"        // magic
    .long 0                 // res5
probe_start:
    ldr x1, =probe_primary_stack_top
    mov sp, x1
    adr x1, probe_vectors
    msr vbar_el1, x1
    isb
    bl {primary_main}
0:  wfi
    b 0b

    .text
    .global probe_secondary_entry
probe_secondary_entry:
    ldr x1, =probe_secondary_stack_top
    mov sp, x1
    adr x1, probe_vectors
    msr vbar_el1, x1
    isb
    bl probe_secondary_main
1:  wfi
    b 1b

    .global probe_hvc_loop
    .global probe_hvc_loop_end
    .global probe_nop_loop
    .balign 64
probe_hvc_loop:
    str x19, [sp, #-16]!
    mov x19, x0
2:  mov w0, #{psci_version}
    hvc #0
    subs x19, x19, #1
    b.ne 2b
    ldr x19, [sp], #16
    ret
probe_hvc_loop_end:

    .balign 64
probe_nop_loop:
    str x19, [sp, #-16]!
    mov x19, x0
3:  mov w0, #{psci_version}
    nop
    subs x19, x19, #1
    b.ne 3b
    ldr x19, [sp], #16
    ret

    .bss
    .balign 16
    .space {stack_bytes}
probe_primary_stack_top:
    .space {stack_bytes}
probe_secondary_stack_top:

    // Keeps .bss inside the file (see link.ld).
    .section .data.image_marker, "aw"
    .balign 8
    .ascii "PROBEEND"
"#,
    primary_main = sym primary_main,
    psci_version = const psci::PSCI_VERSION,
    stack_bytes = const STACK_BYTES,
);

/// The primary CPU's Rust entry; `dtb` is x0 from the loader.
extern "C" fn primary_main(dtb: u64) -> ! {
    println!("PROBE: psci-probe start");
    let machine = Machine::probe(dtb);
    if let Some(list) = bench::requested(machine.bootargs) {
        bench::run(&machine, list, machine.bootargs);
        psci::system_off()
    }
    if let Some(window) = spin::requested(machine.bootargs) {
        spin::run(window);
        psci::system_off()
    }
    if let Some(rounds) = fpcheck::requested(machine.bootargs) {
        let mut tally = Tally::default();
        fpcheck::run(&machine, rounds, &mut tally);
        println!("PROBE: DONE pass={} fail={}", tally.pass, tally.fail);
        psci::system_off()
    }
    let record_addr = if machine.reboots > 0 {
        BootRecord::address(&machine)
    } else {
        None
    };
    let mut record = record_addr.map(BootRecord::load).unwrap_or_default();
    println!(
        "PROBE: boot {} of {}",
        record.boots_done + 1,
        u64::from(machine.reboots) + 1
    );

    if let Some(how) = machine.crash {
        crash::run(&machine, how);
    }

    let mut tally = Tally::default();
    // Only on the first boot: the boot record lives in RAM the chaos may write.
    if record.boots_done == 0 {
        chaos::run(&machine, &mut tally);
    }
    // After the chaos, which may write any RAM outside the probe's own.
    if machine.memcheck_mib > 0 {
        memcheck::run(&machine, &mut record, &mut tally);
    }
    // Before the checks, which start and stop the secondary themselves.
    memloop::run(&machine, &mut tally);
    // First boot only: the peer VM exchanges once. Before the checks, so both sides start
    // within moments of each other.
    if record.boots_done == 0 {
        exchange::run(&machine, &mut tally);
    }
    checks::run_all(&machine, &mut tally);
    record.pass_total += tally.pass;
    record.fail_total += tally.fail;

    if let Some(addr) = record_addr
        && record.boots_done < u64::from(machine.reboots)
    {
        record.boots_done += 1;
        record.store(addr);
        println!("PROBE: BOOT-DONE pass={} fail={}", tally.pass, tally.fail);
        psci::hvc(psci::SYSTEM_RESET, 0, 0, 0);
        println!("PROBE: FAIL system_reset got=returned want=reset");
        record.fail_total += 1;
    }
    if let Some(addr) = record_addr {
        // Forget the totals, so a later run in the same RAM starts from boot 1.
        BootRecord::default().store(addr);
        // SAFETY: same page as the record; clearing the magic word.
        unsafe { (addr as *mut u64).write_volatile(0) };
    }
    println!(
        "PROBE: DONE pass={} fail={}",
        record.pass_total, record.fail_total
    );
    psci::system_off()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("PROBE: PANIC {info}");
    psci::system_off()
}
