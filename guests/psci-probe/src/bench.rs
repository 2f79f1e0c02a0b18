//! `probe.bench=NAME[,NAME...]`: micro-benchmarks of what the hypervisor costs a guest, for
//! `scripts/bench.sh`. Each loop runs `probe.bench_iters=N` times (default 10,000) and prints
//! `PROBE: bench NAME iterations=N insns_per_op=X.Y`. Under QEMU `-icount shift=0` one
//! nanosecond of guest time is one instruction (every exception level, every CPU), and the
//! virtual counter (CNTVOFF_EL2 = 0) counts guest time, so counter ticks converted to
//! nanoseconds are instructions. Only one CPU runs at a time here: the one that waits does so
//! in WFI, never in a spin loop whose instructions would be counted too.
//!
//! - `hvc`: PSCI_VERSION round trip, minus the same loop with a NOP.
//! - `gicd`: a 32-bit read of GICD_TYPER (emulated), minus the NOP loop.
//! - `uart`: a write of `.` to the PL011 data register (emulated), minus the NOP loop.
//! - `ipi`: vCPU 0 sends SGI 1 to vCPU 1 and waits in WFI; vCPU 1, waiting in WFI, acknowledges
//!   it and sends SGI 2 back; vCPU 0 acknowledges that: one round trip, two IPIs.
//! - `timer`: the virtual timer is armed 50 us ahead and the CPU waits in WFI; the figure is
//!   the time from the programmed deadline to the guest's read of the interrupt's INTID.
//! - `fault`: a first load from each untouched 2 MiB block of RAM (a stage-2 fault that maps
//!   it); as many blocks as RAM has, not `bench_iters`.
//! - `idle`: the CPU waits `probe.bench_idle_ms=MS` (default 1000) in WFI for its virtual
//!   timer; bench.sh runs it twice under the instruction-counting plugin and divides.
//!
//! The interrupt side polls: IRQs stay masked (PSTATE.I), WFI still wakes on a pending one,
//! and the INTID is read from the CPU interface (ICC_IAR1_EL1, GICv2: GICC_IAR), as an IRQ
//! handler's first step would.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use psci_probe::bootargs;

use crate::machine::{self, Machine, WindowKind};
use crate::{println, psci};

const BENCH_ARG: &str = "probe.bench=";
const ITERS_ARG: &str = "probe.bench_iters=";
const IDLE_ARG: &str = "probe.bench_idle_ms=";
const DEFAULT_ITERATIONS: u64 = 10_000;
/// CPU_ON context id that sends the secondary into `secondary` rather than the checks.
pub const SECONDARY_CONTEXT: u64 = 0xB0E7_C4A0_0000_0001;
/// SGIs of the IPI ping-pong and the virtual timer's PPI.
const SGI_PING: u32 = 1;
const SGI_PONG: u32 = 2;
const VTIMER_PPI: u32 = 27;
/// INTIDs 1020..1023 are special (1023: nothing pending).
const SPURIOUS: u32 = 1020;
const GICD_TYPER: u64 = 0x4;
const GICD_SGIR: u64 = 0xf00;
const GICR_STRIDE: u64 = 0x20000;
const GICR_WAKER: u64 = 0x14;
const GICR_SGI_FRAME: u64 = 0x10000;
const GICC_CTLR: u64 = 0x0;
const GICC_PMR: u64 = 0x4;
const GICC_IAR: u64 = 0xc;
const GICC_EOIR: u64 = 0x10;
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
            "ipi" => ipi(machine, &gic, iterations),
            "timer" => timer(&gic, iterations),
            "fault" => faults(machine),
            "idle" => {
                let ms = bootargs::number(bootargs, IDLE_ARG).unwrap_or(1000);
                gic.init_cpu(0);
                let ticks = ms * machine::counter_frequency() / 1000;
                wait_for_vtimer(&gic, machine::counter() + ticks);
                println!("PROBE: bench idle ms={ms}");
            }
            other => println!("PROBE: bench {other} unknown"),
        }
    }
    println!("PROBE: bench done");
}

