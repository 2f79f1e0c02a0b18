//! The CPU a guest sees: which features of the physical CPU reach it, decided per ID register
//! field in one table, [`POLICY`], by the rule "a feature that works, or no feature at all".
//!
//! HCR_EL2.TID3 traps every guest read of the ID space (op0 = 3, op1 = 0, CRn = 0,
//! CRm = 1..7); the handler answers with [`sanitise`] of the hardware value. A field passes
//! when its state lives only in EL1/EL0 registers (which move with the vCPU, `hyp::context`,
//! whose tests check every passed field against its save list) and nothing at EL2 traps it
//! for good; otherwise it is
//! hidden (0) and [`El2Controls`] (written by `arch::sysregs::activate_traps`) keeps it
//! trapped, so using it anyway is UNDEFINED, as on a CPU without it. Fields no row names read
//! as 0, and so do the reserved encodings and whole registers no row names: a feature Bulkhead
//! has not decided on is not offered. This is KVM's model (arch/arm64/kvm/sys_regs.c `read_sanitised_id_*`,
//! `sanitise_id_aa64*`) with Bulkhead's own choices.

use crate::guest_layout::GicVersion;
use crate::hyp::exit::SysRegId;

/// What the guest reads in one ID register field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The hardware's value.
    Pass,
    /// 0: not implemented. (No row hides a field where 0 means implemented, e.g. TGran4.)
    Hide,
    /// The hardware's value, at most this (unsigned fields).
    Cap(u64),
    /// At most the guest's IPA size, in the PARange encoding (ID_AA64MMFR0_EL1.PARange).
    IpaSize,
    /// The guest's GIC: 1 (system register interface, GICv3) or 0 (GICv2, memory-mapped).
    GicSysregs,
}

/// One row of the table: a field of an ID register and what the guest reads there.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// CRm and op2 of the register (op0 = 3, op1 = 0, CRn = 0).
    pub reg: (u8, u8),
    /// Lowest bit and width of the field.
    pub lsb: u8,
    pub width: u8,
    pub policy: Policy,
}

/// What the guest's machine adds to the decision: its GIC and its IPA size.
#[derive(Debug, Clone, Copy)]
pub struct GuestCpu {
    pub gic: GicVersion,
    /// Bits of guest physical (intermediate physical) address stage 2 translates.
    pub ipa_bits: u32,
}

impl GuestCpu {
    /// The guest's view from its VTCR_EL2 (T0SZ, bits [5:0], sizes the IPA space).
    pub fn new(gic: GicVersion, vtcr_el2: u64) -> Self {
        Self {
            gic,
            ipa_bits: 64 - (vtcr_el2 & 0x3f) as u32,
        }
    }
}

const fn f(reg: (u8, u8), lsb: u8, policy: Policy) -> Field {
    Field {
        reg,
        lsb,
        width: 4,
        policy,
    }
}

/// A whole register.
const fn whole(reg: (u8, u8), policy: Policy) -> Field {
    Field {
        reg,
        lsb: 0,
        width: 64,
        policy,
    }
}

use Policy::{Cap, GicSysregs, Hide, IpaSize, Pass};

// Registers: (CRm, op2), as the Arm ARM (DDI 0487) describes each ID register.
pub const ID_PFR0: (u8, u8) = (1, 0);
pub const ID_PFR1: (u8, u8) = (1, 1);
pub const ID_DFR0: (u8, u8) = (1, 2);
pub const ID_MMFR4: (u8, u8) = (2, 6);
pub const ID_PFR2: (u8, u8) = (3, 4);
pub const ID_MMFR5: (u8, u8) = (3, 6);
pub const PFR0: (u8, u8) = (4, 0);
pub const PFR1: (u8, u8) = (4, 1);
pub const ZFR0: (u8, u8) = (4, 4);
pub const DFR0: (u8, u8) = (5, 0);
pub const ISAR0: (u8, u8) = (6, 0);
pub const ISAR1: (u8, u8) = (6, 1);
pub const ISAR2: (u8, u8) = (6, 2);
pub const MMFR0: (u8, u8) = (7, 0);
pub const MMFR1: (u8, u8) = (7, 1);
pub const MMFR2: (u8, u8) = (7, 2);

