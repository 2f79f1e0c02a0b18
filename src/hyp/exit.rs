//! Guest exit handling: decode ESR_EL2 once, dispatch on the exception class (like KVM's
//! `arm_exit_handlers[]`), and return what the run loop does next. Nothing a guest does here
//! may panic or wedge EL2: unknown classes and bad accesses become an injected UNDEF or
//! external abort plus a rate-limited log line.

use core::sync::atomic::Ordering;

use super::run::VcpuLocal;
use super::vm::{ExitStats, GicKick, Vm};
use crate::arch::sysregs;
use crate::devices::mmio::{self, MmioAccess};
use crate::devices::ptimer::TimerReg;
use crate::guest_warn;
use crate::mm::stage2::{EmulatedDevice, Stage2Decision};
use crate::psci::{self, PsciAction};
use crate::vcpu::request::{Request, make_request};
use crate::vgic::VcpuSet;

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    Resume,
    /// Wait until an interrupt is deliverable (WFI, CPU_SUSPEND standby).
    Block,
    /// The vCPU powered itself off.
    CpuOff,
    SystemOff,
    SystemReset,
}

const EC_UNKNOWN: u64 = 0x00;
const EC_WFX: u64 = 0x01;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_SYSREG: u64 = 0x18;
const EC_IABT_LOWER: u64 = 0x20;
const EC_DABT_LOWER: u64 = 0x24;

/// ESR_EL1 IL bit (32-bit instruction).
const ESR_IL: u64 = 1 << 25;
/// Fault status code: synchronous external abort.
const FSC_SEA: u64 = 0x10;

pub fn handle_sync(vm: &Vm, me: &mut VcpuLocal) -> ExitAction {
    let (esr, far, hpfar) = sysregs::exit_syndrome();
    let ec = (esr >> 26) & 0x3f;
    log::trace!(
        "vcpu {}: exit EC={ec:#x} ESR={esr:#x} FAR={far:#x} HPFAR={hpfar:#x} PC={:#x}",
        me.index,
        me.regs.pc
    );
    let stats = &vm.exits;
    ExitStats::count(match ec {
        EC_WFX => &stats.wfi,
        EC_HVC64 | EC_SMC64 => &stats.hvc,
        EC_SYSREG => &stats.sysreg,
        EC_DABT_LOWER => &stats.mmio,
        _ => &stats.other,
    });
    match ec {
        EC_WFX => {
            me.regs.pc += 4;
            // WFE is not trapped; WFI blocks until an interrupt is deliverable.
            if esr & 1 == 0 {
                ExitAction::Block
            } else {
                ExitAction::Resume
            }
        }
        EC_HVC64 => smccc_call(vm, me),
        EC_SMC64 => {
            // A trapped SMC leaves ELR at the SMC itself.
            me.regs.pc += 4;
            smccc_call(vm, me)
        }
        EC_SYSREG => sysreg(vm, me, esr),
        EC_DABT_LOWER => data_abort(vm, me, esr, far, hpfar),
        EC_IABT_LOWER => instruction_abort(vm, me, esr, far, hpfar),
        _ => {
            guest_warn!(
                "vcpu {}: unhandled exit EC={ec:#x} ESR={esr:#x} at {:#x}",
                me.index,
                me.regs.pc
            );
            inject_undef(me);
            ExitAction::Resume
        }
    }
}

/// HVC / trapped SMC: SMCCC function id in w0, arguments in x1..x3.
fn smccc_call(vm: &Vm, me: &mut VcpuLocal) -> ExitAction {
    let fid = me.regs.x[0] as u32;
    let args = [me.regs.x[1], me.regs.x[2], me.regs.x[3]];
    let outcome = psci::handle(fid, args, me.index, &vm.power, vm.ram_ipas());
    me.regs.x[..4].copy_from_slice(&outcome.regs);
    match outcome.action {
        PsciAction::None => ExitAction::Resume,
        PsciAction::Standby => ExitAction::Block,
        PsciAction::CpuOff => ExitAction::CpuOff,
        PsciAction::StartVcpu { target } => {
            if let Some(req) = vm.requests.get(target) {
                make_request(req, Request::CpuOn, false, &GicKick);
            }
            ExitAction::Resume
        }
        PsciAction::SystemOff => ExitAction::SystemOff,
        PsciAction::SystemReset => ExitAction::SystemReset,
    }
}

/// Kicks the vCPUs that have a newly deliverable interrupt.
pub fn kick_set(vm: &Vm, set: VcpuSet) {
    for target in set.iter() {
        if let Some(req) = vm.requests.get(target) {
            make_request(req, Request::Wake, false, &GicKick);
        }
    }
}

