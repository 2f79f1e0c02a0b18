//! EL2 trap configuration and the EL1 registers EL2 reads or writes for the vCPU on this CPU
//! (a vCPU's whole EL1 context moves with `arch::context`).

use aarch64_cpu::registers::*;

/// HCR_EL2 while a guest runs: 64-bit EL1, stage-2 on, physical IRQ/FIQ/SError routed to
/// EL2 (and virtual ones delivered to the guest), guest TLB/cache maintenance broadcast
/// inner-shareable, WFI and SMC trapped. WFE is trapped only on shared CPUs (`set_wfe_trap`).
/// `El2Controls::hcr` adds the feature traps.
fn guest_hcr_base() -> u64 {
    (HCR_EL2::RW::EL1IsAarch64
        + HCR_EL2::VM::Enable
        + HCR_EL2::SWIO::SET
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable
        + HCR_EL2::TWI::SET
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2)
        .value
}

/// Writes `value` to the EL2 register named `$reg` (the generic S3_4_... name where
/// aarch64-cpu has no accessor).
macro_rules! msr {
    ($reg:literal, $value:expr) => {
        // SAFETY: an EL2 control register that only changes what the guest may do (traps and
        // limits); `El2Controls` asks for it only when the CPU implements it.
        unsafe {
            core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) $value, options(nomem, nostack))
        }
    };
}

/// PMCR_EL0.N, the number of event counters (read only on a CPU with a PMUv3).
pub(super) fn pmcr_n() -> u64 {
    let pmcr: u64;
    // SAFETY: reading PMCR_EL0 at EL2 has no side effects (aarch64-cpu has no accessor).
    unsafe {
        core::arch::asm!(
            "mrs {}, pmcr_el0",
            out(reg) pmcr,
            options(nomem, nostack, preserves_flags)
        )
    };
    (pmcr >> 11) & 0x1f
}

