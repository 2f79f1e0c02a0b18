//! The per-physical-CPU run loop. A physical CPU is either **dedicated** to one vCPU (the only
//! one allowed on it, pinned there: static partitioning, `config::place`) or **shared** by
//! several, which the scheduler (`crate::sched`) takes turns on it.
//!
//! - Dedicated: the vCPU's EL1 registers, timer, GIC CPU interface and FP/SIMD stay live in the
//!   hardware for good; what moves on every exit is the GPRs (`arch::switch`) and the list
//!   registers (flushed from / folded into the vGIC model). It blocks in place (WFI).
//! - Shared: pick a vCPU → switch it in (`switch_in`: its EL1 state, timer, GIC CPU interface,
//!   VMPIDR, CNTVOFF; FP/SIMD and SVE only when it touches them, `load_fp`) → run it until it
//!   blocks, yields (a trapped WFE) or its slice ends (the EL2 timer, or a kick for a vCPU that
//!   deserves the CPU) → switch it out (`switch_out`) → tell the scheduler → pick again.
//!
//! One pass for a vCPU: requests (KVM's vCPU requests) → may this vCPU run (PSCI power state)?
//! → VMID of the current generation (KVM's VMID allocator) → load list registers → enter
//! (refused if a request raced in) → exit → fold list registers, sample the timer → decode the
//! exit once (`hyp::exit`) → its handler (`hyp::handle`) → carry out the action it returns. A VM
//! that stops (power-off, reboot, crash: a pvpanic write or a runaway vCPU found at injection)
//! goes through its life-cycle policy (`hyp::lifecycle`): destroyed, restarted or preserved.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::context::VcpuContext;
use super::exit::{ExitClass, GuestExit, Syndrome};
use super::handle::{CrashCause, ExitAction, fast, handle_exit};
use super::host_irq;
use super::inject::{self, Exception};
use super::lifecycle::{self, Decision};
use super::platform::Platform;
use super::runaway::{REPEATS, Runaway};
use super::serror::{self, SErrorAction};
use super::setup::{self, CpuRole};
use super::timer;
use super::vcpu::Vcpu;
use super::vm::{ExitStats, Vm};
use crate::arch::platform::{self as arch_platform, ArchPlatform};
use crate::arch::switch::{ExitKind, run_guest};
use crate::arch::{context, cpu, stage2_hw, sysregs, vgic_hw};
use crate::config::{Policy, StopCause};
use crate::sched::{Leave, Scheduler, VcpuRef};
use crate::vcpu::power::VmState;
use crate::vcpu::request::{Kick, Request, make_all_request};

/// What belongs to the physical CPU rather than to the vCPU it runs (DESIGN: current vCPU,
/// loaded VMID, last vCPU per VM).
struct PhysCpu {
    index: usize,
    /// List registers this CPU has (read once: the hardware does not change).
    lr_count: usize,
    /// Several vCPUs take turns here (else one owns the CPU).
    shared: bool,
    /// (VM id, VMID) whose stage 2 VTTBR_EL2 holds.
    stage2: Option<(usize, u16)>,
    /// The vCPU whose context (EL1 registers, GIC CPU interface) the hardware still holds.
    loaded: Option<VcpuRef>,
    /// `loaded` left without its context saved: it is pinned to this CPU alone, so no other
    /// CPU can pick it; it is saved only when another vCPU comes here.
    unsaved: bool,
    /// Per VM id: the vCPU of that VM that last ran here (stage-1 TLB hygiene).
    last_ran: Vec<Option<usize>>,
    /// Invalidate this CPU's stage-1 entries of the VMID once it is loaded.
    flush_stage1: bool,
    /// The vCPU whose FP/SIMD (or SVE) state this CPU's FP registers hold.
    fp_owner: Option<VcpuRef>,
    /// The running vCPU's FP state is live in the registers (the FP trap is off for it).
    fp_live: bool,
}

impl PhysCpu {
    fn new(index: usize, shared: bool) -> Self {
        Self {
            index,
            lr_count: vgic_hw::lr_count(),
            shared,
            stage2: None,
            loaded: None,
            unsaved: false,
            last_ran: Vec::new(),
            flush_stage1: false,
            fp_owner: None,
            fp_live: false,
        }
    }
}

