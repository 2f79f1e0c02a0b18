//! A vCPU's state beyond its general registers: what moves when another vCPU takes the
//! physical CPU (`arch::context` saves and restores it). Plain data, built on the host, where
//! the save list is checked against the features the guest is given ([`POLICY`]).
//!
//! What a guest can reach without a trap, and so what must move with it, follows from
//! `hyp::cpu_features`: every ID field passed to the guest is classified below
//! ([`PASSED_FIELD_STATE`]) as state-free or as owning registers, and every register a
//! feature owns is in the save list ([`FEATURE_REGISTERS`] against [`save_list`]); the host
//! tests hold the three together. Registers left out on purpose, with why:
//! - ACTLR_EL1: HCR_EL2.TACR traps it (reads the CPU's value, writes ignored).
//! - SCXTNUM_EL0/EL1: CSV2 is capped at 1 and HCR_EL2.EnSCXT = 0 traps them.
//! - TPIDR2_EL0, SMCR_EL1, SMPRI_EL1, ZA: SME is hidden; CPTR_EL2.TSM and HFGxTR_EL2.nTPIDR2_EL0
//!   (0) trap them.
//! - RGSR_EL1, GCR_EL1, TFSR_EL1, TFSRE0_EL1: MTE is hidden; HCR_EL2.ATA = 0 traps them.
//! - The PMU, AMU, SPE, trace, MPAM, LORegions, RAS error records: hidden and trapped.
//! - DACR32_EL2, IFSR32_EL2, FPEXC32_EL2, the AArch32 SPSRs: AArch32 EL1 state; the guest's
//!   EL1 is AArch64 only (HCR_EL2.RW = 1). An AArch32 EL0 uses the AArch64 registers saved
//!   here (TPIDR_EL0 is TPIDRURW, TPIDRRO_EL0 TPIDRURO, V0-31 the D/Q registers) and its FP
//!   enable is CPACR_EL1's (FPEXC.EN is ignored when EL1 is AArch64), as KVM, which switches
//!   FPEXC32_EL2 only for a 32-bit EL1.
//! - The debug communications channel (DBGDTR*_EL0, OSDTR*_EL1, MDCCSR_EL0): a channel to
//!   the physical core's external debugger, not vCPU state; MDCR_EL2.TDCC traps it with FGT.
//!   MDCCINT_EL1 (its interrupt enables) is the vCPU's and moves. OSECCR_EL1 likewise: a
//!   window on the external debugger's EDECCR (halting debug), not self-hosted state.
//! - The OS lock is emulated (MDCR_EL2.TDOSA), kept in `Vcpu::os_lock`; the run loop writes it
//!   with `arch::sysregs::set_os_lock` when it loads a vCPU.
//! - ICC_SRE_EL1 and ICH_HCR_EL2: the same for every vCPU of the machine (its GIC version),
//!   and the run loop writes ICH_HCR_EL2 (En, UIE) before each entry; the list registers are
//!   empty between runs (folded and cleared after every exit).
//! - CNTVOFF_EL2: per VM, not per vCPU (the run loop loads it with the VM).
//!
//! The keys are loaded into the registers EL2 would use for its own pointer authentication:
//! EL2 is built without it (no `-Z branch-protection`) and must stay so.
//!
//! [`POLICY`]: crate::hyp::cpu_features::POLICY

use alloc::vec;
use alloc::vec::Vec;

