//! Chaos mode (`probe.chaos=N [probe.seed=S] [probe.chaos_trace=1]` in /chosen/bootargs): N
//! deterministic pseudo-random hostile operations before the normal checks. "Guests are
//! hostile": nothing a guest does — any HVC/SMC number or argument, any address, any system
//! register, any MMIO value — may panic or wedge the hypervisor, so after the chaos the normal
//! checks must all still pass.
//!
//! Each operation runs inside `vectors::capture`, so every exception it raises at EL1 (an
//! injected abort or UNDEF, an alignment fault, an FP trap) is counted and survived. The
//! operations never touch what the probe itself needs: its image, stacks and DTB; PL011
//! registers that would silence the console; the PSCI calls that end or block the test
//! (CPU_SUSPEND, CPU_OFF, CPU_ON of a real vCPU, SYSTEM_*); system registers that steer its
//! own execution (SCTLR, VBAR, TTBR, TCR, MAIR, SP, ELR, SPSR, DAIF, CPACR, ...).
//!
//! A run is reproducible from its seed; with `probe.chaos_trace=1` every operation is printed
//! before it runs, so the last line before a hang names the culprit. To find the operations
//! that matter, `probe.chaos_skip=K` skips operations 0..K and `probe.chaos_only=a,b-c,..`
//! performs only the listed ones (the others are still generated, so indices stay stable).

use core::fmt;

use crate::checks::Tally;
use crate::hostile::{self, Access, SysReg};
use crate::machine::{self, Machine, WindowKind};
use crate::println;
use crate::psci::{self, Conduit, ret};
use crate::vectors::{self, Fault};

/// xorshift64* (Vigna): small, fast, and the same sequence on every run for one seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's only fixed point.
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A value a hostile guest would try: anything, or one of the edge cases.
    fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << 63,
            3 => self.below(0x100),
            4 => u64::from(u32::MAX),
            _ => self.next(),
        }
    }
}

/// Function ids (w0) that end or block the test when they succeed: CPU_SUSPEND and
/// CPU_DEFAULT_SUSPEND (block until an interrupt the probe never enables), CPU_FREEZE,
/// CPU_OFF, CPU_ON (started at a random entry the secondary would spoil the later checks;
/// chaos makes CPU_ON only with MPIDRs no vCPU has), SYSTEM_OFF/RESET/RESET2/SUSPEND.
const ENDING_FUNCTIONS: [u32; 14] = [
    0x8400_0001,
    0xC400_0001,
    0x8400_0002,
    0x8400_0003,
    0xC400_0003,
    0x8400_0008,
    0x8400_0009,
    0x8400_000B,
    0x8400_000C,
    0xC400_000C,
    0x8400_000E,
    0xC400_000E,
    0x8400_0012,
    0xC400_0012,
];

/// Where the SMCCC ranges start: Arm architecture, PSCI (SMC32/SMC64), SiP, OEM, standard
/// hypervisor and vendor hypervisor services (SMC32/SMC64), and a trusted OS.
const SMCCC_BASES: [u32; 10] = [
    0x8000_0000,
    0xC000_0000,
    0x8400_0000,
    0xC400_0000,
    0x8200_0000,
    0x8300_0000,
    0x8500_0000,
    0x8600_0000,
    0xC600_0000,
    0xB200_0000,
];

/// PL011 registers a write to cannot silence the console: IBRD, FBRD (the emulated and the
/// QEMU UART ignore the baud rate), IFLS, IMSC, ICR, DMACR. Offsets in the UART window.
const PL011_WRITABLE: [u64; 6] = [0x24, 0x28, 0x34, 0x38, 0x44, 0x48];
/// PL011 registers saved before and restored after the chaos: IBRD, FBRD, LCR_H, CR, IFLS,
/// IMSC, DMACR.
const PL011_RESTORED: [u64; 7] = [0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x48];

