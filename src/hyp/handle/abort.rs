//! Stage-2 aborts (EC 0x24 data, 0x20 instruction, from the guest). A translation or
//! access-flag fault means "nothing mapped here yet": guest RAM (and a passed-through device
//! page) is mapped on first touch; an emulated device's window is emulated and the access
//! completed; anything else is an external abort for the guest. Any other fault (alignment on a
//! passed-through page, permission) is the guest's own doing: it is reflected, never retried.

use core::sync::atomic::Ordering;

use super::{CrashCause, ExitAction};
use crate::devices::mmio::{MmioAccess, guest_big_endian};
use crate::devices::pvpanic::{self, PvpanicEvent};
use crate::guest_warn;
use crate::hyp::console_bridge as console;
use crate::hyp::exit::{Abort, FaultKind};
use crate::hyp::inject::{Exception, FSC_ALIGNMENT, FSC_EXTERNAL, FSC_EXTERNAL_WALK_L0};
use crate::hyp::platform::Platform;
use crate::hyp::rtc;
use crate::hyp::vcpu::Vcpu;
use crate::hyp::vm::Vm;
use crate::hyp::walk_level::walk_level;
use crate::mm::stage2::{EmulatedDevice, Stage2Decision};
use crate::vgic::Vgic;

/// The fault status the guest sees for an abort Bulkhead reflects back to it.
fn guest_fsc(abort: &Abort) -> u8 {
    if abort.fault() == FaultKind::Alignment {
        FSC_ALIGNMENT
    } else {
        FSC_EXTERNAL
    }
}

fn data_abort_exception(abort: &Abort) -> ExitAction {
    ExitAction::Inject(Exception::DataAbort {
        fsc: guest_fsc(abort),
        far: abort.far,
        write: abort.write(),
    })
}

// Inline: on every MMIO exit's path, and the run loop has two copies that would call it.
#[inline(always)]
pub fn data_abort(
    abort: &Abort,
    il32: bool,
    vm: &Vm,
    vcpu: &mut Vcpu,
    p: &impl Platform,
) -> ExitAction {
    let ipa = abort.ipa;
    if !abort.fault().is_missing_mapping() {
        guest_warn!(
            "{} vcpu {}: data abort {:?} at IPA {ipa:#x}",
            vm.config.name,
            vcpu.index,
            abort.fault()
        );
        return data_abort_exception(abort);
    }
    let decision = vm.mem.decide(ipa);
    if abort.s1ptw() && !matches!(decision, Stage2Decision::MapRam { .. }) {
        return walk_abort(vm, vcpu, abort, p, true);
    }
    match decision {
        d @ (Stage2Decision::MapRam { .. } | Stage2Decision::MapDevice { .. }) => {
            map(vm, vcpu, d, abort, p)
        }
        // Cache maintenance by VA on an emulated device has nothing to maintain: complete it,
        // as KVM's `kvm_handle_guest_abort` does for `kvm_vcpu_dabt_is_cm`.
        Stage2Decision::Emulate { .. } if abort.cache_maintenance() => {
            vcpu.skip_instruction(il32);
            ExitAction::Resume
        }
        Stage2Decision::Emulate { device, offset } => match abort.mmio() {
            // An unaligned access to a device register: an Alignment fault, the fault an
            // access to Device memory gets (Arm ARM B2.5.2), here for a guest that mapped the
            // device as Normal memory (stage 1 checked nothing); the device never sees it.
            Some(access) if !ipa.is_multiple_of(access.size.bytes()) => {
                guest_warn!(
                    "{} vcpu {}: unaligned {device:?} access at IPA {ipa:#x}",
                    vm.config.name,
                    vcpu.index
                );
                ExitAction::Inject(Exception::DataAbort {
                    fsc: FSC_ALIGNMENT,
                    far: abort.far,
                    write: abort.write(),
                })
            }
            // A `match` and a cold refusal rather than `unwrap_or_else`: the closure kept the
            // combinator out of line, and it copied the 48-byte `ExitAction` with `memcpy` on
            // every emulated access (about 60 instructions of a PL011 write).
            Some(access) => match emulate(vm, vcpu, device, offset, &access, il32, p) {
                Ok(action) => action,
                Err(()) => refused_access(vm, vcpu, device, offset, abort),
            },
            None => {
                guest_warn!(
                    "{} vcpu {}: undecodable MMIO (no syndrome) at IPA {ipa:#x}",
                    vm.config.name,
                    vcpu.index
                );
                data_abort_exception(abort)
            }
        },
        Stage2Decision::ExternalAbort => {
            guest_warn!(
                "{} vcpu {}: access to unbacked IPA {ipa:#x} at {:#x}",
                vm.config.name,
                vcpu.index,
                vcpu.regs.pc
            );
            data_abort_exception(abort)
        }
    }
}

