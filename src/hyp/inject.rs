//! Injection of synchronous exceptions into the guest's EL1: what the CPU would have done had
//! the exception been taken to EL1 instead of trapping to EL2.
//!
//! Pure: the run loop reads VBAR_EL1 and SCTLR_EL1 from the hardware, calls
//! [`exception_entry`], writes ESR_EL1, FAR_EL1, ELR_EL1 and SPSR_EL1 back and resumes the
//! guest at the returned PC and PSTATE. The rules are the Arm ARM's (chapter D1, "Exception
//! entry", pseudocode `AArch64.TakeException()`), in the form of KVM's `enter_exception64()`
//! (arch/arm64/kvm/hyp/exception.c) and `inject_abt64()` / `inject_undef64()`
//! (arch/arm64/kvm/inject_fault.c). Only AArch64 EL1 is a target: Bulkhead's guests run EL1
//! in AArch64 (HCR_EL2.RW = 1); AArch32 EL0 is a source, as KVM handles it.

use tock_registers::{LocalRegisterCopy, register_bitfields};

use super::exit::esr::{ABORT_ISS, AbortIss, ESR_ELx, Esr};
use super::runaway::Runaway;
use super::vcpu::Vcpu;

// Fault status codes the guest sees (DFSC/IFSC of ESR_EL1, the same codes as ESR_EL2's, which
// `exit::FaultKind::from_fsc` decodes).
pub const FSC_TRANSLATION_L0: u8 = 0x04;
pub const FSC_TRANSLATION_L1: u8 = 0x05;
pub const FSC_TRANSLATION_L2: u8 = 0x06;
pub const FSC_TRANSLATION_L3: u8 = 0x07;
pub const FSC_ACCESS_FLAG_L1: u8 = 0x09;
pub const FSC_ACCESS_FLAG_L2: u8 = 0x0a;
pub const FSC_ACCESS_FLAG_L3: u8 = 0x0b;
pub const FSC_PERMISSION_L1: u8 = 0x0d;
pub const FSC_PERMISSION_L2: u8 = 0x0e;
pub const FSC_PERMISSION_L3: u8 = 0x0f;
/// Synchronous external abort, not on a translation table walk (what KVM's `inject_abt64`
/// always reports).
pub const FSC_EXTERNAL: u8 = 0x10;
pub const FSC_ALIGNMENT: u8 = 0x21;
/// Synchronous external abort on a translation table walk, level 0 (+ level for 1..3).
pub const FSC_EXTERNAL_WALK_L0: u8 = 0x14;

/// A synchronous exception to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    /// UNDEFINED instruction (EC 0x00).
    Undef,
    /// Data abort with the given fault status code and FAR; `write` = WnR.
    DataAbort { fsc: u8, far: u64, write: bool },
    /// Instruction abort (prefetch abort) with the given fault status code and FAR.
    InstructionAbort { fsc: u8, far: u64 },
}

/// The guest state at the point of injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestState {
    /// The address of the instruction the exception is taken on (becomes ELR_EL1).
    pub pc: u64,
    /// The guest's PSTATE as saved in SPSR_EL2 (becomes SPSR_EL1).
    pub pstate: u64,
    pub vbar_el1: u64,
    pub sctlr_el1: u64,
}

/// What the CPU would have done on taking the exception to EL1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct El1Entry {
    /// The vector to resume the guest at.
    pub pc: u64,
    /// The PSTATE to resume the guest with.
    pub pstate: u64,
    pub esr_el1: u64,
    /// None: FAR_EL1 unchanged (UNDEF)
    pub far_el1: Option<u64>,
    pub elr_el1: u64,
    pub spsr_el1: u64,
}

