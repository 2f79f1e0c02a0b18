//! [`Platform`] on the real machine: the arch and board code behind the exit core's one
//! interface to hardware. Host RAM is reached only inside the ranges registered here at VM
//! creation (the guest's RAM, the images Bulkhead reserved), so a wrong address from the core
//! is refused rather than scribbling over the hypervisor.

use super::{cpu, entry, percpu, stage2_hw, sysregs};
use crate::board::{console, gic};
use crate::dtb::PhysRange;
use crate::hyp::exit::SysRegId;
use crate::hyp::platform::{ConsoleRx, Platform};
use crate::hyp::timer::VTIMER_INTID;
use crate::mm::layout::phys_to_linear;
use crate::sync::SpinLock;
use crate::vcpu::request::Kick;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// The CSPRNG guests' seeds come from (a kept crate: ChaCha20, as Linux's own CRNG uses).
static RNG: SpinLock<Option<ChaCha20Rng>> = SpinLock::new(None);

/// Seeds the CSPRNG with what the machine offers: the host DTB's `/chosen/rng-seed` (QEMU and
/// most firmware write one) and, on CPUs with FEAT_RNG, four RNDR values. The bytes are folded
/// (XOR) into the 256-bit key: each source adds what entropy it has. False if there was none.
pub fn seed_entropy(host_seed: &[u8]) -> bool {
    let mut key = [0u8; 32];
    let mut have = false;
    for (i, b) in host_seed.iter().enumerate() {
        key[i % 32] ^= b;
        have = true;
    }
    for i in 0..4 {
        if let Some(word) = sysregs::rndr() {
            for (j, b) in word.to_le_bytes().iter().enumerate() {
                key[i * 8 + j] ^= b;
            }
            have = true;
        }
    }
    if have {
        *RNG.lock() = Some(ChaCha20Rng::from_seed(key));
    }
    have
}

/// The CPU that owns the console: its receive interrupt is routed there, and it shows held
/// partial lines when they are due.
pub const CONSOLE_CPU: usize = 0;
const NEVER: u64 = u64::MAX;

/// Per CPU: the deadline of the emulated physical timer of the vCPU it runs.
static PTIMER_DEADLINE: [AtomicU64; super::entry::MAX_CPUS] =
    [const { AtomicU64::new(NEVER) }; super::entry::MAX_CPUS];
/// Per CPU shared by several vCPUs: when its scheduler must look again (the running vCPU's
/// slice end, or the earliest timeout of a vCPU blocked on it).
static SCHED_DEADLINE: [AtomicU64; super::entry::MAX_CPUS] =
    [const { AtomicU64::new(NEVER) }; super::entry::MAX_CPUS];
/// When the console must show held partial lines.
static CONSOLE_DEADLINE: AtomicU64 = AtomicU64::new(NEVER);
/// The console deadline the console CPU's timer was last armed with.
static CONSOLE_ARMED: AtomicU64 = AtomicU64::new(NEVER);
/// When the earliest guest RTC match comes due (the console CPU's timer serves it too).
static RTC_DEADLINE: AtomicU64 = AtomicU64::new(NEVER);
/// The RTC deadline the console CPU's timer was last armed with.
static RTC_ARMED: AtomicU64 = AtomicU64::new(NEVER);

/// Sets one of the deadlines the console CPU's EL2 timer serves (`slot`) and has that timer
/// re-armed: here, or by the console CPU when the kick arrives.
fn set_console_cpu_deadline(slot: &AtomicU64, deadline: Option<u64>) {
    slot.store(deadline.unwrap_or(NEVER), Ordering::Release);
    if percpu::current() == CONSOLE_CPU {
        rearm_hyp_timer();
    } else {
        gic::kick(CONSOLE_CPU, cpu::mpidr_of(CONSOLE_CPU));
    }
}

/// Sets when this CPU's scheduler must look again (`None`: no deadline) and re-arms its timer.
pub fn set_sched_deadline(deadline: Option<u64>) {
    if let Some(slot) = SCHED_DEADLINE.get(percpu::current()) {
        slot.store(deadline.unwrap_or(NEVER), Ordering::Release);
    }
    rearm_hyp_timer();
}

/// Programs this CPU's EL2 timer for the earliest of what it serves: its vCPU's emulated
/// physical timer, its scheduler's deadline and, on the console CPU, the console's partial-line deadline and the guest
/// RTCs' match deadline.
pub fn rearm_hyp_timer() {
    let cpu = percpu::current();
    let mut deadline = PTIMER_DEADLINE
        .get(cpu)
        .map_or(NEVER, |d| d.load(Ordering::Acquire))
        .min(
            SCHED_DEADLINE
                .get(cpu)
                .map_or(NEVER, |d| d.load(Ordering::Acquire)),
        );
    if cpu == CONSOLE_CPU {
        let console = CONSOLE_DEADLINE.load(Ordering::Acquire);
        CONSOLE_ARMED.store(console, Ordering::Relaxed);
        let rtc = RTC_DEADLINE.load(Ordering::Acquire);
        RTC_ARMED.store(rtc, Ordering::Relaxed);
        deadline = deadline.min(console).min(rtc);
    }
    sysregs::set_hyp_timer((deadline != NEVER).then_some(deadline));
}