/// MSR/MRS/SYS traps: ICC_SGI1R_EL1 (GICv3 IPIs) and the EL1 physical timer are emulated,
/// anything else is UNDEFINED.
fn sysreg(vm: &Vm, me: &mut VcpuLocal, esr: u64) -> ExitAction {
    let iss = esr & 0x1ff_ffff;
    let read = iss & 1 == 1;
    let rt = ((iss >> 5) & 0x1f) as usize;
    let crm = (iss >> 1) & 0xf;
    let crn = (iss >> 10) & 0xf;
    let op1 = (iss >> 14) & 0x7;
    let op2 = (iss >> 17) & 0x7;
    let op0 = (iss >> 20) & 0x3;
    let value = if rt == 31 { 0 } else { me.regs.x[rt] };
    match (op0, op1, crn, crm, op2, read) {
        // ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1: generate SGIs.
        (3, 0, 12, 11, 5, false) | (3, 1, 12, 11, 6, false) | (3, 2, 12, 11, 7, false) => {
            let kicks = vm.vgic().send_sgi1r(me.index, value);
            match kicks {
                Ok(set) => kick_set(vm, set),
                Err(e) => guest_warn!("vcpu {}: SGI write {value:#x}: {e}", me.index),
            }
        }
        // CNTP_TVAL_EL0 / CNTP_CTL_EL0 / CNTP_CVAL_EL0: the emulated EL1 physical timer.
        (3, 3, 14, 2, op2, _) if TimerReg::from_op2(op2).is_some() => {
            if let Some(reg) = TimerReg::from_op2(op2) {
                let now = crate::arch::cpu::counter();
                if !read {
                    me.ptimer.write(reg, value, now);
                } else if rt != 31 {
                    me.regs.x[rt] = me.ptimer.read(reg, now);
                }
                super::irq::update_ptimer(vm, me);
            }
        }
        _ => {
            guest_warn!(
                "vcpu {}: trapped sysreg op0={op0} op1={op1} CRn={crn} CRm={crm} op2={op2} at {:#x}",
                me.index,
                me.regs.pc
            );
            inject_undef(me);
            return ExitAction::Resume;
        }
    }
    me.regs.pc += 4;
    ExitAction::Resume
}

/// Whether a stage-2 abort means "nothing mapped here (yet)": a translation or access-flag
/// fault at any level. Anything else — an alignment fault on a passed-through device page, a
/// permission fault — is the guest's own doing and must not be retried.
fn is_missing_mapping(esr: u64) -> bool {
    matches!(esr & 0x3c, 0x04 | 0x08)
}

/// The fault status the guest sees for an abort Bulkhead reflects back to it.
fn guest_fsc(esr: u64) -> u64 {
    const FSC_ALIGNMENT: u64 = 0x21;
    if esr & 0x3f == FSC_ALIGNMENT {
        FSC_ALIGNMENT
    } else {
        FSC_SEA
    }
}

fn data_abort(vm: &Vm, me: &mut VcpuLocal, esr: u64, far: u64, hpfar: u64) -> ExitAction {
    let ipa = mmio::fault_ipa(hpfar, far);
    if !is_missing_mapping(esr) {
        guest_warn!("vcpu {}: data abort ESR={esr:#x} at IPA {ipa:#x}", me.index);
        inject_abort(me, esr, far, true);
        return ExitAction::Resume;
    }
    match vm.mem.decide(ipa) {
        d @ (Stage2Decision::MapRam { .. } | Stage2Decision::MapDevice { .. }) => map(vm, me, d),
        Stage2Decision::Emulate { device, offset } => match mmio::decode_data_abort(esr, ipa) {
            Ok(access) => emulate(vm, me, device, offset, &access, (esr, far)),
            Err(e) => {
                guest_warn!("vcpu {}: undecodable MMIO at IPA {ipa:#x}: {e:?}", me.index);
                inject_abort(me, esr, far, true);
                ExitAction::Resume
            }
        },
        Stage2Decision::ExternalAbort => {
            guest_warn!(
                "vcpu {}: access to unbacked IPA {ipa:#x} at {:#x}",
                me.index,
                me.regs.pc
            );
            inject_abort(me, esr, far, true);
            ExitAction::Resume
        }
    }
}

fn instruction_abort(vm: &Vm, me: &mut VcpuLocal, esr: u64, far: u64, hpfar: u64) -> ExitAction {
    let ipa = mmio::fault_ipa(hpfar, far);
    if !is_missing_mapping(esr) {
        guest_warn!(
            "vcpu {}: instruction abort ESR={esr:#x} at IPA {ipa:#x}",
            me.index
        );
        inject_abort(me, esr, far, false);
        return ExitAction::Resume;
    }
    match vm.mem.decide(ipa) {
        d @ Stage2Decision::MapRam { .. } => map(vm, me, d),
        _ => {
            guest_warn!(
                "vcpu {}: instruction fetch from non-RAM IPA {ipa:#x}",
                me.index
            );
            inject_abort(me, esr, far, false);
            ExitAction::Resume
        }
    }
}