/// GIC registers worth aiming at more often than a uniform offset would: CTLR, TYPER,
/// ISENABLER/ICENABLER, ISPENDR/ICPENDR, ISACTIVER/ICACTIVER, IPRIORITYR, ITARGETSR, ICFGR,
/// SGIR (v2), CPENDSGIR/SPENDSGIR, IROUTER (v3), and the redistributor's WAKER, PROPBASER,
/// PENDBASER, and its SGI frame's ISENABLER0/IPRIORITYR.
const GIC_HOT_OFFSETS: [u64; 22] = [
    0x0, 0x4, 0x8, 0x80, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x400, 0x7F8, 0x800, 0xC00,
    0xF00, 0xF10, 0xF20, 0x6100, 0x14, 0x70, 0x1_0100, 0x1_0400,
];

/// System registers chaos may write with any value, because the probe never relies on
/// them: the GICv3 SGI generators (spurious SGIs are fine), the priority mask, EOI and
/// deactivate (of interrupts never taken), the group enable and control, and the EL1
/// physical and the virtual timer (disabled again at the end). On GICv2 the ICC ones are
/// UNDEFINED, which is counted like any other fault.
const WRITABLE_SYSREGS: [SysReg; 19] = [
    SysReg::new(3, 0, 12, 11, 5), // ICC_SGI1R_EL1
    SysReg::new(3, 0, 12, 11, 6), // ICC_ASGI1R_EL1
    SysReg::new(3, 0, 12, 11, 7), // ICC_SGI0R_EL1
    SysReg::new(3, 0, 4, 6, 0),   // ICC_PMR_EL1
    SysReg::new(3, 0, 12, 12, 1), // ICC_EOIR1_EL1
    SysReg::new(3, 0, 12, 8, 1),  // ICC_EOIR0_EL1
    SysReg::new(3, 0, 12, 11, 1), // ICC_DIR_EL1
    SysReg::new(3, 0, 12, 12, 3), // ICC_BPR1_EL1
    SysReg::new(3, 0, 12, 12, 4), // ICC_CTLR_EL1
    SysReg::new(3, 0, 12, 12, 7), // ICC_IGRPEN1_EL1
    SysReg::new(3, 0, 12, 9, 0),  // ICC_AP1R0_EL1
    SysReg::new(3, 3, 14, 2, 0),  // CNTP_TVAL_EL0
    SysReg::new(3, 3, 14, 2, 1),  // CNTP_CTL_EL0
    SysReg::new(3, 3, 14, 2, 2),  // CNTP_CVAL_EL0
    SysReg::new(3, 3, 14, 3, 0),  // CNTV_TVAL_EL0
    SysReg::new(3, 3, 14, 3, 1),  // CNTV_CTL_EL0
    SysReg::new(3, 3, 14, 3, 2),  // CNTV_CVAL_EL0
    SysReg::new(3, 0, 9, 14, 1),  // PMINTENSET_EL1: PMU overflow interrupts
    SysReg::new(3, 3, 9, 14, 3),  // PMOVSSET_EL0: raise PMU overflows
];

const ICC_PMR_EL1: SysReg = SysReg::new(3, 0, 4, 6, 0);
const CNTP_CTL_EL0: SysReg = SysReg::new(3, 3, 14, 2, 1);
const CNTV_CTL_EL0: SysReg = SysReg::new(3, 3, 14, 3, 1);
const PMINTENCLR_EL1: SysReg = SysReg::new(3, 0, 9, 14, 2);
const PMOVSCLR_EL0: SysReg = SysReg::new(3, 3, 9, 12, 3);
/// ISR_EL1: bit 8 (A) says an SError is pending.
const ISR_EL1: SysReg = SysReg::new(3, 0, 12, 1, 0);

/// Whether an MSR to `reg` might change how the probe itself runs, so chaos never makes it
/// with a random encoding. op0 = 3, op1 = 3 is EL0-accessible space: only CRn=4/CRm=2 there
/// (NZCV, DAIF, SVCR, DIT, SSBS, TCO) steers execution. op0 = 2 is debug and trace space:
/// breakpoints, watchpoints and software step cannot fire at EL1 while PSTATE.D is set, which
/// it always is in the probe, and the OS lock / DCC / claim tags do nothing to it.
fn msr_would_steer_probe(reg: SysReg) -> bool {
    match (reg.op0, reg.op1) {
        (3, 3) => reg.crn == 4 && reg.crm == 2,
        (2, _) => false,
        _ => true,
    }
}

