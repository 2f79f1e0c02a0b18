//! Starting a secondary CPU through the DT spin-table (Raspberry Pi 4: CPUs wait in the
//! firmware stub polling `cpu-release-addr`).

use crate::arch::cpu;
use crate::mm::layout::phys_to_linear;

#[derive(Debug)]
pub enum SpinTableError {
    Misaligned(u64),
}

impl core::fmt::Display for SpinTableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Misaligned(a) => write!(f, "cpu-release-addr {a:#x} is not 8-byte aligned"),
        }
    }
}

/// Writes `entry_pa` to the release address (a RAM location in the linear window), cleans it
/// to the point of coherency (the waiting CPU has its caches off) and wakes the CPUs.
pub fn release(release_addr: u64, entry_pa: u64) -> Result<(), SpinTableError> {
    if !release_addr.is_multiple_of(8) {
        return Err(SpinTableError::Misaligned(release_addr));
    }
    let va = phys_to_linear(release_addr);
    // SAFETY: the release address is RAM described by the DT (mapped in the linear window at
    // boot) reserved for this handshake; an aligned 64-bit store is what the stub polls for.
    unsafe { core::ptr::write_volatile(va as *mut u64, entry_pa) };
    cpu::clean_dcache_to_poc(va, 8);
    cpu::sev();
    Ok(())
}