/// Programs this CPU's EL2 controls for running guests (once per physical CPU, before the
/// first vCPU; `load_vcpu_id` then names each vCPU it runs): every control register the
/// guest's view depends on is written in full here (none is left at its reset value, which
/// for HCR_EL2, MDCR_EL2 and the fine-grained traps is UNKNOWN). What to trap is decided by
/// `hyp::cpu_features::El2Controls` from this CPU's ID registers (`context::this_cpu`).
pub fn activate_traps() {
    let c = super::context::this_cpu().controls;
    HCR_EL2.set(guest_hcr_base() | c.hcr);
    CPTR_EL2.set(c.cptr);
    if let Some(zcr) = c.zcr {
        msr!("S3_4_C1_C2_0", zcr); // ZCR_EL2
    }
    MDCR_EL2.set(c.mdcr);
    if c.fgt >= 1 {
        // FEAT_FGT: HFGRTR_EL2, HFGWTR_EL2, HFGITR_EL2, HDFGRTR_EL2, HDFGWTR_EL2. 0 traps
        // nothing but the negative-polarity ("n") bits, whose registers belong to hidden
        // features (SME's TPIDR2/SMPRI, PIE/POE, GCS, LS64, THE, BRBE).
        msr!("S3_4_C1_C1_4", 0_u64);
        msr!("S3_4_C1_C1_5", 0_u64);
        msr!("S3_4_C1_C1_6", 0_u64);
        msr!("S3_4_C3_C1_4", 0_u64);
        msr!("S3_4_C3_C1_5", 0_u64);
    }
    if c.amu_fgt {
        msr!("S3_4_C3_C1_6", 0_u64); // HAFGRTR_EL2; CPTR_EL2.TAM traps the AMU anyway
    }
    if c.fgt >= 2 {
        // FEAT_FGT2: HDFGRTR2_EL2, HDFGWTR2_EL2, HFGRTR2_EL2, HFGWTR2_EL2, HFGITR2_EL2.
        msr!("S3_4_C3_C1_0", 0_u64);
        msr!("S3_4_C3_C1_1", 0_u64);
        msr!("S3_4_C3_C1_2", 0_u64);
        msr!("S3_4_C3_C1_3", 0_u64);
        msr!("S3_4_C3_C1_7", 0_u64);
    }
    if let Some(hcrx) = c.hcrx {
        msr!("S3_4_C1_C2_2", hcrx); // HCRX_EL2
    }
    if let Some(mpam2) = c.mpam2 {
        msr!("S3_4_C10_C5_0", mpam2); // MPAM2_EL2
    }
    // The guest reads the physical counter; its timer is the virtual one (EL1PCEN = 0 traps
    // CNTP_* so it cannot program the physical timer).
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    CNTVOFF_EL2.set(0);
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 only changes what the guest reads as MIDR_EL1 (aarch64-cpu has no
    // accessor for it).
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nomem, nostack)) };
    // No translation the firmware, a boot loader or a previous guest left in this CPU's TLBs
    // (any VMID, stage 1 and 2) or instruction cache may be used by the first guest here.
    // SAFETY: TLB and instruction-cache invalidation have no memory-safety effect.
    unsafe {
        core::arch::asm!(
            "dsb nshst",
            "tlbi alle1",
            "ic iallu",
            "dsb nsh",
            options(nostack)
        )
    };
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Makes this CPU's MPIDR, as the guest reads it, vCPU `vcpu_index`'s: its affinity (as the
/// guest DTB's cpu@N reg), bit 31 RES1. The next guest entry's ERET synchronises it.
pub fn load_vcpu_id(vcpu_index: usize) {
    VMPIDR_EL2.set((1 << 31) | crate::vcpu::vcpu_mpidr(vcpu_index));
}

/// Sets the virtual counter's offset for the VM whose vCPU runs next (CNTVOFF_EL2: the guest's
/// CNTVCT_EL0 is the physical count minus it).
pub fn set_cntvoff(offset: u64) {
    CNTVOFF_EL2.set(offset);
}

/// Traps the guest's WFE and WFET (HCR_EL2.TWE) on a CPU vCPUs share, so a vCPU waiting for an
/// event gives the CPU to the one that can produce it; a dedicated CPU lets them run natively.
pub fn set_wfe_trap(trap: bool) {
    if trap {
        HCR_EL2.modify(HCR_EL2::TWE::SET);
    } else {
        HCR_EL2.modify(HCR_EL2::TWE::CLEAR);
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Sets or clears this CPU's OS lock (OSLAR_EL1, writable at EL2 whatever MDCR_EL2.TDOSA).
pub fn set_os_lock(locked: bool) {
    // SAFETY: the OS lock only gates debug exceptions and external debug register access of
    // this CPU, which belong to the vCPU pinned to it.
    unsafe {
        core::arch::asm!("msr oslar_el1, {}", "isb", in(reg) u64::from(locked), options(nomem, nostack))
    };
}

/// The guest's stage-1 controls (its EL1 registers are live on this CPU).
pub fn guest_stage1_regs() -> crate::hyp::walk_level::Stage1Regs {
    crate::hyp::walk_level::Stage1Regs {
        tcr_el1: TCR_EL1.get(),
        ttbr0_el1: TTBR0_EL1.get(),
        ttbr1_el1: TTBR1_EL1.get(),
    }
}

/// ACTLR_EL1 as this CPU holds it (guest writes are trapped by HCR_EL2.TACR and ignored).
pub fn actlr_el1() -> u64 {
    let value: u64;
    // SAFETY: reading ACTLR_EL1 at EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, actlr_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Pends a virtual SError for the guest on this CPU (HCR_EL2.VSE; the hardware clears it when
/// the guest takes it). `vsesr` is the syndrome ESR_EL1 shows, written to VSESR_EL2 where the
/// CPU has RAS (without RAS the syndrome is IMPLEMENTATION DEFINED).
pub fn pend_virtual_serror(vsesr: u64) {
    // ID_AA64PFR0_EL1.RAS, bits [31:28] (aarch64-cpu names no such field).
    if (ID_AA64PFR0_EL1.get() >> 28) & 0xf != 0 {
        // SAFETY: VSESR_EL2 only sets the syndrome of the virtual SError.
        unsafe { core::arch::asm!("msr S3_4_C5_C2_3, {}", in(reg) vsesr, options(nomem, nostack)) };
    }
    HCR_EL2.modify(HCR_EL2::VSE::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Reads ID register `S3_0_C0_C<crm>_<op2>` (CRm 1..7). The unallocated encodings of this
/// space are RAZ; they, and anything outside it, give 0 without an access.
pub fn id_register(crm: u8, op2: u8) -> u64 {
    macro_rules! read_id {
        ($(($crm:literal, $op2:literal)),* $(,)?) => {
            match (crm, op2) {
                $( ($crm, $op2) => {
                    let value: u64;
                    // SAFETY: reading an ID register has no side effects and touches no memory.
                    unsafe {
                        core::arch::asm!(
                            concat!("mrs {}, S3_0_C0_C", stringify!($crm), "_", stringify!($op2)),
                            out(reg) value,
                            options(nomem, nostack, preserves_flags)
                        )
                    };
                    value
                } )*
                _ => 0,
            }
        };
    }
    // The allocated AArch32 (CRm 1..3) and AArch64 (CRm 4..7) ID registers as of Armv9.5.
    read_id!(
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
        (1, 6),
        (1, 7),
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (2, 5),
        (2, 6),
        (2, 7),
        (3, 0),
        (3, 1),
        (3, 2),
        (3, 4),
        (3, 5),
        (3, 6),
        (4, 0),
        (4, 1),
        (4, 2),
        (4, 4),
        (4, 5),
        (4, 7),
        (5, 0),
        (5, 1),
        (5, 2),
        (5, 4),
        (5, 5),
        (6, 0),
        (6, 1),
        (6, 2),
        (6, 3),
        (7, 0),
        (7, 1),
        (7, 2),
        (7, 3),
        (7, 4),
    )
}

/// ESR_EL2, FAR_EL2, HPFAR_EL2 of the current exit.
pub fn exit_syndrome() -> (u64, u64, u64) {
    (ESR_EL2.get(), FAR_EL2.get(), HPFAR_EL2.get())
}

/// ESR_EL2 alone (the fast path reads the fault address only for an abort).
pub fn exit_esr() -> u64 {
    ESR_EL2.get()
}

/// FAR_EL2 and HPFAR_EL2: where an abort happened.
pub fn exit_fault_address() -> (u64, u64) {
    (FAR_EL2.get(), HPFAR_EL2.get())
}

/// Arms this CPU's EL2 physical timer (CNTHP) at `deadline` (a physical counter value), or
/// disables it. It backs the guest's emulated EL1 physical timer; its interrupt is PPI 26.
pub fn set_hyp_timer(deadline: Option<u64>) {
    match deadline {
        Some(cval) => {
            // SAFETY: CNTHP_CVAL_EL2 only sets when this CPU's EL2 timer fires (aarch64-cpu has
            // no accessor for it).
            unsafe {
                core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) cval, options(nomem, nostack))
            };
            CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
        }
        None => CNTHP_CTL_EL2.set(0),
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// CNTV_CTL_EL0: the virtual timer of the vCPU on this CPU (ENABLE, IMASK, ISTATUS).
pub fn vtimer_ctl() -> u64 {
    CNTV_CTL_EL0.get()
}

/// The EL1 registers an injected exception reads: VBAR_EL1 and SCTLR_EL1.
pub fn injection_context() -> (u64, u64) {
    (VBAR_EL1.get(), SCTLR_EL1.get())
}

/// SCTLR_EL1 of the vCPU running on this CPU (live in hardware), alone: an emulated access
/// needs only its endianness bits.
pub fn sctlr_el1() -> u64 {
    SCTLR_EL1.get()
}

/// Writes the EL1 registers of a synchronous exception taken to the guest's EL1
/// (`hyp::inject::exception_entry` computes them).
pub fn write_exception_registers(esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
    ESR_EL1.set(esr);
    if let Some(far) = far {
        FAR_EL1.set(far);
    }
    ELR_EL1.set(elr);
    SPSR_EL1.set(spsr);
}

/// A random number from RNDR (FEAT_RNG), if the CPU has it and it delivered one (it may fail
/// transiently: NZCV.Z set, Arm ARM "RNDR").
pub fn rndr() -> Option<u64> {
    if (ID_AA64ISAR0_EL1.get() >> 60) & 0xf == 0 {
        return None;
    }
    for _ in 0..8 {
        let value: u64;
        let ok: u64;
        // SAFETY: RNDR (S3_3_C2_C4_0) only reads the CPU's random number generator; FEAT_RNG
        // was checked above, so the encoding exists.
        unsafe {
            core::arch::asm!(
                "mrs {value}, s3_3_c2_c4_0",
                "cset {ok}, ne",
                value = out(reg) value,
                ok = out(reg) ok,
                options(nomem, nostack)
            )
        };
        if ok != 0 {
            return Some(value);
        }
    }
    None
}
