//! Moving a vCPU's context (`hyp::context`) between its save area and this CPU's registers,
//! for when vCPUs share a physical CPU (KVM's `hyp/nvhe/sysreg-sr.c`, `timer-sr.c`,
//! `vgic-v3-sr.c`, `fpsimd.S` are the model). What moves is fixed per CPU by what it
//! implements ([`SaveSet`], read once per CPU by [`this_cpu`]).
//!
//! Costs: `save` moves 24 EL1 registers, 2 timer registers, 10 PAuth keys (with PAuth),
//! 2 × (BRPs + WRPs) + 2 debug registers, VMCR and 2-8 APRs (GICv3) or 2 MMIO words (GICv2),
//! and 3 RAS registers (with RAS); `restore` the same. Measured per call under QEMU
//! `-icount shift=0` (1000 calls timed by the counter, at vCPU start, in a build not kept):
//! `-cpu max` GICv3 save 291, restore 344, save_fp 108, restore_fp 104 instructions (SVE,
//! 2048-bit vectors); `-cpu cortex-a72` save 274, restore 328, save_fp 63, restore_fp 62;
//! `set_fp_trap` 17.

use aarch64_cpu::registers::*;
use spin::Once;

use super::entry::MAX_CPUS;
use super::fpsimd;
use super::sysregs::{id_register, pmcr_n};
use super::vgic_hw;
use crate::hyp::context::{
    DebugRegs, El1Regs, FpState, MAX_DEBUG_POINTS, PauthKeys, SaveSet, VcpuContext, VtimerRegs,
    el1_registers,
};
use crate::hyp::cpu_features::{El2Controls, HostCpu};

/// What a physical CPU implements, as far as running and switching vCPUs goes.
#[derive(Debug, Clone, Copy)]
pub struct CpuInfo {
    /// The EL2 controls that make `hyp::cpu_features::POLICY` true on this CPU.
    pub controls: El2Controls,
    /// What [`save`] and [`restore`] move here.
    pub save: SaveSet,
    /// The largest SVE vector length EL1 may use, in bytes (None: no SVE).
    pub sve_vl: Option<usize>,
}

static CPUS: [Once<CpuInfo>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// This CPU's [`CpuInfo`], read from its ID registers the first time.
pub fn this_cpu() -> &'static CpuInfo {
    // The entry path starts only CPUs with an index below MAX_CPUS (`percpu::current`).
    CPUS[super::percpu::current()].call_once(|| {
        let read = |(crm, op2)| id_register(crm, op2);
        let cpu = HostCpu::from_id_registers(read);
        let save = SaveSet::from_id_registers(read);
        CpuInfo {
            controls: El2Controls::for_cpu(&cpu, pmcr_n),
            save,
            sve_vl: save.sve.then(fpsimd::max_vl_bytes),
        }
    })
}

/// The vector length EL1 may use at most (ZCR_EL2.LEN = max), in bytes; None without SVE.
/// `FpState::new(sve_vl_bytes())` sizes a vCPU's FP state for this CPU.
pub fn sve_vl_bytes() -> Option<usize> {
    this_cpu().sve_vl
}

macro_rules! save_el1 {
    ($($field:ident: $name:literal),* $(,)?) => {
        fn save_el1(r: &mut El1Regs) {
            $(
                // SAFETY: reading an EL1 register at EL2 has no side effects.
                unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $name), out(reg) r.$field,
                        options(nomem, nostack, preserves_flags))
                };
            )*
        }
    };
}
el1_registers!(save_el1);

macro_rules! restore_el1 {
    ($($field:ident: $name:literal),* $(,)?) => {
        fn restore_el1(r: &El1Regs) {
            $(
                // SAFETY: the EL1 registers belong to the guest vCPU being loaded; EL2 does
                // not use them (its own translation and vectors are the EL2 registers).
                unsafe {
                    core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) r.$field,
                        options(nomem, nostack, preserves_flags))
                };
            )*
        }
    };
}
el1_registers!(restore_el1);

/// Reads system register `$name` (a literal) into an expression.
macro_rules! mrs {
    ($name:expr) => {{
        let value: u64;
        // SAFETY: reading a guest-owned register at EL2 has no side effects; the callers
        // read only registers the CPU implements (`SaveSet`).
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags))
        };
        value
    }};
}

/// Writes `$value` to system register `$name` (a literal).
macro_rules! msr {
    ($name:expr, $value:expr) => {
        // SAFETY: the register holds guest vCPU state EL2 does not use; the callers write
        // only registers the CPU implements (`SaveSet`).
        unsafe {
            core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value,
                options(nomem, nostack, preserves_flags))
        }
    };
}

