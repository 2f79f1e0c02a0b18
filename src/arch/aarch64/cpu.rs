//! Small CPU helpers: identity, barriers, events, cache maintenance, counters.

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, MPIDR_EL1, Readable};

/// MPIDR affinity fields (Aff3..Aff0), as used in DT `reg` and PSCI.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}

pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

pub fn wfe() {
    aarch64_cpu::asm::wfe();
}

pub fn sev() {
    aarch64_cpu::asm::sev();
}

pub fn wfi() {
    aarch64_cpu::asm::wfi();
}

/// Cleans `[va, va+len)` to the point of coherency, so CPUs with their MMU (and caches) still
/// off see what this CPU wrote.
pub fn clean_dcache_to_poc(va: u64, len: u64) {
    let line = 64;
    let mut addr = va & !(line - 1);
    while addr < va + len {
        // SAFETY: DC CVAC on a mapped VA only writes dirty data back to memory.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: a barrier has no memory-safety effects.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Stops this CPU for good (interrupts masked).
pub fn halt() -> ! {
    // SAFETY: masking interrupts on a CPU that will never run anything again.
    unsafe { core::arch::asm!("msr daifset, #0xf", options(nomem, nostack)) };
    loop {
        wfi();
    }
}

/// The boot CPU's MPIDR (index 0 of the CPU table).
pub fn boot_mpidr() -> u64 {
    super::entry::boot_params().mpidr[0]
}

/// MPIDR of physical CPU `index`.
pub fn mpidr_of(index: usize) -> u64 {
    super::entry::boot_params()
        .mpidr
        .get(index)
        .copied()
        .unwrap_or(0)
}

/// The `yield` hint: lets another hardware thread (or QEMU's round-robin TCG scheduler) run
/// while this CPU busy-waits. `core::hint::spin_loop` emits `isb` on AArch64, which does not.
#[inline]
pub fn yield_hint() {
    // SAFETY: a hint instruction with no architectural side effects.
    unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
}
