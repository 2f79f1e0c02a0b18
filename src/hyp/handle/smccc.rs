//! HVC and trapped SMC: SMC Calling Convention calls (function id in w0, arguments in
//! x1..x3, results in x0..x3): Bulkhead's vendor calls (`vendor`), else the PSCI/SMCCC model
//! (`crate::psci`).

use super::ExitAction;
use crate::hyp::platform::Platform;
use crate::hyp::vcpu::Vcpu;
use crate::hyp::vm::Vm;
use crate::psci::{self, PsciAction};
use crate::vcpu::request::{Request, make_request};
use smccc::arch::error::NOT_SUPPORTED;

/// What a call asks of the run loop: the [`ExitAction`]s a call can lead to. A byte, so it
/// comes back in a register: as an `ExitAction` (24 bytes, returned through memory) it cost
/// about 10 of a null hypercall's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallExit {
    Resume,
    Block,
    CpuOff,
    SystemOff,
    SystemReset,
}

impl From<CallExit> for ExitAction {
    #[inline(always)]
    fn from(exit: CallExit) -> Self {
        match exit {
            CallExit::Resume => ExitAction::Resume,
            CallExit::Block => ExitAction::Block,
            CallExit::CpuOff => ExitAction::CpuOff,
            CallExit::SystemOff => ExitAction::SystemOff,
            CallExit::SystemReset => ExitAction::SystemReset,
        }
    }
}

pub fn handle(vm: &Vm, vcpu: &mut Vcpu, p: &impl Platform) -> CallExit {
    let fid = vcpu.reg(0) as u32;
    let args = [vcpu.reg(1), vcpu.reg(2), vcpu.reg(3)];
    let outcome = psci::handle(fid, args, vcpu.index, &vm.power, vm.ram_ipas());
    // What the PSCI/SMCCC model does not know may be Bulkhead's own: asked only then, so the
    // common calls pay one compare.
    if outcome.x0 == NOT_SUPPORTED as u64 && super::vendor::is_vendor_call(fid, args[0]) {
        let regs = super::vendor::call(fid, args, vm, p);
        vcpu.regs.x[..4].copy_from_slice(&regs);
        return CallExit::Resume;
    }
    vcpu.regs.x[..4].copy_from_slice(&outcome.regs());
    match outcome.action {
        PsciAction::None => CallExit::Resume,
        PsciAction::Standby => CallExit::Block,
        PsciAction::CpuOff => CallExit::CpuOff,
        PsciAction::StartVcpu { target } => {
            if let Some(req) = vm.requests.get(target) {
                make_request(req, Request::CpuOn, false, p);
            }
            CallExit::Resume
        }
        PsciAction::SystemOff => CallExit::SystemOff,
        PsciAction::SystemReset => CallExit::SystemReset,
    }
}
