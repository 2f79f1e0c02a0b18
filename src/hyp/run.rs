//! The per-physical-CPU vCPU loop. vCPU `i` of the VM is pinned to physical CPU `i`, so the
//! guest's EL1 and timer registers stay live in the hardware; what moves on every exit is the
//! GPRs (`switch.rs`) and the list registers (flushed from / folded into the vGIC model).
//!
//! One pass: requests (seed 004) → may this vCPU run (PSCI power state, seed 003)? → VMID of
//! the current generation (seed 002/000) → load list registers → enter (refused if a request
//! raced in) → exit → fold list registers, sample the timer → handle the exit.

use core::sync::atomic::Ordering;

use super::exit::{self, ExitAction};
use super::irq;
use super::vm::{ExitStats, GicKick, Vm};
use crate::arch::switch::{ExitKind, GuestRegs, run_guest};
use crate::arch::sysregs::{self, El1State};
use crate::arch::{cpu, stage2_hw, vgic_hw};
use crate::vcpu::power::VmState;
use crate::vcpu::request::{Request, make_all_request};
use crate::vgic::LrEntry;

/// PSTATE a vCPU starts with: EL1h, DAIF masked.
const PSTATE_EL1H_MASKED: u64 = 0x3c5;

/// State of the vCPU owned by this physical CPU.
pub struct VcpuLocal {
    pub index: usize,
    pub regs: GuestRegs,
    lrs: [LrEntry; vgic_hw::MAX_LRS],
    lrs_loaded: usize,
    /// List registers this CPU has (read once: the hardware does not change).
    lr_count: usize,
    /// `vm.vgic_epoch` at the last fill that loaded nothing (`u64::MAX`: fill next time).
    quiet_epoch: u64,
    /// VMID last loaded into VTTBR_EL2 on this CPU.
    loaded_vmid: Option<u16>,
    generation: u64,
    /// Blocked in WFI / CPU_SUSPEND until an interrupt is deliverable.
    pub blocked: bool,
    /// The virtual timer's output as last sampled.
    pub timer_level: bool,
    /// The emulated EL1 physical timer, and its output as last driven.
    pub ptimer: crate::devices::ptimer::PhysTimer,
    pub ptimer_level: bool,
}

impl VcpuLocal {
    fn new(index: usize) -> Self {
        Self {
            index,
            regs: GuestRegs::default(),
            lrs: [LrEntry::default(); vgic_hw::MAX_LRS],
            lrs_loaded: 0,
            lr_count: vgic_hw::lr_count(),
            quiet_epoch: u64::MAX,
            loaded_vmid: None,
            generation: 0,
            blocked: false,
            timer_level: false,
            ptimer: crate::devices::ptimer::PhysTimer::new(),
            ptimer_level: false,
        }
    }

    /// Architectural reset of this vCPU's registers, starting at `entry` with `x0`.
    fn start_at(&mut self, entry: u64, x0: u64) {
        log::debug!("vcpu {}: start at {entry:#x} x0={x0:#x}", self.index);
        self.regs = GuestRegs::default();
        self.regs.x[0] = x0;
        self.regs.pc = entry;
        self.regs.pstate = PSTATE_EL1H_MASKED;
        El1State::reset().restore();
        vgic_hw::reset_vcpu_interface();
        self.blocked = false;
        self.set_timer_level(false);
        self.ptimer = crate::devices::ptimer::PhysTimer::new();
    }

    pub fn set_timer_level(&mut self, level: bool) {
        if level != self.timer_level {
            self.timer_level = level;
            // While the virtual interrupt is pending for the guest, keep the physical PPI off
            // so it does not fire again and again until the guest handles it.
            crate::board::gic::set_private_enabled(irq::VTIMER_INTID, self.index, !level);
        }
    }
}

/// Loads the list registers with what the vGIC model says this vCPU should see. Skipped when
/// the last fill loaded nothing and nobody touched the vGIC since (a null hypercall, say).
fn flush_lrs(vm: &Vm, me: &mut VcpuLocal) {
    if me.lrs_loaded == 0 && vm.vgic_epoch.load(Ordering::Acquire) == me.quiet_epoch {
        return;
    }
    let count = me.lr_count;
    ExitStats::count(&vm.exits.lr_fills);
    let fill = {
        let mut vgic = vm.vgic.lock();
        let fill = vgic.take_for_lrs(me.index, &mut me.lrs[..count]);
        // Nothing to load: remember the epoch, read under the lock (every later change bumps
        // it before it happens), so the next entry can skip the fill if nothing changed.
        me.quiet_epoch = if fill.count == 0 && !fill.overflow {
            vm.vgic_epoch.load(Ordering::Acquire)
        } else {
            u64::MAX
        };
        fill
    };
    for i in 0..count {
        vgic_hw::write_lr(i, (i < fill.count).then(|| &me.lrs[i]));
    }
    me.lrs_loaded = fill.count;
    vgic_hw::enable(fill.overflow);
}

/// Reads back what the guest did with the list registers, and empties them.
fn fold_lrs(vm: &Vm, me: &mut VcpuLocal) {
    if me.lrs_loaded == 0 {
        return;
    }
    // Underflow maintenance off first: emptying the list registers below must not raise a
    // maintenance interrupt of its own (which, pending on every entry, would starve the guest).
    vgic_hw::enable(false);
    let mut vgic = vm.vgic();
    for i in 0..me.lrs_loaded {
        let (pending, active) = vgic_hw::read_lr_state(i);
        let mut entry = me.lrs[i];
        entry.pending = pending;
        entry.active = active;
        vgic.fold_lr(me.index, &entry);
        vgic_hw::write_lr(i, None);
    }
    me.lrs_loaded = 0;
}