/// The EL1/EL0 system registers every vCPU owns whatever the CPU implements: one list for
/// the struct ([`El1Regs`]) and for `arch::context`, which turns each name into MRS/MSR.
macro_rules! el1_registers {
    ($m:ident) => {
        $m! {
            sctlr: "sctlr_el1",
            tcr: "tcr_el1",
            ttbr0: "ttbr0_el1",
            ttbr1: "ttbr1_el1",
            mair: "mair_el1",
            amair: "amair_el1",
            vbar: "vbar_el1",
            contextidr: "contextidr_el1",
            cpacr: "cpacr_el1",
            esr: "esr_el1",
            far: "far_el1",
            afsr0: "afsr0_el1",
            afsr1: "afsr1_el1",
            par: "par_el1",
            tpidr_el0: "tpidr_el0",
            tpidrro_el0: "tpidrro_el0",
            tpidr_el1: "tpidr_el1",
            sp_el0: "sp_el0",
            sp_el1: "sp_el1",
            elr_el1: "elr_el1",
            spsr_el1: "spsr_el1",
            cntkctl: "cntkctl_el1",
            csselr: "csselr_el1",
            mdscr: "mdscr_el1",
        }
    };
}
// Used by `arch::context` (target only).
#[cfg_attr(not(target_os = "none"), allow(unused_imports))]
pub(crate) use el1_registers;

macro_rules! define_el1_regs {
    ($($field:ident: $name:literal),* $(,)?) => {
        /// The EL1/EL0 system registers of [`el1_registers`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct El1Regs {
            $(pub $field: u64,)*
        }

        /// The architectural names of [`El1Regs`]'s registers, in order.
        pub const EL1_REGISTER_NAMES: &[&str] = &[$($name),*];
    };
}
el1_registers!(define_el1_regs);

/// SCTLR_EL1 at reset: MMU and caches off, the RES1 bits (Arm ARM, SCTLR_EL1) set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

impl El1Regs {
    /// At vCPU reset: 0 but SCTLR_EL1's RES1 bits (the others are UNKNOWN or 0 at reset;
    /// KVM's `reset_val` gives 0 too).
    pub fn reset() -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            ..Self::default()
        }
    }
}

/// The pointer authentication keys (FEAT_PAuth), each {Lo, Hi}: APIA, APIB, APDA, APDB, APGA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PauthKeys {
    pub apia: [u64; 2],
    pub apib: [u64; 2],
    pub apda: [u64; 2],
    pub apdb: [u64; 2],
    pub apga: [u64; 2],
}

/// Most breakpoints / watchpoints a guest can use: ID_AA64DFR0_EL1.BRPs/WRPs are 4 bits
/// (the FEAT_Debugv8p9 extension to 64 is in ID_AA64DFR1_EL1, hidden).
pub const MAX_DEBUG_POINTS: usize = 16;

/// The self-hosted debug registers (DebugVer is passed and MDCR_EL2.TDA = 0): the ones the
/// CPU implements move ([`SaveSet::brps`], [`SaveSet::wrps`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugRegs {
    /// DBGBVR<n>_EL1, DBGBCR<n>_EL1.
    pub bvr: [u64; MAX_DEBUG_POINTS],
    pub bcr: [u64; MAX_DEBUG_POINTS],
    /// DBGWVR<n>_EL1, DBGWCR<n>_EL1.
    pub wvr: [u64; MAX_DEBUG_POINTS],
    pub wcr: [u64; MAX_DEBUG_POINTS],
    /// MDCCINT_EL1: the debug communications channel's interrupt enables.
    pub mdccint: u64,
    /// The claim tags (DBGCLAIMCLR_EL1 reads them, DBGCLAIMSET_EL1 sets them).
    pub claim: u64,
}

/// The vCPU's virtual timer (EL1 physical timer is emulated: `Vcpu::timers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VtimerRegs {
    /// CNTV_CTL_EL0 (ENABLE, IMASK; ISTATUS is read-only).
    pub ctl: u64,
    /// CNTV_CVAL_EL0.
    pub cval: u64,
}

/// The guest-owned part of the GIC virtual CPU interface. GICv3: ICH_VMCR_EL2 and
/// ICH_AP0R<n>_EL2 / ICH_AP1R<n>_EL2 (n < 4, those PREbits implements). GICv2: GICH_VMCR and
/// GICH_APR (in `ap1r[0]`, the only active-priorities register GICv2 has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GicCpuIf {
    pub vmcr: u64,
    pub ap0r: [u32; 4],
    pub ap1r: [u32; 4],
}

