//! The decoded guest exit: the syndrome registers of one synchronous exit from the guest
//! (ESR_EL2, FAR_EL2, HPFAR_EL2) turned into an [`ExitClass`] the run loop matches on, the way
//! KVM's `kvm_get_exit_handler()` indexes its table by exception class and Hafnium's
//! `sync_lower_exception()` switches on it.
//!
//! Pure and host-tested: [`GuestExit::decode`] reads only the values it is given and never
//! panics, whatever a guest makes the hardware report. Field layouts live in [`esr`], register
//! names in [`sysreg_names`].

pub mod esr;
pub mod mmio;
pub mod sysreg_names;

#[cfg(test)]
mod tests;

use core::fmt;

use crate::devices::mmio::MmioAccess;
use esr::{
    ABORT_ISS, AbortIss, ESR_ELx, Esr, SYS64_ISS, Sys64Iss, WFX_ISS, WfxIss, XVC_ISS, XvcIss,
};
pub use sysreg_names::SysReg;

/// The registers that describe a synchronous exit, as read at EL2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syndrome {
    pub esr: u64,
    pub far: u64,
    pub hpfar: u64,
}

/// One synchronous exit from the guest, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestExit {
    pub class: ExitClass,
    /// ESR_EL2.IL: the trapped instruction is 32 bits (false: a 16-bit T32 instruction).
    pub il32: bool,
    /// The raw syndrome (for logs).
    pub esr: u64,
}

/// Why the guest exited: the exception classes Bulkhead handles (Arm ARM, ESR_EL2.EC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// EC 0x01: trapped WFI, WFE, WFIT or WFET.
    Wfx(WfxTrap),
    /// EC 0x16: HVC from AArch64.
    Hvc { imm: u16 },
    /// EC 0x17: SMC from AArch64.
    Smc { imm: u16 },
    /// EC 0x18: trapped MSR, MRS or System instruction from AArch64.
    SysReg(SysRegAccess),
    /// EC 0x24: data abort from a lower exception level (a stage-2 fault for the guest).
    DataAbort(Abort),
    /// EC 0x20: instruction abort from a lower exception level.
    InstructionAbort(Abort),
    /// Any other exception class (raw EC).
    Unknown { ec: u8 },
    /// EC 0x07 (FP/SIMD, CPTR_EL2.TFP) or 0x19 (SVE, CPTR_EL2.TZ): the guest's first FP or
    /// SVE use while this CPU's registers do not hold its state (the lazy FP switch).
    FpAccess,
}

/// Which WF* instruction trapped (ISS.TI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WfxKind {
    Wfi,
    Wfe,
    /// WFI with timeout (FEAT_WFxT).
    Wfit,
    /// WFE with timeout (FEAT_WFxT).
    Wfet,
}

/// A trapped WF* instruction ("ISS encoding for an exception from a WF* instruction").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WfxTrap {
    pub kind: WfxKind,
    /// WFIT/WFET: register holding the timeout (RV=1), else None
    pub timeout_reg: Option<u8>,
}

/// op0, op1, CRn, CRm, op2 of an MSR/MRS/SYS encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SysRegId {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
}

/// A trapped MSR/MRS/SYS ("ISS encoding for an exception from MSR, MRS, or System instruction
/// execution in AArch64 state").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysRegAccess {
    pub id: SysRegId,
    /// Rt (31 = XZR)
    pub rt: u8,
    /// MRS (true) or MSR (false)
    pub read: bool,
}

/// What a DFSC/IFSC says went wrong (Arm ARM, ESR_EL2 "ISS encoding for an exception from a
/// Data Abort", field DFSC; the IFSC of instruction aborts uses the same codes). Levels are the
/// translation table level: -1 exists with FEAT_LPA2, -2 with FEAT_D128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    AddressSize {
        level: i8,
    },
    Translation {
        level: i8,
    },
    AccessFlag {
        level: i8,
    },
    Permission {
        level: i8,
    },
    /// Synchronous external abort, not on a walk
    External,
    /// Synchronous external abort on a translation table walk
    ExternalOnWalk {
        level: i8,
    },
    Alignment,
    TlbConflict,
    /// Anything else: tag check, parity/ECC, granule protection, IMPLEMENTATION DEFINED,
    /// reserved (the raw code).
    Other {
        fsc: u8,
    },
}