/// The guest's GIC, as far as the benchmarks need it.
struct Gic {
    version: u8,
    gicd: u64,
    gicr: u64,
    gicc: u64,
}

impl Gic {
    fn new(machine: &Machine) -> Self {
        let base = |kind| machine.window(kind).map_or(0, |w| w.base);
        let gic = Gic {
            version: machine.gic_version,
            gicd: base(WindowKind::GicDistributor),
            gicr: base(WindowKind::GicRedistributors),
            gicc: base(WindowKind::GicCpuInterface),
        };
        // Distributor: forward Group 1 (v3, affinity routing) / everything (v2).
        write32(gic.gicd, if gic.version == 3 { 0x12 } else { 1 });
        gic
    }

    /// Enables SGIs 1-2 and the virtual timer PPI for CPU `index` (the caller), and this
    /// CPU's interface with every priority unmasked.
    fn init_cpu(&self, index: u64) {
        let enables = (1 << SGI_PING) | (1 << SGI_PONG) | (1 << VTIMER_PPI);
        if self.version == 3 {
            let rd = self.gicr + index * GICR_STRIDE;
            let sgi = rd + GICR_SGI_FRAME;
            write32(rd + GICR_WAKER, 0);
            write32(sgi + 0x80, u32::MAX); // IGROUPR0: Group 1
            for word in 0..8 {
                write32(sgi + 0x400 + word * 4, 0xa0a0_a0a0); // IPRIORITYR
            }
            write32(sgi + 0x100, enables); // ISENABLER0
            // SAFETY: the guest's own GIC CPU interface registers.
            unsafe {
                asm!(
                    "mrs {t}, icc_sre_el1",
                    "orr {t}, {t}, #1",
                    "msr icc_sre_el1, {t}",
                    "isb",
                    "mov {t}, #0xff",
                    "msr icc_pmr_el1, {t}",
                    "mov {t}, #1",
                    "msr icc_igrpen1_el1, {t}",
                    "isb",
                    t = out(reg) _,
                    options(nostack),
                )
            };
        } else {
            for word in 0..8 {
                write32(self.gicd + 0x400 + word * 4, 0xa0a0_a0a0); // banked rows
            }
            write32(self.gicd + 0x100, enables);
            write32(self.gicc + GICC_PMR, 0xff);
            write32(self.gicc + GICC_CTLR, 1);
        }
    }

    /// Sends SGI `intid` to the CPU with MPIDR affinity `mpidr` (v2: interface `index`).
    fn send_sgi(&self, intid: u32, mpidr: u64, index: u64) {
        if self.version == 3 {
            let value =
                (u64::from(intid) << 24) | (((mpidr >> 8) & 0xff) << 16) | (1 << (mpidr & 0xf));
            // SAFETY: generating an SGI has no memory effects.
            unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) };
        } else {
            write32(self.gicd + GICD_SGIR, (1 << (16 + index)) | intid);
        }
    }

    /// Waits in WFI for an interrupt and acknowledges it: the INTID (GICv2: with its source
    /// bits, which `end` needs back).
    fn acknowledge(&self) -> u32 {
        loop {
            let iar = if self.version == 3 {
                let iar: u64;
                // SAFETY: acknowledging an interrupt at the guest's own CPU interface.
                unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack)) };
                iar as u32
            } else {
                read32(self.gicc + GICC_IAR)
            };
            if iar & 0x3ff < SPURIOUS {
                return iar;
            }
            // SAFETY: WFI only waits.
            unsafe { asm!("wfi", options(nomem, nostack)) };
        }
    }

    /// Ends (EOIs and deactivates) an interrupt `acknowledge` returned.
    fn end(&self, iar: u32) {
        if self.version == 3 {
            // SAFETY: as for `acknowledge`.
            unsafe {
                asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(iar), options(nostack))
            };
        } else {
            write32(self.gicc + GICC_EOIR, iar);
        }
    }
}