pub fn instruction_abort(abort: &Abort, vm: &Vm, vcpu: &mut Vcpu, p: &impl Platform) -> ExitAction {
    let ipa = abort.ipa;
    let exception = ExitAction::Inject(Exception::InstructionAbort {
        fsc: guest_fsc(abort),
        far: abort.far,
    });
    if !abort.fault().is_missing_mapping() {
        guest_warn!(
            "{} vcpu {}: instruction abort {:?} at IPA {ipa:#x}",
            vm.config.name,
            vcpu.index,
            abort.fault()
        );
        return exception;
    }
    match vm.mem.decide(ipa) {
        d @ Stage2Decision::MapRam { .. } => map(vm, vcpu, d, abort, p),
        _ if abort.s1ptw() => walk_abort(vm, vcpu, abort, p, false),
        _ => {
            guest_warn!(
                "{} vcpu {}: instruction fetch from non-RAM IPA {ipa:#x}",
                vm.config.name,
                vcpu.index
            );
            exception
        }
    }
}

/// The guest's stage-1 walk read an IPA that is not RAM (a hole, a device): on a machine
/// without EL2 the walk's read would end in a synchronous external abort on a translation
/// table walk, at the level of the table it read (DFSC 0b0101LL), for the access's VA. The
/// level is found by repeating the guest's walk (`walk_level`); if that fails (the guest
/// changed its tables meanwhile), a plain external abort, as KVM's `kvm_inject_dabt`.
fn walk_abort(vm: &Vm, vcpu: &Vcpu, abort: &Abort, p: &impl Platform, data: bool) -> ExitAction {
    let level = walk_level(p.guest_stage1_regs(), abort.far, abort.ipa, |ipa| {
        vm.read_ram_u64(p, ipa)
    });
    guest_warn!(
        "{} vcpu {}: stage-1 walk (level {level:?}) into non-RAM IPA {:#x}",
        vm.config.name,
        vcpu.index,
        abort.ipa
    );
    let fsc = level.map_or(FSC_EXTERNAL, |l| FSC_EXTERNAL_WALK_L0 + l);
    ExitAction::Inject(if data {
        Exception::DataAbort {
            fsc,
            far: abort.far,
            // A walk only reads, but WnR reports the access that needed it.
            write: abort.write(),
        }
    } else {
        Exception::InstructionAbort {
            fsc,
            far: abort.far,
        }
    })
}

/// An emulated device refused an access (a read-only register written, a bad size): the
/// guest gets an external abort, as from a device that signals an error.
#[cold]
#[inline(never)]
fn refused_access(
    vm: &Vm,
    vcpu: &Vcpu,
    device: EmulatedDevice,
    offset: u64,
    abort: &Abort,
) -> ExitAction {
    guest_warn!(
        "{} vcpu {}: bad {device:?} access at offset {offset:#x}",
        vm.config.name,
        vcpu.index
    );
    data_abort_exception(abort)
}