/// One hostile operation.
#[derive(Clone, Copy)]
enum Op {
    /// An SMCCC call; `imm` is the HVC/SMC immediate.
    Call {
        conduit: Conduit,
        imm: u16,
        x: [u64; 4],
    },
    /// CPU_ON (SMC32 or SMC64) of an MPIDR no vCPU has: must be INVALID_PARAMETERS.
    CpuOnBadMpidr {
        x: [u64; 4],
    },
    Memory {
        access: Access,
        addr: u64,
        value: u64,
    },
    Jump {
        target: u64,
    },
    Read {
        reg: SysReg,
    },
    Write {
        reg: SysReg,
        value: u64,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Op::Call { conduit, imm, x } => {
                let name = if *conduit == Conduit::Hvc {
                    "hvc"
                } else {
                    "smc"
                };
                write!(
                    f,
                    "{name} #{imm:#x} x0={:#x} x1={:#x} x2={:#x} x3={:#x}",
                    x[0], x[1], x[2], x[3]
                )
            }
            Op::CpuOnBadMpidr { x } => write!(
                f,
                "cpu_on x0={:#x} mpidr={:#x} entry={:#x} ctx={:#x}",
                x[0], x[1], x[2], x[3]
            ),
            Op::Memory {
                access,
                addr,
                value,
            } => write!(f, "{access:?} addr={addr:#x} value={value:#x}"),
            Op::Jump { target } => write!(f, "jump {target:#x}"),
            Op::Read { reg } => write!(f, "mrs {reg}"),
            Op::Write { reg, value } => write!(f, "msr {reg} value={value:#x}"),
        }
    }
}

/// What the chaos saw.
struct Stats {
    ops: u64,
    faults: u64,
    /// Faults by ESR_EL1.EC.
    by_class: [u64; 64],
    /// CPU_ON with a bad MPIDR that did not answer INVALID_PARAMETERS (the first such op).
    cpu_on_wrong: u64,
    cpu_on_first_wrong: Option<(Op, u64)>,
    cpu_on_calls: u64,
}