/// The policy, field by field. Anything not here reads as 0 — among others ID_AA64PFR2
/// (MTE extensions, FPMR), ID_AA64SMFR0 and ID_AA64FPFR0 (SME, FP8: hidden with SME and
/// FPMR), ID_AA64DFR1/DFR2 (breakpoint and PMU extensions), ID_AA64AFR0/AFR1 and ID_AFR0
/// (IMPLEMENTATION DEFINED, RAZ as in KVM), ID_AA64ISAR3, ID_AA64MMFR3 (TCR2, SCTLR2,
/// permission indirection and overlays, D128: their registers need HCRX_EL2 enables and
/// fine-grained-trap "n" bits Bulkhead leaves at 0) and ID_AA64MMFR4 (E2H0, NV: EL2 features),
/// ID_DFR1 (PMU).
pub const POLICY: &[Field] = &[
    // --- ID_AA64PFR0_EL1 ---
    f(PFR0, 0, Pass),        // EL0: AArch64 (and AArch32) EL0, as the CPU
    f(PFR0, 4, Cap(1)),      // EL1: AArch64 only (HCR_EL2.RW = 1 fixes the guest's EL1 at AArch64)
    f(PFR0, 8, Hide),        // EL2: no nested virtualization; the guest runs at EL1
    f(PFR0, 12, Pass),       // EL3: as the CPU (SMC is trapped by HCR_EL2.TSC either way)
    f(PFR0, 16, Pass),       // FP: EL1/EL0 state (moved lazily: CPTR_EL2.TFP, `hyp::context`)
    f(PFR0, 20, Pass),       // AdvSIMD: as FP
    f(PFR0, 24, GicSysregs), // GIC: the guest's vGIC, not the host's
    f(PFR0, 28, Hide),       // RAS: HCR_EL2.TERR traps the error records (no records to give)
    f(PFR0, 32, Pass),       // SVE: ZCR_EL2.LEN = max; Z/P/FFR/ZCR_EL1 move as FP (CPTR_EL2.TZ)
    f(PFR0, 36, Hide),       // SEL2: Secure EL2 is the host's business
    f(PFR0, 40, Hide),       // MPAM: MPAM2_EL2.TRAPMPAM1EL1/0EL1 trap it (KVM hides it too)
    f(PFR0, 44, Hide),       // AMU: CPTR_EL2.TAM traps it; its counters would count EL2 too
    f(PFR0, 48, Pass),       // DIT: PSTATE.DIT, saved in SPSR like any PSTATE bit
    f(PFR0, 52, Hide),       // RME: realm management is the host's business
    f(PFR0, 56, Cap(1)), // CSV2: true of the CPU; 2 adds SCXTNUM_ELx, trapped (HCR_EL2.EnSCXT = 0)
    f(PFR0, 60, Pass),   // CSV3: as CSV2
    // --- ID_AA64PFR1_EL1 ---
    f(PFR1, 0, Pass), // BT: guarded pages are stage 1; PSTATE.BTYPE and SCTLR_EL1.BTx are EL1's
    f(PFR1, 4, Pass), // SSBS: PSTATE.SSBS, EL1/EL0 state
    f(PFR1, 8, Hide), // MTE: HCR_EL2.ATA = 0 traps its registers; stage 2 gives no tag storage
    f(PFR1, 12, Hide), // RAS_frac: with RAS
    f(PFR1, 16, Hide), // MPAM_frac: with MPAM
    f(PFR1, 24, Hide), // SME: CPTR_EL2.TSM traps it (ZA, streaming mode, SMCR_EL2 not set up)
    f(PFR1, 28, Hide), // RNDR_trap: an EL3 control
    f(PFR1, 32, Cap(1)), // CSV2_frac: as CSV2 (2 adds SCXTNUM_ELx)
    f(PFR1, 36, Hide), // NMI: the vGIC has no NMIs
    f(PFR1, 40, Hide), // MTE_frac: with MTE
    f(PFR1, 44, Hide), // GCS: HCRX_EL2.GCSEn = 0 and HFGxTR_EL2.nGCS_EL1 = 0 trap it
    f(PFR1, 48, Hide), // THE: HFGxTR_EL2.nRCWMASK_EL1 = 0 traps RCWMASK_EL1
    f(PFR1, 52, Hide), // MTEX: with MTE
    f(PFR1, 56, Hide), // DF2: needs SCTLR2_EL1, trapped by HCRX_EL2.SCTLR2En = 0
    f(PFR1, 60, Hide), // PFAR: PFAR_EL1 is trapped with HCRX/FGT at 0
    // --- ID_AA64ZFR0_EL1: SVE's instruction subsets, meaningful with SVE (passed) ---
    whole(ZFR0, Pass),
    // --- ID_AA64DFR0_EL1 ---
    f(DFR0, 0, Pass), // DebugVer: debug registers are untrapped, EL1 state of the CPU
    f(DFR0, 4, Hide), // TraceVer: CPTR_EL2.TTA traps the trace unit's registers
    f(DFR0, 8, Hide), // PMUVer: MDCR_EL2.TPM/TPMCR trap the PMU (it would see EL2 at work)
    f(DFR0, 12, Pass), // BRPs: with DebugVer
    f(DFR0, 16, Hide), // PMSS: PMU snapshots, with the PMU
    f(DFR0, 20, Pass), // WRPs: with DebugVer
    f(DFR0, 24, Hide), // SEBEP: PMU exceptions, with the PMU
    f(DFR0, 28, Pass), // CTX_CMPs: with DebugVer
    f(DFR0, 32, Hide), // PMSVer: SPE, MDCR_EL2.TPMS and E2PB = 0 trap it
    f(DFR0, 36, Pass), // DoubleLock: with DebugVer (0xf = none, passed as is)
    f(DFR0, 40, Hide), // TraceFilt: MDCR_EL2.TTRF traps TRFCR_EL1
    f(DFR0, 44, Hide), // TraceBuffer: TRBE, MDCR_EL2.E2TB = 0 traps it
    f(DFR0, 48, Hide), // MTPMU: with the PMU
    f(DFR0, 52, Hide), // BRBE: branch records would show EL2; MDCR_EL2.SBRBE = 0 traps them
    f(DFR0, 56, Hide), // ExtTrcBuff: with TraceBuffer
    f(DFR0, 60, Hide), // HPMN0: an EL2 PMU control
    // --- ID_AA64ISAR0_EL1: instructions, untrapped, no state beyond EL1/EL0 ---
    f(ISAR0, 4, Pass),  // AES
    f(ISAR0, 8, Pass),  // SHA1
    f(ISAR0, 12, Pass), // SHA2
    f(ISAR0, 16, Pass), // CRC32
    f(ISAR0, 20, Pass), // Atomic
    f(ISAR0, 24, Hide), // TME: transactions would need HCR_EL2.TME; not offered
    f(ISAR0, 28, Pass), // RDM
    f(ISAR0, 32, Pass), // SHA3
    f(ISAR0, 36, Pass), // SM3
    f(ISAR0, 40, Pass), // SM4
    f(ISAR0, 44, Pass), // DP
    f(ISAR0, 48, Pass), // FHM
    f(ISAR0, 52, Pass), // TS: flag manipulation
    f(ISAR0, 56, Pass), // TLB: range/outer-shareable TLBI, upgraded by HCR_EL2.FB like the rest
    f(ISAR0, 60, Pass), // RNDR: RNDR/RNDRRS are not trapped at EL2
    // --- ID_AA64ISAR1_EL1 ---
    f(ISAR1, 0, Pass),  // DPB: DC CVAP/CVADP
    f(ISAR1, 4, Pass),  // APA: pointer auth (QARMA5); HCR_EL2.API/APK = 1, keys are EL1 registers
    f(ISAR1, 8, Pass),  // API: pointer auth (IMP DEF algorithm), as APA
    f(ISAR1, 12, Pass), // JSCVT
    f(ISAR1, 16, Pass), // FCMA
    f(ISAR1, 20, Pass), // LRCPC
    f(ISAR1, 24, Pass), // GPA: generic pointer auth (PACGA), as APA
    f(ISAR1, 28, Pass), // GPI: as GPA
    f(ISAR1, 32, Pass), // FRINTTS
    f(ISAR1, 36, Pass), // SB
    f(ISAR1, 40, Pass), // SPECRES: prediction restriction, not trapped (HFGITR_EL2 = 0)
    f(ISAR1, 44, Pass), // BF16
    f(ISAR1, 48, Pass), // DGH
    f(ISAR1, 52, Pass), // I8MM
    f(ISAR1, 56, Pass), // XS: nXS TLBIs behave as plain ones (HCRX_EL2.FnXS = 0)
    f(ISAR1, 60, Hide), // LS64: HCRX_EL2.EnALS/EnAS0/EnASR = 0 make it UNDEFINED
    // --- ID_AA64ISAR2_EL1 ---
    f(ISAR2, 0, Pass), // WFxT: WFET runs natively; a trapped WFIT resumes at once (allowed)
    f(ISAR2, 4, Pass), // RPRES
    f(ISAR2, 8, Pass), // GPA3: pointer auth (QARMA3), as APA
    f(ISAR2, 12, Pass), // APA3: as APA
    f(ISAR2, 16, Hide), // MOPS: HCRX_EL2.MSCEn = 0 makes CPY*/SET* UNDEFINED at EL1/EL0
    f(ISAR2, 20, Pass), // BC
    f(ISAR2, 24, Pass), // PAC_frac: with pointer auth
    f(ISAR2, 28, Pass), // CLRBHB
    f(ISAR2, 32, Hide), // SYSREG_128: needs HCRX_EL2.D128En
    f(ISAR2, 36, Hide), // SYSINSTR_128: needs HCRX_EL2.D128En
    f(ISAR2, 40, Pass), // PRFMSLC: a hint
    f(ISAR2, 48, Pass), // RPRFM: a hint
    f(ISAR2, 52, Pass), // CSSC
    f(ISAR2, 56, Pass), // LUT
    f(ISAR2, 60, Pass), // ATS1A: AT S1E1A, stage 1 only, not trapped (HFGITR_EL2 = 0)
    // --- ID_AA64MMFR0_EL1 ---
    f(MMFR0, 0, IpaSize), // PARange: the guest's physical space is stage 2's input range
    f(MMFR0, 4, Pass),    // ASIDBits
    f(MMFR0, 8, Pass),    // BigEnd
    f(MMFR0, 12, Pass),   // SNSMem
    f(MMFR0, 16, Pass),   // BigEndEL0
    f(MMFR0, 20, Pass),   // TGran16 (stage 1 granules: EL1's own tables)
    f(MMFR0, 24, Pass),   // TGran64 (0 = supported: passed as is)
    f(MMFR0, 28, Pass),   // TGran4 (0 = supported: passed as is)
    f(MMFR0, 44, Pass),   // ExS
    f(MMFR0, 56, Hide),   // FGT: an EL2 feature
    f(MMFR0, 60, Cap(1)), // ECV: self-synchronised counter reads; ECV = 2 adds EL2 controls
    // --- ID_AA64MMFR1_EL1 ---
    f(MMFR1, 0, Cap(2)), // HAFDBS: AF and dirty state at stage 1; HAFT (3) needs TCR2_EL1
    f(MMFR1, 4, Hide),   // VMIDBits: an EL2 feature
    f(MMFR1, 8, Hide),   // VH: an EL2 feature
    f(MMFR1, 12, Pass),  // HPDS
    f(MMFR1, 16, Hide),  // LO: LORegions, HCR_EL2.TLOR traps them
    f(MMFR1, 20, Pass),  // PAN (PAN3's SCTLR_EL1.EPAN is EL1's)
    f(MMFR1, 24, Pass),  // SpecSEI
    f(MMFR1, 28, Hide),  // XNX: a stage-2 feature
    f(MMFR1, 32, Hide),  // TWED: an EL2 feature
    f(MMFR1, 36, Pass),  // ETS
    f(MMFR1, 40, Hide),  // HCX: an EL2 feature
    f(MMFR1, 44, Pass),  // AFP: FPCR bits, EL1/EL0 state
    f(MMFR1, 48, Pass),  // nTLBPA
    f(MMFR1, 52, Pass),  // TIDCP1: SCTLR_EL1.TIDCP, EL1's
    f(MMFR1, 56, Pass),  // CMOW: SCTLR_EL1.CMOW, EL1's
    f(MMFR1, 60, Pass),  // ECBHB
    // --- ID_AA64MMFR2_EL1 ---
    f(MMFR2, 0, Pass),  // CnP
    f(MMFR2, 4, Pass),  // UAO
    f(MMFR2, 8, Pass),  // LSM
    f(MMFR2, 12, Pass), // IESB
    f(MMFR2, 16, Pass), // VARange: stage 1's VA size
    f(MMFR2, 20, Pass), // CCIDX
    f(MMFR2, 24, Hide), // NV: no nested virtualization
    f(MMFR2, 28, Pass), // ST
    f(MMFR2, 32, Pass), // AT
    f(MMFR2, 36, Pass), // IDS
    f(MMFR2, 40, Hide), // FWB: a stage-2 feature
    f(MMFR2, 48, Pass), // TTL: TLBI level hints
    f(MMFR2, 52, Pass), // BBM
    f(MMFR2, 56, Hide), // EVT: EL2 trap controls
    f(MMFR2, 60, Pass), // E0PD
    // --- AArch32 ID registers (for an AArch32 EL0): as the AArch64 decisions above ---
    f(ID_PFR0, 0, Pass),        // State0
    f(ID_PFR0, 4, Pass),        // State1
    f(ID_PFR0, 8, Pass),        // State2
    f(ID_PFR0, 12, Pass),       // State3
    f(ID_PFR0, 16, Cap(1)),     // CSV2: as the AArch64 CSV2
    f(ID_PFR0, 20, Hide),       // AMU: hidden
    f(ID_PFR0, 24, Pass),       // DIT
    f(ID_PFR0, 28, Hide),       // RAS: hidden
    f(ID_PFR1, 0, Pass),        // ProgMod
    f(ID_PFR1, 4, Pass),        // Security
    f(ID_PFR1, 8, Pass),        // MProgMod
    f(ID_PFR1, 12, Hide),       // Virtualization: no EL2 for the guest
    f(ID_PFR1, 16, Pass),       // GenTimer
    f(ID_PFR1, 20, Pass),       // Sec_frac
    f(ID_PFR1, 24, Hide),       // Virt_frac: no EL2 for the guest
    f(ID_PFR1, 28, GicSysregs), // GIC: the guest's vGIC
    f(ID_DFR0, 0, Pass),        // CopDbg
    f(ID_DFR0, 4, Pass),        // CopSDbg
    f(ID_DFR0, 8, Pass),        // MMapDbg
    f(ID_DFR0, 12, Hide),       // CopTrc: trace hidden
    f(ID_DFR0, 16, Hide),       // MMapTrc: trace hidden
    f(ID_DFR0, 20, Pass),       // MProfDbg
    f(ID_DFR0, 24, Hide),       // PerfMon: the PMU is hidden
    f(ID_DFR0, 28, Hide),       // TraceFilt: trace hidden
    whole((1, 4), Pass),        // ID_MMFR0..3
    whole((1, 5), Pass),
    whole((1, 6), Pass),
    whole((1, 7), Pass),
    whole((2, 0), Pass), // ID_ISAR0..5, ID_MMFR4, ID_ISAR6
    whole((2, 1), Pass),
    whole((2, 2), Pass),
    whole((2, 3), Pass),
    whole((2, 4), Pass),
    whole((2, 5), Pass),
    f(ID_MMFR4, 0, Pass),  // SpecSEI
    f(ID_MMFR4, 4, Pass),  // AC2
    f(ID_MMFR4, 8, Hide),  // XNX: a stage-2 feature
    f(ID_MMFR4, 12, Pass), // CnP
    f(ID_MMFR4, 16, Pass), // HPDS
    f(ID_MMFR4, 20, Pass), // LSM
    f(ID_MMFR4, 24, Pass), // CCIDX
    f(ID_MMFR4, 28, Hide), // EVT: EL2 trap controls
    whole((2, 7), Pass),
    whole((3, 0), Pass), // MVFR0..2
    whole((3, 1), Pass),
    whole((3, 2), Pass),
    f(ID_PFR2, 0, Pass),  // CSV3
    f(ID_PFR2, 4, Pass),  // SSBS
    f(ID_PFR2, 8, Hide),  // RAS_frac: hidden
    f(ID_MMFR5, 0, Pass), // ETS
    f(ID_MMFR5, 4, Pass), // nTLBPA
];

