//! Checks that the machine behaves as the Arm ARM says where a hypervisor could leak itself or
//! cut corners: IMPLEMENTATION DEFINED registers UNDEFINED, the OS lock and debug ROM
//! emulated, ACTLR_EL1 read-only, set/way operations completing, the guest's data endianness
//! honoured by emulated devices, an unaligned device access an Alignment fault and a stage-1
//! walk into a hole an external abort at the walk's level (both through a short-lived
//! identity map with the MMU on), ICC_SGI0R_EL1 raising Group 0 SGIs only, WFIT UNDEFINED
//! without FEAT_WFxT, PSTATE.PAN set on an injected exception as on a native one, and (with
//! `probe.zeroed_ram=1`) RAM nobody loaded reading as zero.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::checks::Tally;
use crate::hostile::{SysReg, run_word};
use crate::machine::{self, Machine, WindowKind};
use crate::vectors::{self, EC_UNKNOWN, Fault};

/// L2CTLR_EL1 and CPUACTLR_EL1 on Cortex-A57/A72 (IMPLEMENTATION DEFINED space, CRn 11/15).
const IMPDEF_L2CTLR: SysReg = SysReg::new(3, 1, 11, 0, 2);
const IMPDEF_CPUACTLR: SysReg = SysReg::new(3, 1, 15, 2, 0);
const OSLAR_EL1: SysReg = SysReg::new(2, 0, 1, 0, 4);
const OSLSR_EL1: SysReg = SysReg::new(2, 0, 1, 1, 4);
const MDRAR_EL1: SysReg = SysReg::new(2, 0, 1, 0, 0);
const ACTLR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 1);
const ID_AA64MMFR0_EL1: SysReg = SysReg::new(3, 0, 0, 7, 0);
const ICC_SGI0R_EL1: SysReg = SysReg::new(3, 0, 12, 11, 7);
const ICC_SGI1R_EL1: SysReg = SysReg::new(3, 0, 12, 11, 5);
const ID_AA64ISAR2_EL1: SysReg = SysReg::new(3, 0, 0, 6, 2);
/// `WFIT X1` (FEAT_WFxT).
const WFIT_X1: u32 = 0xD503_1021;
/// `DC CISW, X1` (SYS #0, C7, C14, #2).
const DC_CISW_X1: u32 = 0xD508_7E41;
/// PL011 UARTPeriphID0: 0x11 in its low byte.
const PL011_PERIPH_ID0: u64 = 0xfe0;
/// GICD_IPRIORITYR word for INTIDs 32..35 (SPIs nothing else here uses).
const GICD_IPRIORITYR_32: u64 = 0x420;
/// GICR SGI frame (second 64 KiB of each 128 KiB redistributor) and its registers.
const GICR_SGI_FRAME: u64 = 0x1_0000;
const GICR_STRIDE: u64 = 0x2_0000;
const GICR_IGROUPR0: u64 = 0x080;
const GICR_ISPENDR0: u64 = 0x200;
const GICR_ICPENDR0: u64 = 0x280;
/// RAM sampled per 2 MiB block by the zeroed-RAM check.
const BLOCK: u64 = 2 << 20;

/// What the secondary needs for its APR round: GIC version, distributor base, and the CPU
/// interface (v2) or redistributor (v3) base. Set by the primary before any CPU_ON.
static GIC_VERSION: AtomicU64 = AtomicU64::new(0);
static GICD_BASE: AtomicU64 = AtomicU64::new(0);
static GICC_OR_GICR_BASE: AtomicU64 = AtomicU64::new(0);
/// Per secondary round (1, 2): its active-priority register when it started, and after it
/// acknowledged an SGI without ending it (`u64::MAX` until recorded).
static APR_AT_START: [AtomicU64; 2] = [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)];
static APR_ACTIVE: [AtomicU64; 2] = [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)];

// The A32 code `check_aarch32_el0_abort` runs at EL0: LDR r0, [r1]; SVC #0.
core::arch::global_asm!(
    r#"
    .text
    .balign 8
    .global probe_a32_load_then_svc
probe_a32_load_then_svc:
    .inst 0xe5910000
    .inst 0xef000000
    // T32 for `check_t32_wfi`: WFI (16-bit); SVC #0; SVC #1 (reached only if the WFI was
    // skipped as a 32-bit instruction).
    .balign 8
    .global probe_t32_wfi_then_svc
probe_t32_wfi_then_svc:
    .hword 0xbf30
    .hword 0xdf00
    .hword 0xdf01
    .hword 0xdf01
"#
);