/// Whether another CPU moved the console's or the RTCs' deadline since the console CPU last
/// armed its timer (so a kick need not re-arm it otherwise: most kicks are IPIs for the guest).
pub fn console_deadline_moved() -> bool {
    CONSOLE_DEADLINE.load(Ordering::Acquire) != CONSOLE_ARMED.load(Ordering::Relaxed)
        || RTC_DEADLINE.load(Ordering::Acquire) != RTC_ARMED.load(Ordering::Relaxed)
}

/// Whether a guest RTC's match is due.
pub fn rtc_due() -> bool {
    RTC_DEADLINE.load(Ordering::Acquire) <= cpu::counter()
}

/// Whether the console's held partial lines are due.
pub fn console_due() -> bool {
    CONSOLE_DEADLINE.load(Ordering::Acquire) <= cpu::counter()
}

/// Host RAM ranges the core may read (reserved images) and write (guest RAM).
struct Windows {
    readable: [Option<PhysRange>; 16],
    writable: [Option<PhysRange>; 8],
}

static WINDOWS: SpinLock<Windows> = SpinLock::new(Windows {
    readable: [None; 16],
    writable: [None; 8],
});

fn covers(ranges: &[Option<PhysRange>], pa: u64, size: u64) -> bool {
    ranges
        .iter()
        .flatten()
        .any(|r| pa >= r.base && pa.checked_add(size).is_some_and(|end| end <= r.end()))
}

fn add(ranges: &mut [Option<PhysRange>], range: PhysRange) -> bool {
    match ranges.iter_mut().find(|r| r.is_none()) {
        Some(slot) => {
            *slot = Some(range);
            true
        }
        None => false,
    }
}

/// Registers host RAM holding guest images (read by `host_ram`). False when full.
pub fn allow_reading(range: PhysRange) -> bool {
    add(&mut WINDOWS.lock().readable, range)
}

/// Registers a VM's RAM (written by `write_ram`, cleaned by `clean_ram_to_poc`).
pub fn allow_writing(range: PhysRange) -> bool {
    add(&mut WINDOWS.lock().writable, range)
}

/// This machine (zero-sized: every call goes straight to the hardware of the calling CPU).
#[derive(Clone, Copy, Default)]
pub struct ArchPlatform;

/// Per CPU: something asked this CPU itself to look again (a request for a vCPU it last ran,
/// made by its own exit handling): an IPI to ourselves would be pointless, the run loop of a
/// shared CPU checks this after each exit instead.
static SELF_KICK: [AtomicBool; super::entry::MAX_CPUS] =
    [const { AtomicBool::new(false) }; super::entry::MAX_CPUS];

/// Takes this CPU's note that it kicked itself (see `SELF_KICK`).
#[inline(always)]
pub fn take_self_kick() -> bool {
    SELF_KICK
        .get(percpu::current())
        .is_some_and(|k| k.load(Ordering::Relaxed) && k.swap(false, Ordering::Relaxed))
}

impl Kick for ArchPlatform {
    /// The GIC kick SGI to physical CPU `pcpu`; to ourselves (we are not in a guest) only a
    /// note the run loop reads (`take_self_kick`).
    fn kick(&self, pcpu: usize) {
        if pcpu != percpu::current() {
            gic::kick(pcpu, cpu::mpidr_of(pcpu));
        } else if let Some(k) = SELF_KICK.get(pcpu) {
            k.store(true, Ordering::Relaxed);
        }
    }
}

impl Platform for ArchPlatform {
    fn counter(&self) -> u64 {
        cpu::counter()
    }

    fn vtimer_ctl(&self) -> u64 {
        sysregs::vtimer_ctl()
    }

    fn set_vtimer_irq_enabled(&self, enabled: bool) {
        gic::set_private_enabled(VTIMER_INTID, percpu::current(), enabled);
    }

    fn set_hyp_timer(&self, deadline: Option<u64>) {
        if let Some(slot) = PTIMER_DEADLINE.get(percpu::current()) {
            slot.store(deadline.unwrap_or(NEVER), Ordering::Release);
        }
        rearm_hyp_timer();
    }