/// Whether `id` is in the ID register space HCR_EL2.TID3 traps (Arm ARM, HCR_EL2.TID3:
/// op0 = 3, op1 = 0, CRn = 0, CRm = 1..7, every op2, the reserved encodings too).
pub const fn is_id_register(id: SysRegId) -> bool {
    id.op0 == 3 && id.op1 == 0 && id.crn == 0 && id.crm >= 1 && id.crm <= 7
}

/// Whether the guest's value of `id` depends on the hardware's: the registers
/// `Platform::id_register` must read (the others are 0 whatever the CPU says).
pub fn reads_hardware(id: SysRegId) -> bool {
    is_id_register(id)
        && POLICY
            .iter()
            .any(|r| r.reg == (id.crm, id.op2) && r.policy != Hide)
}

/// PARange encodings and the address sizes they stand for (ID_AA64MMFR0_EL1.PARange).
const PA_RANGES: [u32; 7] = [32, 36, 40, 42, 44, 48, 52];

/// What the guest reads in ID register `id`, from the hardware's value `hw`.
pub fn sanitise(id: SysRegId, hw: u64, guest: GuestCpu) -> u64 {
    if !is_id_register(id) {
        return 0;
    }
    let mut value = 0;
    for row in POLICY.iter().filter(|r| r.reg == (id.crm, id.op2)) {
        let mask = if row.width >= 64 {
            u64::MAX
        } else {
            (1u64 << row.width) - 1
        };
        let hw_field = (hw >> row.lsb) & mask;
        let field = match row.policy {
            Pass => hw_field,
            Hide => 0,
            Cap(max) => hw_field.min(max),
            IpaSize => {
                let guest_range = PA_RANGES
                    .iter()
                    .rposition(|&bits| bits <= guest.ipa_bits)
                    .unwrap_or(0) as u64;
                hw_field.min(guest_range)
            }
            GicSysregs => match guest.gic {
                GicVersion::V3 => 1,
                GicVersion::V2 => 0,
            },
        };
        value |= (field & mask) << row.lsb;
    }
    value
}