pub fn run(machine: &Machine, tally: &mut Tally) {
    let window = |kind| machine.window(kind).map_or(0, |w| w.base);
    GIC_VERSION.store(u64::from(machine.gic_version), Ordering::SeqCst);
    GICD_BASE.store(window(WindowKind::GicDistributor), Ordering::SeqCst);
    GICC_OR_GICR_BASE.store(
        if machine.gic_version == 3 {
            window(WindowKind::GicRedistributors)
        } else {
            window(WindowKind::GicCpuInterface)
        },
        Ordering::SeqCst,
    );
    check_impdef_and_debug(tally);
    check_big_endian_mmio(machine, tally);
    check_unaligned_mmio(machine, tally);
    check_walk_into_hole(machine, tally);
    check_sgi0r(machine, tally);
    check_wfit(tally);
    check_pan_on_injection(tally);
    check_single_step_over_mmio(machine, tally);
    check_aarch32_el0_abort(tally);
    check_t32_wfi(machine, tally);
    if machine.zeroed_ram_check {
        check_ram_zeroed(machine, tally);
    }
}

fn read(reg: SysReg) -> Result<u64, Fault> {
    vectors::capture(|| run_word(reg.mrs_x0(), 0, 0, 0, 0))
}

fn write(reg: SysReg, value: u64) -> Result<u64, Fault> {
    vectors::capture(|| run_word(reg.msr_x1(), 0, value, 0, 0))
}

fn class(r: Result<u64, Fault>) -> u64 {
    r.err().map_or(u64::MAX, |f| f.class())
}

fn check_impdef_and_debug(tally: &mut Tally) {
    tally.expect_eq(
        "impdef_l2ctlr_undefined",
        class(read(IMPDEF_L2CTLR)),
        EC_UNKNOWN,
    );
    tally.expect_eq(
        "impdef_cpuactlr_undefined",
        class(read(IMPDEF_CPUACTLR)),
        EC_UNKNOWN,
    );
    // The OS lock: OSLM says implemented (0b10: bit 3), OSLK follows OSLAR_EL1.
    let lock = write(OSLAR_EL1, 1).and_then(|_| read(OSLSR_EL1));
    let unlock = write(OSLAR_EL1, 0).and_then(|_| read(OSLSR_EL1));
    match (lock, unlock) {
        (Ok(locked), Ok(unlocked)) => {
            tally.expect_eq("os_lock_locks", locked & 0b1010, 0b1010);
            tally.expect_eq("os_lock_unlocks", unlocked & 0b1010, 0b1000);
        }
        _ => tally.fail("os_lock_locks", "exception", "emulated"),
    }
    tally.expect_eq("mdrar_reads_zero", read(MDRAR_EL1).unwrap_or(u64::MAX), 0);
    // ACTLR_EL1 belongs to the physical core: reads work, writes are ignored.
    match read(ACTLR_EL1) {
        Ok(before) => {
            let wrote = write(ACTLR_EL1, !before);
            let after = read(ACTLR_EL1).unwrap_or(!before);
            tally.expect_eq(
                "actlr_write_ignored",
                u64::from(wrote.is_ok() && after == before),
                1,
            );
        }
        Err(f) => tally.fail("actlr_write_ignored", f.class(), "a value"),
    }
    // Set/way maintenance completes (emulated by VA): no exception.
    let sw = vectors::capture(|| run_word(DC_CISW_X1, 0, 0, 0, 0));
    tally.expect_eq("dc_cisw_completes", class(sw), u64::MAX);
}

/// Loads 32 bits from `addr` with SCTLR_EL1.EE set for that one load only (nothing else in
/// between touches memory), returning what a big-endian guest reads.
fn load_u32_big_endian(addr: u64) -> u32 {
    let value: u64;
    // SAFETY: only registers change between the two SCTLR writes; `addr` is a device
    // register of the probe's machine; SCTLR_EL1 is restored before any other access.
    unsafe {
        asm!(
            "mrs {old}, sctlr_el1",
            "orr {new}, {old}, #(1 << 25)",
            "msr sctlr_el1, {new}",
            "isb",
            "ldr {v:w}, [{a}]",
            "msr sctlr_el1, {old}",
            "isb",
            a = in(reg) addr, v = out(reg) value, old = out(reg) _, new = out(reg) _,
            options(nostack)
        )
    };
    value as u32
}

/// Stores 32 bits to `addr` with SCTLR_EL1.EE set for that one store only.
fn store_u32_big_endian(addr: u64, value: u32) {
    // SAFETY: as for `load_u32_big_endian`.
    unsafe {
        asm!(
            "mrs {old}, sctlr_el1",
            "orr {new}, {old}, #(1 << 25)",
            "msr sctlr_el1, {new}",
            "isb",
            "str {v:w}, [{a}]",
            "msr sctlr_el1, {old}",
            "isb",
            a = in(reg) addr, v = in(reg) value, old = out(reg) _, new = out(reg) _,
            options(nostack)
        )
    };
}