/// Everything but the general registers and FP/SIMD/SVE ([`FpState`], switched lazily) that
/// belongs to one vCPU and lives in the CPU's registers while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuContext {
    pub el1: El1Regs,
    /// When the CPU has pointer authentication (HCR_EL2.API/APK leave it to the guest).
    pub pauth: PauthKeys,
    pub debug: DebugRegs,
    pub timer: VtimerRegs,
    pub gic: GicCpuIf,
    /// VDISR_EL2, where an ESB of the guest defers a virtual SError (the CPU has RAS; the
    /// guest's DISR_EL1 accesses reach it with HCR_EL2.AMO = 1).
    pub vdisr: u64,
    /// A virtual SError pending for the guest (HCR_EL2.VSE) and its syndrome (VSESR_EL2,
    /// with RAS; 0 without).
    pub vse: Option<u64>,
}

impl VcpuContext {
    /// A powered-on vCPU's state: the architectural reset values (SCTLR_EL1's RES1 bits),
    /// timer off, no active priorities, no breakpoint or watchpoint enabled (DBGBCR/DBGWCR.E
    /// = 0), zero keys (the guest picks its own), no SError pending.
    pub fn reset() -> Self {
        Self {
            el1: El1Regs::reset(),
            pauth: PauthKeys::default(),
            debug: DebugRegs::default(),
            timer: VtimerRegs::default(),
            gic: GicCpuIf::default(),
            vdisr: 0,
            vse: None,
        }
    }
}

/// What beyond [`El1Regs`] the CPU implements, and so what moves on it. Read from the ID
/// registers (the hardware's values, not the guest's: a register the CPU has is reachable
/// whatever the guest was told, unless trapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveSet {
    pub pauth: bool,
    pub sve: bool,
    /// VDISR_EL2 and VSESR_EL2 exist (FEAT_RAS).
    pub ras: bool,
    /// Implemented breakpoints and watchpoints (ID_AA64DFR0_EL1.BRPs/WRPs + 1).
    pub brps: usize,
    pub wrps: usize,
}

impl SaveSet {
    /// From the CPU's ID registers, `id((CRm, op2))`.
    pub fn from_id_registers(id: impl Fn((u8, u8)) -> u64) -> Self {
        use crate::hyp::cpu_features::{DFR0, HostCpu, PFR0};
        let host = HostCpu::from_id_registers(&id);
        let dfr0 = id(DFR0);
        let field = |v: u64, lsb: u32| ((v >> lsb) & 0xf) as usize;
        Self {
            pauth: host.pauth,
            sve: host.sve,
            ras: field(id(PFR0), 28) != 0,
            brps: field(dfr0, 12) + 1,
            wrps: field(dfr0, 20) + 1,
        }
    }
}

/// A vCPU's FP/SIMD state, or its SVE state on a CPU with SVE (whose Z registers hold the V
/// registers in their low 128 bits, so one area serves both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpState {
    pub fpsr: u64,
    pub fpcr: u64,
    /// ZCR_EL1 (SVE only): the vector length the guest picked.
    pub zcr_el1: u64,
    /// Bytes of one Z register at the largest vector length EL1 may use; None: no SVE.
    sve_vl: Option<usize>,
    /// V0-31 (16 bytes each), or Z0-31 (`sve_vl` bytes each) then P0-15 and FFR (`sve_vl / 8`
    /// bytes each). u128: the 16-byte alignment STP of Q registers and STR of Z like.
    regs: Vec<u128>,
}

/// SVE vector lengths: a multiple of 128 bits, at most 2048 (Arm ARM, ZCR_ELx.LEN).
const SVE_VL_MIN: usize = 16;
const SVE_VL_MAX: usize = 256;

