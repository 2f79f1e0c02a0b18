//! The per-physical-CPU run loop. Each vCPU of each VM is pinned to a physical CPU of its own
//! (static partitioning, `config::place`), so the guest's EL1 and timer registers stay live in
//! the hardware; what moves on every exit is the GPRs (`arch::switch`) and the list registers
//! (flushed from / folded into the vGIC model). A CPU without a vCPU idles in WFI.
//!
//! One pass: requests (KVM's vCPU requests) → may this vCPU run (PSCI power state)? → VMID of
//! the current generation (KVM's VMID allocator) → load list registers → enter (refused if a request
//! raced in) → exit → fold list registers, sample the timer → decode the exit once
//! (`hyp::exit`) → its handler (`hyp::handle`) → carry out the action it returns. A VM that
//! stops (power-off, reboot, crash: a pvpanic write or a runaway vCPU found at injection) goes
//! through its life-cycle policy (`hyp::lifecycle`): destroyed, restarted or preserved.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;

use super::context::{FpState, VcpuContext};
use super::exit::{GuestExit, Syndrome};
use super::handle::{CrashCause, ExitAction, handle_exit};
use super::host_irq;
use super::inject::{self, Exception};
use super::lifecycle::{self, Decision};
use super::platform::Platform;
use super::runaway::{REPEATS, Runaway};
use super::serror::{self, SErrorAction};
use super::setup;
use super::timer;
use super::vcpu::Vcpu;
use super::vm::{ExitStats, Vm};
use crate::arch::platform::ArchPlatform;
use crate::arch::switch::{ExitKind, run_guest};
use crate::arch::{context, cpu, stage2_hw, sysregs, vgic_hw};
use crate::config::{Policy, StopCause};
use crate::vcpu::power::VmState;
use crate::vcpu::request::{Request, make_all_request};

/// What belongs to the physical CPU rather than to the vCPU it runs.
struct PhysCpu {
    /// List registers this CPU has (read once: the hardware does not change).
    lr_count: usize,
    /// VMID last loaded into VTTBR_EL2 on this CPU.
    loaded_vmid: Option<u16>,
}

/// (Re)starts `vcpu` at `entry` with `x0`: its registers, and the EL1 system registers, GIC
/// virtual CPU interface and timer state live in this CPU's hardware.
fn start_vcpu(vcpu: &mut Vcpu, entry: u64, x0: u64) {
    log::debug!("vcpu {}: start at {entry:#x} x0={x0:#x}", vcpu.index);
    vcpu.reset_to(entry, x0);
    // EL1 registers, keys, debug points, virtual timer, GIC CPU interface, FP/SVE: as at reset.
    context::restore(&VcpuContext::reset());
    context::restore_fp(&FpState::new(context::sve_vl_bytes()));
    // The OS lock unlocked, as `reset_to` left the vCPU's copy (and as KVM resets OSLSR_EL1):
    // a previous life, or the CPU's cold reset (OSLK = 1), must not block its debug.
    sysregs::set_os_lock(false);
    timer::set_vtimer_level(vcpu, false, &ArchPlatform);
}

/// Loads the list registers with what the vGIC model says this vCPU should see. Skipped when
/// the last fill loaded nothing and nobody touched the vGIC since (a null hypercall, say).
fn flush_lrs(vm: &Vm, vcpu: &mut Vcpu, pcpu: &PhysCpu) {
    if vcpu.lrs_loaded == 0 && vm.vgic_epoch.load(Ordering::Acquire) == vcpu.quiet_epoch {
        return;
    }
    let count = pcpu.lr_count;
    if let Some(stats) = vm.exits.get(vcpu.index) {
        ExitStats::count(&stats.lr_fills);
    }
    let fill = {
        let mut vgic = vm.vgic.lock();
        let fill = vgic.take_for_lrs(vcpu.index, &mut vcpu.lrs[..count]);
        // Nothing to load: remember the epoch, read under the lock (every later change bumps
        // it before it happens), so the next entry can skip the fill if nothing changed.
        vcpu.quiet_epoch = if fill.count == 0 && !fill.overflow {
            vm.vgic_epoch.load(Ordering::Acquire)
        } else {
            u64::MAX
        };
        fill
    };
    // Only the filled ones: the others are empty (emptied by `fold_loaded_lrs` after every
    // exit, and at the start of `run_vcpu`).
    for (i, entry) in vcpu.lrs[..fill.count].iter().enumerate() {
        vgic_hw::write_lr(i, Some(entry));
    }
    vcpu.lrs_loaded = fill.count;
    vgic_hw::enable(fill.overflow);
}