fn check_big_endian_mmio(machine: &Machine, tally: &mut Tally) {
    // ID_AA64MMFR0_EL1.BigEnd: mixed-endian support at EL1 (SCTLR_EL1.EE writable).
    let big_end = read(ID_AA64MMFR0_EL1).map_or(0, |v| (v >> 8) & 0xf);
    if big_end != 1 {
        crate::println!("PROBE: no mixed-endian support (BigEnd={big_end}): EE is RES0");
        return;
    }
    let uart = machine.uart_base();
    let id = vectors::capture(|| load_u32_big_endian(uart + PL011_PERIPH_ID0));
    // The device holds bytes 11 00 00 00; a big-endian word load reads them as 0x11000000.
    tally.expect_eq(
        "mmio_big_endian_load",
        id.map_or(u64::MAX, u64::from),
        0x1100_0000,
    );
    let Some(gicd) = machine.window(WindowKind::GicDistributor) else {
        return;
    };
    let addr = gicd.base + GICD_IPRIORITYR_32;
    let before = vectors::load_u32(addr);
    // A big-endian store of 0xA0 puts byte 0xA0 last: INTID 35's priority.
    let stored = vectors::capture(|| store_u32_big_endian(addr, 0xa0));
    let after = vectors::load_u32(addr);
    vectors::store_u32(addr, before);
    tally.expect_eq(
        "mmio_big_endian_store",
        if stored.is_ok() {
            u64::from(after)
        } else {
            u64::MAX
        },
        0xa000_0000,
    );
}

fn check_sgi0r(machine: &Machine, tally: &mut Tally) {
    let Some(gicr) = machine.window(WindowKind::GicRedistributors) else {
        // No system register interface (GICv2): ICC_SGI0R_EL1 is UNDEFINED.
        tally.expect_eq(
            "icc_sgi0r_undefined_without_gicv3",
            class(write(ICC_SGI0R_EL1, 0)),
            EC_UNKNOWN,
        );
        return;
    };
    let mpidr = machine::own_mpidr();
    let aff0 = mpidr & 0xff;
    // The own redistributor: vCPUs are numbered by Aff0 on a virt-like machine.
    let frame = gicr.base + aff0 * GICR_STRIDE + GICR_SGI_FRAME;
    // TargetList: self (Aff0 bit, RS = Aff0 / 16); Aff1..3 from MPIDR.
    let target = (1 << (aff0 % 16))
        | ((aff0 / 16) << 44)
        | (((mpidr >> 8) & 0xff) << 16)
        | (((mpidr >> 16) & 0xff) << 32)
        | (((mpidr >> 32) & 0xff) << 48);
    let sgi = |intid: u64| target | (intid << 24);
    let groups = vectors::load_u32(frame + GICR_IGROUPR0);
    // SGI 5 Group 1, SGI 6 Group 0.
    vectors::store_u32(frame + GICR_IGROUPR0, (groups | 1 << 5) & !(1 << 6));
    vectors::store_u32(frame + GICR_ICPENDR0, 0b110_0000);
    let g1_by_sgi0r =
        write(ICC_SGI0R_EL1, sgi(5)).map(|_| vectors::load_u32(frame + GICR_ISPENDR0));
    let g0_by_sgi0r =
        write(ICC_SGI0R_EL1, sgi(6)).map(|_| vectors::load_u32(frame + GICR_ISPENDR0));
    let g1_by_sgi1r =
        write(ICC_SGI1R_EL1, sgi(5)).map(|_| vectors::load_u32(frame + GICR_ISPENDR0));
    vectors::store_u32(frame + GICR_ICPENDR0, 0b110_0000);
    vectors::store_u32(frame + GICR_IGROUPR0, groups);
    let bit = |r: Result<u32, Fault>, n: u32| r.map_or(u64::MAX, |v| u64::from((v >> n) & 1));
    tally.expect_eq("icc_sgi0r_skips_group1_sgi", bit(g1_by_sgi0r, 5), 0);
    tally.expect_eq("icc_sgi0r_raises_group0_sgi", bit(g0_by_sgi0r, 6), 1);
    tally.expect_eq("icc_sgi1r_raises_group1_sgi", bit(g1_by_sgi1r, 5), 1);
}

