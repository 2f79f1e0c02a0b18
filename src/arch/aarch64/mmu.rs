//! The live runtime EL2 table: adding RAM and device windows after boot.

use crate::sync::SpinLock;

use super::entry::{TABLE_POOL, TABLE_POOL_USED, boot_params, image};
use crate::mm::el2_pagetable::{MapError, MapKind, TablePool};
use crate::mm::el2_tables::{map_linear, map_ram_linear};

/// Serialises edits of the runtime table (CPU 0 at boot, but keep it honest).
static TABLE_LOCK: SpinLock<()> = SpinLock::new(());

fn with_pool<R>(
    f: impl FnOnce(&mut TablePool<'_>, u64) -> Result<R, MapError>,
) -> Result<R, MapError> {
    let _guard = TABLE_LOCK.lock();
    let params = boot_params();
    // SAFETY: the pool and its use count are only touched under TABLE_LOCK once the runtime
    // runs; the pool lives in .bss, mapped read-write at its runtime VA.
    let (storage, used) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(TABLE_POOL),
            &mut *core::ptr::addr_of_mut!(TABLE_POOL_USED),
        )
    };
    let pool_pa = storage.0.as_ptr() as u64 - params.runtime_offset;
    let mut pool = TablePool::new(&mut storage.0, pool_pa, *used);
    let result = f(&mut pool, params.runtime_ttbr);
    *used = pool.used();
    // Make the new descriptors visible to the table walker before anyone uses them. Only
    // invalid entries were filled in, so no TLB invalidation is needed (no break-before-make).
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
    result
}

/// Maps an MMIO window into the linear window as Device-nGnRE; returns its VA.
pub fn map_device(pa: u64, size: u64) -> Result<u64, MapError> {
    with_pool(|pool, root| map_linear(pool, root, pa, size, MapKind::Device))
}

/// Maps a RAM region read-write into the linear window (minus the image).
pub fn map_ram(base: u64, size: u64) -> Result<(), MapError> {
    let img = image();
    with_pool(|pool, root| map_ram_linear(pool, root, (base, base + size), &img))
}

/// Whether this CPU runs on the runtime table.
pub fn on_runtime_table() -> bool {
    use aarch64_cpu::registers::{Readable, TTBR0_EL2};
    TTBR0_EL2.get() & 0x0000_ffff_ffff_f000 == boot_params().runtime_ttbr
}
