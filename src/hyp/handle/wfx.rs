//! WFI / WFE / WFIT / WFET traps. HCR_EL2.TWI traps WFI and WFIT everywhere; HCR_EL2.TWE
//! traps WFE and WFET only on a physical CPU that vCPUs share, where a vCPU waiting for an event
//! (a spinlock, `smp_cond_load_acquire`) gives the CPU to the one that can produce it.

use super::ExitAction;
use crate::hyp::exit::{WfxKind, WfxTrap};
use crate::hyp::platform::Platform;
use crate::hyp::vcpu::Vcpu;

/// `cntvoff` is the VM's CNTVOFF_EL2 (its virtual count is the physical count minus it).
#[inline(always)]
pub fn handle(
    trap: WfxTrap,
    il32: bool,
    cntvoff: u64,
    vcpu: &mut Vcpu,
    p: &impl Platform,
) -> ExitAction {
    vcpu.skip_instruction(il32);
    match trap.kind {
        // Block until an interrupt is deliverable.
        WfxKind::Wfi => ExitAction::Block,
        // WFIT: the same, or until the virtual counter reaches Xt (Arm ARM C6.2 "WFIT"), i.e.
        // the physical one reaches Xt + CNTVOFF_EL2. The run loop wakes the vCPU at `wake_at`
        // (`Vcpu::wake_up`, physical count), with the EL2 timer armed for it
        // (`timer::update_ptimer`).
        WfxKind::Wfit => {
            let virtual_deadline = trap.timeout_reg.map_or(0, |rt| vcpu.reg(rt));
            let deadline = virtual_deadline.saturating_add(cntvoff);
            if p.counter() >= deadline {
                return ExitAction::Resume;
            }
            vcpu.wake_at = Some(deadline);
            ExitAction::Block
        }
        // WFE and WFET may complete at any time ("spurious wake-up", Arm ARM D1.6.2): resuming
        // at once is correct; on a shared CPU another vCPU may go first.
        WfxKind::Wfe | WfxKind::Wfet => ExitAction::Yield,
    }
}