/// A level-1 table mapping the first 2 GiB flat as Normal Non-cacheable memory (devices
/// included): what a hostile guest may do, so an unaligned access reaches a device.
#[repr(C, align(4096))]
struct Level1Table([u64; 512]);
static mut NORMAL_IDENTITY_L1: Level1Table = Level1Table([0; 512]);
/// Block descriptor: valid block (0b01), AttrIndx 0, EL1 read/write, AF.
const BLOCK_NORMAL: u64 = 0b01 | (1 << 10);
/// TCR_EL1: T0SZ = 25 (39-bit VA, walk from level 1), 4 KiB granule, non-cacheable walks,
/// EPD1 (no TTBR1 walks), IPS = 32 bits.
const TCR_39BIT_VA: u64 = 25 | (1 << 23);
/// MAIR_EL1 attribute 0: Normal, inner and outer Non-cacheable.
const MAIR_NORMAL_NC: u64 = 0x44;

/// Loads 32 bits from `addr` with the stage-1 MMU on for that one load, through
/// `NORMAL_IDENTITY_L1` (alignment checking off). Returns the value; a fault leaves the marker.
fn load_u32_normal_mapping(addr: u64) -> u32 {
    load_u32_mapped(addr, BLOCK_NORMAL)
}

/// As `load_u32_normal_mapping`, with `entry0` as the level-1 descriptor of the first GiB.
fn load_u32_mapped(addr: u64, entry0: u64) -> u32 {
    let table = (&raw mut NORMAL_IDENTITY_L1) as *mut u64;
    let value: u64;
    // SAFETY: the table is the probe's own; it is written with the MMU off (straight to
    // memory) before the walker reads it non-cacheably. With the MMU on, everything the
    // probe touches (code, stack, vectors, devices) is mapped at its own address, and the MMU
    // is off again right after the one load (a fault resumes after it, at the restore).
    unsafe {
        table.write_volatile(entry0);
        table.add(1).write_volatile(0x4000_0000 | BLOCK_NORMAL);
        asm!(
            "dsb sy",
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "mrs {old}, sctlr_el1",
            // M on; A (alignment check), C, I, WXN off.
            "orr {new}, {old}, #1",
            "and {new}, {new}, {keep}",
            "msr sctlr_el1, {new}",
            "isb",
            "ldr {v:w}, [{a}]",
            "msr sctlr_el1, {old}",
            "isb",
            mair = in(reg) MAIR_NORMAL_NC, tcr = in(reg) TCR_39BIT_VA, ttbr = in(reg) table,
            keep = in(reg) !((1u64 << 1) | (1 << 2) | (1 << 12) | (1 << 19)),
            a = in(reg) addr, old = out(reg) _, new = out(reg) _,
            v = inout(reg) 0xBAD0_BAD0u64 => value,
            options(nostack)
        )
    };
    value as u32
}

/// An unaligned load from an emulated device (mapped as Normal memory, so stage 1 lets it
/// through) is an Alignment fault at the access, with FAR the address.
fn check_unaligned_mmio(machine: &Machine, tally: &mut Tally) {
    let uart = machine.uart_base();
    let addr = uart + PL011_PERIPH_ID0 + 1;
    match vectors::capture(|| load_u32_normal_mapping(addr)) {
        Err(f) if f.class() == vectors::EC_DATA_ABORT_SAME_EL => {
            tally.expect_eq("mmio_unaligned_alignment_fault", f.status_code(), 0x21);
            tally.expect_eq("mmio_unaligned_far", f.far, addr);
        }
        Err(f) => tally.fail(
            "mmio_unaligned_alignment_fault",
            format_args!("esr={:#x}", f.esr),
            "data abort",
        ),
        Ok(v) => tally.fail(
            "mmio_unaligned_alignment_fault",
            format_args!("{v:#x}"),
            "a fault",
        ),
    }
}

/// A stage-1 walk that reads a table in an IPA hole: a synchronous external abort on the
/// translation table walk, at the level of that table (DFSC 0b0101LL), FAR the VA.
fn check_walk_into_hole(machine: &Machine, tally: &mut Tally) {
    /// A level-1 table descriptor pointing to a level-2 table where nothing is.
    const TABLE_IN_HOLE: u64 = 0x2000_0000 | 0b11;
    let uart = machine.uart_base();
    let addr = uart + PL011_PERIPH_ID0;
    match vectors::capture(|| load_u32_mapped(addr, TABLE_IN_HOLE)) {
        Err(f) if f.class() == vectors::EC_DATA_ABORT_SAME_EL => {
            // 0b010110: level 2.
            tally.expect_eq("stage1_walk_into_hole_fsc", f.status_code(), 0x16);
            tally.expect_eq("stage1_walk_into_hole_far", f.far, addr);
        }
        Err(f) => tally.fail(
            "stage1_walk_into_hole_fsc",
            format_args!("esr={:#x}", f.esr),
            "data abort",
        ),
        Ok(v) => tally.fail(
            "stage1_walk_into_hole_fsc",
            format_args!("{v:#x}"),
            "a fault",
        ),
    }
}