/// Reads back what the guest did with the list registers, and empties them. Inline: most
/// exits (a hypercall, an MMIO access) come back with nothing loaded.
#[inline(always)]
fn fold_lrs(vm: &Vm, vcpu: &mut Vcpu) {
    if vcpu.lrs_loaded != 0 {
        fold_loaded_lrs(vm, vcpu);
    }
}

#[inline(never)]
fn fold_loaded_lrs(vm: &Vm, vcpu: &mut Vcpu) {
    // Underflow maintenance off first: emptying the list registers below must not raise a
    // maintenance interrupt of its own (which, pending on every entry, would starve the guest).
    vgic_hw::enable(false);
    let mut vgic = vm.vgic();
    for i in 0..vcpu.lrs_loaded {
        let (pending, active) = vgic_hw::read_lr_state(i);
        let mut entry = vcpu.lrs[i];
        entry.pending = pending;
        entry.active = active;
        vgic.fold_lr(vcpu.index, &entry);
        vgic_hw::write_lr(i, None);
    }
    vcpu.lrs_loaded = 0;
}

/// Takes `exception` in the guest's EL1, as the CPU would have (`hyp::inject`); `Err` for a
/// vCPU looping on a fault at its own vector (`hyp::runaway`), which is left as it was.
fn inject(vcpu: &mut Vcpu, exception: Exception) -> Result<(), Runaway> {
    let (vbar_el1, sctlr_el1) = sysregs::injection_context();
    let now = ArchPlatform.counter();
    let entry = inject::inject(vcpu, exception, vbar_el1, sctlr_el1, now)?;
    sysregs::write_exception_registers(entry.esr_el1, entry.far_el1, entry.elr_el1, entry.spsr_el1);
    Ok(())
}

/// Waits on this physical CPU until something (an interrupt, a kick) happens.
fn wait_for_event(vm: &Vm, vcpu: &mut Vcpu) {
    cpu::wfi();
    host_irq::handle_host_irqs(Some((vm, &mut *vcpu)));
}

/// Stops this CPU for good (the VM is off).
fn park() -> ! {
    cpu::halt()
}

/// Runs whatever this physical CPU was given: its vCPU, or nothing (idle).
pub fn run_cpu(pcpu_index: usize) -> ! {
    match setup::assigned(pcpu_index) {
        Some((vm, vcpu)) => run_vcpu(vm, vcpu, pcpu_index),
        None => idle(pcpu_index),
    }
}

/// A CPU no vCPU uses. CPU 0 (where the console's interrupt is routed) still serves console
/// input; the others sleep for good (WFI, unlike a WFE loop, really stops a CPU — and a QEMU
/// vCPU thread).
fn idle(pcpu_index: usize) -> ! {
    if pcpu_index != 0 {
        park()
    }
    host_irq::enable_console_irq();
    loop {
        cpu::wfi();
        host_irq::handle_host_irqs(None);
    }
}

