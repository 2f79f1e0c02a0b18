//! `probe.fpcheck=ROUNDS [probe.fpcheck_vl=BYTES]`: the FP/SIMD (and SVE) registers must
//! survive the vCPU giving its physical CPU away, for a hypervisor that shares CPUs between
//! vCPUs and switches their FP state lazily (Arm ARM D1.x: CPTR_EL2.TFP/TZ trap the first use
//! after a switch).
//!
//! Every vCPU of the VM (the primary, and the secondary started with CPU_ON when the DTB lists
//! two CPUs) enables FP/SIMD and SVE at EL1 (CPACR_EL1.FPEN, ZEN) and then, ROUNDS times:
//! fills the registers with a pattern of its own (a key drawn from the counter and its MPIDR,
//! and the round) — V0-V31, or with SVE Z0-Z31, P0-P15 and FFR at the current vector length —
//! plus FPCR and FPSR; gives the CPU away (most rounds: WFI until its virtual timer fires 1 ms
//! later; every 8th round: a 25 ms busy loop, longer than a scheduler slice, so it is
//! preempted); stores the registers back and compares every byte with the pattern, and the
//! vector length with the one it started with. `probe.fpcheck_vl=BYTES` first asks for that
//! vector length in ZCR_EL1 (default: the longest allowed), so two vCPUs can run at
//! different lengths.
//!
//! The probe is built for a soft-float target: the compiler never touches these registers,
//! so only the assembly below does, and nothing between its load and its store changes them.
//!
//! Lines: `PROBE: fpcheck start rounds=N sve=0|1 vl=BYTES cpus=C`, then per vCPU
//! `PROBE: fpcheck cpu=K rounds=R vl=BYTES` and `PROBE: PASS fpcheck_cpuK`, or
//! `PROBE: FAIL fpcheck_cpuK got=round=R,REG+OFFSET:0xGOT want=0xWANT` at the first mismatch.

use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use psci_probe::bootargs;
use psci_probe::fpimage::{Layout, MAX_IMAGE_BYTES, MAX_VL_BYTES};
use psci_probe::memplan::mix;

use crate::checks::Tally;
use crate::gic::Gic;
use crate::machine::{self, Machine};
use crate::{println, psci};

const FPCHECK_ARG: &str = "probe.fpcheck=";
const VL_ARG: &str = "probe.fpcheck_vl=";
/// CPU_ON context id that sends the secondary into `secondary`.
pub const SECONDARY_CONTEXT: u64 = 0xF9C4_EC00_0000_0001;
/// Every 8th round is a busy loop of this many milliseconds instead of a WFI.
const BUSY_EVERY: u64 = 8;
const BUSY_MS: u64 = 25;
const WFI_MS: u64 = 1;
/// How long the primary waits for the secondary's result, in seconds of virtual time.
const SECONDARY_TIMEOUT_S: u64 = 120;
/// FPCR bits that hold state without FP operations: AHP, DN, FZ, RMode (Arm ARM C5.2.8).
const FPCR_MASK: u64 = 0x07C0_0000;
/// FPSR cumulative flags: QC, IDC, IXC, UFC, OFC, DZC, IOC (Arm ARM C5.2.9).
const FPSR_MASK: u64 = 0x0800_009F;
/// ID_AA64PFR0_EL1.SVE, bits 35:32.
const PFR0_SVE_SHIFT: u64 = 32;
/// CPACR_EL1.FPEN (21:20) and ZEN (17:16): no trapping at EL1 or EL0.
const CPACR_FPEN: u64 = 3 << 20;
const CPACR_ZEN: u64 = 3 << 16;

/// The register images, one per vCPU (the probe runs at most two).
#[repr(C, align(256))]
struct Buffer([u8; MAX_IMAGE_BYTES]);
static mut BUFFERS: [Buffer; 2] = [Buffer([0; MAX_IMAGE_BYTES]), Buffer([0; MAX_IMAGE_BYTES])];