/// One STR: an emulated register's access must carry a syndrome (no writeback addressing).
fn write32(addr: u64, value: u32) {
    crate::vectors::store_u32(addr, value)
}

fn read32(addr: u64) -> u32 {
    crate::vectors::load_u32(addr)
}

/// Round trips the secondary answered (written by it, read by the primary).
static PONGS: AtomicU64 = AtomicU64::new(0);
/// Set by the secondary once its GIC interface is up.
static SECONDARY_READY: AtomicU64 = AtomicU64::new(0);
/// The GIC the secondary uses (set before CPU_ON).
static GIC_VERSION: AtomicU64 = AtomicU64::new(0);
static GIC_BASES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static PRIMARY_MPIDR: AtomicU64 = AtomicU64::new(0);

fn ipi(machine: &Machine, gic: &Gic, iterations: u64) {
    let Some(other) = machine.other_cpu else {
        println!("PROBE: bench ipi needs two CPUs");
        return;
    };
    gic.init_cpu(0);
    GIC_VERSION.store(u64::from(gic.version), Ordering::SeqCst);
    for (slot, base) in GIC_BASES.iter().zip([gic.gicd, gic.gicr, gic.gicc]) {
        slot.store(base, Ordering::SeqCst);
    }
    PRIMARY_MPIDR.store(machine::own_mpidr(), Ordering::SeqCst);
    let entry = crate::checks::secondary_entry_address();
    let result = psci::hvc(psci::CPU_ON_64, other, entry, SECONDARY_CONTEXT);
    if result != 0 {
        println!("PROBE: bench ipi CPU_ON failed: {result:#x}");
        return;
    }
    while SECONDARY_READY.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    let index = other & 0xff;
    let ticks = time(|| {
        for _ in 0..iterations {
            gic.send_sgi(SGI_PING, other, index);
            let iar = gic.acknowledge();
            gic.end(iar);
        }
    });
    let pongs = PONGS.load(Ordering::SeqCst);
    if pongs != iterations {
        println!("PROBE: bench ipi pongs={pongs} want={iterations}");
    }
    report("ipi", iterations, ticks);
}

/// The secondary's side of `ipi`: answer each ping with a pong, forever.
pub fn secondary() -> ! {
    let gic = Gic {
        version: GIC_VERSION.load(Ordering::SeqCst) as u8,
        gicd: GIC_BASES[0].load(Ordering::SeqCst),
        gicr: GIC_BASES[1].load(Ordering::SeqCst),
        gicc: GIC_BASES[2].load(Ordering::SeqCst),
    };
    let own = machine::own_mpidr();
    gic.init_cpu(own & 0xff);
    let primary = PRIMARY_MPIDR.load(Ordering::SeqCst);
    SECONDARY_READY.store(1, Ordering::SeqCst);
    let mut pongs = 0;
    loop {
        let iar = gic.acknowledge();
        if iar & 0x3ff == SGI_PING {
            pongs += 1;
            PONGS.store(pongs, Ordering::SeqCst);
            gic.send_sgi(SGI_PONG, primary, primary & 0xff);
        }
        gic.end(iar);
    }
}

fn set_vtimer(cval: u64, ctl: u64) {
    // SAFETY: the guest's own virtual timer.
    unsafe {
        asm!("msr cntv_cval_el0, {}", "msr cntv_ctl_el0, {}", "isb", in(reg) cval, in(reg) ctl,
            options(nostack))
    };
}

/// Arms the virtual timer for `deadline`, waits for its interrupt; returns the counter when
/// the INTID was read.
fn wait_for_vtimer(gic: &Gic, deadline: u64) -> u64 {
    set_vtimer(deadline, 1);
    loop {
        let iar = gic.acknowledge();
        let now = machine::counter();
        if iar & 0x3ff == VTIMER_PPI {
            // Disable first: the level-sensitive line must be low before the EOI.
            set_vtimer(0, 0);
            gic.end(iar);
            return now;
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
        late += wait_for_vtimer(gic, deadline).saturating_sub(deadline);
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