/// On a CPU with FEAT_PAN and SCTLR_EL1.SPAN = 0, taking an exception to EL1 sets PSTATE.PAN
/// (Arm ARM D1.3 "Exception entry"): an UNDEFINED that Bulkhead injects (a trapped PMU
/// register) must enter the handler exactly as one the CPU takes itself (UDF).
fn check_pan_on_injection(tally: &mut Tally) {
    const ID_AA64MMFR1_EL1: SysReg = SysReg::new(3, 0, 0, 7, 1);
    const PMCR_EL0: SysReg = SysReg::new(3, 3, 9, 12, 0);
    const SCTLR_SPAN: u64 = 1 << 23;
    const UDF: u32 = 0x0000_0000;
    let pan = read(ID_AA64MMFR1_EL1).map_or(0, |v| (v >> 20) & 0xf);
    if pan == 0 {
        return;
    }
    let sctlr: u64;
    // SAFETY: SCTLR_EL1.SPAN only changes PSTATE.PAN on exception entry; PAN (S3_0_C4_C2_3)
    // exists (checked above) and is cleared so the entry's effect shows.
    unsafe {
        asm!("mrs {}, sctlr_el1", out(reg) sctlr, options(nomem, nostack));
        asm!("msr sctlr_el1, {}", "isb", "msr S3_0_C4_C2_3, xzr", in(reg) sctlr & !SCTLR_SPAN,
            options(nostack));
    }
    vectors::RECORD_PAN.store(true, core::sync::atomic::Ordering::SeqCst);
    let injected = read(PMCR_EL0);
    let pan_injected = vectors::pan_at_last_exception();
    let native = vectors::capture(|| run_word(UDF, 0, 0, 0, 0));
    let pan_native = vectors::pan_at_last_exception();
    vectors::RECORD_PAN.store(false, core::sync::atomic::Ordering::SeqCst);
    // SAFETY: restores SCTLR_EL1.
    unsafe { asm!("msr sctlr_el1, {}", "isb", in(reg) sctlr, options(nostack)) };
    tally.expect_eq(
        "pan_set_on_injected_exception",
        class(injected) << 8 | pan_injected,
        EC_UNKNOWN << 8 | 1,
    );
    tally.expect_eq(
        "pan_set_on_native_exception",
        class(native) << 8 | pan_native,
        EC_UNKNOWN << 8 | 1,
    );
}

/// Software step (MDSCR_EL1.SS, KDE) over an MMIO load that Bulkhead emulates: the step
/// completes with that one instruction, so the step exception is taken at the next one
/// (a hypervisor that skips the load but leaves PSTATE.SS set lets one more instruction run).
fn check_single_step_over_mmio(machine: &Machine, tally: &mut Tally) {
    /// MDSCR_EL1.SS (bit 0) and KDE (bit 13: debug exceptions at EL1 itself).
    const MDSCR_SS_KDE: u64 = 1 | (1 << 13);
    /// SPSR for the ERET into the stepped code: EL1h, A/I/F masked, D clear, SS set.
    const SPSR_STEP: u64 = 0x5 | (0b111 << 6) | (1 << 21);
    let uart = machine.uart_base();
    let addr = uart + PL011_PERIPH_ID0;
    // The OS lock must be clear for debug exceptions (the CPU's reset leaves it set).
    let _ = write(OSLAR_EL1, 0);
    let mut after_load: u64 = 0;
    let mut value: u64 = 0;
    let stepped = vectors::capture(|| {
        // SAFETY: the ERET goes to the next instruction of this block, at EL1h with only
        // PSTATE.D and SS changed; the step exception resumes at its ELR inside the block; the
        // registers used are declared; MDSCR_EL1 is cleared at the end.
        unsafe {
            asm!(
                "msr mdscr_el1, {mdscr}",
                "isb",
                "adr {tmp}, 1f",
                "msr elr_el1, {tmp}",
                "msr spsr_el1, {spsr}",
                "adr {after}, 2f",
                "eret",
                "1: ldr {v:w}, [{a}]",
                "2: nop",
                "nop",
                "msr mdscr_el1, xzr",
                "isb",
                mdscr = in(reg) MDSCR_SS_KDE, spsr = in(reg) SPSR_STEP, a = in(reg) addr,
                tmp = out(reg) _, after = out(reg) after_load, v = out(reg) value,
                options(nostack)
            )
        }
    });
    // Debug exceptions masked again (the step exception's entry set PSTATE.D; its return
    // restored D = 0 from SPSR): mask them for the rest of the probe.
    // SAFETY: DAIFSet only masks.
    unsafe { asm!("msr daifset, #8", options(nomem, nostack)) };
    match stepped {
        Err(f) if f.class() == vectors::EC_SOFTWARE_STEP_SAME_EL => {
            tally.expect_eq(
                "single_step_over_mmio_stops_after_it",
                vectors::elr_at_last_exception(),
                after_load,
            );
            tally.expect_eq("single_step_over_mmio_loads", value & 0xff, 0x11);
        }
        Err(f) => tally.fail(
            "single_step_over_mmio_stops_after_it",
            format_args!("esr={:#x}", f.esr),
            "a software step exception",
        ),
        Ok(()) => tally.fail(
            "single_step_over_mmio_stops_after_it",
            "no step exception",
            "one",
        ),
    }
}

