//! `probe.bench=NAME[,NAME...]`: micro-benchmarks of what the hypervisor costs a guest, for
//! `scripts/bench.sh`. Each loop runs `probe.bench_iters=N` times (default 10,000) and prints
//! `PROBE: bench NAME iterations=N insns_per_op=X.Y`. Under QEMU `-icount shift=0` one
//! nanosecond of guest time is one instruction (every exception level, every CPU), and the
//! virtual counter (a constant offset from the physical one) counts guest time, so counter ticks converted to
//! nanoseconds are instructions. Only one CPU runs at a time here: the one that waits does so
//! in WFI, never in a spin loop whose instructions would be counted too.
//!
//! - `hvc`: PSCI_VERSION round trip, minus the same loop with a NOP.
//! - `gicd`: a 32-bit read of GICD_TYPER (emulated), minus the NOP loop.
//! - `uart`: a write of `.` to the PL011 data register (emulated), minus the NOP loop.
//! - `ipi`: vCPU 0 sends SGI 1 to vCPU 1 and waits in WFI; vCPU 1, waiting in WFI, acknowledges
//!   it and sends SGI 2 back; vCPU 0 acknowledges that: one round trip, two IPIs.
//! - `ipi_fp`: the same, each side executing one FP/SIMD instruction per round trip.
//! - `timer`: the virtual timer is armed 50 us ahead and the CPU waits in WFI; the figure is
//!   the time from the programmed deadline to the guest's read of the interrupt's INTID.
//! - `fault`: a first load from each untouched 2 MiB block of RAM (a stage-2 fault that maps
//!   it); as many blocks as RAM has, not `bench_iters`.
//! - `idle`: the CPU waits `probe.bench_idle_ms=MS` (default 1000) in WFI for its virtual
//!   timer; bench.sh runs it twice under the instruction-counting plugin and divides.
//!
//! The interrupt side polls (gic.rs).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use psci_probe::bootargs;

use crate::gic::{Gic, SGI_PING, SGI_PING_FP, SGI_PONG, read32};
use crate::machine::{self, Machine};
use crate::{println, psci};

const BENCH_ARG: &str = "probe.bench=";
const ITERS_ARG: &str = "probe.bench_iters=";
const IDLE_ARG: &str = "probe.bench_idle_ms=";
const DEFAULT_ITERATIONS: u64 = 10_000;
/// CPU_ON context id that sends the secondary into `secondary` rather than the checks.
pub const SECONDARY_CONTEXT: u64 = 0xB0E7_C4A0_0000_0001;
const GICD_TYPER: u64 = 0x4;
const BLOCK: u64 = 2 << 20;

