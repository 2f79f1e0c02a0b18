//! Trapped MSR/MRS (EC 0x18): the GICv3 SGI registers (IPIs) and the EL1 physical timer are
//! emulated, ID register reads answered with the guest's CPU (`cpu_features`); any other
//! trapped access is UNDEFINED, as on a CPU without it.

use super::ExitAction;
use crate::devices::ptimer::TimerReg;
use crate::guest_warn;
use crate::hyp::cpu_features::{self, GuestCpu};
use crate::hyp::exit::{SysReg, SysRegAccess};
use crate::hyp::inject::Exception;
use crate::hyp::platform::Platform;
use crate::hyp::timer;
use crate::hyp::vcpu::Vcpu;
use crate::hyp::vm::Vm;

pub fn handle(
    access: &SysRegAccess,
    il32: bool,
    vm: &Vm,
    vcpu: &mut Vcpu,
    p: &impl Platform,
) -> ExitAction {
    let value = vcpu.reg(access.rt);
    match (access.name(), access.read) {
        // The ID space HCR_EL2.TID3 traps: the sanitised value (KVM `access_id_reg`). The
        // registers are read-only: a write is UNDEFINED, as on hardware.
        _ if cpu_features::is_id_register(access.id) => {
            if !access.read {
                return ExitAction::Inject(Exception::Undef);
            }
            let hw = if cpu_features::reads_hardware(access.id) {
                p.id_register(access.id)
            } else {
                0
            };
            let guest = GuestCpu::new(vm.config.gic, vm.vtcr);
            vcpu.set_reg(access.rt, cpu_features::sanitise(access.id, hw, guest));
        }
        // Generate SGIs (GICv3 architecture specification, 12.2 "ICC_SGI1R_EL1").
        (Some(SysReg::ICC_SGI1R_EL1 | SysReg::ICC_ASGI1R_EL1 | SysReg::ICC_SGI0R_EL1), false) => {
            match vm.vgic().send_sgi1r(vcpu.index, value) {
                Ok(set) => vm.kick_vcpus(set, p),
                Err(e) => guest_warn!(
                    "{} vcpu {}: SGI write {value:#x}: {e}",
                    vm.config.name,
                    vcpu.index
                ),
            }
        }
        (
            Some(reg @ (SysReg::CNTP_TVAL_EL0 | SysReg::CNTP_CTL_EL0 | SysReg::CNTP_CVAL_EL0)),
            read,
        ) => {
            let reg = match reg {
                SysReg::CNTP_TVAL_EL0 => TimerReg::Tval,
                SysReg::CNTP_CTL_EL0 => TimerReg::Ctl,
                _ => TimerReg::Cval,
            };
            let read_value = timer::ptimer_access(vm, vcpu, reg, (!read).then_some(value), p);
            if read {
                vcpu.set_reg(access.rt, read_value);
            }
        }
        _ => {
            guest_warn!(
                "{} vcpu {}: trapped {} {} at {:#x}",
                vm.config.name,
                vcpu.index,
                if access.read { "MRS" } else { "MSR" },
                access.id,
                vcpu.regs.pc
            );
            return ExitAction::Inject(Exception::Undef);
        }
    }
    vcpu.skip_instruction(il32);
    ExitAction::Resume
}