// Loads and stores of the whole register file from/to the buffer in x0. `.arch_extension`
// lets the assembler take FP/SIMD and SVE instructions the soft-float target does not enable.
global_asm!(
    r#"
    .arch_extension fp
    .arch_extension simd
    .text
    .balign 16
probe_fp_load:
    ldp q0, q1, [x0, #0]
    ldp q2, q3, [x0, #32]
    ldp q4, q5, [x0, #64]
    ldp q6, q7, [x0, #96]
    ldp q8, q9, [x0, #128]
    ldp q10, q11, [x0, #160]
    ldp q12, q13, [x0, #192]
    ldp q14, q15, [x0, #224]
    ldp q16, q17, [x0, #256]
    ldp q18, q19, [x0, #288]
    ldp q20, q21, [x0, #320]
    ldp q22, q23, [x0, #352]
    ldp q24, q25, [x0, #384]
    ldp q26, q27, [x0, #416]
    ldp q28, q29, [x0, #448]
    ldp q30, q31, [x0, #480]
    ret

probe_fp_store:
    stp q0, q1, [x0, #0]
    stp q2, q3, [x0, #32]
    stp q4, q5, [x0, #64]
    stp q6, q7, [x0, #96]
    stp q8, q9, [x0, #128]
    stp q10, q11, [x0, #160]
    stp q12, q13, [x0, #192]
    stp q14, q15, [x0, #224]
    stp q16, q17, [x0, #256]
    stp q18, q19, [x0, #288]
    stp q20, q21, [x0, #320]
    stp q22, q23, [x0, #352]
    stp q24, q25, [x0, #384]
    stp q26, q27, [x0, #416]
    stp q28, q29, [x0, #448]
    stp q30, q31, [x0, #480]
    ret

// One FP/SIMD instruction: under lazy FP switching, the first after a switch traps.
probe_fp_touch:
    mov v0.16b, v1.16b
    ret

    .arch_extension sve
probe_sve_vl:
    rdvl x0, #1
    ret

// Z0-Z31 at x0, P0-P15 and the FFR image at x0 + 32 * VL (predicates are VL / 8 bytes).
probe_sve_load:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ldr z\n, [x0, #\n, mul vl]
    .endr
    addvl x1, x0, #16
    addvl x1, x1, #16
    ldr p0, [x1, #16, mul vl]
    wrffr p0.b
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    ldr p\n, [x1, #\n, mul vl]
    .endr
    ret

probe_sve_store:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str z\n, [x0, #\n, mul vl]
    .endr
    addvl x1, x0, #16
    addvl x1, x1, #16
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    str p\n, [x1, #\n, mul vl]
    .endr
    rdffr p0.b
    str p0, [x1, #16, mul vl]
    ret
"#
);

unsafe extern "C" {
    fn probe_fp_load(buffer: *const u8);
    fn probe_fp_store(buffer: *mut u8);
    fn probe_fp_touch();
    fn probe_sve_vl() -> u64;
    fn probe_sve_load(buffer: *const u8);
    fn probe_sve_store(buffer: *mut u8);
}

/// `probe.fpcheck=ROUNDS`, if given.
pub fn requested(bootargs: &str) -> Option<u64> {
    bootargs::number(bootargs, FPCHECK_ARG)
}

/// What one vCPU's rounds found.
#[derive(Clone, Copy, Default)]
struct Outcome {
    rounds: u64,
    vl: u64,
    mismatch: Option<Mismatch>,
}

/// The first byte (or register) that did not hold its pattern.
#[derive(Clone, Copy)]
struct Mismatch {
    round: u64,
    /// The vector length of the image (0: V0-V31 without SVE).
    vl: u64,
    /// Byte offset into the register image, or one of the `WHAT_*` markers.
    offset: u64,
    got: u64,
    want: u64,
}

const WHAT_FPCR: u64 = 1 << 32;
const WHAT_FPSR: u64 = 2 << 32;
const WHAT_VL: u64 = 3 << 32;

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "round={},", self.round)?;
        match self.offset {
            WHAT_FPCR => write!(f, "fpcr")?,
            WHAT_FPSR => write!(f, "fpsr")?,
            WHAT_VL => write!(f, "vl")?,
            offset => {
                let layout = Layout {
                    vl: self.vl as usize,
                };
                write!(f, "{}", layout.place(offset as usize))?
            }
        }
        write!(f, ":{:#x}", self.got)
    }
}

/// Runs the check on every vCPU and reports (the caller powers off).
pub fn run(machine: &Machine, rounds: u64, tally: &mut Tally) {
    let sve = enable_fp();
    let vl = set_vector_length(sve, machine.bootargs);
    let gic = Gic::new(machine);
    gic.publish();
    ROUNDS.store(rounds, Ordering::SeqCst);
    let cpus = if machine.other_cpu.is_some() { 2 } else { 1 };
    println!(
        "PROBE: fpcheck start rounds={rounds} sve={} vl={vl} cpus={cpus}",
        u8::from(sve)
    );
    if let Some(other) = machine.other_cpu {
        let entry = crate::checks::secondary_entry_address();
        let result = psci::hvc(psci::CPU_ON_64, other, entry, SECONDARY_CONTEXT);
        if result != 0 {
            tally.fail("fpcheck_cpu1_on", format_args!("{result:#x}"), "0x0");
        }
    }
    gic.init_cpu(machine::own_mpidr() & 0xff);
    let own = check(0, &gic, sve, rounds);
    report(0, own, tally);
    if machine.other_cpu.is_some() {
        // Wait in WFI (1 ms at a time), so a secondary sharing this CPU gets it.
        let limit = machine::counter() + SECONDARY_TIMEOUT_S * machine::counter_frequency();
        let tick = machine::counter_frequency() / 1000;
        while SECONDARY_DONE.load(Ordering::SeqCst) == 0 && machine::counter() < limit {
            gic.wait_for_vtimer(machine::counter() + tick);
        }
        if SECONDARY_DONE.load(Ordering::SeqCst) == 0 {
            tally.fail("fpcheck_cpu1", "timeout", "a result");
        } else {
            report(1, published_outcome(), tally);
        }
    }
}

/// The secondary's side: the same rounds, its result published for the primary to print,
/// then CPU_OFF.
pub fn secondary() -> ! {
    let sve = enable_fp();
    // The same length the primary asked for: ZCR_EL1 is per vCPU.
    let vl = VL_REQUEST.load(Ordering::SeqCst);
    if sve {
        write_zcr(vl);
    }
    let gic = Gic::published();
    gic.init_cpu(machine::own_mpidr() & 0xff);
    let outcome = check(1, &gic, sve, ROUNDS.load(Ordering::SeqCst));
    publish_outcome(outcome);
    psci::hvc(psci::CPU_OFF, 0, 0, 0);
    psci::park()
}

fn report(cpu: usize, outcome: Outcome, tally: &mut Tally) {
    println!(
        "PROBE: fpcheck cpu={cpu} rounds={} vl={}",
        outcome.rounds, outcome.vl
    );
    match outcome.mismatch {
        None => tally.pass(format_args!("fpcheck_cpu{cpu}")),
        Some(m) => tally.fail(
            format_args!("fpcheck_cpu{cpu}"),
            m,
            format_args!("{:#x}", m.want),
        ),
    }
}

/// The rounds of one vCPU.
fn check(cpu: usize, gic: &Gic, sve: bool, rounds: u64) -> Outcome {
    // SAFETY: each vCPU uses only its own buffer; the pointer stays inside the static.
    let buffer = unsafe { (&raw mut BUFFERS).cast::<Buffer>().add(cpu).cast::<u8>() };
    // SAFETY: reads the vector length; SVE is enabled at EL1 when `sve`.
    let vl = if sve { unsafe { probe_sve_vl() } } else { 0 };
    let layout = Layout { vl: vl as usize };
    let seed = mix(machine::physical_counter() ^ machine::own_mpidr().rotate_left(40));
    let frequency = machine::counter_frequency();
    let mut outcome = Outcome {
        rounds: 0,
        vl: if sve { vl } else { 16 },
        mismatch: None,
    };
    for round in 0..rounds {
        let key = mix(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for offset in 0..layout.bytes() {
            // SAFETY: `offset` < MAX_IMAGE_BYTES (the vector length is at most MAX_VL_BYTES).
            unsafe { buffer.add(offset).write_volatile(layout.byte(key, offset)) };
        }
        let fpcr = mix(key ^ 1) & FPCR_MASK;
        let fpsr = mix(key ^ 2) & FPSR_MASK;
        write_fp_controls(fpcr, fpsr);
        // SAFETY: the buffer holds `layout.bytes()` bytes of pattern, aligned to 256.
        unsafe {
            if sve {
                probe_sve_load(buffer)
            } else {
                probe_fp_load(buffer)
            }
        };
        if round % BUSY_EVERY == BUSY_EVERY - 1 {
            let end = machine::counter() + BUSY_MS * frequency / 1000;
            while machine::counter() < end {}
        } else {
            gic.wait_for_vtimer(machine::counter() + WFI_MS * frequency / 1000);
        }
        // SAFETY: as for the load; the store overwrites the image.
        unsafe {
            if sve {
                probe_sve_store(buffer)
            } else {
                probe_fp_store(buffer)
            }
        };
        let (got_fpcr, got_fpsr) = read_fp_controls();
        // SAFETY: as above.
        let got_vl = if sve { unsafe { probe_sve_vl() } } else { 0 };
        let mut first = None;
        if got_vl != vl {
            first = Some((WHAT_VL, got_vl, vl));
        } else if got_fpcr & FPCR_MASK != fpcr {
            first = Some((WHAT_FPCR, got_fpcr, fpcr));
        } else if got_fpsr & FPSR_MASK != fpsr {
            first = Some((WHAT_FPSR, got_fpsr, fpsr));
        } else {
            for offset in 0..layout.bytes() {
                // SAFETY: as above.
                let got = unsafe { buffer.add(offset).read_volatile() };
                let want = layout.byte(key, offset);
                if got != want {
                    first = Some((offset as u64, u64::from(got), u64::from(want)));
                    break;
                }
            }
        }
        if let Some((offset, got, want)) = first {
            outcome.mismatch = Some(Mismatch {
                round,
                vl,
                offset,
                got,
                want,
            });
            return outcome;
        }
        outcome.rounds = round + 1;
    }
    outcome
}

/// Executes one FP/SIMD instruction (V0 := V1); `enable_fp` must have run on this vCPU.
pub fn touch() {
    // SAFETY: only V0 changes, which no Rust code of the soft-float probe uses.
    unsafe { probe_fp_touch() }
}

/// Enables FP/SIMD (and SVE when the CPU has it) at EL1; returns whether SVE is there.
pub fn enable_fp() -> bool {
    let pfr0: u64;
    // SAFETY: reading an ID register (the hypervisor's sanitised view) has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    let sve = (pfr0 >> PFR0_SVE_SHIFT) & 0xf != 0;
    let enable = CPACR_FPEN | if sve { CPACR_ZEN } else { 0 };
    // SAFETY: CPACR_EL1 only controls FP/SIMD/SVE trapping at EL1/EL0.
    unsafe {
        asm!(
            "mrs {t}, cpacr_el1",
            "orr {t}, {t}, {e}",
            "msr cpacr_el1, {t}",
            "isb",
            t = out(reg) _,
            e = in(reg) enable,
            options(nomem, nostack),
        )
    };
    sve
}

/// Writes ZCR_EL1.LEN for `bytes` per vector (a multiple of 16).
fn write_zcr(bytes: u64) {
    let len = (bytes / 16).saturating_sub(1);
    // SAFETY: ZCR_EL1 (S3_0_C1_C2_0) only sets this vCPU's vector length; SVE is enabled.
    unsafe { asm!("msr S3_0_C1_C2_0, {}", "isb", in(reg) len, options(nomem, nostack)) };
}

/// Applies `probe.fpcheck_vl=` on this vCPU and returns the vector length in force.
fn set_vector_length(sve: bool, bootargs: &str) -> u64 {
    if !sve {
        return 16;
    }
    // Without a request, the longest the CPU (and the hypervisor) allows: ZCR_EL1 resets
    // to the shortest, 16 bytes.
    let bytes = bootargs::number(bootargs, VL_ARG).unwrap_or(MAX_VL_BYTES as u64);
    VL_REQUEST.store(bytes, Ordering::SeqCst);
    write_zcr(bytes);
    // SAFETY: SVE is enabled at EL1.
    unsafe { probe_sve_vl() }
}

fn write_fp_controls(fpcr: u64, fpsr: u64) {
    // SAFETY: FPCR (S3_3_C4_C4_0) and FPSR (S3_3_C4_C4_1) are this vCPU's; no FP operation
    // runs between here and their read-back.
    unsafe {
        asm!("msr S3_3_C4_C4_0, {}", "msr S3_3_C4_C4_1, {}", "isb", in(reg) fpcr, in(reg) fpsr,
            options(nomem, nostack))
    };
}

fn read_fp_controls() -> (u64, u64) {
    let (fpcr, fpsr): (u64, u64);
    // SAFETY: reading FPCR and FPSR has no side effects.
    unsafe {
        asm!("mrs {}, S3_3_C4_C4_0", "mrs {}, S3_3_C4_C4_1", out(reg) fpcr, out(reg) fpsr,
            options(nomem, nostack))
    };
    (fpcr, fpsr)
}

// The secondary's inputs and result; plain loads and stores only (vectors.rs says why).
static ROUNDS: AtomicU64 = AtomicU64::new(0);
static VL_REQUEST: AtomicU64 = AtomicU64::new(0);
static SECONDARY_DONE: AtomicU64 = AtomicU64::new(0);
/// rounds, vl, mismatch present, round, image vl, offset, got, want.
static SECONDARY_OUTCOME: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn publish_outcome(outcome: Outcome) {
    let m = outcome.mismatch;
    let words = [
        outcome.rounds,
        outcome.vl,
        u64::from(m.is_some()),
        m.map_or(0, |m| m.round),
        m.map_or(0, |m| m.vl),
        m.map_or(0, |m| m.offset),
        m.map_or(0, |m| m.got),
        m.map_or(0, |m| m.want),
    ];
    for (slot, word) in SECONDARY_OUTCOME.iter().zip(words) {
        slot.store(word, Ordering::SeqCst);
    }
    SECONDARY_DONE.store(1, Ordering::SeqCst);
}

fn published_outcome() -> Outcome {
    let word = |i: usize| SECONDARY_OUTCOME[i].load(Ordering::SeqCst);
    Outcome {
        rounds: word(0),
        vl: word(1),
        mismatch: (word(2) != 0).then(|| Mismatch {
            round: word(3),
            vl: word(4),
            offset: word(5),
            got: word(6),
            want: word(7),
        }),
    }
}