/// AArch32 EL0 code loading from an IPA hole: the abort Bulkhead injects is taken at the
/// "lower EL, AArch32" vector (VBAR_EL1 + 0x600) as a data abort from a lower EL (EC 0x24)
/// with FAR the address and ELR the load (Arm ARM D1.10.2 vector offsets). Only on CPUs whose
/// ID registers offer AArch32 at EL0 (ID_AA64PFR0_EL1.EL0 = 2).
fn check_aarch32_el0_abort(tally: &mut Tally) {
    const ID_AA64PFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 0);
    const HOLE: u64 = 0x2000_0000;
    unsafe extern "C" {
        fn probe_run_aarch32_el0(code: u64, r1: u64, spsr: u64);
        fn probe_a32_load_then_svc();
        static mut probe_el0_esr: [u64; 4];
    }
    if read(ID_AA64PFR0_EL1).map_or(0, |v| v & 0xf) != 2 {
        return;
    }
    let code = probe_a32_load_then_svc as *const () as u64;
    let record = (&raw mut probe_el0_esr) as *mut u64;
    // SAFETY: the record is the vector's; the EL0 code is two A32 instructions whose SVC
    // returns here through the vector, with the callee-saved registers and SP restored.
    let (esr, far, elr) = unsafe {
        for i in 0..3 {
            record.add(i).write_volatile(0);
        }
        probe_run_aarch32_el0(code, HOLE, SPSR_A32_USER);
        (
            record.read_volatile(),
            record.add(1).read_volatile(),
            record.add(2).read_volatile(),
        )
    };
    tally.expect_eq("aarch32_el0_abort_vector_ec", esr >> 26, 0x24);
    tally.expect_eq("aarch32_el0_abort_far", far, HOLE);
    tally.expect_eq("aarch32_el0_abort_elr", elr, code);
}

/// SPSR for AArch32 User mode, A/I/F masked, little-endian, A32 (T32 with bit 5).
const SPSR_A32_USER: u64 = 0x1d0;
const SPSR_T32: u64 = 1 << 5;

/// A 16-bit T32 WFI at EL0 (SCTLR_EL1.nTWI = 1, so it traps to EL2 alone) with an
/// interrupt already pending: Bulkhead completes it and resumes 2 bytes on (ESR.IL = 0), at
/// the SVC #0 right after it, not 4 (SVC #1).
fn check_t32_wfi(machine: &Machine, tally: &mut Tally) {
    const ID_AA64PFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 0);
    const SCTLR_NTWI: u64 = 1 << 16;
    unsafe extern "C" {
        fn probe_run_aarch32_el0(code: u64, r1: u64, spsr: u64);
        fn probe_t32_wfi_then_svc();
        static mut probe_el0_esr: [u64; 4];
    }
    if read(ID_AA64PFR0_EL1).map_or(0, |v| v & 0xf) != 2 {
        return;
    }
    let gicd = GICD_BASE.load(Ordering::SeqCst);
    // SGI 2 pending and enabled for this vCPU: the WFI's wake-up.
    let aff0 = machine::own_mpidr() & 0xff;
    let (pend, unpend) = if machine.gic_version == 3 {
        let frame = GICC_OR_GICR_BASE.load(Ordering::SeqCst) + aff0 * GICR_STRIDE + GICR_SGI_FRAME;
        vectors::store_u32(gicd, 0x12);
        vectors::store_u32(
            frame + GICR_IGROUPR0,
            vectors::load_u32(frame + GICR_IGROUPR0) | 1 << 2,
        );
        vectors::store_u32(frame + GICR_ISENABLER0, 1 << 2);
        vectors::store_u32(frame + GICR_ISPENDR0, 1 << 2);
        (frame + GICR_ISPENDR0, frame + GICR_ICPENDR0)
    } else {
        vectors::store_u32(gicd, 1);
        vectors::store_u32(gicd + GICD_ISENABLER0, 1 << 2);
        vectors::store_u32(gicd + GICD_SGIR, (2 << 24) | 2);
        (gicd + 0x200, gicd + 0x280)
    };
    let pending = vectors::load_u32(pend) & (1 << 2) != 0;
    let sctlr: u64;
    let record = (&raw mut probe_el0_esr) as *mut u64;
    // SAFETY: nTWI only lets EL0 WFI reach EL2; the EL0 code ends in an SVC that returns here
    // through the vector; SCTLR_EL1 is restored after.
    let svc_esr = unsafe {
        asm!("mrs {}, sctlr_el1", out(reg) sctlr, options(nomem, nostack));
        asm!("msr sctlr_el1, {}", "isb", in(reg) sctlr | SCTLR_NTWI, options(nostack));
        record.add(3).write_volatile(0);
        probe_run_aarch32_el0(
            probe_t32_wfi_then_svc as *const () as u64,
            0,
            SPSR_A32_USER | SPSR_T32,
        );
        asm!("msr sctlr_el1, {}", "isb", in(reg) sctlr, options(nostack));
        record.add(3).read_volatile()
    };
    // Leave SGI 2 as it was: not pending (GICv2 SGIs also by source, GICD_CPENDSGIR), off.
    vectors::store_u32(unpend, 1 << 2);
    if machine.gic_version == 2 {
        vectors::store_u32(gicd + 0xf10, 0xff << 16);
        vectors::store_u32(gicd + 0x180, 1 << 2);
    } else {
        vectors::store_u32(unpend - GICR_ICPENDR0 + 0x180, 1 << 2);
    }
    tally.expect_eq("t32_wfi_pending_wakeup", u64::from(pending), 1);
    // SVC from AArch32 (EC 0x11) with immediate 0: the instruction right after the WFI.
    tally.expect_eq(
        "t32_wfi_resumes_after_2_bytes",
        svc_esr >> 26 << 16 | (svc_esr & 0xffff),
        0x11 << 16,
    );
}

