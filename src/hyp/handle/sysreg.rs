//! Trapped MSR/MRS/SYS (EC 0x18): the GICv3 SGI registers (IPIs) and the EL1 physical timer
//! are emulated, ID register reads answered with the guest's CPU (`cpu_features`); the OS
//! lock, debug ROM and debug communications channel registers, ACTLR_EL1 and the set/way
//! cache operations are emulated as KVM's `sys_regs.c` does (each rule below). Any other
//! trapped access — the IMPLEMENTATION DEFINED registers (HCR_EL2.TIDCP), the hidden
//! features' registers — is UNDEFINED, as on a CPU without it.

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

/// OSLSR_EL1.OSLM = 0b10: the OS lock is implemented (bit 3 is OSLM[1]).
const OSLSR_OSLM_IMPLEMENTED: u64 = 1 << 3;
/// The SetWay field of a DC *SW operand, bits [31:4] (Level is bits [3:1]).
const SET_WAY_MASK: u64 = 0xffff_fff0;

// Inline: on every trapped-register exit's path, and the run loop has two copies.
#[inline(always)]
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
            // 0 for a register the CPU is not asked for (`Platform::id_register`).
            let hw = p.id_register(access.id);
            let guest = GuestCpu::new(vm.config.gic, vm.vtcr);
            vcpu.set_reg(access.rt, cpu_features::sanitise(access.id, hw, guest));
        }
        // Generate SGIs (GICv3 architecture specification, 12.2 "ICC_SGI1R_EL1"): SGI1R either
        // group, SGI0R and ASGI1R Group 0 only (`Vgic::send_sgi0r` says why).
        (
            Some(reg @ (SysReg::ICC_SGI1R_EL1 | SysReg::ICC_ASGI1R_EL1 | SysReg::ICC_SGI0R_EL1)),
            false,
        ) => {
            let sent = if reg == SysReg::ICC_SGI1R_EL1 {
                vm.vgic_to_send_sgis().send_sgi1r(vcpu.index, value)
            } else {
                vm.vgic_to_send_sgis().send_sgi0r(vcpu.index, value)
            };
            match sent {
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
        // The OS lock (MDCR_EL2.TDOSA), emulated per vCPU as KVM's `trap_oslar_el1` /
        // `trap_oslsr_el1`: OSLAR_EL1 is write-only, OSLSR_EL1 read-only with OSLM = 0b10
        // (the lock is implemented, Arm ARM D19 OSLSR_EL1) and OSLK as last written. The
        // write also goes to the lock of the CPU running it (and moves with it on a shared CPU:
        // `run::switch_in`), so a locked guest's debug exceptions
        // are blocked as the architecture says (and an unlocked one's work).
        (Some(SysReg::OSLAR_EL1), false) => {
            vcpu.os_lock = value & 1 != 0;
            p.set_os_lock(vcpu.os_lock);
        }
        (Some(SysReg::OSLSR_EL1), true) => vcpu.set_reg(
            access.rt,
            OSLSR_OSLM_IMPLEMENTED | u64::from(vcpu.os_lock) << 1,
        ),
        // The double lock, power-down control, exception catch, debug ROM address and the
        // debug communications channel reach the physical core's external debug interface:
        // RAZ/WI, as KVM's `trap_raz_wi` (no external debugger is attached to a guest).
        (
            Some(
                SysReg::OSDLR_EL1
                | SysReg::DBGPRCR_EL1
                | SysReg::OSECCR_EL1
                | SysReg::MDRAR_EL1
                | SysReg::MDCCSR_EL0
                | SysReg::DBGDTR_EL0
                | SysReg::DBGDTRRX_EL0
                | SysReg::MDCCINT_EL1
                | SysReg::OSDTRRX_EL1
                | SysReg::OSDTRTX_EL1,
            ),
            read,
        ) => {
            if read {
                vcpu.set_reg(access.rt, 0);
            }
        }
        // ACTLR_EL1 (HCR_EL2.TACR): its content is IMPLEMENTATION DEFINED and controls the
        // physical core; the guest reads the value the core was reset with and its writes are
        // ignored, as KVM's `access_actlr`.
        (Some(SysReg::ACTLR_EL1), read) => {
            if read {
                vcpu.set_reg(access.rt, p.host_actlr_el1());
            }
        }
        // Set/way operations (HCR_EL2.TSW) act on the physical CPU's caches only and cannot
        // maintain a VM's memory (Arm ARM D7.5.9.3: they are for power-down, not coherency).
        // Their purpose — every line of the guest's memory written back — is done by VA over
        // all the RAM the guest has used, once per sweep: at set 0 / way 0 of each level, the
        // one operation every full set/way loop contains (KVM `kvm_set_way_flush` flushes
        // once per MMU-off period for the same reason: a sweep is thousands of traps).
        (Some(SysReg::DC_ISW | SysReg::DC_CSW | SysReg::DC_CISW), false) => {
            if value & SET_WAY_MASK == 0 {
                vm.clean_used_ram(p);
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