/// Runs vCPU `index` of `vm` on this physical CPU (`pcpu_index`) forever.
fn run_vcpu(vm: &'static Vm, index: usize, pcpu_index: usize) -> ! {
    let Some(vcpu) = vm.vcpus.get(index) else {
        park()
    };
    // Pinned: this CPU holds its vCPU for good.
    let mut vcpu = vcpu.lock();
    let vcpu = &mut *vcpu;
    vcpu.last_pcpu = Some(pcpu_index);
    let mut pcpu = PhysCpu {
        lr_count: vgic_hw::lr_count(),
        loaded_vmid: None,
    };
    let p = &ArchPlatform;
    // Every list register empty: `flush_lrs` writes only the ones it fills.
    for i in 0..pcpu.lr_count {
        vgic_hw::write_lr(i, None);
    }
    sysregs::activate_traps();
    sysregs::load_vcpu_id(index);
    host_irq::enable_vcpu_irqs(pcpu_index);
    if pcpu_index == 0 {
        host_irq::enable_console_irq();
    }
    let requests = &vm.requests[index];
    let Some(vmids) = setup::vmids() else { park() };
    log::debug!("vcpu {index}: run loop on cpu {pcpu_index}");
    // The last pass ended in `wait_for_event` for a blocked vCPU.
    let mut waited = false;
    loop {
        let generation = vm.generation.load(Ordering::Acquire);
        if generation != vcpu.generation && vm.power.vm_state() == VmState::Running {
            vcpu.generation = generation;
            fold_lrs(vm, vcpu);
            // The boot vCPU starts at the kernel; the others wait, reset, for a CPU_ON.
            let boot = *vm.boot.lock();
            let (entry, x0) = if vm.power.may_run(index) {
                (boot.entry, boot.dtb_ipa)
            } else {
                (0, 0)
            };
            start_vcpu(vcpu, entry, x0);
            timer::update_ptimer(vm, vcpu, p);
        }
        let pending = requests.take_requests();
        if pending.contains(Request::TlbFlush) {
            stage2_hw::flush_current_vmid();
        }
        match vm.power.vm_state() {
            VmState::Off => park(),
            VmState::Stopping => {
                wait_for_event(vm, vcpu);
                continue;
            }
            VmState::Running => {}
        }
        if vcpu.generation != generation {
            continue;
        }
        if !vm.power.may_run(index) {
            match vm.power.claim_start(index) {
                Some(start) => start_vcpu(vcpu, start.entry, start.context_id),
                None => {
                    wait_for_event(vm, vcpu);
                    continue;
                }
            }
        }
        if vcpu.blocked {
            // Host interrupts that arrived since the exit may wake it (a wait just handled
            // them already).
            if !waited {
                host_irq::handle_host_irqs(Some((vm, &mut *vcpu)));
            }
            let deliverable = vm.vgic.lock().has_deliverable(index);
            if vcpu.wake_up(cpu::counter(), deliverable) {
                vcpu.blocked = false;
            } else {
                wait_for_event(vm, vcpu);
                waited = true;
                continue;
            }
        }
        waited = false;

        let vmid = match vmids.update(pcpu_index, &vm.vmid) {
            Ok(v) => v,
            Err(e) => {
                log::error!("vcpu {index}: no VMID: {e}");
                park()
            }
        };
        if pcpu.loaded_vmid != Some(vmid) {
            stage2_hw::load(vm.vtcr, vm.stage2_root, vmid);
            pcpu.loaded_vmid = Some(vmid);
        }
        // Fast re-entry: while exits only ask to resume, stay here. Everything the outer
        // checks look at changes only together with a request (and `enter_guest` refuses
        // while one is pending) or through this vCPU's own exit actions, and the VMID stays
        // valid: a rollover keeps every VMID active on a CPU reserved for its VM (KVM arm64 VMID allocator, 2021).
        let action = loop {
            flush_lrs(vm, vcpu, &pcpu);
            if requests.enter_guest().is_err() {
                fold_lrs(vm, vcpu);
                break Ok(ExitAction::Resume);
            }
            let kind = run_guest(&mut vcpu.regs);
            requests.exit_guest();
            fold_lrs(vm, vcpu);
            timer::sample_vtimer(vm, vcpu, p);
            let action = match kind {
                ExitKind::Sync => {
                    let (esr, far, hpfar) = sysregs::exit_syndrome();
                    let exit = GuestExit::decode(Syndrome { esr, far, hpfar });
                    log::trace!("vcpu {index}: {exit:x?} at {:#x}", vcpu.regs.pc);
                    handle_exit(&exit, vm, vcpu, p)
                }
                ExitKind::Irq => {
                    if let Some(stats) = vm.exits.get(index) {
                        ExitStats::count(&stats.irq);
                    }
                    host_irq::handle_host_irqs(Some((vm, &mut *vcpu)));
                    ExitAction::Resume
                }
                ExitKind::SError => {
                    let (esr, _, _) = sysregs::exit_syndrome();
                    match serror::guest_serror(esr) {
                        SErrorAction::Reflect { vsesr } => {
                            crate::guest_warn!(
                                "{} vcpu {index}: SError (ESR {esr:#x}) reflected to the guest",
                                vm.config.name
                            );
                            sysregs::pend_virtual_serror(vsesr);
                            ExitAction::Resume
                        }
                        SErrorAction::StopVm => ExitAction::Crash(CrashCause::SError(esr)),
                    }
                }
            };
            match action {
                ExitAction::Resume => {}
                ExitAction::Inject(exception) => {
                    if let Err(runaway) = inject(vcpu, exception) {
                        break Err(runaway);
                    }
                }
                other => break Ok(other),
            }
        };
        let action = match action {
            Ok(action) => action,
            Err(runaway) => {
                crashed(vm, vcpu, Crash::Runaway(runaway));
                continue;
            }
        };
        match action {
            ExitAction::Resume | ExitAction::Inject(_) => {}
            ExitAction::Block => {
                vcpu.blocked = true;
                // A WFIT timeout: the EL2 timer must wake this CPU then.
                if vcpu.wake_at.is_some() {
                    timer::update_ptimer(vm, vcpu, p);
                }
            }
            ExitAction::CpuOff => {}
            ExitAction::SystemOff => stop_vm(vm, vcpu, StopCause::PowerOff),
            ExitAction::SystemReset => stop_vm(vm, vcpu, StopCause::Reboot),
            ExitAction::Crash(cause) => crashed(vm, vcpu, Crash::Handler(cause)),
        }
    }
}