/// On a CPU whose ID registers do not offer FEAT_WFxT, WFIT is UNDEFINED. (Where they do,
/// the timeout is not checked here: QEMU 10.0.2 reports a trapped WFIT with WFI's syndrome,
/// TI = 0 and no register, so no hypervisor under it can see the timeout; Bulkhead's WFIT
/// handling is host-tested instead.)
fn check_wfit(tally: &mut Tally) {
    let wfxt = read(ID_AA64ISAR2_EL1).map_or(0, |v| v & 0xf);
    if wfxt == 0 {
        let got = vectors::capture(|| run_word(WFIT_X1, 0, u64::MAX, 0, 0));
        tally.expect_eq("wfit_undefined_without_wfxt", class(got), EC_UNKNOWN);
    }
}

/// Every 2 MiB block of RAM that holds neither the probe nor the DTB reads as zero at a few
/// offsets, and so does RAM just past the image and the DTB: nothing of what the host RAM held
/// before reaches a new VM.
fn check_ram_zeroed(machine: &Machine, tally: &mut Tally) {
    let (_, image_end) = machine::image_range();
    let dtb_end = machine.dtb_addr + machine.dtb_size;
    let mut samples = 0u64;
    let mut dirty: Option<(u64, u64)> = None;
    let mut sample = |addr: u64| {
        if addr + 8 > machine.ram_end() || machine.is_probe_memory(addr, 8) {
            return;
        }
        samples += 1;
        let value =
            u64::from(vectors::load_u32(addr)) | u64::from(vectors::load_u32(addr + 4)) << 32;
        if value != 0 && dirty.is_none() {
            dirty = Some((addr, value));
        }
    };
    sample((image_end + 0xfff) & !0xfff);
    sample((dtb_end + 0xfff) & !0xfff);
    let mut block = machine.ram_base;
    while block < machine.ram_end() {
        for offset in [0, 0x1000, BLOCK / 2, BLOCK - 8] {
            sample(block + offset);
        }
        block += BLOCK;
    }
    match dirty {
        None => tally.expect_eq("ram_zeroed_before_first_run", u64::from(samples > 0), 1),
        Some((addr, value)) => tally.fail(
            "ram_zeroed_before_first_run",
            format_args!("{value:#x}@{addr:#x}"),
            "0",
        ),
    }
}