register_bitfields! [u64,
    /// PSTATE as saved in SPSR_ELx on taking an exception from AArch64 (Arm ARM, "SPSR_EL1,
    /// Saved Program Status Register (EL1)"); for a source in AArch32 only NRW and the flags
    /// share this layout.
    PSTATE [
        NZCV OFFSET(28) NUMBITS(4) [],
        /// Tag check override (FEAT_MTE).
        TCO OFFSET(25) NUMBITS(1) [],
        /// Data independent timing (FEAT_DIT).
        DIT OFFSET(24) NUMBITS(1) [],
        /// User access override (FEAT_UAO).
        UAO OFFSET(23) NUMBITS(1) [],
        /// Privileged access never (FEAT_PAN).
        PAN OFFSET(22) NUMBITS(1) [],
        /// Software step.
        SS OFFSET(21) NUMBITS(1) [],
        /// Illegal execution state.
        IL OFFSET(20) NUMBITS(1) [],
        /// Speculative store bypass safe (FEAT_SSBS).
        SSBS OFFSET(12) NUMBITS(1) [],
        /// Branch type (FEAT_BTI).
        BTYPE OFFSET(10) NUMBITS(2) [],
        D OFFSET(9) NUMBITS(1) [],
        A OFFSET(8) NUMBITS(1) [],
        I OFFSET(7) NUMBITS(1) [],
        F OFFSET(6) NUMBITS(1) [],
        /// M[4]: the exception was taken from AArch32.
        NRW OFFSET(4) NUMBITS(1) [],
        /// M[3:0] for AArch64: exception level and stack pointer.
        M OFFSET(0) NUMBITS(4) [
            EL0t = 0b0000,
            EL1t = 0b0100,
            EL1h = 0b0101
        ]
    ],
    /// The SCTLR_EL1 bits exception entry to EL1 reads.
    SCTLR [
        /// Default PSTATE.SSBS on exception entry (FEAT_SSBS).
        DSSBS OFFSET(44) NUMBITS(1) [],
        /// 0: set PSTATE.PAN on exception entry (FEAT_PAN; RES1 without it).
        SPAN OFFSET(23) NUMBITS(1) []
    ]
];

type Pstate = LocalRegisterCopy<u64, PSTATE::Register>;

/// Where the exception is taken from, as seen from EL1: selects the vector table quarter
/// (Arm ARM, "Exception vectors": "Vector offsets from vector table base address").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// EL1 using SP_EL0 (EL1t).
    CurrentElSp0,
    /// EL1 using SP_EL1 (EL1h).
    CurrentElSpx,
    /// EL0 in AArch64.
    LowerElAArch64,
    /// EL0 in AArch32.
    LowerElAArch32,
}

impl Source {
    /// The same order of tests as KVM's `enter_exception64()`. A PSTATE naming EL2 or EL3
    /// cannot be a guest's; it counts as a lower EL here (KVM: lower vector, current-EL EC).
    fn of(pstate: u64) -> Self {
        let pstate = Pstate::new(pstate);
        if pstate.is_set(PSTATE::NRW) {
            return Self::LowerElAArch32;
        }
        match pstate.read_as_enum(PSTATE::M) {
            Some(PSTATE::M::Value::EL1h) => Self::CurrentElSpx,
            Some(PSTATE::M::Value::EL1t) => Self::CurrentElSp0,
            _ => Self::LowerElAArch64,
        }
    }

    /// Offset of the synchronous exception vector from VBAR_EL1.
    fn vector_offset(self) -> u64 {
        match self {
            Self::CurrentElSp0 => 0x000,
            Self::CurrentElSpx => 0x200,
            Self::LowerElAArch64 => 0x400,
            Self::LowerElAArch32 => 0x600,
        }
    }

    fn is_lower_el(self) -> bool {
        matches!(self, Self::LowerElAArch64 | Self::LowerElAArch32)
    }
}

/// Computes the EL1 exception entry for `exc` taken at `at`.
///
/// ESR_EL1.IL is 1 for all three: the Arm ARM defines IL as 1 for exceptions reported with EC
/// 0x00, for instruction aborts and for data aborts with ISV = 0 (the injected ones). KVM's
/// `inject_undef64()`/`inject_abt64()` copy IL from the trapped instruction instead, which
/// only differs for a 16-bit T32 instruction at AArch32 EL0; Bulkhead keeps IL = 1.
pub fn exception_entry(exc: Exception, at: GuestState) -> El1Entry {
    use ESR_ELx::EC::Value as Ec;
    let source = Source::of(at.pstate);
    let lower = source.is_lower_el();
    let (esr_el1, far_el1) = match exc {
        Exception::Undef => (syndrome(Ec::Unknown, 0, false), None),
        Exception::DataAbort { fsc, far, write } => {
            let ec = if lower {
                Ec::DataAbortLowerEl
            } else {
                Ec::DataAbortCurrentEl
            };
            (syndrome(ec, fsc, write), Some(far))
        }
        Exception::InstructionAbort { fsc, far } => {
            let ec = if lower {
                Ec::InstrAbortLowerEl
            } else {
                Ec::InstrAbortCurrentEl
            };
            (syndrome(ec, fsc, false), Some(far))
        }
    };
    El1Entry {
        // VBAR_EL1[10:0] are RES0, so this is an OR; wrapping keeps any input panic-free.
        pc: at.vbar_el1.wrapping_add(source.vector_offset()),
        pstate: entry_pstate(at.pstate, at.sctlr_el1),
        esr_el1,
        far_el1,
        elr_el1: at.pc,
        spsr_el1: at.pstate,
    }
}