/// The benchmarks asked for, from /chosen/bootargs (`None`: not in bench mode).
pub fn requested(bootargs: &'static str) -> Option<&'static str> {
    bootargs::value(bootargs, BENCH_ARG)
}

// Timing loops (x0/x1 = arguments; the HVC loop counts in x19, which SMCCC callees keep):
// each iteration is three instructions, the operation and
// `subs` + `b.ne`, so subtracting the NOP loop leaves the operation's own cost.
global_asm!(
    r#"
    .text
    .balign 64
bench_nop_loop:
1:  nop
    subs x0, x0, #1
    b.ne 1b
    ret

    .balign 64
bench_load_loop:
2:  ldr w2, [x0]
    subs x1, x1, #1
    b.ne 2b
    ret

    .balign 64
bench_store_loop:
3:  str w2, [x0]
    subs x1, x1, #1
    b.ne 3b
    ret
"#,
);

unsafe extern "C" {
    fn bench_nop_loop(count: u64);
    fn bench_load_loop(addr: u64, count: u64);
    fn bench_store_loop(addr: u64, count: u64, value: u32);
    /// The null-hypercall loop the probe's own check uses (main.rs).
    fn probe_hvc_loop(count: u64);
}

/// Nanoseconds (= instructions under icount) for `ticks` of the virtual counter, times 10.
fn deci_ns(ticks: u64) -> u64 {
    let frequency = machine::counter_frequency().max(1);
    (u128::from(ticks) * 10_000_000_000 / u128::from(frequency)) as u64
}

fn report(name: &str, iterations: u64, ticks: u64) {
    let per_op = deci_ns(ticks) / iterations.max(1);
    println!(
        "PROBE: bench {name} iterations={iterations} insns_per_op={}.{}",
        per_op / 10,
        per_op % 10
    );
}

/// Ticks `run` takes.
fn time(run: impl FnOnce()) -> u64 {
    let start = machine::counter();
    run();
    machine::counter() - start
}

fn nop_ticks(iterations: u64) -> u64 {
    // SAFETY: a register-only loop.
    time(|| unsafe { bench_nop_loop(iterations) })
}

/// Runs the benchmarks `list` names, then returns (the caller powers off).
pub fn run(machine: &Machine, list: &str, bootargs: &str) {
    let iterations = bootargs::number(bootargs, ITERS_ARG)
        .unwrap_or(DEFAULT_ITERATIONS)
        .max(1);
    let gic = Gic::new(machine);
    println!(
        "PROBE: bench start list={list} gic=v{}",
        machine.gic_version
    );
    for name in list.split(',') {
        match name {
            "hvc" => {
                // SAFETY: PSCI_VERSION calls only; the loop clobbers x0-x3 (caller-saved).
                let ticks = time(|| unsafe { probe_hvc_loop(iterations) });
                report(
                    name,
                    iterations,
                    ticks.saturating_sub(nop_ticks(iterations)),
                );
            }
            "gicd" => {
                let addr = gic.gicd + GICD_TYPER;
                // SAFETY: reads of an emulated read-only register.
                let ticks = time(|| unsafe { bench_load_loop(addr, iterations) });
                report(
                    name,
                    iterations,
                    ticks.saturating_sub(nop_ticks(iterations)),
                );
            }
            "uart" => {
                let dr = machine.uart_base();
                // SAFETY: writes to the UART's data register: characters on the console.
                let ticks = time(|| unsafe { bench_store_loop(dr, iterations, u32::from(b'.')) });
                println!();
                report(
                    name,
                    iterations,
                    ticks.saturating_sub(nop_ticks(iterations)),
                );
            }
            "ipi" => ipi(machine, &gic, iterations, false),
            "ipi_fp" => ipi(machine, &gic, iterations, true),
            "timer" => timer(&gic, iterations),
            "fault" => faults(machine),
            "idle" => {
                let ms = bootargs::number(bootargs, IDLE_ARG).unwrap_or(1000);
                gic.init_cpu(0);
                let ticks = ms * machine::counter_frequency() / 1000;
                gic.wait_for_vtimer(machine::counter() + ticks);
                println!("PROBE: bench idle ms={ms}");
            }
            other => println!("PROBE: bench {other} unknown"),
        }
    }
    println!("PROBE: bench done");
}

/// Round trips the secondary answered (written by it, read by the primary).
static PONGS: AtomicU64 = AtomicU64::new(0);
/// Set by the secondary once its GIC interface is up.
static SECONDARY_READY: AtomicU64 = AtomicU64::new(0);
static PRIMARY_MPIDR: AtomicU64 = AtomicU64::new(0);

/// The IPI ping-pong; with `fp`, each side executes an FP/SIMD instruction per round trip (so
/// a hypervisor that switches FP state lazily between vCPUs sharing a CPU pays for it): the
/// ping is then SGI 3, which tells the secondary to do the same. The plain loop is kept as it
/// was, so its figure stays comparable.
fn ipi(machine: &Machine, gic: &Gic, iterations: u64, fp: bool) {
    let name = if fp { "ipi_fp" } else { "ipi" };
    let Some(other) = machine.other_cpu else {
        println!("PROBE: bench {name} needs two CPUs");
        return;
    };
    if fp {
        crate::fpcheck::enable_fp();
    }
    // The secondary answers forever once started: a second ping-pong reuses it.
    if SECONDARY_READY.load(Ordering::SeqCst) == 0 {
        gic.init_cpu(0);
        gic.publish();
        PRIMARY_MPIDR.store(machine::own_mpidr(), Ordering::SeqCst);
        let entry = crate::checks::secondary_entry_address();
        let result = psci::hvc(psci::CPU_ON_64, other, entry, SECONDARY_CONTEXT);
        if result != 0 {
            println!("PROBE: bench {name} CPU_ON failed: {result:#x}");
            return;
        }
        // In WFI, 1 ms at a time: the secondary may share this vCPU's physical CPU.
        let tick = machine::counter_frequency() / 1000;
        while SECONDARY_READY.load(Ordering::SeqCst) == 0 {
            gic.wait_for_vtimer(machine::counter() + tick);
        }
    }
    let pongs_before = PONGS.load(Ordering::SeqCst);
    let index = other & 0xff;
    let ticks = if fp {
        time(|| {
            for _ in 0..iterations {
                crate::fpcheck::touch();
                gic.send_sgi(SGI_PING_FP, other, index);
                let iar = gic.acknowledge();
                gic.end(iar);
            }
        })
    } else {
        time(|| {
            for _ in 0..iterations {
                gic.send_sgi(SGI_PING, other, index);
                let iar = gic.acknowledge();
                gic.end(iar);
            }
        })
    };
    let pongs = PONGS.load(Ordering::SeqCst) - pongs_before;
    if pongs != iterations {
        println!("PROBE: bench {name} pongs={pongs} want={iterations}");
    }
    report(name, iterations, ticks);
}

/// The secondary's side of `ipi`: answer each ping with a pong, forever.
pub fn secondary() -> ! {
    let gic = Gic::published();
    let own = machine::own_mpidr();
    gic.init_cpu(own & 0xff);
    let primary = PRIMARY_MPIDR.load(Ordering::SeqCst);
    SECONDARY_READY.store(1, Ordering::SeqCst);
    let mut pongs = 0;
    let mut fp_enabled = false;
    loop {
        let iar = gic.acknowledge();
        if iar & 0x3ff == SGI_PING {
            pongs += 1;
            PONGS.store(pongs, Ordering::SeqCst);
            gic.send_sgi(SGI_PONG, primary, primary & 0xff);
        } else if iar & 0x3ff == SGI_PING_FP {
            if !fp_enabled {
                crate::fpcheck::enable_fp();
                fp_enabled = true;
            }
            crate::fpcheck::touch();
            pongs += 1;
            PONGS.store(pongs, Ordering::SeqCst);
            gic.send_sgi(SGI_PONG, primary, primary & 0xff);
        }
        gic.end(iar);
    }
}

fn timer(gic: &Gic, iterations: u64) {
    gic.init_cpu(0);
    let ahead = machine::counter_frequency() / 20_000; // 50 us
    let mut late = 0;
    for _ in 0..iterations {
        let deadline = machine::counter() + ahead;
        late += gic.wait_for_vtimer(deadline).saturating_sub(deadline);
    }
    report("timer", iterations, late);
}

/// One load from each 2 MiB block of RAM the probe has not touched.
fn faults(machine: &Machine) {
    let (_, image_end) = machine::image_range();
    let first = (image_end + 2 * BLOCK - 1) & !(BLOCK - 1);
    let dtb = machine.dtb_addr & !(BLOCK - 1);
    let mut blocks = 0;
    let mut ticks = 0;
    let mut addr = first;
    while addr + BLOCK <= machine.ram_end() {
        if addr != dtb {
            ticks += time(|| {
                read32(addr);
            });
            blocks += 1;
        }
        addr += BLOCK;
    }
    report("fault", blocks, ticks);
}