/// Why a vCPU left its shared physical CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Blocked (WFI, CPU_SUSPEND), off, or waiting for its VM to stop or start.
    Blocked,
    /// A trapped WFE: someone else may go first.
    Yield,
    /// Its slice ended, or a woken vCPU deserves the CPU more.
    Preempted,
}

/// (Re)starts `vcpu` at `entry` with `x0`: its registers, EL1 system registers, GIC virtual CPU
/// interface and timer at their reset values, loaded on this CPU.
fn start_vcpu(vcpu: &mut Vcpu, pcpu: &mut PhysCpu, entry: u64, x0: u64) {
    log::debug!("vcpu {}: start at {entry:#x} x0={x0:#x}", vcpu.index);
    vcpu.reset_to(entry, x0);
    *vcpu.ctx = VcpuContext::reset();
    context::restore(&vcpu.ctx);
    // The OS lock unlocked, as `reset_to` left the vCPU's copy (and as KVM resets OSLSR_EL1):
    // a previous life, or the CPU's cold reset (OSLK = 1), must not block its debug.
    sysregs::set_os_lock(false);
    timer::set_vtimer_level(vcpu, false, &ArchPlatform);
    // A new life starts with zeroed FP/SIMD registers.
    vcpu.fp.reset();
    if pcpu.shared {
        // Loaded on its first FP instruction (`load_fp`), not another vCPU's left over.
        vcpu.fp_on = None;
        pcpu.fp_owner = None;
        pcpu.fp_live = false;
        context::set_fp_trap(true);
    } else {
        // The CPU's FP registers are this vCPU's for good.
        context::restore_fp(&vcpu.fp);
    }
}

/// Loads the list registers with what the vGIC model says this vCPU should see. Skipped when
/// the last fill loaded nothing and nobody touched the vGIC since (a null hypercall, say):
/// that check is inline, the fill is not.
#[inline(always)]
fn flush_lrs(vm: &Vm, vcpu: &mut Vcpu, pcpu: &PhysCpu) {
    if vcpu.lrs_loaded != 0 || vm.vgic_epoch.load(Ordering::Acquire) != vcpu.quiet_epoch {
        fill_lrs(vm, vcpu, pcpu);
    }
}