/// Takes `exception` in `vcpu`'s EL1 at counter value `now`: moves its PC to the vector and
/// its PSTATE to EL1h, and returns what the caller writes into ESR_EL1, FAR_EL1, ELR_EL1 and
/// SPSR_EL1. `Err` instead, leaving the vCPU as it was, when this is the exception a runaway
/// vCPU keeps taking at its own vector (`hyp::runaway`): the VM's crash policy applies then.
pub fn inject(
    vcpu: &mut Vcpu,
    exception: Exception,
    vbar_el1: u64,
    sctlr_el1: u64,
    now: u64,
) -> Result<El1Entry, Runaway> {
    let entry = exception_entry(
        exception,
        GuestState {
            pc: vcpu.regs.pc,
            pstate: vcpu.regs.pstate,
            vbar_el1,
            sctlr_el1,
        },
    );
    if let Some(runaway) = vcpu.runaway.observe(&entry, now) {
        return Err(runaway);
    }
    vcpu.regs.pc = entry.pc;
    vcpu.regs.pstate = entry.pstate;
    Ok(entry)
}

/// ESR_EL1 for an injected exception: EC, IL = 1, and for aborts FSC (bits [5:0] of `fsc`)
/// and WnR.
fn syndrome(ec: ESR_ELx::EC::Value, fsc: u8, write: bool) -> u64 {
    let mut esr = Esr::new(0);
    esr.write(ESR_ELx::EC.val(ec as u64) + ESR_ELx::IL::SET);
    let mut iss = AbortIss::new(esr.get());
    iss.modify(ABORT_ISS::FSC.val(u64::from(fsc)));
    if write {
        iss.modify(ABORT_ISS::WNR::SET);
    }
    iss.get()
}

/// PSTATE after taking an exception to EL1h, exactly as KVM's `enter_exception64()` builds it
/// (Arm ARM `AArch64.TakeException()`):
/// - N, Z, C, V and DIT are unchanged;
/// - PAN is unchanged unless SCTLR_EL1.SPAN is 0, then set. This assumes FEAT_PAN (Armv8.1),
///   and is also right without it (Armv8.0 cores: Cortex-A53/A57/A72): SCTLR_EL1 bit [23] is
///   SPAN only with FEAT_PAN and RES1 otherwise (as KVM's comment says), and PSTATE.PAN does
///   not exist, so the bit stays clear;
/// - SSBS = SCTLR_EL1.DSSBS;
/// - D, A, I, F set; M = EL1h;
/// - everything else is zero: UAO, SS, IL, BTYPE, and TCO (set only with FEAT_MTE, which
///   KVM does only for guests it gives MTE and Bulkhead gives guests no MTE).
///
/// With Bulkhead's reset SCTLR_EL1 (0x30d0_0800: SPAN set, DSSBS clear) and no flags, PAN or
/// DIT in the old PSTATE this is 0x3c5.
fn entry_pstate(old: u64, sctlr_el1: u64) -> u64 {
    let old = Pstate::new(old);
    let sctlr = LocalRegisterCopy::<u64, SCTLR::Register>::new(sctlr_el1);
    let mut new = Pstate::new(0);
    new.write(
        PSTATE::NZCV.val(old.read(PSTATE::NZCV))
            + PSTATE::DIT.val(old.read(PSTATE::DIT))
            + PSTATE::PAN.val(old.read(PSTATE::PAN))
            + PSTATE::D::SET
            + PSTATE::A::SET
            + PSTATE::I::SET
            + PSTATE::F::SET
            + PSTATE::M::EL1h,
    );
    if !sctlr.is_set(SCTLR::SPAN) {
        new.modify(PSTATE::PAN::SET);
    }
    if sctlr.is_set(SCTLR::DSSBS) {
        new.modify(PSTATE::SSBS::SET);
    }
    new.get()
}

#[cfg(test)]
mod exit_inject_tests;