/// Runs the chaos `machine.chaos` asks for (nothing when it asks for 0 operations).
pub fn run(machine: &Machine, tally: &mut Tally) {
    let config = machine.chaos;
    if config.ops == 0 {
        return;
    }
    println!(
        "PROBE: chaos start ops={} seed={:#x} gic=v{} windows={:x?}",
        config.ops, config.seed, machine.gic_version, machine.windows
    );
    let saved_uart = save_uart(machine);
    let saved_pmr = vectors::capture(|| hostile::run_word(ICC_PMR_EL1.mrs_x0(), 0, 0, 0, 0));

    let mut rng = Rng::new(config.seed);
    let mut stats = Stats {
        ops: 0,
        faults: 0,
        by_class: [0; 64],
        cpu_on_wrong: 0,
        cpu_on_first_wrong: None,
        cpu_on_calls: 0,
    };
    for index in 0..config.ops {
        let op = next_op(&mut rng, machine);
        let chosen = if config.only_count > 0 {
            config.only[..config.only_count]
                .iter()
                .any(|(first, last)| (*first..=*last).contains(&index))
        } else {
            index >= config.skip
        };
        if !chosen {
            continue;
        }
        if config.trace {
            println!("PROBE: chaos op {index}: {op}");
        }
        let outcome = perform(op);
        stats.ops += 1;
        match outcome {
            Ok(x0) => {
                if let Op::CpuOnBadMpidr { x } = op {
                    stats.cpu_on_calls += 1;
                    let width = if psci::is_smc64(x[0] as u32) {
                        u64::MAX
                    } else {
                        u64::from(u32::MAX)
                    };
                    if x0 & width != ret::INVALID_PARAMETERS as u64 & width {
                        stats.cpu_on_wrong += 1;
                        stats.cpu_on_first_wrong.get_or_insert((op, x0));
                    }
                }
            }
            Err(fault) => {
                stats.faults += 1;
                stats.by_class[fault.class() as usize] += 1;
                if let Op::CpuOnBadMpidr { .. } = op {
                    stats.cpu_on_calls += 1;
                    stats.cpu_on_wrong += 1;
                    stats.cpu_on_first_wrong.get_or_insert((op, fault.esr));
                }
            }
        }
    }

    // Leave the machine as the checks expect it: timers off, PMU interrupts off, the
    // priority mask and the UART as they were.
    for reg in [CNTP_CTL_EL0, CNTV_CTL_EL0] {
        let _ = vectors::capture(|| hostile::run_word(reg.msr_x1(), 0, 0, 0, 0));
    }
    let _ = vectors::capture(|| hostile::run_word(PMINTENCLR_EL1.msr_x1(), 0, u64::MAX, 0, 0));
    let _ = vectors::capture(|| hostile::run_word(PMOVSCLR_EL0.msr_x1(), 0, u64::MAX, 0, 0));
    if let Ok(pmr) = saved_pmr {
        let _ = vectors::capture(|| hostile::run_word(ICC_PMR_EL1.msr_x1(), 0, pmr, 0, 0));
    }
    restore_uart(machine, &saved_uart);

    let isr = vectors::capture(|| hostile::run_word(ISR_EL1.mrs_x0(), 0, 0, 0, 0)).unwrap_or(0);
    print_classes(&stats);
    println!(
        "PROBE: chaos done ops={} faults={} serror_pending={}",
        stats.ops,
        stats.faults,
        u8::from(isr & (1 << 8) != 0)
    );
    match stats.cpu_on_first_wrong {
        None => tally.pass(format_args!(
            "chaos_cpu_on_bad_mpidr_invalid_parameters calls={}",
            stats.cpu_on_calls
        )),
        Some((op, got)) => tally.fail(
            format_args!(
                "chaos_cpu_on_bad_mpidr_invalid_parameters wrong={}/{} first=[{op}]",
                stats.cpu_on_wrong, stats.cpu_on_calls
            ),
            format_args!("{got:#x}"),
            format_args!("{:#x}", ret::INVALID_PARAMETERS),
        ),
    }
    tally.expect_eq("chaos_no_serror_pending", isr & (1 << 8), 0);
}

fn print_classes(stats: &Stats) {
    use core::fmt::Write as _;
    let mut line = crate::console::Console;
    let _ = write!(line, "PROBE: chaos faults by class:");
    for (class, count) in stats.by_class.iter().enumerate() {
        if *count != 0 {
            let _ = write!(line, " ec{class:#x}={count}");
        }
    }
    let _ = writeln!(line);
}

/// Chooses the next operation.
fn next_op(rng: &mut Rng, machine: &Machine) -> Op {
    match rng.below(100) {
        0..=19 => smccc_call(rng, Conduit::Hvc),
        20..=27 => smccc_call(rng, Conduit::Smc),
        28..=31 => cpu_on_bad_mpidr(rng),
        32..=51 => device_access(rng, machine),
        52..=61 => unbacked_access(rng, machine),
        62..=69 => ram_access(rng, machine),
        70..=73 => jump(rng, machine),
        74..=85 => Op::Read {
            reg: random_sysreg(rng),
        },
        86..=93 => {
            let reg = rng.pick(&WRITABLE_SYSREGS);
            let value = rng.value();
            Op::Write {
                reg,
                value: steer_clear_of_qemu_bpr_bug(reg, value),
            }
        }
        _ => random_msr(rng),
    }
}