impl FpState {
    /// Zeroed state for a CPU whose largest vector length is `sve_vl_bytes` (None: no SVE).
    /// A length the architecture does not allow is rounded up to one it does.
    pub fn new(sve_vl_bytes: Option<usize>) -> Self {
        let sve_vl = sve_vl_bytes.map(|vl| vl.next_multiple_of(16).clamp(SVE_VL_MIN, SVE_VL_MAX));
        let bytes = match sve_vl {
            None => 32 * 16,
            // Z0-31, then P0-15 and FFR.
            Some(vl) => 32 * vl + 17 * (vl / 8),
        };
        Self {
            fpsr: 0,
            fpcr: 0,
            zcr_el1: 0,
            sve_vl,
            regs: vec![0; bytes.div_ceil(16)],
        }
    }

    /// Back to the reset state (all registers 0, as KVM resets them; ZCR_EL1 0 too).
    pub fn reset(&mut self) {
        self.fpsr = 0;
        self.fpcr = 0;
        self.zcr_el1 = 0;
        self.regs.fill(0);
    }

    /// Bytes of one Z register (None: FP/SIMD only).
    pub fn sve_vl(&self) -> Option<usize> {
        self.sve_vl
    }

    /// Byte offset of P0 in the register area (SVE), after Z0-31.
    pub fn p_offset(&self) -> usize {
        self.sve_vl.map_or(32 * 16, |vl| 32 * vl)
    }

    /// The register area, for the save/restore code.
    pub fn area_mut(&mut self) -> &mut [u128] {
        &mut self.regs
    }

    /// As [`area_mut`](Self::area_mut), read-only.
    pub fn area(&self) -> &[u128] {
        &self.regs
    }

    /// Bytes of the register area (a multiple of 16).
    pub fn area_bytes(&self) -> usize {
        self.regs.len() * 16
    }

    /// V<n> (the low 128 bits of Z<n>), little-endian as stored by STR/STP.
    pub fn v(&self, n: usize) -> Option<u128> {
        let stride = self.sve_vl.unwrap_or(16) / 16;
        self.regs
            .get(n.checked_mul(stride)?)
            .copied()
            .filter(|_| n < 32)
    }
}

/// Registers that [`save_list`] names in families: the `<n>` ones of the debug
/// architecture, as many as the CPU implements; the ICH APRs, as many as PREbits.
pub const DEBUG_POINT_REGISTERS: &[&str] = &[
    "dbgbvr<n>_el1",
    "dbgbcr<n>_el1",
    "dbgwvr<n>_el1",
    "dbgwcr<n>_el1",
];

/// Every register `arch::context` moves on a CPU with everything (`save`/`restore`, and
/// `save_fp`/`restore_fp` for the FP/SIMD/SVE ones), by architectural name. Kept beside the
/// code that moves them: a register added there and not here (or the reverse) fails
/// `context_save_list_matches_the_feature_table`.
pub fn save_list() -> Vec<&'static str> {
    let mut list: Vec<&'static str> = EL1_REGISTER_NAMES.to_vec();
    list.extend_from_slice(&[
        // Pointer authentication.
        "apiakeylo_el1",
        "apiakeyhi_el1",
        "apibkeylo_el1",
        "apibkeyhi_el1",
        "apdakeylo_el1",
        "apdakeyhi_el1",
        "apdbkeylo_el1",
        "apdbkeyhi_el1",
        "apgakeylo_el1",
        "apgakeyhi_el1",
        // Debug.
        "mdccint_el1",
        "dbgclaim_el1",
        // Timer.
        "cntv_ctl_el0",
        "cntv_cval_el0",
        // GIC.
        "ich_vmcr_el2",
        "ich_ap0r<n>_el2",
        "ich_ap1r<n>_el2",
        "gich_vmcr",
        "gich_apr",
        // RAS.
        "vdisr_el2",
        "vsesr_el2",
        "hcr_el2.vse",
        // FP/SIMD/SVE (`save_fp`).
        "v0-31",
        "fpsr",
        "fpcr",
        "z0-31",
        "p0-15",
        "ffr",
        "zcr_el1",
    ]);
    list.extend_from_slice(DEBUG_POINT_REGISTERS);
    list
}