/// Maps guest RAM (or a passed-through device page) on its first touch.
fn map(
    vm: &Vm,
    vcpu: &Vcpu,
    decision: Stage2Decision,
    abort: &Abort,
    p: &impl Platform,
) -> ExitAction {
    log::trace!(
        "{} vcpu {}: stage-2 {decision:?}",
        vm.config.name,
        vcpu.index
    );
    let mut stage2 = vm.stage2.lock();
    if let Stage2Decision::MapRam { ipa, pa, size } = decision {
        if stage2.lookup(ipa).is_some() {
            // Another vCPU mapped it first.
            return ExitAction::Resume;
        }
        // First touch since the (re)load: zeroed, or filled with its part of the kernel or
        // initrd, or cleaned to PoC (`Vm::prepare_first_touch`); a shared window is cleaned.
        if !vm.prepare_first_touch(p, ipa..ipa + size) {
            p.clean_ram_to_poc(pa, size);
        }
    }
    if let Err(e) = stage2.apply(&decision) {
        drop(stage2);
        guest_warn!(
            "{} vcpu {}: stage-2 map failed: {e}",
            vm.config.name,
            vcpu.index
        );
        return ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            far: abort.far,
            write: abort.write(),
        });
    }
    vm.stage2_faults.fetch_add(1, Ordering::Relaxed);
    ExitAction::Resume
}

/// Emulates one access to an emulated device and completes the instruction; `Err` when the
/// device refuses it (the caller injects an abort).
fn emulate(
    vm: &Vm,
    vcpu: &mut Vcpu,
    device: EmulatedDevice,
    offset: u64,
    access: &MmioAccess,
    il32: bool,
    p: &impl Platform,
) -> Result<ExitAction, ()> {
    let big_endian = guest_big_endian(vcpu.regs.pstate, p.guest_sctlr_el1());
    let value = access.write_value_endian(vcpu.reg(access.reg), big_endian);
    let read = match (device, access.write) {
        (EmulatedDevice::Pl011, true) => {
            console::uart_write(vm, offset, access.size, value, p).map_err(drop)?;
            None
        }
        (EmulatedDevice::Pl011, false) => {
            Some(console::uart_read(vm, offset, access.size, p).map_err(drop)?)
        }
        (EmulatedDevice::Pl031, true) => {
            rtc::access(vm, offset, access.size, Some(value), p).map_err(drop)?;
            None
        }
        (EmulatedDevice::Pl031, false) => {
            Some(rtc::access(vm, offset, access.size, None, p).map_err(drop)?)
        }
        (EmulatedDevice::GicDistributor, true) => {
            let mut vgic = if Vgic::is_sgir(offset) {
                vm.vgic_to_send_sgis()
            } else {
                vm.vgic()
            };
            let set = vgic
                .dist_write(vcpu.index, offset, access.size, value)
                .map_err(drop)?;
            drop(vgic);
            vm.kick_vcpus(set, p);
            None
        }
        // Reads change nothing: no `Vm::vgic()` (which tells every vCPU to refill its LRs).
        (EmulatedDevice::GicDistributor, false) => Some(
            vm.vgic
                .lock()
                .dist_read(vcpu.index, offset, access.size)
                .map_err(drop)?,
        ),
        (EmulatedDevice::GicRedistributors, true) => {
            let set = vm
                .vgic()
                .redist_write(offset, access.size, value)
                .map_err(drop)?;
            vm.kick_vcpus(set, p);
            None
        }
        (EmulatedDevice::GicRedistributors, false) => Some(
            vm.vgic
                .lock()
                .redist_read(offset, access.size)
                .map_err(drop)?,
        ),
        (EmulatedDevice::Pvpanic, true) => match pvpanic::write(offset, value) {
            PvpanicEvent::Panicked => {
                vcpu.skip_instruction(il32);
                return Ok(ExitAction::Crash(CrashCause::GuestPanic));
            }
            PvpanicEvent::CrashLoaded => {
                guest_warn!(
                    "{} vcpu {}: pvpanic: the guest crashed and runs its crash kernel",
                    vm.config.name,
                    vcpu.index
                );
                None
            }
            PvpanicEvent::None => None,
        },
        (EmulatedDevice::Pvpanic, false) => Some(pvpanic::read(offset)),
    };
    if let Some(value) = read {
        vcpu.set_reg(access.reg, access.read_result_endian(value, big_endian));
    }
    vcpu.skip_instruction(il32);
    Ok(ExitAction::Resume)
}