/// Why a VM crashed: what an exit's handler found, or a runaway vCPU the run loop found
/// when it injected an exception.
enum Crash {
    Handler(CrashCause),
    Runaway(Runaway),
}

/// The guest crashed (`cause`): says so in one line, then stops the VM under its `on_crash`
/// policy — unless another vCPU's system event got there first and drives the VM.
fn crashed(vm: &Vm, vcpu: &Vcpu, cause: Crash) {
    let (name, index) = (&vm.config.name, vcpu.index);
    match cause {
        Crash::Runaway(r) => log::warn!(
            "{name} vcpu {index}: runaway: the same exception at its own vector {REPEATS} times \
             in {} us of guest time (ESR_EL1 {:#x}, FAR_EL1 {:#x}, ELR_EL1 {:#x}, vector \
             {:#x}); the guest crashed",
            r.ticks.saturating_mul(1_000_000) / vm.config.counter_hz.max(1),
            r.esr,
            r.far,
            r.elr,
            r.vector,
        ),
        Crash::Handler(CrashCause::GuestPanic) => {
            log::warn!("{name} vcpu {index}: the guest panicked (pvpanic); the guest crashed")
        }
        Crash::Handler(CrashCause::SError(esr)) => log::error!(
            "{name} vcpu {index}: uncontainable SError (ESR_EL2 {esr:#x}); the guest crashed"
        ),
    }
    if vm.power.stop() {
        stop_vm(vm, vcpu, StopCause::Crash);
    }
}

/// The VM left `Running` for `cause` (this vCPU won the race to stop it): stop every vCPU,
/// waiting until none can still be in the guest, then do what its policy says.
fn stop_vm(vm: &Vm, vcpu: &Vcpu, cause: StopCause) {
    let index = vcpu.index;
    make_all_request(vm.requests.iter(), Request::Stop, true, &ArchPlatform);
    let now = ArchPlatform.counter();
    let decision = lifecycle::decide(&vm.config.lifecycle, cause, &mut vm.resets.lock(), now);
    if let Some(limit) = decision.over_reset_limit {
        log::warn!(
            "{}: {limit} restarts within a minute of guest time, the most \
             bulkhead.reset_limit={limit} allows; stopped as crashed{}",
            vm.config.name,
            if vm.config.lifecycle.on_crash == Policy::Restart {
                " (on_crash=restart would only loop: destroy)"
            } else {
                ""
            },
        );
    }
    match decision.policy {
        Policy::Restart => system_reset(vm, index, decision),
        Policy::Destroy => system_off(vm, index, decision),
        Policy::Preserve => preserve(vm, index, vcpu.regs.pc, decision),
    }
}