/// A guest-visible feature and the registers it brings (that the guest reaches untrapped).
pub const FEATURE_REGISTERS: &[(Feature, &[&str])] = &[
    (
        Feature::Base,
        &[
            "sctlr_el1",
            "tcr_el1",
            "ttbr0_el1",
            "ttbr1_el1",
            "mair_el1",
            "amair_el1",
            "vbar_el1",
            "contextidr_el1",
            "cpacr_el1",
            "esr_el1",
            "far_el1",
            "afsr0_el1",
            "afsr1_el1",
            "par_el1",
            "tpidr_el0",
            "tpidrro_el0",
            "tpidr_el1",
            "sp_el0",
            "sp_el1",
            "elr_el1",
            "spsr_el1",
            "csselr_el1",
        ],
    ),
    (
        Feature::GenericTimer,
        &["cntkctl_el1", "cntv_ctl_el0", "cntv_cval_el0"],
    ),
    (
        Feature::Gic,
        &[
            "ich_vmcr_el2",
            "ich_ap0r<n>_el2",
            "ich_ap1r<n>_el2",
            "gich_vmcr",
            "gich_apr",
        ],
    ),
    (Feature::FpSimd, &["v0-31", "fpsr", "fpcr"]),
    (Feature::Sve, &["z0-31", "p0-15", "ffr", "zcr_el1"]),
    (
        Feature::PointerAuth,
        &[
            "apiakeylo_el1",
            "apiakeyhi_el1",
            "apibkeylo_el1",
            "apibkeyhi_el1",
            "apdakeylo_el1",
            "apdakeyhi_el1",
            "apdbkeylo_el1",
            "apdbkeyhi_el1",
            "apgakeylo_el1",
            "apgakeyhi_el1",
        ],
    ),
    (
        Feature::Debug,
        &[
            "mdscr_el1",
            "mdccint_el1",
            "dbgclaim_el1",
            "dbgbvr<n>_el1",
            "dbgbcr<n>_el1",
            "dbgwvr<n>_el1",
            "dbgwcr<n>_el1",
        ],
    ),
    // RAS is hidden from the guest, but on a CPU with it an ESB defers a virtual SError into
    // VDISR_EL2 and HCR_EL2.VSE/VSESR_EL2 hold one EL2 pended for the vCPU.
    (Feature::HostRas, &["vdisr_el2", "vsesr_el2", "hcr_el2.vse"]),
];

/// The features of [`FEATURE_REGISTERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// AArch64 EL1/EL0 itself.
    Base,
    GenericTimer,
    Gic,
    FpSimd,
    Sve,
    PointerAuth,
    Debug,
    HostRas,
}

/// What a passed ID field brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldState {
    /// Registers of this feature.
    Registers(Feature),
    /// No register state: instructions, hints, PSTATE bits (saved in SPSR), properties, or
    /// bits of registers another feature brings.
    None,
}

