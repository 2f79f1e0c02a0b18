//! The raw instructions chaos.rs aims at the hypervisor: one memory access in many encodings
//! (the forms a data-abort decoder must get right or refuse: every size, sign-extending
//! loads, acquire/release, exclusives, pairs and writeback, which have no valid ISS, the zero
//! register, cache and address-translation maintenance), a jump to an arbitrary address, and
//! any single instruction word written at run time (MRS/MSR of any encoding, HVC/SMC with any
//! immediate) into a small buffer followed by RET.
//!
//! Every function here executes exactly one instruction that may fault, so the vector's
//! "resume at the next instruction" (or "at x30" for a jump) always lands back here.

use core::arch::{asm, global_asm};

/// How one memory access is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    LoadByte,
    LoadHalf,
    LoadWord,
    LoadDouble,
    LoadSignedByte,
    LoadSignedHalf,
    LoadSignedWord,
    LoadAcquire,
    LoadExclusive,
    /// LDP: no valid instruction syndrome (ISV = 0).
    LoadPair,
    /// LDR with pre-index writeback: ISV = 0.
    LoadPreIndex,
    /// LDR XZR: the result is discarded (Rt = 31).
    LoadZero,
    StoreByte,
    StoreHalf,
    StoreWord,
    StoreDouble,
    StoreRelease,
    /// STP: ISV = 0.
    StorePair,
    /// STR with post-index writeback: ISV = 0.
    StorePostIndex,
    /// STR XZR / STRB WZR: Rt = 31 reads as zero.
    StoreZeroDouble,
    StoreZeroByte,
    /// DC CIVAC / CVAC / IVAC: stage 2 sees them as writes (ESR.CM = 1).
    CleanInvalidate,
    Clean,
    Invalidate,
    /// DC ZVA: zeroes a whole block (DCZID_EL0), so never aimed at RAM.
    ZeroBlock,
    /// AT S1E1R / S1E1W: translation only, the result lands in PAR_EL1.
    TranslateRead,
    TranslateWrite,
    Prefetch,
}

impl Access {
    pub const ALL: [Access; 28] = [
        Access::LoadByte,
        Access::LoadHalf,
        Access::LoadWord,
        Access::LoadDouble,
        Access::LoadSignedByte,
        Access::LoadSignedHalf,
        Access::LoadSignedWord,
        Access::LoadAcquire,
        Access::LoadExclusive,
        Access::LoadPair,
        Access::LoadPreIndex,
        Access::LoadZero,
        Access::StoreByte,
        Access::StoreHalf,
        Access::StoreWord,
        Access::StoreDouble,
        Access::StoreRelease,
        Access::StorePair,
        Access::StorePostIndex,
        Access::StoreZeroDouble,
        Access::StoreZeroByte,
        Access::CleanInvalidate,
        Access::Clean,
        Access::Invalidate,
        Access::ZeroBlock,
        Access::TranslateRead,
        Access::TranslateWrite,
        Access::Prefetch,
    ];

    /// The plain loads and stores of 1, 2, 4 and 8 bytes (what a well-behaved driver uses).
    pub const PLAIN: [Access; 8] = [
        Access::LoadByte,
        Access::LoadHalf,
        Access::LoadWord,
        Access::LoadDouble,
        Access::StoreByte,
        Access::StoreHalf,
        Access::StoreWord,
        Access::StoreDouble,
    ];

    /// Whether the access may change memory (or a device) at the address.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Access::StoreByte
                | Access::StoreHalf
                | Access::StoreWord
                | Access::StoreDouble
                | Access::StoreRelease
                | Access::StorePair
                | Access::StorePostIndex
                | Access::StoreZeroDouble
                | Access::StoreZeroByte
                | Access::Invalidate
                | Access::ZeroBlock
        )
    }

    /// Bytes the access may touch from its address (a DC ZVA block is at most 2 KiB).
    pub fn span(self) -> u64 {
        match self {
            Access::LoadByte | Access::LoadSignedByte | Access::StoreByte => 1,
            Access::StoreZeroByte => 1,
            Access::LoadHalf | Access::LoadSignedHalf | Access::StoreHalf => 2,
            Access::LoadWord | Access::LoadSignedWord | Access::StoreWord => 4,
            Access::LoadPair | Access::StorePair => 16,
            Access::CleanInvalidate | Access::Clean | Access::Invalidate => 64,
            Access::ZeroBlock => 2048,
            _ => 8,
        }
    }
}

