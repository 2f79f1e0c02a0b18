//! WFI / WFE / WFIT / WFET traps (HCR_EL2.TWI traps WFI and WFIT; WFE is not trapped).

use super::ExitAction;
use crate::hyp::exit::{WfxKind, WfxTrap};
use crate::hyp::vcpu::Vcpu;

pub fn handle(trap: WfxTrap, il32: bool, vcpu: &mut Vcpu) -> ExitAction {
    vcpu.skip_instruction(il32);
    match trap.kind {
        // Block until an interrupt is deliverable.
        WfxKind::Wfi => ExitAction::Block,
        // The architecture lets WFE, WFIT and WFET complete at any time ("spurious wake-up",
        // Arm ARM D1.6.2): resuming at once is correct, and never outlives a timeout.
        WfxKind::Wfe | WfxKind::Wfit | WfxKind::Wfet => ExitAction::Resume,
    }
}