#[inline(never)]
fn fill_lrs(vm: &Vm, vcpu: &mut Vcpu, pcpu: &PhysCpu) {
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
    // exit, and when the CPU starts).
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
    // Folding SGIs and PPIs changes only this vCPU's interrupts, and it refills anyway (its
    // last fill loaded something); an SPI may become another vCPU's to load: they refill.
    let spi = vcpu.lrs[..vcpu.lrs_loaded]
        .iter()
        .any(|e| e.intid >= crate::vgic::PRIVATE_IRQ_COUNT);
    let mut vgic = if spi { vm.vgic() } else { vm.vgic.lock() };
    for i in 0..vcpu.lrs_loaded {
        let (pending, active) = vgic_hw::read_lr_state(i);
        let mut entry = vcpu.lrs[i];
        entry.pending = pending;
        entry.active = active;
        vgic.fold_lr(vcpu.index, &entry);
        vgic_hw::write_lr(i, None);
    }
    vcpu.lrs_loaded = 0;
    // The guest took and finished everything (an IPI's sender, say): quiet as of now, read
    // under the lock as `fill_lrs` does, so the next entry skips the fill.
    if vgic.nothing_queued(vcpu.index) {
        vcpu.quiet_epoch = vm.vgic_epoch.load(Ordering::Acquire);
    }
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

/// Runs whatever this physical CPU was given: one vCPU, a share of several, or nothing.
pub fn run_cpu(pcpu_index: usize) -> ! {
    // Every list register empty: `flush_lrs` writes only the ones it fills.
    let empty_lrs = |pcpu: &PhysCpu| {
        for i in 0..pcpu.lr_count {
            vgic_hw::write_lr(i, None);
        }
    };
    match setup::role(pcpu_index) {
        CpuRole::Dedicated(vm, index) => {
            let mut pcpu = PhysCpu::new(pcpu_index, false);
            empty_lrs(&pcpu);
            run_dedicated(vm, index, &mut pcpu)
        }
        CpuRole::Shared => {
            let mut pcpu = PhysCpu::new(pcpu_index, true);
            pcpu.last_ran =
                alloc::vec![None; setup::vms().iter().map(|v| v.id + 1).max().unwrap_or(0)];
            empty_lrs(&pcpu);
            run_shared(&mut pcpu)
        }
        CpuRole::Idle => idle(pcpu_index),
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

/// The EL2 set-up a CPU that runs vCPUs needs, whoever they are.
fn prepare_cpu(pcpu_index: usize, shared: bool) {
    sysregs::activate_traps();
    // On a shared CPU a spinning vCPU (WFE) gives way to the others.
    sysregs::set_wfe_trap(shared);
    host_irq::enable_vcpu_irqs(pcpu_index);
    if pcpu_index == arch_platform::CONSOLE_CPU {
        host_irq::enable_console_irq();
    }
}

/// Runs vCPU `index` of `vm`, the only one this physical CPU ever runs, forever.
fn run_dedicated(vm: &'static Vm, index: usize, pcpu: &mut PhysCpu) -> ! {
    let Some(vcpu) = vm.vcpus.get(index) else {
        park()
    };
    // Pinned: this CPU holds its vCPU for good.
    let mut vcpu = vcpu.lock();
    let vcpu = &mut *vcpu;
    vcpu.last_pcpu = Some(pcpu.index);
    vm.requests[index].set_pcpu(pcpu.index);
    prepare_cpu(pcpu.index, false);
    sysregs::load_vcpu_id(index);
    sysregs::set_cntvoff(vm.config.cntvoff);
    log::debug!("vcpu {index}: run loop on cpu {}", pcpu.index);
    loop {
        run_vcpu::<false>(vm, vcpu, pcpu);
    }
}

/// The VM with id `id`.
fn vm_by_id(id: usize) -> Option<&'static Vm> {
    setup::vms().iter().find(|vm| vm.id == id)
}

/// Calls `f` on the scheduler under its lock, then kicks the CPUs it says should look again
/// (an idle CPU that can take a waiting vCPU, a busy one that must now arm its slice timer).
fn with_sched<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let (result, kicks) = {
        let mut s = setup::scheduler().lock();
        let result = f(&mut s);
        (result, s.take_kicks())
    };
    for cpu in kicks.iter() {
        ArchPlatform.kick(cpu);
    }
    result
}

/// Takes turns between the vCPUs the scheduler gives this physical CPU, forever.
fn run_shared(pcpu: &mut PhysCpu) -> ! {
    prepare_cpu(pcpu.index, true);
    context::set_fp_trap(true);
    log::debug!("cpu {}: shared", pcpu.index);
    loop {
        let now = cpu::counter();
        scan_wakeups(pcpu.index, now);
        let (slice, deadline) = with_sched(|s| {
            let slice = s.pick(pcpu.index, now);
            (slice, s.next_deadline(pcpu.index, now))
        });
        arch_platform::set_sched_deadline(deadline);
        let Some(slice) = slice else {
            // Nothing to run: sleep until a kick, a console byte or the deadline.
            cpu::wfi();
            host_irq::handle_host_irqs(None);
            continue;
        };
        let me = slice.vcpu;
        let Some(vcpu) = vm_by_id(me.vm).and_then(|vm| Some((vm, vm.vcpus.get(me.vcpu)?))) else {
            with_sched(|s| s.leave(pcpu.index, now, Leave::Block { until: None }));
            continue;
        };
        let (vm, vcpu) = vcpu;
        let mut vcpu = vcpu.lock();
        switch_in(vm, &mut vcpu, pcpu);
        let left = run_vcpu::<true>(vm, &mut vcpu, pcpu);
        let until = switch_out(vm, &mut vcpu, pcpu, left);
        drop(vcpu);
        let end = cpu::counter();
        if let Some(run) = vm.run_stats.get(me.vcpu) {
            run.shared_ticks
                .fetch_add(end.saturating_sub(now), Ordering::Relaxed);
        }
        let why = match left {
            Left::Blocked => Leave::Block { until },
            Left::Yield => Leave::Yield,
            Left::Preempted => Leave::Preempted,
        };
        with_sched(|s| s.leave(pcpu.index, end, why));
    }
}

/// Makes runnable the vCPUs blocked on this CPU that have a waking request pending (an
/// interrupt became deliverable, a CPU_ON, a stop), and kicks the CPUs that should look.
fn scan_wakeups(pcpu_index: usize, now: u64) {
    let look = with_sched(|s| {
        s.wake_blocked_on(pcpu_index, now, |v| {
            vm_by_id(v.vm)
                .and_then(|vm| vm.requests.get(v.vcpu))
                .is_some_and(|r| r.pending().iter().any(|r| r.wakes_blocked_vcpu()))
        })
    });
    for cpu in look.iter().filter(|&c| c != pcpu_index) {
        ArchPlatform.kick(cpu);
    }
}

/// Whether the vCPU running on this shared CPU should leave it now (its slice ended and
/// someone waits, or a woken vCPU deserves the CPU); else re-arms the scheduler's deadline.
fn preempt_due(pcpu_index: usize) -> bool {
    let now = cpu::counter();
    scan_wakeups(pcpu_index, now);
    let deadline = with_sched(|s| {
        (!s.should_preempt(pcpu_index, now)).then(|| s.next_deadline(pcpu_index, now))
    });
    match deadline {
        None => true,
        Some(deadline) => {
            arch_platform::set_sched_deadline(deadline);
            false
        }
    }
}

/// Makes `vcpu` this CPU's: its context into the hardware (skipped when the CPU still holds
/// it: it was the last here and ran nowhere else since), its identity and counter offset, its
/// timer's interrupt, FP/SIMD trapped unless this CPU's FP registers still hold its state.
fn switch_in(vm: &Vm, vcpu: &mut Vcpu, pcpu: &mut PhysCpu) {
    let me = VcpuRef {
        vm: vm.id,
        vcpu: vcpu.index,
    };
    if pcpu.unsaved && pcpu.loaded != Some(me) {
        // The pinned vCPU that left without saving: save it now, before this one's state
        // replaces it (it runs nowhere else, so its lock is free).
        if let Some(prev) = pcpu.loaded
            && let Some(prev_vcpu) = vm_by_id(prev.vm).and_then(|vm| vm.vcpus.get(prev.vcpu))
        {
            context::save(&mut prev_vcpu.lock().ctx);
        }
        pcpu.unsaved = false;
    }
    let held = pcpu.loaded == Some(me) && vcpu.last_pcpu == Some(pcpu.index);
    if held && pcpu.unsaved {
        // It left and came back with no one in between, and nothing was saved: its state is
        // all still here.
        pcpu.unsaved = false;
    } else if held {
        context::resume_held(&vcpu.ctx);
    } else {
        context::restore(&vcpu.ctx);
        sysregs::set_os_lock(vcpu.os_lock);
        sysregs::load_vcpu_id(vcpu.index);
        sysregs::set_cntvoff(vm.config.cntvoff);
        pcpu.loaded = Some(me);
    }
    vcpu.last_pcpu = Some(pcpu.index);
    vm.requests[vcpu.index].set_pcpu(pcpu.index);
    if let Some(run) = vm.run_stats.get(vcpu.index) {
        run.cpu.store(pcpu.index, Ordering::Relaxed);
    }
    ArchPlatform.set_vtimer_irq_enabled(!vcpu.timers.vtimer_level);
    // Stage-1 hygiene: another vCPU of this VM ran here last (see `flush_local_stage1`).
    if let Some(last) = pcpu.last_ran.get_mut(vm.id) {
        if last.is_some_and(|other| other != vcpu.index) {
            pcpu.flush_stage1 = true;
        }
        *last = Some(vcpu.index);
    }
    let fp_here = pcpu.fp_owner == Some(me) && vcpu.fp_on == Some(pcpu.index);
    context::set_fp_trap(!fp_here);
    pcpu.fp_live = fp_here;
    // The list registers are empty; the first entry writes the GIC's control register anew.
    vcpu.quiet_epoch = u64::MAX;
    timer::update_ptimer(vm, vcpu, &ArchPlatform);
}

/// Takes `vcpu` off this CPU: saves its context — at once if another CPU may pick it next,
/// else (pinned here alone) only when another vCPU comes here, so coming back costs nothing —
/// and its FP state if it used it here; returns when a blocked vCPU must be woken at the latest
/// (its virtual timer, emulated physical timer or WFIT timeout).
fn switch_out(vm: &Vm, vcpu: &mut Vcpu, pcpu: &mut PhysCpu, left: Left) -> Option<u64> {
    let pinned_here = vm
        .config
        .allowed
        .get(vcpu.index)
        .is_some_and(|set| set.len() == 1 && set.contains(pcpu.index));
    let timer_regs = if pinned_here {
        pcpu.unsaved = true;
        context::vtimer_regs()
    } else {
        context::save(&mut vcpu.ctx);
        vcpu.ctx.timer
    };
    if pcpu.fp_live {
        context::save_fp(&mut vcpu.fp);
        pcpu.fp_live = false;
        context::set_fp_trap(true);
    }
    // Whatever runs next here must not take this vCPU's timer interrupt or deadline.
    ArchPlatform.set_vtimer_irq_enabled(false);
    ArchPlatform.set_hyp_timer(None);
    if left != Left::Blocked {
        return None;
    }
    let now = cpu::counter();
    let t = timer_regs;
    let vtimer = timer::vtimer_deadline(t.ctl, t.cval, vm.config.cntvoff, vcpu.timers.vtimer_level);
    [vtimer, vcpu.timers.ptimer.deadline(now), vcpu.wake_at]
        .into_iter()
        .flatten()
        .min()
}

/// The vCPU's first FP/SIMD (or SVE) instruction since it came to this CPU trapped: load its
/// state and let it run untrapped. The previous owner's state was saved
/// when it left the CPU.
fn load_fp(vm: &Vm, vcpu: &mut Vcpu, pcpu: &mut PhysCpu) {
    context::set_fp_trap(false);
    context::restore_fp(&vcpu.fp);
    vcpu.fp_on = Some(pcpu.index);
    pcpu.fp_owner = Some(VcpuRef {
        vm: vm.id,
        vcpu: vcpu.index,
    });
    pcpu.fp_live = true;
}

/// How the inner loop of [`run_vcpu`] ended.
enum Stop {
    Action(ExitAction),
    Runaway(Runaway),
    Preempt,
}

/// Runs `vcpu` on this physical CPU: pass after pass. On a dedicated CPU (`SHARED` false) it
/// never returns (a blocked vCPU waits in place); on a shared one it returns when the vCPU
/// leaves the CPU. Two copies, so the dedicated one carries none of the shared one's checks on
/// its hot path (a dedicated CPU keeps its cost).
fn run_vcpu<const SHARED: bool>(vm: &'static Vm, vcpu: &mut Vcpu, pcpu: &mut PhysCpu) -> Left {
    let p = &ArchPlatform;
    let index = vcpu.index;
    let requests = &vm.requests[index];
    let Some(vmids) = setup::vmids() else { park() };
    // `Vm::new` makes one set of counters per vCPU.
    let Some(stats) = vm.exits.get(index) else {
        park()
    };
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
            start_vcpu(vcpu, pcpu, entry, x0);
            timer::update_ptimer(vm, vcpu, p);
        }
        let pending = requests.take_requests();
        vcpu.take_requests_noted(pending);
        if pending.contains(Request::TlbFlush) {
            // The flush names the VMID in VTTBR_EL2: make it this VM's first.
            load_stage2(vm, pcpu, vmids);
            stage2_hw::flush_current_vmid();
        }
        match vm.power.vm_state() {
            VmState::Off if SHARED => return Left::Blocked,
            VmState::Off => park(),
            VmState::Stopping if SHARED => return Left::Blocked,
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
                Some(start) => start_vcpu(vcpu, pcpu, start.entry, start.context_id),
                None if SHARED => return Left::Blocked,
                None => {
                    wait_for_event(vm, vcpu);
                    continue;
                }
            }
        }
        if vcpu.blocked {
            // Host interrupts that arrived since the exit may wake it (a wait just handled
            // them already); on a shared CPU its virtual timer may have fired while it was away.
            if !waited {
                host_irq::handle_host_irqs(Some((vm, &mut *vcpu)));
            }
            if SHARED {
                timer::sample_vtimer(vm, vcpu, p);
                timer::update_ptimer(vm, vcpu, p);
            }
            let deliverable = vm.vgic.lock().has_deliverable(index);
            if vcpu.wake_up(cpu::counter(), deliverable) {
                vcpu.blocked = false;
            } else if SHARED {
                return Left::Blocked;
            } else {
                wait_for_event(vm, vcpu);
                waited = true;
                continue;
            }
        }
        waited = false;

        if !load_stage2(vm, pcpu, vmids) {
            park()
        }
        // Fast re-entry: while exits only ask to resume, stay here. Everything the outer
        // checks look at changes only together with a request (and `enter_guest` refuses
        // while one is pending) or through this vCPU's own exit actions, and the VMID stays
        // valid: a rollover keeps every VMID active on a CPU reserved for its VM (KVM arm64 VMID allocator, 2021).
        let stop = loop {
            flush_lrs(vm, vcpu, pcpu);
            if requests.enter_guest().is_err() {
                fold_lrs(vm, vcpu);
                break Stop::Action(ExitAction::Resume);
            }
            let kind = run_guest(&mut vcpu.regs);
            requests.exit_guest();
            fold_lrs(vm, vcpu);
            timer::sample_vtimer(vm, vcpu, p);
            let action = match kind {
                ExitKind::Sync => {
                    let esr = sysregs::exit_esr();
                    if log::log_enabled!(log::Level::Trace) {
                        trace_exit(index, vcpu.regs.pc);
                    }
                    match fast::try_handle(esr, sysregs::exit_fault_address, stats, vm, vcpu, p) {
                        // Answered: straight back into the guest (a shared CPU still looks
                        // for a self-kick below).
                        Some(ExitAction::Resume) if !SHARED => continue,
                        Some(action) => action,
                        None => {
                            let (far, hpfar) = sysregs::exit_fault_address();
                            let exit = GuestExit::decode(Syndrome { esr, far, hpfar });
                            if exit.class == ExitClass::FpAccess && SHARED {
                                load_fp(vm, vcpu, pcpu);
                                ExitAction::Resume
                            } else {
                                handle_exit(&exit, vm, vcpu, p)
                            }
                        }
                    }
                }
                ExitKind::Irq => {
                    ExitStats::count(&stats.irq);
                    host_irq::handle_host_irqs(Some((vm, &mut *vcpu)));
                    if SHARED && preempt_due(pcpu.index) {
                        break Stop::Preempt;
                    }
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
                        break Stop::Runaway(runaway);
                    }
                }
                // Nobody else may want a dedicated CPU (WFE is not even trapped there).
                ExitAction::Yield if !SHARED => {}
                other => break Stop::Action(other),
            }
            // This exit made a request for a vCPU waiting on this same CPU (an IPI, CPU_ON, a
            // doorbell): the scheduler must hear of it now, not at the next interrupt.
            if SHARED && arch_platform::take_self_kick() && preempt_due(pcpu.index) {
                break Stop::Preempt;
            }
        };
        let action = match stop {
            Stop::Action(action) => action,
            Stop::Preempt => return Left::Preempted,
            Stop::Runaway(runaway) => {
                crashed(vm, vcpu, Crash::Runaway(runaway));
                continue;
            }
        };
        match action {
            ExitAction::Resume | ExitAction::Inject(_) => {}
            ExitAction::Yield => return Left::Yield,
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

/// `loglevel=trace`: one line per exit, decoded again out of line (in the loop, a `trace!` of
/// the decoded exit kept it in memory on every exit's path).
#[cold]
#[inline(never)]
fn trace_exit(index: usize, pc: u64) {
    let (esr, far, hpfar) = sysregs::exit_syndrome();
    log::trace!(
        "vcpu {index}: {:x?} at {pc:#x}",
        GuestExit::decode(Syndrome { esr, far, hpfar })
    );
}

/// Makes sure VTTBR_EL2 holds `vm`'s stage 2 with a VMID of the current generation (KVM's
/// `kvm_arm_vmid_update` on every entry), then does a pending stage-1 flush for it. False if
/// no VMID can be had (an allocator bug: it is logged). Inline: on every pass.
#[inline(always)]
fn load_stage2(
    vm: &Vm,
    pcpu: &mut PhysCpu,
    vmids: &crate::vmid::VmidAllocator<stage2_hw::BroadcastTlb>,
) -> bool {
    let vmid = match vmids.update(pcpu.index, &vm.vmid) {
        Ok(v) => v,
        Err(e) => {
            log::error!("{}: no VMID: {e}", vm.config.name);
            return false;
        }
    };
    if pcpu.stage2 != Some((vm.id, vmid)) {
        stage2_hw::load(vm.vtcr, vm.stage2_root, vmid);
        pcpu.stage2 = Some((vm.id, vmid));
    }
    if pcpu.flush_stage1 {
        stage2_hw::flush_local_stage1();
        pcpu.flush_stage1 = false;
    }
    true
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