/// Maps guest RAM (or a passed-through device page) on its first touch.
fn map(vm: &Vm, me: &mut VcpuLocal, decision: Stage2Decision) -> ExitAction {
    log::trace!("vcpu {}: stage-2 {decision:?}", me.index);
    let mut stage2 = vm.stage2.lock();
    if let Stage2Decision::MapRam { ipa, pa, size } = decision {
        if stage2.lookup(ipa).is_some() {
            // Another vCPU mapped it first.
            return ExitAction::Resume;
        }
        // The guest may run with its MMU off: no stale dirty lines may hide its memory.
        crate::arch::stage2_hw::clean_inval_to_poc(crate::mm::layout::phys_to_linear(pa), size);
    }
    if let Err(e) = stage2.apply(&decision) {
        drop(stage2);
        guest_warn!("vcpu {}: stage-2 map failed: {e}", me.index);
        inject_abort(me, 0, 0, true);
        return ExitAction::Resume;
    }
    vm.stage2_faults.fetch_add(1, Ordering::Relaxed);
    ExitAction::Resume
}

fn emulate(
    vm: &Vm,
    me: &mut VcpuLocal,
    device: EmulatedDevice,
    offset: u64,
    access: &MmioAccess,
    (esr, far): (u64, u64),
) -> ExitAction {
    let reg = access.reg as usize;
    let reg_value = if reg == 31 { 0 } else { me.regs.x[reg] };
    let result: Result<Option<u64>, ()> = match (device, access.write) {
        (EmulatedDevice::Pl011, true) => {
            let mut uart = vm.uart.lock();
            match uart.write(offset, access.size, access.write_value(reg_value)) {
                Ok(out) => {
                    super::irq::update_uart_line(vm, &uart);
                    drop(uart);
                    if let Some(byte) = out {
                        crate::board::console::write_bytes(&[byte]);
                    }
                    Ok(None)
                }
                Err(_) => Err(()),
            }
        }
        (EmulatedDevice::Pl011, false) => {
            let mut uart = vm.uart.lock();
            let value = uart.read(offset, access.size);
            super::irq::update_uart_line(vm, &uart);
            drop(uart);
            super::irq::console_input_drained(vm);
            value.map(Some).map_err(|_| ())
        }
        (EmulatedDevice::GicDistributor, true) => {
            let r =
                vm.vgic()
                    .dist_write(me.index, offset, access.size, access.write_value(reg_value));
            r.map(|set| {
                kick_set(vm, set);
                None
            })
            .map_err(|_| ())
        }
        (EmulatedDevice::GicDistributor, false) => vm
            .vgic()
            .dist_read(me.index, offset, access.size)
            .map(Some)
            .map_err(|_| ()),
        (EmulatedDevice::GicRedistributors, true) => {
            let r = vm
                .vgic()
                .redist_write(offset, access.size, access.write_value(reg_value));
            r.map(|set| {
                kick_set(vm, set);
                None
            })
            .map_err(|_| ())
        }
        (EmulatedDevice::GicRedistributors, false) => vm
            .vgic()
            .redist_read(offset, access.size)
            .map(Some)
            .map_err(|_| ()),
    };
    match result {
        Ok(read) => {
            if let (Some(value), true) = (read, reg != 31) {
                me.regs.x[reg] = access.read_result(value);
            }
            me.regs.pc += access.instruction_len;
        }
        Err(()) => {
            guest_warn!(
                "vcpu {}: bad {device:?} access at offset {offset:#x}",
                me.index
            );
            inject_abort(me, esr, far, true);
        }
    }
    ExitAction::Resume
}

/// Injects an UNDEFINED instruction exception at the faulting instruction.
fn inject_undef(me: &mut VcpuLocal) {
    let (pc, pstate) =
        sysregs::inject_sync(me.regs.pc, me.regs.pstate, (EC_UNKNOWN << 26) | ESR_IL, 0);
    me.regs.pc = pc;
    me.regs.pstate = pstate;
}

/// Injects a synchronous external abort (data or instruction) for the faulting access.
fn inject_abort(me: &mut VcpuLocal, esr: u64, far: u64, data: bool) {
    let from_el0 = me.regs.pstate & 0xf == 0;
    // Data abort: 0x24 from a lower EL, 0x25 same EL; instruction abort: 0x20 / 0x21.
    let ec = match (data, from_el0) {
        (true, true) => 0x24,
        (true, false) => 0x25,
        (false, true) => 0x20,
        (false, false) => 0x21,
    };
    let wnr = if data { esr & (1 << 6) } else { 0 };
    let guest_esr = (ec << 26) | ESR_IL | wnr | guest_fsc(esr);
    let (pc, pstate) = sysregs::inject_sync(me.regs.pc, me.regs.pstate, guest_esr, far);
    me.regs.pc = pc;
    me.regs.pstate = pstate;
}