/// Every ID field POLICY passes (or caps), and the state it brings: a field added to POLICY
/// and not here fails `context_every_passed_feature_is_classified`. (CRm, op2), lsb.
pub const PASSED_FIELD_STATE: &[((u8, u8), u8, FieldState)] = {
    use crate::hyp::cpu_features::{
        DFR0, ID_DFR0, ID_MMFR4, ID_MMFR5, ID_PFR0, ID_PFR1, ID_PFR2, ISAR0, ISAR1, ISAR2, MMFR0,
        MMFR1, MMFR2, PFR0, PFR1, ZFR0,
    };
    use FieldState::{None as N, Registers as R};
    &[
        (PFR0, 0, R(Feature::Base)), // EL0 (AArch32 EL0 uses the AArch64 registers)
        (PFR0, 4, R(Feature::Base)), // EL1
        (PFR0, 12, N),               // EL3: SMC trapped
        (PFR0, 16, R(Feature::FpSimd)),
        (PFR0, 20, R(Feature::FpSimd)),
        (PFR0, 24, R(Feature::Gic)),
        (PFR0, 32, R(Feature::Sve)),
        (PFR0, 48, N), // DIT: PSTATE
        (PFR0, 56, N), // CSV2 (capped: no SCXTNUM)
        (PFR0, 60, N),
        (PFR1, 0, N),  // BT: PSTATE.BTYPE, SCTLR_EL1 bits
        (PFR1, 4, N),  // SSBS: PSTATE
        (PFR1, 32, N), // CSV2_frac (capped)
        (ZFR0, 0, R(Feature::Sve)),
        (DFR0, 0, R(Feature::Debug)),
        (DFR0, 12, R(Feature::Debug)),
        (DFR0, 20, R(Feature::Debug)),
        (DFR0, 28, R(Feature::Debug)), // CTX_CMPs: among the breakpoints
        (DFR0, 36, R(Feature::Debug)),
        (ISAR0, 4, N),
        (ISAR0, 8, N),
        (ISAR0, 12, N),
        (ISAR0, 16, N),
        (ISAR0, 20, N),
        (ISAR0, 28, N),
        (ISAR0, 32, N),
        (ISAR0, 36, N),
        (ISAR0, 40, N),
        (ISAR0, 44, N),
        (ISAR0, 48, N),
        (ISAR0, 52, N),
        (ISAR0, 56, N),
        (ISAR0, 60, N),
        (ISAR1, 0, N),
        (ISAR1, 4, R(Feature::PointerAuth)),
        (ISAR1, 8, R(Feature::PointerAuth)),
        (ISAR1, 12, N),
        (ISAR1, 16, N),
        (ISAR1, 20, N),
        (ISAR1, 24, R(Feature::PointerAuth)),
        (ISAR1, 28, R(Feature::PointerAuth)),
        (ISAR1, 32, N),
        (ISAR1, 36, N),
        (ISAR1, 40, N),
        (ISAR1, 44, N),
        (ISAR1, 48, N),
        (ISAR1, 52, N),
        (ISAR1, 56, N),
        (ISAR2, 0, N), // WFxT
        (ISAR2, 4, N),
        (ISAR2, 8, R(Feature::PointerAuth)),
        (ISAR2, 12, R(Feature::PointerAuth)),
        (ISAR2, 20, N),
        (ISAR2, 24, R(Feature::PointerAuth)),
        (ISAR2, 28, N),
        (ISAR2, 40, N),
        (ISAR2, 48, N),
        (ISAR2, 52, N),
        (ISAR2, 56, N),
        (ISAR2, 60, N), // ATS1A: result in PAR_EL1 (Base)
        (MMFR0, 0, N),
        (MMFR0, 4, N),
        (MMFR0, 8, N),
        (MMFR0, 12, N),
        (MMFR0, 16, N),
        (MMFR0, 20, N),
        (MMFR0, 24, N),
        (MMFR0, 28, N),
        (MMFR0, 44, N),
        (MMFR0, 60, R(Feature::GenericTimer)), // ECV (capped at 1): counter reads only
        (MMFR1, 0, N),
        (MMFR1, 12, N),
        (MMFR1, 20, N), // PAN: PSTATE, SCTLR_EL1.EPAN
        (MMFR1, 24, N),
        (MMFR1, 36, N),
        (MMFR1, 44, R(Feature::FpSimd)), // AFP: FPCR bits
        (MMFR1, 48, N),
        (MMFR1, 52, N),
        (MMFR1, 56, N),
        (MMFR1, 60, N),
        (MMFR2, 0, N),
        (MMFR2, 4, N), // UAO: PSTATE
        (MMFR2, 8, N),
        (MMFR2, 12, N),
        (MMFR2, 16, N),
        (MMFR2, 20, N),
        (MMFR2, 28, N),
        (MMFR2, 32, N),
        (MMFR2, 36, N),
        (MMFR2, 48, N),
        (MMFR2, 52, N),
        (MMFR2, 60, N), // E0PD: TCR_EL1 bits
        // AArch32 (EL0 only): the registers of the AArch64 features above.
        (ID_PFR0, 0, R(Feature::Base)),
        (ID_PFR0, 4, R(Feature::Base)),
        (ID_PFR0, 8, R(Feature::Base)),
        (ID_PFR0, 12, R(Feature::Base)),
        (ID_PFR0, 16, N),
        (ID_PFR0, 24, N),
        (ID_PFR1, 0, R(Feature::Base)),
        (ID_PFR1, 4, N),
        (ID_PFR1, 8, N),
        (ID_PFR1, 16, R(Feature::GenericTimer)),
        (ID_PFR1, 20, N),
        (ID_PFR1, 28, R(Feature::Gic)),
        (ID_DFR0, 0, R(Feature::Debug)),
        (ID_DFR0, 4, R(Feature::Debug)),
        (ID_DFR0, 8, R(Feature::Debug)),
        (ID_DFR0, 20, N),              // M-profile debug
        ((1, 4), 0, R(Feature::Base)), // ID_MMFR0..3: memory model, EL1's tables
        ((1, 5), 0, R(Feature::Base)),
        ((1, 6), 0, R(Feature::Base)),
        ((1, 7), 0, R(Feature::Base)),
        ((2, 0), 0, N), // ID_ISAR0..5, ID_ISAR6: instructions
        ((2, 1), 0, N),
        ((2, 2), 0, N),
        ((2, 3), 0, N),
        ((2, 4), 0, N),
        ((2, 5), 0, N),
        ((2, 7), 0, N),
        (ID_MMFR4, 0, N),
        (ID_MMFR4, 4, N),
        (ID_MMFR4, 12, N),
        (ID_MMFR4, 16, N),
        (ID_MMFR4, 20, N),
        (ID_MMFR4, 24, N),
        ((3, 0), 0, R(Feature::FpSimd)), // MVFR0..2
        ((3, 1), 0, R(Feature::FpSimd)),
        ((3, 2), 0, R(Feature::FpSimd)),
        (ID_PFR2, 0, N),
        (ID_PFR2, 4, N),
        (ID_MMFR5, 0, N),
        (ID_MMFR5, 4, N),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyp::cpu_features::{DFR0, ISAR1, PFR0, POLICY, Policy};

    #[test]
    fn context_save_list_matches_the_feature_table() {
        let saved = save_list();
        for (feature, regs) in FEATURE_REGISTERS {
            for reg in *regs {
                assert!(saved.contains(reg), "{feature:?}: {reg} is not saved");
            }
        }
        for reg in &saved {
            assert!(
                FEATURE_REGISTERS.iter().any(|(_, regs)| regs.contains(reg)),
                "{reg} is saved but no feature brings it"
            );
        }
        let mut sorted = saved.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), saved.len(), "a register saved twice");
    }

    #[test]
    fn context_every_passed_feature_is_classified() {
        for row in POLICY.iter().filter(|r| r.policy != Policy::Hide) {
            assert!(
                PASSED_FIELD_STATE
                    .iter()
                    .any(|&(reg, lsb, _)| reg == row.reg && lsb == row.lsb),
                "{row:?} is passed to the guest: say what state it brings in PASSED_FIELD_STATE"
            );
        }
        for &(reg, lsb, state) in PASSED_FIELD_STATE {
            let row = POLICY.iter().find(|r| r.reg == reg && r.lsb == lsb);
            assert!(
                row.is_some_and(|r| r.policy != Policy::Hide),
                "{reg:?} [{lsb}] is not passed: drop it from PASSED_FIELD_STATE"
            );
            if let FieldState::Registers(f) = state {
                assert!(
                    FEATURE_REGISTERS
                        .iter()
                        .any(|(g, regs)| *g == f && !regs.is_empty()),
                    "{f:?} has no registers"
                );
            }
        }
    }

    #[test]
    fn context_el1_struct_follows_the_register_list() {
        assert_eq!(
            size_of::<El1Regs>(),
            8 * EL1_REGISTER_NAMES.len(),
            "one u64 per register"
        );
        assert_eq!(El1Regs::reset().sctlr, SCTLR_EL1_RESET);
        let reset = VcpuContext::reset();
        assert_eq!(reset.vse, None);
        assert_eq!(
            reset.debug.bcr, [0; MAX_DEBUG_POINTS],
            "no breakpoint enabled"
        );
    }

    // Shaped like QEMU `-cpu max` (as in `cpu_features`' tests): RAS, SVE, PAuth; DFR0 BRPs =
    // 0xf (16 breakpoints), WRPs = 1 (2 watchpoints).
    const MAX_PFR0: u64 = 0x1201_1111_1112_2222;
    const MAX_DFR0: u64 = 0x0000_0001_f210_f609;
    const MAX_ISAR1: u64 = 0x0011_1112_1110_0051;

    fn set(regs: &[((u8, u8), u64)]) -> SaveSet {
        SaveSet::from_id_registers(|r| regs.iter().find(|(x, _)| *x == r).map_or(0, |(_, v)| *v))
    }

    #[test]
    fn context_save_set_follows_the_cpu() {
        let max = set(&[(PFR0, MAX_PFR0), (DFR0, MAX_DFR0), (ISAR1, MAX_ISAR1)]);
        assert_eq!(
            max,
            SaveSet {
                pauth: true,
                sve: true,
                ras: true,
                brps: 16,
                wrps: 2
            }
        );
        // Cortex-A72: no PAuth, SVE or RAS; 6 breakpoints, 4 watchpoints.
        let a72 = set(&[(PFR0, 0x1122), (DFR0, 0x1030_5106)]);
        assert_eq!(
            a72,
            SaveSet {
                pauth: false,
                sve: false,
                ras: false,
                brps: 6,
                wrps: 4
            }
        );
        let most = set(&[(DFR0, 0x00f0_f000)]);
        assert_eq!((most.brps, most.wrps), (MAX_DEBUG_POINTS, MAX_DEBUG_POINTS));
    }

    #[test]
    fn context_fp_state_layout() {
        let fp = FpState::new(None);
        assert_eq!(fp.area_bytes(), 512, "V0-31");
        assert_eq!(fp.sve_vl(), None);
        // 512-bit SVE: Z 32 × 64, P 16 × 8 and FFR 8 after them.
        let sve = FpState::new(Some(64));
        assert_eq!(sve.p_offset(), 32 * 64);
        assert!(sve.area_bytes() >= 32 * 64 + 17 * 8);
        assert!(sve.area_bytes() < 32 * 64 + 17 * 8 + 16);
        // The largest (2048 bits) and the smallest.
        assert_eq!(FpState::new(Some(256)).area_bytes(), 32 * 256 + 17 * 32);
        assert!(FpState::new(Some(16)).area_bytes() >= 32 * 16 + 17 * 2);
        // Out-of-architecture lengths are rounded into it.
        assert_eq!(FpState::new(Some(0)).sve_vl(), Some(16));
        assert_eq!(FpState::new(Some(1000)).sve_vl(), Some(256));
        assert_eq!(FpState::new(Some(40)).sve_vl(), Some(48));
    }

    #[test]
    fn context_fp_state_v_registers_are_the_low_z_bits() {
        let mut sve = FpState::new(Some(32));
        sve.area_mut()[2] = 7; // Z1's low 128 bits
        sve.area_mut()[3] = 9; // Z1's upper half
        assert_eq!(sve.v(1), Some(7));
        assert_eq!(sve.v(0), Some(0));
        assert_eq!(sve.v(32), None);
        sve.fpcr = 1;
        sve.zcr_el1 = 3;
        sve.reset();
        assert_eq!(sve, FpState::new(Some(32)));
    }
}