fn save_pauth(k: &mut PauthKeys) {
    // APxxKey{Lo,Hi}_EL1 by encoding (the names need the assembler's PAuth feature).
    k.apia = [mrs!("S3_0_C2_C1_0"), mrs!("S3_0_C2_C1_1")];
    k.apib = [mrs!("S3_0_C2_C1_2"), mrs!("S3_0_C2_C1_3")];
    k.apda = [mrs!("S3_0_C2_C2_0"), mrs!("S3_0_C2_C2_1")];
    k.apdb = [mrs!("S3_0_C2_C2_2"), mrs!("S3_0_C2_C2_3")];
    k.apga = [mrs!("S3_0_C2_C3_0"), mrs!("S3_0_C2_C3_1")];
}

fn restore_pauth(k: &PauthKeys) {
    msr!("S3_0_C2_C1_0", k.apia[0]);
    msr!("S3_0_C2_C1_1", k.apia[1]);
    msr!("S3_0_C2_C1_2", k.apib[0]);
    msr!("S3_0_C2_C1_3", k.apib[1]);
    msr!("S3_0_C2_C2_0", k.apda[0]);
    msr!("S3_0_C2_C2_1", k.apda[1]);
    msr!("S3_0_C2_C2_2", k.apdb[0]);
    msr!("S3_0_C2_C2_3", k.apdb[1]);
    msr!("S3_0_C2_C3_0", k.apga[0]);
    msr!("S3_0_C2_C3_1", k.apga[1]);
}

/// Calls `$body!(n)` for the debug point register number `$n` (0..15) as a literal.
macro_rules! debug_point {
    ($n:expr, $body:ident) => {
        match $n {
            0 => $body!("0"),
            1 => $body!("1"),
            2 => $body!("2"),
            3 => $body!("3"),
            4 => $body!("4"),
            5 => $body!("5"),
            6 => $body!("6"),
            7 => $body!("7"),
            8 => $body!("8"),
            9 => $body!("9"),
            10 => $body!("10"),
            11 => $body!("11"),
            12 => $body!("12"),
            13 => $body!("13"),
            14 => $body!("14"),
            15 => $body!("15"),
            _ => Default::default(),
        }
    };
}

fn save_debug(d: &mut DebugRegs, set: &SaveSet) {
    for n in 0..set.brps.min(MAX_DEBUG_POINTS) {
        macro_rules! bp {
            ($n:literal) => {
                (
                    mrs!(concat!("dbgbvr", $n, "_el1")),
                    mrs!(concat!("dbgbcr", $n, "_el1")),
                )
            };
        }
        (d.bvr[n], d.bcr[n]) = debug_point!(n, bp);
    }
    for n in 0..set.wrps.min(MAX_DEBUG_POINTS) {
        macro_rules! wp {
            ($n:literal) => {
                (
                    mrs!(concat!("dbgwvr", $n, "_el1")),
                    mrs!(concat!("dbgwcr", $n, "_el1")),
                )
            };
        }
        (d.wvr[n], d.wcr[n]) = debug_point!(n, wp);
    }
    d.mdccint = mrs!("mdccint_el1");
    d.claim = mrs!("dbgclaimclr_el1");
}

fn restore_debug(d: &DebugRegs, set: &SaveSet) {
    for n in 0..set.brps.min(MAX_DEBUG_POINTS) {
        macro_rules! bp {
            ($n:literal) => {{
                msr!(concat!("dbgbvr", $n, "_el1"), d.bvr[n]);
                msr!(concat!("dbgbcr", $n, "_el1"), d.bcr[n]);
            }};
        }
        debug_point!(n, bp);
    }
    for n in 0..set.wrps.min(MAX_DEBUG_POINTS) {
        macro_rules! wp {
            ($n:literal) => {{
                msr!(concat!("dbgwvr", $n, "_el1"), d.wvr[n]);
                msr!(concat!("dbgwcr", $n, "_el1"), d.wcr[n]);
            }};
        }
        debug_point!(n, wp);
    }
    msr!("mdccint_el1", d.mdccint);
    // The claim tags: clear every one (bits [7:0]), then set the saved ones.
    msr!("dbgclaimclr_el1", 0xff_u64);
    msr!("dbgclaimset_el1", d.claim & 0xff);
}