/// What the physical CPU implements, as far as the EL2 controls below depend on it: an EL2
/// register of a feature the CPU lacks is UNDEFINED, a control bit of one is RES0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    pub sve: bool,
    pub ras: bool,
    pub mpam: bool,
    pub pauth: bool,
    /// ID_AA64DFR0_EL1.PMUVer when it is an Arm PMUv3 (1..=0xe), else 0.
    pub pmu_ver: u64,
    pub spe: bool,
    pub trace_filter: bool,
    /// ID_AA64MMFR0_EL1.FGT: 1 FEAT_FGT, 2 FEAT_FGT2.
    pub fgt: u64,
    pub amu_v1p1: bool,
    pub hcx: bool,
    /// FEAT_S2FWB (ID_AA64MMFR2_EL1.FWB): stage 2 can force guest memory Write-Back.
    pub fwb: bool,
}

impl HostCpu {
    /// From the CPU's ID registers, `id((CRm, op2))`.
    pub fn from_id_registers(id: impl Fn((u8, u8)) -> u64) -> Self {
        let field = |reg, lsb: u32| (id(reg) >> lsb) & 0xf;
        let pmu = field(DFR0, 8);
        Self {
            sve: field(PFR0, 32) != 0,
            ras: field(PFR0, 28) != 0,
            mpam: field(PFR0, 40) != 0 || field(PFR1, 16) != 0,
            // ISAR1 APA [7:4], API [11:8], GPA [27:24], GPI [31:28]; ISAR2 GPA3 [11:8],
            // APA3 [15:12].
            pauth: id(ISAR1) & 0xff00_0ff0 != 0 || id(ISAR2) & 0xff00 != 0,
            pmu_ver: if pmu == 0xf { 0 } else { pmu },
            spe: field(DFR0, 32) != 0,
            trace_filter: field(DFR0, 40) != 0,
            fgt: field(MMFR0, 56),
            amu_v1p1: field(PFR0, 44) >= 2,
            hcx: field(MMFR1, 40) != 0,
            fwb: field(MMFR2, 40) == 1,
        }
    }
}