fn smccc_call(rng: &mut Rng, conduit: Conduit) -> Op {
    let mut x0 = match rng.below(10) {
        // Anything at all, also in bits 63:32 (which the callee must ignore).
        0..=2 => rng.next(),
        // A known function with hostile arguments.
        3 => u64::from(rng.pick(&[
            psci::PSCI_VERSION,
            psci::PSCI_FEATURES,
            psci::AFFINITY_INFO_64,
            0x8400_0004, // AFFINITY_INFO (SMC32)
            0x8400_0005, // MIGRATE
            0xC400_0005,
            psci::MIGRATE_INFO_TYPE,
            0x8400_0007, // MIGRATE_INFO_UP_CPU
            0x8400_000D, // NODE_HW_STATE
            0x8400_000F, // PSCI_SET_SUSPEND_MODE
            0x8400_0010, // PSCI_STAT_RESIDENCY
            0x8400_0011, // PSCI_STAT_COUNT
            0x8400_0013, // MEM_PROTECT
            0x8400_0014, // MEM_PROTECT_CHECK_RANGE
            psci::SMCCC_VERSION,
            psci::SMCCC_ARCH_FEATURES,
        ])),
        // Concentrated in the SMCCC ranges, sometimes with junk in bits 63:32.
        _ => {
            let id = rng.pick(&SMCCC_BASES) | (rng.below(0x100) as u32);
            let junk = if rng.chance(20) { rng.next() << 32 } else { 0 };
            junk | u64::from(id)
        }
    };
    if ENDING_FUNCTIONS.contains(&(x0 as u32)) {
        // Still a function id nobody implements: the top of the same range.
        x0 |= 0xFF;
    }
    // HVC/SMC #0 is the SMCCC conduit; other immediates are not SMCCC calls at all.
    let imm = if rng.chance(80) { 0 } else { rng.next() as u16 };
    let x = [
        x0,
        smccc_argument(rng),
        smccc_argument(rng),
        smccc_argument(rng),
    ];
    Op::Call { conduit, imm, x }
}

/// An argument of an SMCCC call: random, an MPIDR, a function id, or a RAM address.
fn smccc_argument(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => machine::own_mpidr(),
        1 => rng.below(4),
        2 => u64::from(rng.pick(&SMCCC_BASES)) | rng.below(0x20),
        3 => machine::RAM_BASE + rng.below(1 << 30),
        _ => rng.value(),
    }
}

fn cpu_on_bad_mpidr(rng: &mut Rng) -> Op {
    let smc64 = rng.chance(50);
    let mpidr = match rng.below(4) {
        // Aff0 = 255: no virt-like guest has that many vCPUs.
        0 => 0xFF,
        // Aff3 set on an otherwise real vCPU (SMC64 only: SMC32 has no Aff3).
        1 if smc64 => ((rng.below(255) + 1) << 32) | rng.below(2),
        // Aff1 or Aff2 set on an otherwise real vCPU.
        2 => ((rng.below(255) + 1) << rng.pick(&[8u64, 16])) | rng.below(2),
        // Anything in the affinity fields with Aff0 = 255, and junk in the non-affinity bits.
        _ => (rng.next() & 0xFF_FFFF_FF00 & if smc64 { u64::MAX } else { 0xFFFF_FFFF }) | 0xFF,
    };
    let id = if smc64 { 0xC400_0003 } else { 0x8400_0003 };
    let entry = match rng.below(3) {
        0 => machine::image_range().0,
        1 => 0,
        _ => rng.next(),
    };
    Op::CpuOnBadMpidr {
        x: [id, mpidr, entry, rng.next()],
    }
}

