//! SMCCC / PSCI function ids and return codes, and the HVC / SMC conduits that carry them.
//!
//! The numbers are written out from the specifications (Arm DEN0022 "PSCI" 1.1 and DEN0028
//! "SMC Calling Convention" 1.1) instead of being taken from the `smccc` crate the hypervisor
//! uses: a test that shares its constants with the code under test cannot catch a wrong one.

use core::arch::asm;

/// SMCCC_VERSION: returns the calling-convention version.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES: is an Arm-architecture service call implemented?
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_OFF: powers the calling CPU down; does not return on success.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON, SMC64 form: x1 = target MPIDR, x2 = entry point, x3 = context id.
pub const CPU_ON_64: u32 = 0xC400_0003;
/// AFFINITY_INFO, SMC64 form: x1 = target affinity, x2 = lowest affinity level.
pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// SYSTEM_OFF: does not return on success.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET: does not return on success.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES: x1 = the function id asked about.
pub const PSCI_FEATURES: u32 = 0x8400_000A;
/// SYSTEM_RESET2, SMC64 form: x1 = reset type, x2 = cookie.
pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;

/// Version word for PSCI 1.1 and for SMCCC 1.1 (major in bits 30:16, minor in 15:0).
pub const VERSION_1_1: i64 = 0x0001_0001;

/// PSCI return codes (DEN0022 table 5.2.2) and the SMCCC "unknown function" value.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    /// Also SMCCC's "Unknown Function Identifier" (-1, sign-extended).
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    /// SMCCC's own code for a bad argument (Arm DEN0028, "Return codes"); PSCI calls use
    /// `INVALID_PARAMETERS` (-2) instead, which SMCCC calls NOT_REQUIRED.
    pub const SMCCC_INVALID_PARAMETER: i64 = -3;
    pub const ALREADY_ON: i64 = -4;
    /// PSCI's code for an entry point the caller may not use; Bulkhead answers
    /// INVALID_PARAMETERS instead (see `checks::WANT_CPU_ON_BAD_ENTRY`).
    #[allow(dead_code)]
    pub const INVALID_ADDRESS: i64 = -9;
}

/// AFFINITY_INFO results.
pub mod affinity {
    pub const ON: i64 = 0;
    pub const OFF: i64 = 1;
}

/// MIGRATE_INFO_TYPE result "Trusted OS not present or does not require migration".
pub const MIGRATE_NOT_REQUIRED: i64 = 2;

/// Which instruction carries a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    /// HVC #0: PSCI's conduit for this guest (the DTB says `method = "hvc"`).
    Hvc,
    /// SMC #0: trapped by the hypervisor (HCR_EL2.TSC) and answered like HVC.
    Smc,
}

/// Makes one SMCCC call and returns X0.
///
/// `x0` is the whole register, not just the function id, so a caller can put junk in
/// bits 63:32 (SMCCC says the function id is W0 and the upper half must be ignored).
/// X1..X17 are declared clobbered: SMCCC 1.0 callees may corrupt X4..X17.
pub fn call(conduit: Conduit, x0: u64, x1: u64, x2: u64, x3: u64) -> u64 {
    let result: u64;
    // SAFETY: an SMCCC call does not touch the probe's memory; the callee (hypervisor or QEMU)
    // only writes the registers declared here. If the instruction instead traps at EL1
    // (UNDEFINED on a machine without that conduit), the vector in `vectors.rs` skips it.
    unsafe {
        match conduit {
            Conduit::Hvc => asm!(
                "hvc #0",
                inout("x0") x0 => result,
                inout("x1") x1 => _, inout("x2") x2 => _, inout("x3") x3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
                options(nostack),
            ),
            Conduit::Smc => asm!(
                "smc #0",
                inout("x0") x0 => result,
                inout("x1") x1 => _, inout("x2") x2 => _, inout("x3") x3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
                options(nostack),
            ),
        }
    }
    result
}

/// HVC with a 32-bit function id; the usual case.
pub fn hvc(function: u32, x1: u64, x2: u64, x3: u64) -> u64 {
    call(Conduit::Hvc, u64::from(function), x1, x2, x3)
}

/// True for SMC64/HVC64 function ids (bit 30): their results are full 64-bit X registers.
/// SMC32 results live in W0, so only the low 32 bits of X0 are compared for them.
pub fn is_smc64(function: u32) -> bool {
    function & (1 << 30) != 0
}

/// Powers the machine off; if that fails, parks this CPU forever.
pub fn system_off() -> ! {
    hvc(SYSTEM_OFF, 0, 0, 0);
    park()
}

/// Parks this CPU with interrupts masked (WFI still wakes on a pending interrupt, so loop).
pub fn park() -> ! {
    loop {
        // SAFETY: WFI only waits; it has no memory effects.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}
