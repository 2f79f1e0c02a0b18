//! The hypervisor heap: `buddy_system_allocator` over RAM right after the image (in the
//! linear window). It holds the VM, its stage-2 tables and the vGIC model.

use crate::dtb::PhysRange;
use crate::mm::layout::phys_to_linear;

/// Heap size carved from RAM right after the image.
pub const HEAP_SIZE: u64 = 16 << 20;

#[global_allocator]
static HEAP: buddy_system_allocator::LockedHeap<32> = buddy_system_allocator::LockedHeap::empty();

/// Why the heap could not be set up.
#[derive(Debug)]
pub enum HeapError {
    /// No RAM bank holds the 2 MiB-aligned region after the image.
    NoRoom,
    /// The region could not be mapped.
    Map(crate::mm::el2_pagetable::MapError),
}

/// Starts the heap in the first 2 MiB-aligned `HEAP_SIZE` bytes after the image, which must
/// lie in one of the `ram` banks; returns the physical range it took. Call once, on the boot
/// CPU, before anything allocates.
pub fn init(ram: &[PhysRange]) -> Result<PhysRange, HeapError> {
    let image = super::entry::image();
    let base = (image.pa + image.data.1).next_multiple_of(2 << 20);
    let heap = PhysRange {
        base,
        size: HEAP_SIZE,
    };
    if !ram
        .iter()
        .any(|bank| bank.base <= heap.base && heap.end() <= bank.end())
    {
        return Err(HeapError::NoRoom);
    }
    super::mmu::map_ram(heap.base, heap.size).map_err(HeapError::Map)?;
    static STARTED: spin::Once<()> = spin::Once::new();
    if STARTED.is_completed() {
        return Ok(heap);
    }
    STARTED.call_once(|| {
        // SAFETY: the range is RAM (checked above) just mapped read-write in the linear window;
        // it lies after the image, and nothing else uses it: the guest's RAM and the guest
        // images are placed clear of it. `STARTED` makes this run once.
        unsafe {
            HEAP.lock()
                .init(phys_to_linear(heap.base) as usize, heap.size as usize)
        };
    });
    Ok(heap)
}

/// Bytes of heap in use (what the allocator handed out and was not given back).
pub fn used_bytes() -> usize {
    HEAP.lock().stats_alloc_actual()
}