// HCR_EL2 bits (Arm ARM, HCR_EL2).
pub const HCR_TID3: u64 = 1 << 18;
pub const HCR_TSW: u64 = 1 << 22;
pub const HCR_TIDCP: u64 = 1 << 20;
pub const HCR_TACR: u64 = 1 << 21;
pub const HCR_TLOR: u64 = 1 << 35;
pub const HCR_TERR: u64 = 1 << 36;
pub const HCR_APK: u64 = 1 << 40;
pub const HCR_API: u64 = 1 << 41;
/// FEAT_S2FWB: stage-2 MemAttr 0b0110 forces Normal Write-Back whatever stage 1 says.
pub const HCR_FWB: u64 = 1 << 46;
// CPTR_EL2 with E2H = 0 (Arm ARM, CPTR_EL2): RES1 bits [7:0], 9, 13; TZ bit 8 (RES1 without SVE);
// TSM bit 12 (RES1 without SME); TFP bit 10; TTA bit 20; TAM bit 30.
pub const CPTR_RES1: u64 = 0xff | (1 << 9) | (1 << 13);
pub const CPTR_TZ: u64 = 1 << 8;
pub const CPTR_TFP: u64 = 1 << 10;
pub const CPTR_TSM: u64 = 1 << 12;
pub const CPTR_TTA: u64 = 1 << 20;
pub const CPTR_TAM: u64 = 1 << 30;
// MDCR_EL2 (Arm ARM, MDCR_EL2).
pub const MDCR_TPMCR: u64 = 1 << 5;
pub const MDCR_TPM: u64 = 1 << 6;
pub const MDCR_TDOSA: u64 = 1 << 10;
pub const MDCR_TDRA: u64 = 1 << 11;
pub const MDCR_TPMS: u64 = 1 << 14;
pub const MDCR_TDCC: u64 = 1 << 27;
pub const MDCR_HPMD: u64 = 1 << 17;
pub const MDCR_TTRF: u64 = 1 << 19;
pub const MDCR_HCCD: u64 = 1 << 23;
// MPAM2_EL2.
pub const MPAM2_TRAPMPAM1EL1: u64 = 1 << 48;
pub const MPAM2_TRAPMPAM0EL1: u64 = 1 << 49;

/// The EL2 controls that make [`POLICY`] true on a CPU: what works is left untrapped, what is
/// hidden is trapped. Decided here, written by `arch::sysregs::activate_traps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct El2Controls {
    /// HCR_EL2 bits to add to the run-a-guest base: TID3 traps the ID registers (answered by
    /// [`sanitise`]), TLOR the LORegions, TERR the RAS error records (both hidden), TIDCP the
    /// IMPLEMENTATION DEFINED registers (UNDEFINED: they are the physical core's), TACR
    /// ACTLR_EL1 (reads the reset value, writes ignored), TSW the set/way cache operations
    /// (emulated by VA, as KVM's `kvm_set_way_flush`) — all as KVM's `HCR_GUEST_FLAGS`. TEA
    /// stays 0: a synchronous external abort of the guest's own access reaches its EL1 with
    /// the hardware's syndrome, which EL2 could only repeat; API/APK
    /// leave pointer authentication and its keys (EL1 registers, moved with the vCPU) to the
    /// guest, as KVM's `kvm_vcpu_enable_ptrauth`. ATA stays 0: MTE's registers trap.
    pub hcr: u64,
    /// CPTR_EL2: FP/SIMD untrapped (EL2 never uses it), SVE untrapped where the CPU has it
    /// ([`cptr_with_fp_trap`](Self::cptr_with_fp_trap) adds the lazy FP switch's traps);
    /// SME (TSM), trace (TTA) and the activity monitors (TAM) trapped. TAM and TTA are set
    /// regardless, as KVM's `__activate_cptr_traps_nvhe`.
    pub cptr: u64,
    /// ZCR_EL2 when the CPU has SVE: LEN = 0xf lets EL1 pick any vector length the CPU has
    /// (the effective length is capped at the implemented maximum).
    pub zcr: Option<u64>,
    /// MDCR_EL2: the PMU trapped (TPM, TPMCR: UNDEFINED for the guest) with HPMN = PMCR_EL0.N
    /// (no counter reserved for EL2) and EL2 not counting (HPMD, HCCD); SPE (TPMS, E2PB = 0),
    /// the trace buffer (E2TB = 0) and the trace filter (TTRF) trapped. The OS lock and
    /// power-down registers (TDOSA), the debug ROM address (TDRA) and, with FEAT_FGT, the
    /// debug communications channel (TDCC) trapped and emulated as KVM does (`trap_oslar_el1`,
    /// `trap_raz_wi`): they reach the physical core's external debug interface. The
    /// breakpoint, watchpoint and MDSCR registers (TDA) stay the guest's: they are EL1 state
    /// (moved with the vCPU), and a debug exception can never target EL2 while TDE = 0. Each bit
    /// only where the CPU has the feature (RES0 otherwise).
    pub mdcr: u64,
    /// FEAT_FGT / FEAT_FGT2: the fine-grained trap registers to zero (they reset UNKNOWN).
    pub fgt: u64,
    /// HAFGRTR_EL2 exists (FEAT_FGT with FEAT_AMUv1p1).
    pub amu_fgt: bool,
    /// HCRX_EL2 (FEAT_HCX) to zero: MOPS, LS64, TCR2, SCTLR2, GCS, FPMR, D128 stay off.
    pub hcrx: Option<u64>,
    /// MPAM2_EL2 when the CPU has MPAM: EL1/EL0 accesses trapped, as KVM's
    /// `__activate_traps_mpam`.
    pub mpam2: Option<u64>,
}