    fn clean_ram_to_poc(&self, pa: u64, size: u64) {
        if covers(&WINDOWS.lock().writable, pa, size) {
            stage2_hw::clean_for_guest(phys_to_linear(pa), size);
        } else {
            log::error!("refused to clean {pa:#x}+{size:#x}: not guest RAM");
        }
    }

    fn zero_ram(&self, pa: u64, size: u64) {
        if covers(&WINDOWS.lock().writable, pa, size) {
            stage2_hw::zero_to_poc(phys_to_linear(pa), size);
        } else {
            log::error!("refused to zero {pa:#x}+{size:#x}: not guest RAM");
        }
    }

    fn guest_sctlr_el1(&self) -> u64 {
        sysregs::sctlr_el1()
    }

    fn set_os_lock(&self, locked: bool) {
        sysregs::set_os_lock(locked);
    }

    fn guest_stage1_regs(&self) -> crate::hyp::walk_level::Stage1Regs {
        sysregs::guest_stage1_regs()
    }

    fn guest_ram_u64(&self, pa: u64) -> Option<u64> {
        if !pa.is_multiple_of(8) || !covers(&WINDOWS.lock().writable, pa, 8) {
            return None;
        }
        // SAFETY: an aligned word of a registered guest RAM range, mapped in the linear
        // window; a racing guest write only changes which value is read.
        Some(unsafe { (phys_to_linear(pa) as *const u64).read_volatile() })
    }

    fn host_actlr_el1(&self) -> u64 {
        sysregs::actlr_el1()
    }

    fn host_ram(&self, pa: u64, size: u64) -> &[u8] {
        if !covers(&WINDOWS.lock().readable, pa, size) {
            log::error!("refused to read {pa:#x}+{size:#x}: not a reserved image");
            return &[];
        }
        // SAFETY: a registered image range: RAM mapped in the linear window at boot, reserved
        // by Bulkhead and never written while it runs.
        unsafe { entry::linear_slice(phys_to_linear(pa), size as usize) }
    }

    fn write_ram(&self, pa: u64, bytes: &[u8]) {
        let size = bytes.len() as u64;
        if !covers(&WINDOWS.lock().writable, pa, size) {
            log::error!("refused to write {pa:#x}+{size:#x}: not guest RAM");
            return;
        }
        let va = phys_to_linear(pa);
        // SAFETY: a registered guest RAM range, mapped in the linear window at boot and owned
        // by Bulkhead; images are written only while no vCPU of the VM runs (creation, reset).
        unsafe { entry::copy_to_linear(va, bytes) };
        stage2_hw::clean_for_guest(va, size);
    }

    fn with_guest_ram(&self, pa: u64, size: u64, f: &mut dyn FnMut(&mut [u8])) -> bool {
        if !covers(&WINDOWS.lock().writable, pa, size) {
            log::error!("refused to write {pa:#x}+{size:#x}: not guest RAM");
            return false;
        }
        // SAFETY: a registered guest RAM range, mapped in the linear window at boot and owned
        // by Bulkhead; images are written only while no vCPU of the VM runs (creation, reset),
        // so nothing else accesses it while the slice lives (this call).
        let ram = unsafe {
            core::slice::from_raw_parts_mut(phys_to_linear(pa) as *mut u8, size as usize)
        };
        f(ram);
        true
    }

    fn copy_ram(&self, dst: &mut [u8], src: &[u8]) {
        crate::arch::copy::copy_wide(dst, src);
    }

    fn console_write(&self, bytes: &[u8]) {
        console::write_bytes(bytes);
    }

    fn console_getc(&self) -> Option<ConsoleRx> {
        console::getc().map(|rx| match rx {
            console::Received::Byte(b) => ConsoleRx::Byte(b),
            console::Received::Break => ConsoleRx::Break,
        })
    }

    fn console_has_input(&self) -> bool {
        console::has_input()
    }

    fn set_console_deadline(&self, deadline: Option<u64>) {
        set_console_cpu_deadline(&CONSOLE_DEADLINE, deadline);
    }

    fn set_rtc_deadline(&self, deadline: Option<u64>) {
        set_console_cpu_deadline(&RTC_DEADLINE, deadline);
    }

    fn fill_random(&self, out: &mut [u8]) -> bool {
        match RNG.lock().as_mut() {
            Some(rng) => {
                rng.fill_bytes(out);
                true
            }
            None => false,
        }
    }

    fn id_register(&self, id: SysRegId) -> u64 {
        if crate::hyp::cpu_features::reads_hardware(id) {
            sysregs::id_register(id.crm, id.op2)
        } else {
            0
        }
    }

    fn set_console_rx_irq(&self, enabled: bool) {
        if enabled {
            console::enable_rx_irq();
        } else {
            console::disable_rx_irq();
        }
    }
}
