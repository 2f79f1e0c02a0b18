//! Per-physical-CPU state, indexed by the CPU index the entry path found (boot CPU = 0).
//! Lives in .bss, so it survives a CPU going through hotplug (only the boot CPU zeroes .bss).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::entry::MAX_CPUS;

/// Commands the boot CPU gives an idle secondary.
pub const CMD_NONE: u32 = 0;
pub const CMD_OFFLINE: u32 = 1;

pub struct PerCpu {
    /// Set by the CPU itself once it runs on the runtime table.
    pub online: AtomicBool,
    /// How many times this CPU came up through the trampoline.
    pub boots: AtomicU32,
    /// A value written at first boot and checked at every later boot (state kept over hotplug).
    pub cookie: AtomicU64,
    /// Pending command from the boot CPU.
    pub command: AtomicU32,
}

impl PerCpu {
    const fn new() -> Self {
        Self {
            online: AtomicBool::new(false),
            boots: AtomicU32::new(0),
            cookie: AtomicU64::new(0),
            command: AtomicU32::new(CMD_NONE),
        }
    }
}

static PER_CPU: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

pub fn get(cpu: usize) -> Option<&'static PerCpu> {
    PER_CPU.get(cpu)
}

/// This CPU's index, from TPIDR_EL2 (set at entry).
pub fn current() -> usize {
    use aarch64_cpu::registers::{Readable, TPIDR_EL2};
    TPIDR_EL2.get() as usize
}

pub fn set_current(cpu: usize) {
    use aarch64_cpu::registers::{TPIDR_EL2, Writeable};
    TPIDR_EL2.set(cpu as u64);
}

pub fn online_count() -> usize {
    PER_CPU
        .iter()
        .filter(|c| c.online.load(Ordering::Acquire))
        .count()
}