impl El2Controls {
    /// CPTR_EL2 with FP/SIMD (and SVE, where the CPU has it) trapped or not: the lazy FP
    /// switch traps the guest's first use (EC 0x07, or 0x19 for SVE) until this CPU's
    /// registers hold its state. TFP traps EL2's own FP/SIMD/SVE use too, so the save and
    /// restore run with it off. Without SVE, TZ stays set (RES1).
    pub fn cptr_with_fp_trap(&self, trap: bool) -> u64 {
        if trap {
            self.cptr | CPTR_TFP | CPTR_TZ
        } else {
            self.cptr
        }
    }

    /// For `cpu`; `pmcr_n` reads PMCR_EL0.N (called only when the CPU has a PMUv3).
    pub fn for_cpu(cpu: &HostCpu, pmcr_n: impl FnOnce() -> u64) -> Self {
        // TLOR: RES0 without LOR, set anyway as KVM does.
        let mut hcr = HCR_TID3 | HCR_TLOR | HCR_TIDCP | HCR_TACR | HCR_TSW;
        if cpu.ras {
            hcr |= HCR_TERR;
        }
        if cpu.pauth {
            hcr |= HCR_API | HCR_APK;
        }
        if cpu.fwb {
            // Guest RAM is mapped with the forced Write-Back encoding (`mm::stage2`): a guest
            // with its MMU off reads through the caches, so EL2 need not clean to PoC what it
            // writes for it (KVM's `stage2_has_fwb`).
            hcr |= HCR_FWB;
        }
        let mut cptr = CPTR_RES1 | CPTR_TSM | CPTR_TTA | CPTR_TAM;
        if !cpu.sve {
            cptr |= CPTR_TZ;
        }
        let mut mdcr = MDCR_TDOSA | MDCR_TDRA;
        if cpu.fgt >= 1 {
            mdcr |= MDCR_TDCC;
        }
        if cpu.pmu_ver != 0 {
            mdcr |= (pmcr_n() & 0x1f) | MDCR_TPM | MDCR_TPMCR;
            if cpu.pmu_ver >= 4 {
                mdcr |= MDCR_HPMD; // FEAT_PMUv3p1
            }
            if cpu.pmu_ver >= 6 {
                mdcr |= MDCR_HCCD; // FEAT_PMUv3p5
            }
        }
        if cpu.spe {
            mdcr |= MDCR_TPMS;
        }
        if cpu.trace_filter {
            mdcr |= MDCR_TTRF;
        }
        Self {
            hcr,
            cptr,
            zcr: cpu.sve.then_some(0xf),
            mdcr,
            fgt: cpu.fgt,
            amu_fgt: cpu.fgt >= 1 && cpu.amu_v1p1,
            hcrx: cpu.hcx.then_some(0),
            mpam2: cpu.mpam.then_some(MPAM2_TRAPMPAM1EL1 | MPAM2_TRAPMPAM0EL1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyp::exit::SysReg;

    const V3_40BIT: GuestCpu = GuestCpu {
        gic: GicVersion::V3,
        ipa_bits: 40,
    };

    fn id(reg: (u8, u8)) -> SysRegId {
        SysRegId::new(3, 0, 0, reg.0, reg.1)
    }

    fn field(value: u64, lsb: u8) -> u64 {
        (value >> lsb) & 0xf
    }

    // Values shaped like QEMU's `-cpu max` (target/arm/tcg/cpu64.c, aarch64_max_tcg_initfn):
    // the fields the tests look at are non-zero.
    const MAX_PFR0: u64 = 0x1201_1111_1112_2222; // EL2 = 2 (AArch32 too), GIC = 1, RAS, SVE, AMU...
    const MAX_PFR1: u64 = 0x0000_0000_0101_0321; // BT, SSBS 2, MTE 3, SME 1
    const MAX_DFR0: u64 = 0x0000_0001_f210_f609; // PMUVer 6, PMSVer 1, DebugVer 9
    const MAX_ISAR1: u64 = 0x0011_1112_1110_0051; // APA 5, GPA 1
    const MAX_MMFR1: u64 = 0x0001_0110_1012_2122; // VH, LO, HCX, HAFDBS 2
    /// QEMU max's fields of interest: FWB [43:40] = 1, TTL, BBM 2, EVT 2, E0PD, IDS, ST, CnP.
    const MAX_MMFR2: u64 = 0x1221_0111_1001_0001;
    const MAX_MMFR0: u64 = 0x1100_0000_0000_5125; // PARange 48, FGT, ECV 1

    #[test]
    fn cpu_features_hide_el2_from_the_guest() {
        let pfr0 = sanitise(id(PFR0), MAX_PFR0, V3_40BIT);
        assert_eq!(field(pfr0, 8), 0, "EL2");
        assert_eq!(field(pfr0, 4), 1, "EL1: AArch64 only");
        assert_eq!(field(pfr0, 0), field(MAX_PFR0, 0), "EL0 passes");
        let mmfr1 = sanitise(id(MMFR1), MAX_MMFR1, V3_40BIT);
        assert_eq!(field(mmfr1, 8), 0, "VH");
        assert_eq!(field(mmfr1, 40), 0, "HCX");
        let id_pfr1 = sanitise(id(ID_PFR1), 0x1001_1011, V3_40BIT);
        assert_eq!(field(id_pfr1, 12), 0, "AArch32 Virtualization");
    }

    #[test]
    fn cpu_features_gic_field_is_the_guests_gic() {
        let v2 = GuestCpu {
            gic: GicVersion::V2,
            ..V3_40BIT
        };
        assert_eq!(field(sanitise(id(PFR0), MAX_PFR0, v2), 24), 0);
        assert_eq!(field(sanitise(id(PFR0), 0, V3_40BIT), 24), 1);
        assert_eq!(field(sanitise(id(ID_PFR1), 0, V3_40BIT), 28), 1);
        assert_eq!(field(sanitise(id(ID_PFR1), 1 << 28, v2), 28), 0);
    }

    #[test]
    fn cpu_features_hide_what_bulkhead_traps() {
        let pfr0 = sanitise(id(PFR0), MAX_PFR0, V3_40BIT);
        for (lsb, name) in [(28, "RAS"), (40, "MPAM"), (44, "AMU")] {
            assert_eq!(field(pfr0, lsb), 0, "{name}");
        }
        let pfr1 = sanitise(id(PFR1), MAX_PFR1, V3_40BIT);
        assert_eq!(field(pfr1, 8), 0, "MTE");
        assert_eq!(field(pfr1, 24), 0, "SME");
        let dfr0 = sanitise(id(DFR0), MAX_DFR0, V3_40BIT);
        assert_eq!(field(dfr0, 8), 0, "PMUVer");
        assert_eq!(field(dfr0, 32), 0, "PMSVer (SPE)");
        assert_eq!(field(dfr0, 44), 0, "TraceBuffer");
        assert_eq!(field(dfr0, 0), 9, "DebugVer passes");
        let mmfr1 = sanitise(id(MMFR1), MAX_MMFR1, V3_40BIT);
        assert_eq!(field(mmfr1, 16), 0, "LO");
        let id_dfr0 = sanitise(id(ID_DFR0), 0x0601_0000 | 0x0300_0000, V3_40BIT);
        assert_eq!(field(id_dfr0, 24), 0, "AArch32 PerfMon");
    }

    #[test]
    fn cpu_features_pass_what_works_untrapped() {
        let pfr0 = sanitise(id(PFR0), MAX_PFR0, V3_40BIT);
        assert_eq!(field(pfr0, 32), 1, "SVE");
        assert_eq!(field(pfr0, 16), field(MAX_PFR0, 16), "FP");
        let pfr1 = sanitise(id(PFR1), MAX_PFR1, V3_40BIT);
        assert_eq!(field(pfr1, 0), 1, "BTI");
        assert_eq!(
            sanitise(id(ISAR1), MAX_ISAR1, V3_40BIT),
            MAX_ISAR1,
            "PAuth etc."
        );
        assert_eq!(sanitise(id(ZFR0), 0x1234, V3_40BIT), 0x1234, "SVE subsets");
        let isar0 = sanitise(id(ISAR0), 1 << 60, V3_40BIT);
        assert_eq!(field(isar0, 60), 1, "RNDR");
    }

    #[test]
    fn cpu_features_cap_csv2_below_scxtnum() {
        let pfr0 = sanitise(id(PFR0), 2 << 56, V3_40BIT);
        assert_eq!(field(pfr0, 56), 1, "CSV2");
        let pfr1 = sanitise(id(PFR1), 2 << 32, V3_40BIT);
        assert_eq!(field(pfr1, 32), 1, "CSV2_frac");
        assert_eq!(
            field(sanitise(id(ID_PFR0), 2 << 16, V3_40BIT), 16),
            1,
            "ID_PFR0.CSV2"
        );
    }

    #[test]
    fn cpu_features_cap_parange_to_the_guests_ipa_size() {
        let mmfr0 = sanitise(id(MMFR0), MAX_MMFR0, V3_40BIT);
        assert_eq!(field(mmfr0, 0), 2, "40 bits");
        assert_eq!(field(mmfr0, 56), 0, "FGT");
        assert_eq!(field(mmfr0, 60), 1, "ECV capped at 1");
        let narrow = sanitise(id(MMFR0), 1, V3_40BIT);
        assert_eq!(field(narrow, 0), 1, "never more than the CPU has");
        assert_eq!(GuestCpu::new(GicVersion::V3, 24).ipa_bits, 40);
    }

    #[test]
    fn cpu_features_unnamed_and_reserved_registers_read_zero() {
        for crm in 1..=7 {
            for op2 in 0..=7 {
                let reg = (crm, op2);
                let v = sanitise(id(reg), u64::MAX, V3_40BIT);
                if POLICY.iter().all(|r| r.reg != reg) {
                    assert_eq!(v, 0, "{}", id(reg));
                    assert!(!reads_hardware(id(reg)));
                }
            }
        }
        // SME, FP8, MMFR3 (TCR2, PIE...), the AFRs, PFR2, DFR1.
        for reg in [
            (4, 5),
            (4, 7),
            (7, 3),
            (5, 4),
            (5, 5),
            (4, 2),
            (5, 1),
            (6, 3),
        ] {
            assert_eq!(sanitise(id(reg), u64::MAX, V3_40BIT), 0, "{}", id(reg));
        }
        assert!(
            !is_id_register(SysRegId::new(3, 0, 0, 0, 0)),
            "MIDR is not TID3's"
        );
        assert!(!is_id_register(SysRegId::new(3, 0, 0, 8, 0)));
        assert!(is_id_register(SysReg::ID_AA64MMFR2_EL1.id()));
    }

    #[test]
    fn cpu_features_table_rows_are_disjoint_and_in_the_id_space() {
        for (i, a) in POLICY.iter().enumerate() {
            assert!(is_id_register(id(a.reg)), "{:?}", a);
            assert!(u32::from(a.lsb) + u32::from(a.width) <= 64, "{:?}", a);
            for b in &POLICY[i + 1..] {
                let overlap = a.reg == b.reg && a.lsb < b.lsb + b.width && b.lsb < a.lsb + a.width;
                assert!(!overlap, "{a:?} overlaps {b:?}");
            }
        }
    }

    fn host(regs: &[((u8, u8), u64)]) -> HostCpu {
        HostCpu::from_id_registers(|reg| {
            regs.iter().find(|(r, _)| *r == reg).map_or(0, |&(_, v)| v)
        })
    }

    /// QEMU's cortex-a72: PMUv3 (PMUVer 1), nothing newer.
    fn cortex_a72() -> HostCpu {
        host(&[(PFR0, 0x1122), (DFR0, 0x1010_1106), (MMFR0, 0x1124)])
    }

    fn max() -> HostCpu {
        host(&[
            (PFR0, MAX_PFR0),
            (PFR1, MAX_PFR1),
            (DFR0, MAX_DFR0),
            (ISAR1, MAX_ISAR1),
            (MMFR0, MAX_MMFR0),
            (MMFR1, MAX_MMFR1),
            (MMFR2, MAX_MMFR2),
        ])
    }

    #[test]
    fn cpu_features_el2_controls_on_a_plain_armv8_0_cpu() {
        let c = El2Controls::for_cpu(&cortex_a72(), || 6);
        assert_eq!(
            c.hcr,
            HCR_TID3 | HCR_TLOR | HCR_TIDCP | HCR_TACR | HCR_TSW,
            "no RAS, no pointer auth: RES0 bits left 0"
        );
        assert_eq!(c.cptr, CPTR_RES1 | CPTR_TZ | CPTR_TSM | CPTR_TTA | CPTR_TAM);
        assert_eq!(c.zcr, None);
        assert_eq!(
            c.mdcr,
            6 | MDCR_TPM | MDCR_TPMCR | MDCR_TDOSA | MDCR_TDRA,
            "HPMN = N, PMU trapped, OS lock and debug ROM trapped, no TDCC without FGT"
        );
        assert_eq!((c.fgt, c.amu_fgt, c.hcrx, c.mpam2), (0, false, None, None));
    }

    #[test]
    fn cpu_features_el2_controls_on_max() {
        let c = El2Controls::for_cpu(&max(), || 6);
        let always = HCR_TID3 | HCR_TLOR | HCR_TIDCP | HCR_TACR | HCR_TSW;
        assert_eq!(c.hcr, always | HCR_TERR | HCR_API | HCR_APK | HCR_FWB);
        assert_eq!(c.cptr & CPTR_TZ, 0, "SVE untrapped");
        assert_ne!(c.cptr & CPTR_TSM, 0, "SME trapped");
        assert_eq!(c.zcr, Some(0xf));
        let want = 6 | MDCR_TPM | MDCR_TPMCR | MDCR_HPMD | MDCR_HCCD | MDCR_TPMS;
        let debug = MDCR_TDOSA | MDCR_TDRA | MDCR_TDCC;
        assert_eq!(
            c.mdcr,
            want | debug,
            "PMU and SPE trapped, EL2 not counted, DCC trapped"
        );
        assert_eq!(c.fgt, 1);
        assert_eq!(c.hcrx, Some(0));
        assert_eq!(c.mpam2, Some(MPAM2_TRAPMPAM1EL1 | MPAM2_TRAPMPAM0EL1));
    }

    #[test]
    fn cpu_features_fp_trap_bits() {
        let max = El2Controls::for_cpu(&max(), || 6);
        assert_eq!(
            max.cptr_with_fp_trap(false),
            max.cptr,
            "FP and SVE untrapped"
        );
        assert_eq!(max.cptr & (CPTR_TFP | CPTR_TZ), 0);
        assert_eq!(
            max.cptr_with_fp_trap(true),
            max.cptr | CPTR_TFP | CPTR_TZ,
            "FP and SVE trapped"
        );
        let a72 = El2Controls::for_cpu(&cortex_a72(), || 6);
        assert_ne!(
            a72.cptr_with_fp_trap(false) & CPTR_TZ,
            0,
            "TZ is RES1 without SVE"
        );
        assert_eq!(a72.cptr_with_fp_trap(true), a72.cptr | CPTR_TFP);
    }

    #[test]
    fn cpu_features_el2_controls_without_a_pmu_never_read_pmcr() {
        let no_pmu = HostCpu {
            pmu_ver: 0,
            ..cortex_a72()
        };
        let c = El2Controls::for_cpu(&no_pmu, || panic!("PMCR_EL0 read without a PMU"));
        assert_eq!(c.mdcr, MDCR_TDOSA | MDCR_TDRA);
        let imp_def_pmu = host(&[(DFR0, 0xf00)]);
        assert_eq!(imp_def_pmu.pmu_ver, 0, "PMUVer 0xf is not a PMUv3");
    }

    #[test]
    fn cpu_features_forced_write_back_only_where_the_cpu_has_it() {
        assert!(max().fwb && !cortex_a72().fwb);
        assert_eq!(El2Controls::for_cpu(&cortex_a72(), || 6).hcr & HCR_FWB, 0);
        assert_ne!(El2Controls::for_cpu(&max(), || 6).hcr & HCR_FWB, 0);
        assert!(!host(&[(MMFR2, 2 << 40)]).fwb, "only FWB = 1 is defined");
    }

    #[test]
    fn cpu_features_pointer_auth_is_any_of_its_fields() {
        assert!(
            !host(&[(ISAR1, 0x000f_f00f)]).pauth,
            "JSCVT, FCMA, DPB are not PAuth"
        );
        for isar1 in [0x10, 0x100, 0x100_0000, 0x1000_0000] {
            assert!(host(&[(ISAR1, isar1)]).pauth, "{isar1:#x}");
        }
        assert!(host(&[(ISAR2, 0x1000)]).pauth, "APA3");
    }

    #[test]
    fn cpu_features_named_id_registers_match_the_table_encodings() {
        assert_eq!(SysReg::ID_AA64PFR0_EL1.id(), id(PFR0));
        assert_eq!(SysReg::ID_AA64ZFR0_EL1.id(), id(ZFR0));
        assert_eq!(SysReg::ID_AA64DFR0_EL1.id(), id(DFR0));
        assert_eq!(SysReg::ID_AA64ISAR2_EL1.id(), id(ISAR2));
        assert_eq!(SysReg::ID_AA64MMFR2_EL1.id(), id(MMFR2));
    }
}
