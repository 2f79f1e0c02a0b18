//! WFI / WFE / WFIT / WFET traps (HCR_EL2.TWI traps WFI and WFIT; WFE and WFET are not
//! trapped: each vCPU owns its physical CPU).

use super::ExitAction;
use crate::hyp::exit::{WfxKind, WfxTrap};
use crate::hyp::platform::Platform;
use crate::hyp::vcpu::Vcpu;

pub fn handle(trap: WfxTrap, il32: bool, vcpu: &mut Vcpu, p: &impl Platform) -> ExitAction {
    vcpu.skip_instruction(il32);
    match trap.kind {
        // Block until an interrupt is deliverable.
        WfxKind::Wfi => ExitAction::Block,
        // WFIT: the same, or until the virtual counter reaches Xt (Arm ARM C6.2 "WFIT";
        // CNTVOFF_EL2 is 0, so the virtual count is the physical one). The run loop wakes the
        // vCPU at `wake_at` (`Vcpu::wake_up`), with the EL2 timer armed for it
        // (`timer::update_ptimer`).
        WfxKind::Wfit => {
            let deadline = trap.timeout_reg.map_or(0, |rt| vcpu.reg(rt));
            if p.counter() >= deadline {
                return ExitAction::Resume;
            }
            vcpu.wake_at = Some(deadline);
            ExitAction::Block
        }
        // WFE and WFET may complete at any time ("spurious wake-up", Arm ARM D1.6.2): resuming
        // at once is correct (they are not trapped in the first place).
        WfxKind::Wfe | WfxKind::Wfet => ExitAction::Resume,
    }
}