/// A stage-2 instruction or data abort from the guest. The addresses are decoded up front;
/// the ISS fields on demand (cheap bit reads), which keeps the exit small on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// The faulting IPA (HPFAR page | FAR page offset), via [`mmio::fault_ipa`].
    ///
    /// HPFAR_EL2 holds the IPA for stage-2 translation, access flag and address size faults
    /// and for any fault on a stage-1 walk (S1PTW); for the others (permission, external,
    /// alignment) it may be UNKNOWN, which is why KVM's `__get_fault_info()` resolves those
    /// with an AT instruction. FAR's page offset is valid only when ISS.FnV = 0. Check
    /// [`Abort::fault`] before trusting this.
    pub ipa: u64,
    /// FAR_EL2: the guest virtual address.
    pub far: u64,
    /// The ESR_EL2 it came from.
    esr: u64,
    /// A data abort (EC 0x24) rather than an instruction abort (EC 0x20).
    data: bool,
}

impl GuestExit {
    /// Decodes a synchronous exit from a lower EL. Never panics for any input. Inline: it is
    /// on every exit's path (the run loop has two copies, which would otherwise call it).
    #[inline(always)]
    pub fn decode(s: Syndrome) -> Self {
        use ESR_ELx::EC::Value as Ec;
        let esr = Esr::new(s.esr);
        let class = match esr.read_as_enum(ESR_ELx::EC) {
            Some(Ec::WfxTrap) => ExitClass::Wfx(WfxTrap::decode(s.esr)),
            Some(Ec::FpAccess | Ec::SveAccess) => ExitClass::FpAccess,
            Some(Ec::Hvc64) => ExitClass::Hvc { imm: imm16(s.esr) },
            Some(Ec::Smc64) => ExitClass::Smc { imm: imm16(s.esr) },
            Some(Ec::SysReg64) => ExitClass::SysReg(SysRegAccess::decode(s.esr)),
            Some(Ec::InstrAbortLowerEl) => ExitClass::InstructionAbort(Abort::decode(s, false)),
            Some(Ec::DataAbortLowerEl) => ExitClass::DataAbort(Abort::decode(s, true)),
            _ => ExitClass::Unknown {
                // A 6-bit field.
                ec: esr.read(ESR_ELx::EC) as u8,
            },
        };
        Self {
            class,
            il32: esr.is_set(ESR_ELx::IL),
            esr: s.esr,
        }
    }
}

/// The immediate of an HVC or SMC.
fn imm16(esr: u64) -> u16 {
    XvcIss::new(esr).read(XVC_ISS::IMM16) as u16
}

impl WfxTrap {
    #[inline(always)]
    fn decode(esr: u64) -> Self {
        use WFX_ISS::TI::Value as Ti;
        let iss = WfxIss::new(esr);
        let kind = match iss.read_as_enum(WFX_ISS::TI) {
            Some(Ti::Wfe) => WfxKind::Wfe,
            Some(Ti::Wfit) => WfxKind::Wfit,
            Some(Ti::Wfet) => WfxKind::Wfet,
            // TI is two bits, every value is named: `None` cannot happen.
            Some(Ti::Wfi) | None => WfxKind::Wfi,
        };
        // RV is RES0 unless TI[1] = 1 (WFIT/WFET).
        let has_timeout = matches!(kind, WfxKind::Wfit | WfxKind::Wfet);
        let timeout_reg =
            (has_timeout && iss.is_set(WFX_ISS::RV)).then(|| iss.read(WFX_ISS::RN) as u8);
        Self { kind, timeout_reg }
    }
}

impl SysRegId {
    /// An encoding from its five fields.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }
}

/// The generic name assemblers accept for any system register, e.g. `S3_0_C12_C11_5`.
impl fmt::Display for SysRegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

