//! EL2 trap configuration and the guest's EL1 system-register state.
//!
//! Bulkhead pins one vCPU to one physical CPU, so the guest's EL1 registers live in the
//! hardware while it runs; they are written here when a vCPU (re)starts (`reset_el1`) and can
//! be saved/restored as a block (`El1State`) when a CPU switches vCPUs.

use aarch64_cpu::registers::*;

/// The EL1 registers a guest owns.
#[derive(Debug, Clone, Copy, Default)]
pub struct El1State {
    pub sctlr: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub cpacr: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub cntkctl: u64,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
    pub mdscr: u64,
    pub csselr: u64,
    pub actlr: u64,
}

/// SCTLR_EL1 at reset: MMU and caches off, RES1 bits set.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

impl El1State {
    /// The architectural reset state a freshly powered-on vCPU sees.
    pub fn reset() -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            ..Self::default()
        }
    }

    /// Writes this state into the CPU's EL1 registers.
    pub fn restore(&self) {
        SCTLR_EL1.set(self.sctlr);
        TCR_EL1.set(self.tcr);
        TTBR0_EL1.set(self.ttbr0);
        TTBR1_EL1.set(self.ttbr1);
        MAIR_EL1.set(self.mair);
        AMAIR_EL1.set(self.amair);
        VBAR_EL1.set(self.vbar);
        CONTEXTIDR_EL1.set(self.contextidr);
        CPACR_EL1.set(self.cpacr);
        ESR_EL1.set(self.esr);
        FAR_EL1.set(self.far);
        AFSR0_EL1.set(self.afsr0);
        AFSR1_EL1.set(self.afsr1);
        PAR_EL1.set(self.par);
        TPIDR_EL0.set(self.tpidr_el0);
        TPIDRRO_EL0.set(self.tpidrro_el0);
        TPIDR_EL1.set(self.tpidr_el1);
        SP_EL0.set(self.sp_el0);
        SP_EL1.set(self.sp_el1);
        ELR_EL1.set(self.elr_el1);
        SPSR_EL1.set(self.spsr_el1);
        CNTKCTL_EL1.set(self.cntkctl);
        CNTV_CVAL_EL0.set(self.cntv_cval);
        CNTV_CTL_EL0.set(self.cntv_ctl);
        MDSCR_EL1.set(self.mdscr);
        CSSELR_EL1.set(self.csselr);
        ACTLR_EL1.set(self.actlr);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
}

/// HCR_EL2 while a guest runs: 64-bit EL1, stage-2 on, physical IRQ/FIQ/SError routed to
/// EL2 (and virtual ones delivered to the guest), guest TLB/cache maintenance broadcast
/// inner-shareable, WFI and SMC trapped. WFE is not trapped: each vCPU owns its physical CPU.
pub fn guest_hcr() -> u64 {
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

/// Programs this CPU's EL2 controls for running `vcpu_index` of a guest.
pub fn activate_traps(vcpu_index: u64) {
    HCR_EL2.set(guest_hcr());
    // FP/SIMD and SVE untrapped for the guest (EL2 never uses them); trace untrapped too.
    CPTR_EL2.set(0x33ff);
    // The guest reads the physical counter; its timer is the virtual one (EL1PCEN = 0 traps
    // CNTP_* so it cannot program the physical timer).
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    CNTVOFF_EL2.set(0);
    // The guest's MPIDR: the vCPU's affinity (as the guest DTB's cpu@N reg), bit 31 RES1.
    VMPIDR_EL2.set((1 << 31) | crate::vcpu::vcpu_mpidr(vcpu_index as usize));
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 only changes what the guest reads as MIDR_EL1 (aarch64-cpu has no
    // accessor for it).
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nomem, nostack)) };
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// ESR_EL2, FAR_EL2, HPFAR_EL2 of the current exit.
pub fn exit_syndrome() -> (u64, u64, u64) {
    (ESR_EL2.get(), FAR_EL2.get(), HPFAR_EL2.get())
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