/// A random access to a device window (GIC distributor, redistributors or CPU interface,
/// PL011); only harmless PL011 registers are written.
fn device_access(rng: &mut Rng, machine: &Machine) -> Op {
    let present = machine.windows.iter().flatten().count() as u64;
    let Some(window) = machine
        .windows
        .iter()
        .flatten()
        .nth(rng.below(present) as usize)
        .copied()
    else {
        return unbacked_access(rng, machine);
    };
    let access = if rng.chance(70) {
        rng.pick(&Access::PLAIN)
    } else {
        rng.pick(&Access::ALL)
    };
    let mut offset = match rng.below(4) {
        0 | 1 => rng.below(window.size),
        2 => rng.below(0x1000.min(window.size)),
        _ => rng.pick(&GIC_HOT_OFFSETS) + (rng.below(0x40) & !3),
    } % window.size.max(1);
    // Mostly naturally aligned; the rest unaligned on purpose.
    if rng.chance(75) {
        offset &= !(access.span().min(8) - 1);
    }
    if window.kind == WindowKind::Pl011 && access.writes() {
        let register = rng.pick(&PL011_WRITABLE);
        offset = register + (rng.below(4) & (4 - access.span().min(4)));
        // Only the plain stores stay inside the chosen register (or two writable ones).
        let stays_writable = |start: u64, len: u64| {
            (start & !3..start + len)
                .step_by(4)
                .all(|reg| PL011_WRITABLE.contains(&reg))
        };
        if !matches!(
            access,
            Access::StoreByte | Access::StoreHalf | Access::StoreWord | Access::StoreDouble
        ) || !stays_writable(offset, access.span())
        {
            return Op::Memory {
                access: Access::LoadWord,
                addr: window.base + (offset & !3),
                value: 0,
            };
        }
    }
    Op::Memory {
        access,
        addr: window.base + offset,
        value: rng.value(),
    }
}

/// An address with neither RAM nor a device window behind it.
fn unbacked_address(rng: &mut Rng, machine: &Machine) -> u64 {
    for _ in 0..16 {
        let addr = match rng.below(8) {
            0 => 0,
            1 => machine.ram_end() + rng.below(0x1000),
            2 => rng.next(),                  // far beyond any IPA size
            3 => rng.next() & 0xFF_FFFF_FFFF, // 40-bit
            4 => rng.next() & 0xFFFF_FFFF,    // 32-bit
            5 => machine.ram_base - 1 - rng.below(0x1000),
            _ => rng.next() & 0xFFFF_FFFF_FFFF, // 48-bit
        };
        let in_ram = addr >= machine.ram_base && addr < machine.ram_end();
        let near_device = machine.window_at(addr).is_some()
            || machine.window_at(addr.wrapping_add(2048)).is_some();
        if !in_ram && !near_device && addr.checked_add(2048).is_some() {
            return addr;
        }
    }
    machine.ram_end()
}

fn unbacked_access(rng: &mut Rng, machine: &Machine) -> Op {
    let mut addr = unbacked_address(rng, machine);
    let access = rng.pick(&Access::ALL);
    if rng.chance(60) {
        addr &= !(access.span().min(8) - 1);
    }
    Op::Memory {
        access,
        addr,
        value: rng.value(),
    }
}

/// An access to guest RAM: anywhere for reads, outside the probe's own memory for writes,
/// with a bias towards the first and last bytes of RAM. Never DC ZVA or DC IVAC (they may
/// destroy more than the access names).
fn ram_access(rng: &mut Rng, machine: &Machine) -> Op {
    let size = machine.ram_size.max(0x1000);
    let offset = match rng.below(4) {
        0 => rng.below(64),
        1 => size - 1 - rng.below(64),
        _ => rng.below(size),
    };
    let addr = machine.ram_base + offset;
    let mut access = rng.pick(&Access::ALL);
    if matches!(access, Access::ZeroBlock | Access::Invalidate) {
        access = Access::CleanInvalidate;
    }
    let aligned = if rng.chance(70) {
        addr & !(access.span().min(8) - 1)
    } else {
        addr
    };
    if access.writes() && machine.is_probe_memory(aligned & !15, access.span() + 16) {
        return Op::Memory {
            access: Access::LoadDouble,
            addr: aligned & !7,
            value: 0,
        };
    }
    Op::Memory {
        access,
        addr: aligned,
        value: rng.value(),
    }
}

/// A jump where nothing can run: an unbacked IPA, a device window, or a misaligned address
/// outside RAM (never into RAM: what is there would run).
fn jump(rng: &mut Rng, machine: &Machine) -> Op {
    let mut target = match rng.below(3) {
        0 => machine
            .windows
            .iter()
            .flatten()
            .nth(rng.below(4) as usize)
            .map_or(0, |w| w.base + (rng.below(w.size) & !3)),
        _ => unbacked_address(rng, machine),
    };
    if rng.chance(30) {
        target |= rng.below(3) + 1;
    }
    if target >= machine.ram_base && target < machine.ram_end() {
        target = machine.ram_end();
    }
    Op::Jump { target }
}