/// Waits on this physical CPU until something (an interrupt, a kick) happens.
fn wait_for_event(vm: &Vm, me: &mut VcpuLocal) {
    cpu::wfi();
    irq::handle_host_irqs(vm, me);
}

/// Stops this CPU for good (the VM is off).
fn park() -> ! {
    cpu::halt()
}

/// Runs vCPU `index` of `vm` on this physical CPU forever.
pub fn run_vcpu(vm: &'static Vm, index: usize) -> ! {
    let mut me = VcpuLocal::new(index);
    sysregs::activate_traps(index as u64);
    irq::enable_vcpu_irqs(index);
    let requests = &vm.requests[index];
    let Some(vmids) = super::vm::vmids() else {
        park()
    };
    log::debug!(
        "vcpu {index}: run loop on cpu {}",
        crate::arch::percpu::current()
    );
    loop {
        let generation = vm.generation.load(Ordering::Acquire);
        if generation != me.generation && vm.power.vm_state() == VmState::Running {
            me.generation = generation;
            fold_lrs(vm, &mut me);
            // The boot vCPU starts at the kernel; the others wait, reset, for a CPU_ON.
            let boot = *vm.boot.lock();
            let (entry, x0) = if vm.power.may_run(index) {
                (boot.entry, boot.dtb_ipa)
            } else {
                (0, 0)
            };
            me.start_at(entry, x0);
            irq::update_ptimer(vm, &mut me);
        }
        let pending = requests.take_requests();
        if pending.contains(Request::TlbFlush) {
            stage2_hw::flush_current_vmid();
        }
        match vm.power.vm_state() {
            VmState::Off => park(),
            VmState::Resetting => {
                wait_for_event(vm, &mut me);
                continue;
            }
            VmState::Running => {}
        }
        if me.generation != generation {
            continue;
        }
        if !vm.power.may_run(index) {
            match vm.power.claim_start(index) {
                Some(start) => me.start_at(start.entry, start.context_id),
                None => {
                    wait_for_event(vm, &mut me);
                    continue;
                }
            }
        }
        if me.blocked {
            irq::handle_host_irqs(vm, &mut me);
            if vm.vgic.lock().has_deliverable(index) {
                me.blocked = false;
            } else {
                wait_for_event(vm, &mut me);
                continue;
            }
        }

        let vmid = match vmids.update(index, &vm.vmid) {
            Ok(v) => v,
            Err(e) => {
                log::error!("vcpu {index}: no VMID: {e}");
                park()
            }
        };
        if me.loaded_vmid != Some(vmid) {
            stage2_hw::load(vm.vtcr, vm.stage2_root, vmid);
            me.loaded_vmid = Some(vmid);
        }
        // Fast re-entry: while exits only ask to resume, stay here. Everything the outer
        // checks look at changes only together with a request (and `enter_guest` refuses
        // while one is pending) or through this vCPU's own exit actions, and the VMID stays
        // valid: a rollover keeps every VMID active on a CPU reserved for its VM (seed 002).
        let action = loop {
            flush_lrs(vm, &mut me);
            if requests.enter_guest().is_err() {
                fold_lrs(vm, &mut me);
                break ExitAction::Resume;
            }
            let kind = run_guest(&mut me.regs);
            requests.exit_guest();
            fold_lrs(vm, &mut me);
            irq::sample_timer(vm, &mut me);
            let action = match kind {
                ExitKind::Sync => exit::handle_sync(vm, &mut me),
                ExitKind::Irq => {
                    ExitStats::count(&vm.exits.irq);
                    irq::handle_host_irqs(vm, &mut me);
                    ExitAction::Resume
                }
                ExitKind::SError => {
                    crate::guest_warn!("vcpu {index}: SError from the guest");
                    ExitAction::Resume
                }
            };
            if action != ExitAction::Resume {
                break action;
            }
        };
        match action {
            ExitAction::Resume => {}
            ExitAction::Block => me.blocked = true,
            ExitAction::CpuOff => {}
            ExitAction::SystemOff => system_off(vm, index),
            ExitAction::SystemReset => system_reset(vm, index),
        }
    }
}

/// PSCI SYSTEM_OFF (the PSCI handler already moved the VM to `Off`, and only the winning
/// caller gets here): stop every vCPU, waiting until none can still be in the guest, then
/// power the machine off (Bulkhead runs one VM).
fn system_off(vm: &Vm, index: usize) {
    make_all_request(vm.requests.iter(), Request::Stop, true, &GicKick);
    log::info!(
        "guest powered off (vcpu {index}): {} stage-2 mapping faults, {}, {} VMID rollovers; powering off",
        vm.stage2_faults.load(Ordering::Relaxed),
        vm.exits,
        super::vm::vmids().map_or(0, |v| v.stats().rollovers),
    );
    crate::board::power::power_off();
}

/// PSCI SYSTEM_RESET(2) (VM already `Resetting`): stop every vCPU, then rebuild the VM in
/// place and restart vCPU 0.
fn system_reset(vm: &Vm, index: usize) {
    make_all_request(vm.requests.iter(), Request::Reset, true, &GicKick);
    log::info!(
        "guest reset (vcpu {index}) after {} stage-2 mapping faults",
        vm.stage2_faults.swap(0, Ordering::Relaxed)
    );
    if let Err(e) = vm.reset() {
        log::error!("guest reset failed: {e}");
        crate::board::power::power_off();
    }
    // Wake everyone: vCPU 0 restarts, the others notice they are off.
    make_all_request(vm.requests.iter(), Request::Wake, false, &GicKick);
}