/// How a stop came about, for the log line ("crashed, on_crash=destroy"); `None` when it is
/// `plain` (a power-off that powers off, a reboot that restarts: their lines say enough).
fn why(decision: &Decision, plain: Option<StopCause>) -> Option<String> {
    if Some(decision.cause) == plain {
        return None;
    }
    let event = match decision.cause {
        StopCause::PowerOff => "powered off",
        StopCause::Reboot => "rebooted",
        StopCause::Crash => "crashed",
    };
    Some(format!(
        "{event}, {}={}",
        decision.cause.key(),
        decision.policy
    ))
}

/// `destroy` (every vCPU stopped): the VM is off for good, its CPUs idle. When the last VM
/// is off, the machine powers off.
fn system_off(vm: &Vm, index: usize, decision: Decision) {
    vm.power.force_off();
    vm.console.set_alive(vm.id, false, &ArchPlatform);
    // The other vCPUs wait in `Stopping`: wake them to see `Off` and park.
    make_all_request(vm.requests.iter(), Request::Wake, false, &ArchPlatform);
    log::info!(
        "{} {}powered off (vcpu {index}): {} stage-2 mapping faults, {}, {} VMID rollovers, heap {} KiB in use",
        vm.config.name,
        why(&decision, Some(StopCause::PowerOff)).map_or(String::new(), |w| w + ": "),
        vm.stage2_faults.load(Ordering::Relaxed),
        ExitStats::sum(&vm.exits),
        setup::vmids().map_or(0, |v| v.stats().rollovers),
        crate::arch::heap::used_bytes() >> 10,
    );
    power_off_when_all_off();
}

/// Counts a VM that finished stopping; the last one powers the machine off. (Checking the
/// VMs' power states instead would let a VM that just turned off cut short another's report.)
fn power_off_when_all_off() {
    if setup::count_stopped_vm() {
        log::info!("every VM is off; powering off");
        crate::board::power::power_off();
    }
}

/// `preserve` (every vCPU stopped): the VM stays stopped with its RAM and vCPU registers as
/// they were, and it does not count as off, so the machine stays up for a debugger.
fn preserve(vm: &Vm, index: usize, pc: u64, decision: Decision) {
    vm.power.force_off();
    vm.console.set_alive(vm.id, false, &ArchPlatform);
    make_all_request(vm.requests.iter(), Request::Wake, false, &ArchPlatform);
    log::warn!(
        "{} {}preserved (vcpu {index} at PC {pc:#x}): stopped with its memory and registers; \
         the machine stays up",
        vm.config.name,
        why(&decision, None).map_or(String::new(), |w| w + ": "),
    );
}

/// `restart` (every vCPU stopped): rebuild the VM in place and restart its vCPU 0. The other
/// VMs do not notice.
fn system_reset(vm: &Vm, index: usize, decision: Decision) {
    log::info!(
        "{} reset (vcpu {index}{}) after {} stage-2 mapping faults",
        vm.config.name,
        why(&decision, Some(StopCause::Reboot)).map_or(String::new(), |w| format!(", {w}")),
        vm.stage2_faults.swap(0, Ordering::Relaxed)
    );
    if let Err(e) = vm.reset(&ArchPlatform) {
        log::error!("{}: reset failed: {e}; the VM stays off", vm.config.name);
        vm.power.force_off();
        vm.console.set_alive(vm.id, false, &ArchPlatform);
        make_all_request(vm.requests.iter(), Request::Wake, false, &ArchPlatform);
        power_off_when_all_off();
        return;
    }
    log::info!(
        "{} restarted: VMID rollovers {}, heap {} bytes in use",
        vm.config.name,
        setup::vmids().map_or(0, |v| v.stats().rollovers),
        crate::arch::heap::used_bytes(),
    );
    // Wake everyone: vCPU 0 restarts, the others notice they are off.
    make_all_request(vm.requests.iter(), Request::Wake, false, &ArchPlatform);
}