/// On a secondary vCPU in round `round` (1 or 2): records its active priorities as it starts,
/// then acknowledges an SGI to itself without ending it (so they are nonzero when it calls
/// CPU_OFF) and records them again. A vCPU started again must find them clear (the GIC
/// virtual CPU interface is reset on CPU_ON), whatever its previous life left.
pub fn secondary_apr_round(round: usize) {
    let Some(slot) = round.checked_sub(1).filter(|i| *i < 2) else {
        return;
    };
    let gicd = GICD_BASE.load(Ordering::SeqCst);
    let base = GICC_OR_GICR_BASE.load(Ordering::SeqCst);
    if gicd == 0 || base == 0 {
        return;
    }
    let mpidr = machine::own_mpidr();
    let aff0 = mpidr & 0xff;
    if GIC_VERSION.load(Ordering::SeqCst) == 3 {
        let sgi_frame = base + aff0 * GICR_STRIDE + GICR_SGI_FRAME;
        let read_sys = |reg: SysReg| -> u64 {
            let v: u64;
            // SAFETY: GICv3 CPU interface registers of this vCPU; no memory effects. (Not
            // `run_word`: its buffer belongs to the primary.)
            unsafe {
                match reg {
                    ICC_AP1R0_EL1 => {
                        asm!("mrs {}, S3_0_C12_C9_0", out(reg) v, options(nomem, nostack))
                    }
                    _ => asm!("mrs {}, S3_0_C12_C12_0", out(reg) v, options(nomem, nostack)),
                }
            }
            v
        };
        APR_AT_START[slot].store(read_sys(ICC_AP1R0_EL1), Ordering::SeqCst);
        // Distributor: affinity routing and Group 1 on; SGI 1 Group 1, enabled, here.
        vectors::store_u32(gicd, 0x12);
        vectors::store_u32(
            sgi_frame + GICR_IGROUPR0,
            vectors::load_u32(sgi_frame + GICR_IGROUPR0) | 1 << 1,
        );
        vectors::store_u32(sgi_frame + GICR_ISENABLER0, 1 << 1);
        let target =
            (1u64 << (aff0 % 16)) | ((aff0 / 16) << 44) | (((mpidr >> 8) & 0xff) << 16) | (1 << 24);
        // SAFETY: PMR, group enable and SGI generation of this vCPU's CPU interface.
        unsafe {
            asm!(
                "msr S3_0_C4_C6_0, {pmr}",   // ICC_PMR_EL1
                "msr S3_0_C12_C12_7, {one}", // ICC_IGRPEN1_EL1
                "isb",
                "msr S3_0_C12_C11_5, {sgi}", // ICC_SGI1R_EL1
                "isb",
                pmr = in(reg) 0xffu64, one = in(reg) 1u64, sgi = in(reg) target,
                options(nomem, nostack)
            )
        };
        // Acknowledge it (ICC_IAR1_EL1), leave it active.
        let start = machine::counter();
        while read_sys(ICC_IAR1_EL1) & 0xffffff != 1 {
            if machine::counter() - start > machine::counter_frequency() {
                return;
            }
        }
        APR_ACTIVE[slot].store(read_sys(ICC_AP1R0_EL1), Ordering::SeqCst);
    } else {
        APR_AT_START[slot].store(
            u64::from(vectors::load_u32(base + GICC_APR0)),
            Ordering::SeqCst,
        );
        vectors::store_u32(gicd, 1); // GICD_CTLR.Enable
        vectors::store_u32(gicd + GICD_ISENABLER0, 1 << 1);
        vectors::store_u32(base + GICC_PMR, 0xff);
        vectors::store_u32(base, 1); // GICC_CTLR.Enable
        vectors::store_u32(gicd + GICD_SGIR, (2 << 24) | 1); // SGI 1 to itself
        let start = machine::counter();
        while vectors::load_u32(base + GICC_IAR) & 0x3ff != 1 {
            if machine::counter() - start > machine::counter_frequency() {
                return;
            }
        }
        APR_ACTIVE[slot].store(
            u64::from(vectors::load_u32(base + GICC_APR0)),
            Ordering::SeqCst,
        );
    }
}

/// After the secondary's two rounds: round 1 left an interrupt active (its APR nonzero when
/// it called CPU_OFF), and round 2 started with the APR clear.
pub fn check_apr_after_cpu_off_on(tally: &mut Tally) {
    let active = APR_ACTIVE[0].load(Ordering::SeqCst);
    tally.expect_eq(
        "apr_set_before_cpu_off",
        u64::from(active != 0 && active != u64::MAX),
        1,
    );
    tally.expect_eq(
        "apr_clear_after_cpu_on",
        APR_AT_START[1].load(Ordering::SeqCst),
        0,
    );
}

const ICC_AP1R0_EL1: SysReg = SysReg::new(3, 0, 12, 9, 0);
const ICC_IAR1_EL1: SysReg = SysReg::new(3, 0, 12, 12, 0);
const GICR_ISENABLER0: u64 = 0x100;
const GICD_ISENABLER0: u64 = 0x100;
const GICD_SGIR: u64 = 0xf00;
const GICC_PMR: u64 = 0x4;
const GICC_IAR: u64 = 0xc;
const GICC_APR0: u64 = 0xd0;
