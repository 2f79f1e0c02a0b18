//! Exit dispatch: one handler per exception class, one file each (KVM's `handle_exit.c` and
//! its `arm_exit_handlers[]` are the model). A handler works on the [`Vcpu`] through its
//! accessors, on the [`Vm`] and on the machine through [`Platform`], and returns the
//! [`ExitAction`] the run loop carries out. Nothing a guest does may panic or wedge EL2 here:
//! what Bulkhead cannot or will not do becomes an injected exception, as the Arm ARM says a
//! real machine would give (UNDEF, an abort with the matching fault status).

mod abort;
pub mod fast;
mod smccc;
mod sysreg;
pub mod vendor;
mod wfx;

#[cfg(test)]
mod tests;

use super::exit::{ExitClass, GuestExit};
use super::inject::Exception;
use super::platform::Platform;
use super::vcpu::Vcpu;
use super::vm::{ExitStats, Vm};
use crate::guest_warn;

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    /// Enter the guest again.
    Resume,
    /// Take this exception in the guest's EL1 (at the faulting instruction), then resume.
    Inject(Exception),
    /// Wait until an interrupt is deliverable (WFI, CPU_SUSPEND standby).
    Block,
    /// Let another vCPU have this physical CPU if one waits for it, else resume (a trapped
    /// WFE on a shared CPU: the guest is spinning on something another vCPU must do).
    Yield,
    /// The vCPU powered itself off (PSCI CPU_OFF).
    CpuOff,
    /// PSCI SYSTEM_OFF: stop every vCPU and power the VM off.
    SystemOff,
    /// PSCI SYSTEM_RESET(2): stop every vCPU and restart the VM.
    SystemReset,
    /// The guest crashed: stop every vCPU and apply the VM's `on_crash` policy.
    Crash(CrashCause),
}

/// How an exit's handler learnt that a guest crashed. (A runaway vCPU, found by the run loop
/// when it injects, is not among them: its five words would make every [`ExitAction`] 48
/// bytes, which the image's opt-level "s" copies with `memcpy`, on every emulated access.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashCause {
    /// It said so through its pvpanic device (`devices::pvpanic`).
    GuestPanic,
    /// An SError the VM cannot contain (`hyp::serror`), with its ESR_EL2.
    SError(u64),
}

/// Handles one synchronous guest exit. Inline: the dispatch is on every exit's path (the run
/// loop has two copies, which would otherwise call it).
#[inline(always)]
pub fn handle_exit(exit: &GuestExit, vm: &Vm, vcpu: &mut Vcpu, p: &impl Platform) -> ExitAction {
    // One set of counters per vCPU (`Vm::new` makes one for each index).
    let Some(stats) = vm.exits.get(vcpu.index) else {
        return ExitAction::Inject(Exception::Undef);
    };
    match exit.class {
        ExitClass::Wfx(trap) => {
            ExitStats::count(&stats.wfi);
            wfx::handle(trap, exit.il32, vm.config.cntvoff, vcpu, p)
        }
        ExitClass::Hvc { .. } => {
            ExitStats::count(&stats.hvc);
            smccc::handle(vm, vcpu, p).into()
        }
        ExitClass::Smc { .. } => {
            ExitStats::count(&stats.hvc);
            // A trapped SMC leaves ELR_EL2 at the SMC itself (Arm ARM D1.11.2, HCR_EL2.TSC);
            // an HVC's preferred return address is the next instruction already.
            vcpu.skip_instruction(exit.il32);
            smccc::handle(vm, vcpu, p).into()
        }
        ExitClass::SysReg(access) => {
            ExitStats::count(&stats.sysreg);
            sysreg::handle(&access, exit.il32, vm, vcpu, p)
        }
        ExitClass::DataAbort(abort) => {
            ExitStats::count(&stats.mmio);
            abort::data_abort(&abort, exit.il32, vm, vcpu, p)
        }
        ExitClass::InstructionAbort(abort) => {
            ExitStats::count(&stats.other);
            abort::instruction_abort(&abort, vm, vcpu, p)
        }
        // The run loop answers the lazy FP switch's trap itself (it loads the vCPU's FP state);
        // one reaching a handler came while no switch was armed: as any class not handled.
        ExitClass::FpAccess | ExitClass::Unknown { .. } => {
            ExitStats::count(&stats.other);
            guest_warn!(
                "{} vcpu {}: unhandled exit EC={:#x} ESR={:#x} at {:#x}",
                vm.config.name,
                vcpu.index,
                (exit.esr >> 26) & 0x3f,
                exit.esr,
                vcpu.regs.pc
            );
            ExitAction::Inject(Exception::Undef)
        }
    }
}