/// Performs `access` at `addr` (stores write `value`); returns what a load read (0 otherwise).
pub fn access(access: Access, addr: u64, value: u64) -> u64 {
    let mut out: u64 = 0;
    // SAFETY: chaos.rs only aims accesses that write at memory outside the probe's image,
    // stacks and DTB (devices, unbacked IPAs, unused guest RAM); loads have no effect on the
    // probe but their destination register. Faults are resumed after the instruction by
    // `vectors`, inside `capture`. Writeback forms only update the local copy of `addr`.
    unsafe {
        match access {
            Access::LoadByte => {
                asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadHalf => {
                asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadWord => {
                asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadDouble => {
                asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadSignedByte => {
                asm!("ldrsb {v}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadSignedHalf => {
                asm!("ldrsh {v}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadSignedWord => {
                asm!("ldrsw {v}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadAcquire => {
                asm!("ldar {v}, [{a}]", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadExclusive => {
                asm!("ldxr {v}, [{a}]", "clrex", a = in(reg) addr, v = inout(reg) out, options(nostack))
            }
            Access::LoadPair => {
                let mut second: u64 = 0;
                asm!("ldp {v}, {w}, [{a}]", a = in(reg) addr, v = inout(reg) out, w = inout(reg) second, options(nostack));
                out ^= second;
            }
            Access::LoadPreIndex => {
                asm!("ldr {v}, [{a}, #8]!", a = inout(reg) addr.wrapping_sub(8) => _, v = inout(reg) out, options(nostack))
            }
            Access::LoadZero => asm!("ldr xzr, [{a}]", a = in(reg) addr, options(nostack)),
            Access::StoreByte => {
                asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Access::StoreHalf => {
                asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Access::StoreWord => {
                asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Access::StoreDouble => {
                asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Access::StoreRelease => {
                asm!("stlr {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Access::StorePair => {
                asm!("stp {v}, {w}, [{a}]", a = in(reg) addr, v = in(reg) value, w = in(reg) !value, options(nostack))
            }
            Access::StorePostIndex => {
                asm!("str {v}, [{a}], #16", a = inout(reg) addr => _, v = in(reg) value, options(nostack))
            }
            Access::StoreZeroDouble => asm!("str xzr, [{a}]", a = in(reg) addr, options(nostack)),
            Access::StoreZeroByte => asm!("strb wzr, [{a}]", a = in(reg) addr, options(nostack)),
            Access::CleanInvalidate => asm!("dc civac, {a}", a = in(reg) addr, options(nostack)),
            Access::Clean => asm!("dc cvac, {a}", a = in(reg) addr, options(nostack)),
            Access::Invalidate => asm!("dc ivac, {a}", a = in(reg) addr, options(nostack)),
            Access::ZeroBlock => asm!("dc zva, {a}", a = in(reg) addr, options(nostack)),
            Access::TranslateRead => {
                asm!("at s1e1r, {a}", "isb", a = in(reg) addr, options(nostack))
            }
            Access::TranslateWrite => {
                asm!("at s1e1w, {a}", "isb", a = in(reg) addr, options(nostack))
            }
            Access::Prefetch => asm!("prfm pldl1keep, [{a}]", a = in(reg) addr, options(nostack)),
        }
    }
    out
}

/// Branches to `target` with BLR. chaos.rs only jumps where nothing can execute (unbacked
/// IPAs, device windows, misaligned addresses): the fetch faults and `vectors` resumes at x30.
pub fn jump(target: u64) {
    // SAFETY: the target cannot run (see above), so control comes back through the vector to
    // the instruction after BLR; every caller-saved register is declared clobbered.
    unsafe {
        asm!(
            "blr {t}",
            t = in(reg) target,
            out("x0") _, out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _,
            out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            out("x30") _,
            options(nostack),
        )
    };
}

// The buffer `run_word` writes its instruction into: in .data (guest RAM, executable with
// the MMU off), cache-line aligned.
global_asm!(
    r#"
    .data
    .balign 64
    .global probe_chaos_code
probe_chaos_code:
    .space 64
    .text
"#
);

/// RET.
const RET: u32 = 0xD65F_03C0;

/// Executes the single instruction `word` with x0..x3 set as given; returns x0 afterwards.
/// The word is followed by RET, so it must not branch; chaos.rs makes MRS, MSR, HVC and SMC.
pub fn run_word(word: u32, x0: u64, x1: u64, x2: u64, x3: u64) -> u64 {
    unsafe extern "C" {
        static mut probe_chaos_code: [u32; 16];
    }
    let code = (&raw mut probe_chaos_code) as *mut u32;
    let result: u64;
    // SAFETY: the buffer is the probe's own and used only here, on the primary CPU. The two
    // words are cleaned to the point of unification and the I-cache line invalidated before
    // they run (with the MMU off data is non-cacheable, but an I-cache may hold the old
    // words). The instruction runs with x0..x3 as arguments and may clobber every
    // caller-saved register (an SMCCC call may); a fault in it resumes at the RET.
    unsafe {
        code.write_volatile(word);
        code.add(1).write_volatile(RET);
        asm!(
            "dc cvau, {c}",
            "dsb ish",
            "ic ivau, {c}",
            "dsb ish",
            "isb",
            "blr {c}",
            c = in(reg) code,
            inout("x0") x0 => result,
            inout("x1") x1 => _, inout("x2") x2 => _, inout("x3") x3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _, out("x30") _,
            options(nostack),
        )
    };
    result
}

/// A system register encoding (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReg {
    pub op0: u32,
    pub op1: u32,
    pub crn: u32,
    pub crm: u32,
    pub op2: u32,
}

impl SysReg {
    pub const fn new(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> Self {
        SysReg {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }

    /// The register fields of an MRS/MSR word; op0 must be 2 or 3 (bit 20 is op0[1]).
    fn fields(self) -> u32 {
        ((self.op0 & 1) << 19)
            | ((self.op1 & 7) << 16)
            | ((self.crn & 15) << 12)
            | ((self.crm & 15) << 8)
            | ((self.op2 & 7) << 5)
    }

    /// `MRS X0, <reg>`.
    pub fn mrs_x0(self) -> u32 {
        0xD530_0000 | self.fields()
    }

    /// `MSR <reg>, X1`.
    pub fn msr_x1(self) -> u32 {
        0xD510_0000 | self.fields() | 1
    }
}

impl core::fmt::Display for SysReg {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// `HVC #imm`.
pub fn hvc_word(imm: u16) -> u32 {
    0xD400_0002 | (u32::from(imm) << 5)
}

/// `SMC #imm`.
pub fn smc_word(imm: u16) -> u32 {
    0xD400_0003 | (u32::from(imm) << 5)
}