/// QEMU 10.0.2 aborts (an assertion `bpr > 0` in its GICv3 CPU interface model, natively
/// too) once a guest that wrote a binary point of 0 to ICC_BPR1_EL1 takes an interrupt. That
/// is QEMU's bug, not the hypervisor's: keep the field nonzero so CI does not flake on it.
/// The value is changed after it was drawn, so every later op of a seed stays the same.
fn steer_clear_of_qemu_bpr_bug(reg: SysReg, value: u64) -> u64 {
    const ICC_BPR1_EL1: SysReg = SysReg::new(3, 0, 12, 12, 3);
    if reg == ICC_BPR1_EL1 && value & 0b111 == 0 {
        value | 1
    } else {
        value
    }
}

/// Any encoding with op0 = 2 (debug, trace) or 3 (everything else).
fn random_sysreg(rng: &mut Rng) -> SysReg {
    SysReg::new(
        rng.below(2) as u32 + 2,
        rng.below(8) as u32,
        rng.below(16) as u32,
        rng.below(16) as u32,
        rng.below(8) as u32,
    )
}

/// An MSR with a random encoding in EL0-accessible (op0 = 3, op1 = 3) or debug/trace space.
fn random_msr(rng: &mut Rng) -> Op {
    for _ in 0..8 {
        let mut reg = random_sysreg(rng);
        if reg.op0 == 3 {
            reg.op1 = 3;
        } else if rng.chance(60) {
            // Mostly the architected debug registers: op1 = 0 or 3, CRn = 0, 1 or 7.
            reg.op1 = rng.pick(&[0, 3]);
            reg.crn = rng.pick(&[0, 1, 7]);
        }
        if !msr_would_steer_probe(reg) {
            return Op::Write {
                reg,
                value: rng.value(),
            };
        }
    }
    Op::Read {
        reg: SysReg::new(3, 3, 14, 0, 2), // CNTVCT_EL0
    }
}

fn perform(op: Op) -> Result<u64, Fault> {
    vectors::capture(|| match op {
        Op::Call { conduit, imm: 0, x } => psci::call(conduit, x[0], x[1], x[2], x[3]),
        Op::Call { conduit, imm, x } => {
            let word = match conduit {
                Conduit::Hvc => hostile::hvc_word(imm),
                Conduit::Smc => hostile::smc_word(imm),
            };
            hostile::run_word(word, x[0], x[1], x[2], x[3])
        }
        Op::CpuOnBadMpidr { x } => psci::call(Conduit::Hvc, x[0], x[1], x[2], x[3]),
        Op::Memory {
            access,
            addr,
            value,
        } => hostile::access(access, addr, value),
        Op::Jump { target } => {
            hostile::jump(target);
            0
        }
        Op::Read { reg } => hostile::run_word(reg.mrs_x0(), 0, 0, 0, 0),
        Op::Write { reg, value } => hostile::run_word(reg.msr_x1(), 0, value, 0, 0),
    })
}

/// The PL011 registers in `PL011_RESTORED`, as read before the chaos.
fn save_uart(machine: &Machine) -> [Option<u64>; 7] {
    let base = machine.uart_base();
    PL011_RESTORED
        .map(|offset| vectors::capture(|| hostile::access(Access::LoadWord, base + offset, 0)).ok())
}

fn restore_uart(machine: &Machine, saved: &[Option<u64>; 7]) {
    let base = machine.uart_base();
    // LCR_H before CR, as the PL011 manual asks (CR last re-enables the UART).
    for (offset, value) in PL011_RESTORED.iter().zip(saved) {
        if let Some(value) = value {
            let _ = vectors::capture(|| hostile::access(Access::StoreWord, base + offset, *value));
        }
    }
}