/// Stores the state of the vCPU on this CPU into `ctx`: EL1 registers, PAuth keys, debug
/// breakpoints/watchpoints, virtual timer (then disabled, so it cannot fire for whoever runs
/// next, as KVM's `kvm_timer_vcpu_put`), GIC virtual CPU interface (VMCR + APRs), deferred
/// and pending virtual SError (then cleared). The list registers must be empty (the run loop
/// folds them after every exit). Not FP/SIMD: [`save_fp`].
pub fn save(ctx: &mut VcpuContext) {
    let set = this_cpu().save;
    save_el1(&mut ctx.el1);
    if set.pauth {
        save_pauth(&mut ctx.pauth);
    }
    save_debug(&mut ctx.debug, &set);
    ctx.timer.ctl = CNTV_CTL_EL0.get();
    ctx.timer.cval = CNTV_CVAL_EL0.get();
    CNTV_CTL_EL0.set(0);
    vgic_hw::save_cpu_interface(&mut ctx.gic);
    let hcr = HCR_EL2.get();
    let vse = hcr & (1 << 8) != 0; // HCR_EL2.VSE
    if set.ras {
        ctx.vdisr = mrs!("S3_4_C12_C1_1"); // VDISR_EL2
    }
    ctx.vse = vse.then(|| if set.ras { mrs!("S3_4_C5_C2_3") } else { 0 }); // VSESR_EL2
    if vse {
        HCR_EL2.set(hcr & !(1 << 8));
    }
}

/// Loads `ctx` into this CPU for its vCPU to run (the reverse of [`save`]), ending with an
/// ISB. The OS lock (`sysregs::set_os_lock`), the VMID, stage 2, VMPIDR
/// (`sysregs::load_vcpu_id`) and the VM's CNTVOFF are the caller's.
pub fn restore(ctx: &VcpuContext) {
    let set = this_cpu().save;
    restore_el1(&ctx.el1);
    if set.pauth {
        restore_pauth(&ctx.pauth);
    }
    restore_debug(&ctx.debug, &set);
    CNTV_CVAL_EL0.set(ctx.timer.cval);
    CNTV_CTL_EL0.set(ctx.timer.ctl);
    vgic_hw::restore_cpu_interface(&ctx.gic);
    if set.ras {
        msr!("S3_4_C12_C1_1", ctx.vdisr);
        if let Some(vsesr) = ctx.vse {
            msr!("S3_4_C5_C2_3", vsesr);
        }
    }
    let hcr = HCR_EL2.get() & !(1 << 8);
    HCR_EL2.set(hcr | if ctx.vse.is_some() { 1 << 8 } else { 0 });
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The virtual timer registers of the vCPU whose context this CPU holds (its deadline, for a
/// vCPU that leaves without a [`save`]).
pub fn vtimer_regs() -> VtimerRegs {
    VtimerRegs {
        ctl: CNTV_CTL_EL0.get(),
        cval: CNTV_CVAL_EL0.get(),
    }
}

/// The vCPU this CPU still holds (it left, nobody else ran here, it ran nowhere else) comes
/// back: puts back only what [`save`] turned off — its virtual timer and a pending virtual
/// SError — instead of a whole [`restore`].
pub fn resume_held(ctx: &VcpuContext) {
    CNTV_CTL_EL0.set(ctx.timer.ctl);
    if let Some(vsesr) = ctx.vse {
        if this_cpu().save.ras {
            msr!("S3_4_C5_C2_3", vsesr);
        }
        HCR_EL2.set(HCR_EL2.get() | (1 << 8));
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Stores this CPU's FP/SIMD/SVE registers into `fp`, made by `FpState::new(sve_vl_bytes())`
/// (a state sized for another vector length stops EL2: Bulkhead's bug, never a guest's).
/// Lifts the FP trap first if it is on (CPTR_EL2.TFP traps EL2 too) and leaves it off.
pub fn save_fp(fp: &mut FpState) {
    fpsimd::save(fp, sve_vl_bytes());
}

/// Loads `fp` into this CPU's FP/SIMD/SVE registers; leaves the FP trap off.
pub fn restore_fp(fp: &FpState) {
    fpsimd::load(fp, sve_vl_bytes());
}

/// Traps the guest's FP/SIMD (and SVE) use to EL2 (EC 0x07 / 0x19) or lets it through:
/// CPTR_EL2 from this CPU's `El2Controls` (`cptr_with_fp_trap`), then an ISB.
pub fn set_fp_trap(trap: bool) {
    CPTR_EL2.set(this_cpu().controls.cptr_with_fp_trap(trap));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}