impl SysRegAccess {
    #[inline(always)]
    fn decode(esr: u64) -> Self {
        let iss = Sys64Iss::new(esr);
        // Fields of at most 5 bits: the casts are exact.
        let field = |f| iss.read(f) as u8;
        Self {
            id: SysRegId::new(
                field(SYS64_ISS::OP0),
                field(SYS64_ISS::OP1),
                field(SYS64_ISS::CRN),
                field(SYS64_ISS::CRM),
                field(SYS64_ISS::OP2),
            ),
            rt: field(SYS64_ISS::RT),
            read: iss.matches_all(SYS64_ISS::DIRECTION::Read),
        }
    }

    /// The register's name, if it is one of [`SysReg`]'s.
    pub fn name(&self) -> Option<SysReg> {
        SysReg::from_id(self.id)
    }
}

impl FaultKind {
    /// Decodes ISS DFSC/IFSC bits [5:0] (higher bits are ignored): the Arm ARM's ESR_ELx ISS
    /// encoding for aborts, including the FEAT_LPA2 level -1 codes (0b101001 address size,
    /// 0b101011 translation, 0b010011 external abort on a walk) and the FEAT_D128 level -2
    /// ones (0b101100, 0b101010, 0b010010).
    pub fn from_fsc(fsc: u8) -> Self {
        let fsc = fsc & 0x3f;
        let level = (fsc & 0b11) as i8;
        match fsc {
            0x00..=0x03 => Self::AddressSize { level },
            0x04..=0x07 => Self::Translation { level },
            // Level 0 (0x08, 0x0c) with FEAT_LPA2.
            0x08..=0x0b => Self::AccessFlag { level },
            0x0c..=0x0f => Self::Permission { level },
            0x10 => Self::External,
            0x12 => Self::ExternalOnWalk { level: -2 },
            0x13 => Self::ExternalOnWalk { level: -1 },
            0x14..=0x17 => Self::ExternalOnWalk { level },
            0x21 => Self::Alignment,
            0x29 => Self::AddressSize { level: -1 },
            0x2a => Self::Translation { level: -2 },
            0x2b => Self::Translation { level: -1 },
            0x2c => Self::AddressSize { level: -2 },
            0x30 => Self::TlbConflict,
            _ => Self::Other { fsc },
        }
    }

    /// A stage-2 "nothing is mapped here (yet)": translation or access flag fault.
    pub fn is_missing_mapping(self) -> bool {
        matches!(self, Self::Translation { .. } | Self::AccessFlag { .. })
    }
}

impl Abort {
    /// An abort from a lower EL; `data` for EC 0x24, else EC 0x20.
    fn decode(s: Syndrome, data: bool) -> Self {
        Self {
            ipa: mmio::fault_ipa(s.hpfar, s.far),
            far: s.far,
            esr: s.esr,
            data,
        }
    }

    fn iss(&self) -> AbortIss {
        AbortIss::new(self.esr)
    }

    /// The raw fault status code (ISS bits 5:0).
    pub fn fsc(&self) -> u8 {
        // A 6-bit field.
        self.iss().read(ABORT_ISS::FSC) as u8
    }

    /// What the fault status code says went wrong.
    pub fn fault(&self) -> FaultKind {
        FaultKind::from_fsc(self.fsc())
    }

    /// Stage-2 fault on a stage-1 table walk (ISS.S1PTW).
    pub fn s1ptw(&self) -> bool {
        self.iss().is_set(ABORT_ISS::S1PTW)
    }

    /// Data aborts: ISS.WnR (a write). Always false for instruction aborts.
    pub fn write(&self) -> bool {
        self.data && self.iss().is_set(ABORT_ISS::WNR)
    }

    /// Data aborts: ISS.CM, a cache maintenance / address translation instruction.
    pub fn cache_maintenance(&self) -> bool {
        self.data && self.iss().is_set(ABORT_ISS::CM)
    }

    /// Data aborts whose syndrome describes the access (ISV=1, and not external, on a stage-1
    /// walk or a cache maintenance instruction): the access as
    /// [`decode_data_abort`](mmio::decode_data_abort) decodes it. None otherwise.
    pub fn mmio(&self) -> Option<MmioAccess> {
        if self.data {
            mmio::decode_data_abort(self.esr).ok()
        } else {
            None
        }
    }
}
