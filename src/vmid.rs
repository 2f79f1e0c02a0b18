//! Generation-based VMID allocator (KVM's `arch/arm64/kvm/vmid.c`).
//!
//! Every VM needs a VMID in VTTBR_EL2 so that its stage-2 TLB entries are told apart from other
//! VMs'. There are few VMIDs (2..=16 bits), so they are recycled in *generations*: each VM keeps
//! `generation | vmid` in a [`VmVmid`]; a VMID is only valid while its generation is the
//! current one. When the space runs out the allocator starts a new generation (a *rollover*):
//! - every VMID that some physical CPU is using at that moment is kept, as that CPU's
//!   *reserved* VMID, for the VM that owns it (a vCPU may still be in the guest with it);
//! - all other VMIDs become free, and ONE broadcast TLB invalidation ([`VmidTlb`]) removes their
//!   stale entries before any of them is handed out again.
//!
//! The per-entry path ([`VmidAllocator::update`]) is lock-free when the VM's VMID is current:
//! it only swaps this CPU's `active` VMID with a compare-and-swap, which fails if a rollover
//! zeroed it meanwhile. Everything else runs under one lock, and re-reads the VM's VMID under
//! that lock before allocating (another vCPU of the VM may just have refreshed it;
//! allocating a second VMID would let two vCPUs of one VM run with different VMIDs).
//!
//! A review point of the KVM arm64 VMID allocator (2021) is implemented: after a rollover the allocator counts the CPUs whose
//! reserved VMID is still from an old generation, and skips the scan of reserved VMIDs when
//! that count is zero, so the common slow path does not walk all CPUs.
//!
//! The generation counter is a `u64` that advances by `1 << bits` per rollover; it would take
//! 2^48 (16-bit VMIDs) to 2^62 (2-bit) rollovers to wrap, so wrap-around is not handled.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::sync::{AtomicU64, Mutex, Ordering};

/// Narrowest VMID width the allocator accepts (3 usable VMIDs).
pub const MIN_VMID_BITS: u8 = 2;
/// Widest VMID width the architecture has (VTCR_EL2.VS = 1).
pub const MAX_VMID_BITS: u8 = 16;

/// The hardware effect of a rollover, supplied by the arch layer (a fake in tests).
pub trait VmidTlb {
    /// Invalidates the stage-1 and stage-2 TLB entries of every VMID on every physical CPU
    /// (inner-shareable broadcast, e.g. `tlbi alle1is; dsb ish; ic ialluis; dsb ish; isb`) and
    /// returns only when that is complete. Called with the allocator lock held, once per
    /// rollover, before any recycled VMID is handed out.
    fn flush_all_vmids(&self);
}

/// Why a VMID allocator could not be built or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmidError {
    /// The VMID width is outside `MIN_VMID_BITS..=MAX_VMID_BITS`.
    BitsOutOfRange {
        /// The width asked for.
        bits: u8,
    },
    /// The allocator was asked to serve no physical CPU.
    NoCpus,
    /// A rollover could not always find a free VMID: the space must hold more usable VMIDs
    /// (all but VMID 0) than there are physical CPUs, because each CPU may reserve one.
    TooFewVmids {
        /// Usable VMIDs at this width (`2^bits - 1`).
        usable: usize,
        /// Physical CPUs the allocator was built for.
        cpu_count: usize,
    },
    /// A physical CPU index at or beyond the count given at construction.
    CpuOutOfRange {
        /// The index passed.
        cpu: usize,
        /// Physical CPUs the allocator was built for.
        cpu_count: usize,
    },
}

impl fmt::Display for VmidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BitsOutOfRange { bits } => write!(
                f,
                "VMID width {bits} is outside {MIN_VMID_BITS}..={MAX_VMID_BITS} bits"
            ),
            Self::NoCpus => write!(f, "VMID allocator needs at least one CPU"),
            Self::TooFewVmids { usable, cpu_count } => write!(
                f,
                "{usable} usable VMIDs cannot serve {cpu_count} CPUs (need more VMIDs than CPUs)"
            ),
            Self::CpuOutOfRange { cpu, cpu_count } => {
                write!(
                    f,
                    "CPU {cpu} is out of range (allocator has {cpu_count} CPUs)"
                )
            }
        }
    }
}

/// A VM's VMID as the allocator tracks it: `generation | vmid`, or 0 before the first
/// allocation. One per VM, shared by all its vCPUs.
pub struct VmVmid {
    id: AtomicU64,
}

impl VmVmid {
    /// A VM that has never run: its first [`VmidAllocator::update`] allocates.
    pub fn new() -> Self {
        Self {
            id: AtomicU64::new(0),
        }
    }

    /// The raw `generation | vmid` value (0 = never allocated), for diagnostics and tests.
    pub fn raw(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// Gives up the VMID: the next [`VmidAllocator::update`] allocates a fresh one. A reset VM
    /// does this so no TLB entry of its previous life can match it; the old VMID stays taken
    /// until the next rollover, whose broadcast invalidation makes it safe to reuse. Call only
    /// while no vCPU of the VM can be in `update` or in the guest.
    pub fn retire(&self) {
        self.id.store(0, Ordering::Release);
    }
}

impl Default for VmVmid {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of the allocator's slow path, to show (in tests and benchmarks) what it did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VmidStats {
    /// Calls to [`VmidAllocator::update`] that took the lock.
    pub slow_paths: u64,
    /// New generations started (each with one broadcast TLB invalidation).
    pub rollovers: u64,
    /// Times the reserved VMIDs were scanned for a VM coming back after a rollover.
    pub reserved_scans: u64,
    /// Reserved entries looked at by those scans, summed.
    pub reserved_scan_iterations: u64,
}

/// One CPU's active VMID, alone on its cache line so that the lock-free fast paths of
/// different CPUs do not contend.
#[repr(align(64))]
struct ActiveVmid(AtomicU64);

/// Everything only the lock holder touches.
struct SlowState {
    /// Bit `i` set: VMID `i` is taken in the current generation. Bit 0 is always set.
    used: Vec<u64>,
    /// VMIDs at this width (`2^bits`); `used` is padded to whole words beyond it.
    vmid_count: usize,
    /// Per CPU: the VMID it was running at the last rollover, kept for its VM.
    reserved: Vec<u64>,
    /// CPUs whose reserved VMID is from an old generation.
    stale_reserved_count: usize,
    /// Where the search for a free VMID resumes.
    next_index: usize,
    stats: VmidStats,
}

/// The VMID allocator shared by all physical CPUs.
pub struct VmidAllocator<T> {
    bits: u8,
    /// Current generation, a multiple of `1 << bits` (starts at `1 << bits`). Only changes
    /// under the lock.
    generation: AtomicU64,
    /// Per CPU: the `generation | vmid` it runs, 0 if a rollover cleared it since.
    active: Vec<ActiveVmid>,
    slow: Mutex<SlowState>,
    tlb: T,
}

impl<T: VmidTlb> VmidAllocator<T> {
    /// Builds an allocator for `bits`-wide VMIDs serving `cpu_count` physical CPUs.
    ///
    /// Fails unless `MIN_VMID_BITS <= bits <= MAX_VMID_BITS` and there are more usable VMIDs
    /// (`2^bits - 1`, VMID 0 is never handed out) than CPUs; e.g. 2 bits serve at most 2 CPUs.
    pub fn new(bits: u8, cpu_count: usize, tlb: T) -> Result<Self, VmidError> {
        if !(MIN_VMID_BITS..=MAX_VMID_BITS).contains(&bits) {
            return Err(VmidError::BitsOutOfRange { bits });
        }
        if cpu_count == 0 {
            return Err(VmidError::NoCpus);
        }
        let usable = (1usize << bits) - 1;
        if cpu_count >= usable {
            return Err(VmidError::TooFewVmids { usable, cpu_count });
        }
        let words = (1usize << bits).div_ceil(64);
        let mut used = vec![0u64; words];
        used[0] = 1; // VMID 0 is never handed out.
        Ok(Self {
            bits,
            generation: AtomicU64::new(1 << bits),
            active: (0..cpu_count)
                .map(|_| ActiveVmid(AtomicU64::new(0)))
                .collect(),
            slow: Mutex::new(SlowState {
                used,
                vmid_count: 1 << bits,
                reserved: vec![0; cpu_count],
                stale_reserved_count: 0,
                next_index: 1,
                stats: VmidStats::default(),
            }),
            tlb,
        })
    }

    /// Makes sure `vm` holds a VMID of the current generation and marks it active on physical
    /// CPU `cpu`; returns the hardware VMID to write into VTTBR_EL2.VMID.
    ///
    /// Call on `cpu` itself, with interrupts masked, right before entering a vCPU of `vm`;
    /// calls for one `cpu` must not overlap.
    pub fn update(&self, cpu: usize, vm: &VmVmid) -> Result<u16, VmidError> {
        let active = &self
            .active
            .get(cpu)
            .ok_or(VmidError::CpuOutOfRange {
                cpu,
                cpu_count: self.active.len(),
            })?
            .0;

        // Fast path: the VMID is current. The compare-and-swap fails if a rollover zeroed this
        // CPU's active VMID after we read it; an active VMID of 0 means a rollover happened
        // since this CPU last ran, so the slow path must run (KVM's check_and_switch_context).
        let vmid = vm.id.load(Ordering::Acquire);
        let old_active = active.load(Ordering::Relaxed);
        if old_active != 0
            && self.is_current(vmid)
            && active
                .compare_exchange(old_active, vmid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(self.hardware_vmid(vmid));
        }

        let mut slow = self.slow.lock();
        slow.stats.slow_paths += 1;
        // Re-read under the lock: another vCPU of this VM may have refreshed its
        // VMID while we waited; allocating again would give the VM a second VMID.
        let mut vmid = vm.id.load(Ordering::Relaxed);
        if !self.is_current(vmid) {
            vmid = self.new_vmid(&mut slow, vm);
        }
        active.store(vmid, Ordering::Release);
        Ok(self.hardware_vmid(vmid))
    }

    /// A snapshot of the slow-path counters (takes the lock).
    pub fn stats(&self) -> VmidStats {
        self.slow.lock().stats
    }

    /// The VMID width chosen at construction.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The current generation number (1 before the first rollover).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed) >> self.bits
    }

    /// The TLB interface given at construction.
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// True if `vmid` belongs to the current generation.
    fn is_current(&self, vmid: u64) -> bool {
        (vmid ^ self.generation.load(Ordering::Relaxed)) >> self.bits == 0
    }

    fn index_mask(&self) -> u64 {
        (1 << self.bits) - 1
    }

    fn hardware_vmid(&self, vmid: u64) -> u16 {
        // `bits <= 16`, so the masked value fits.
        (vmid & self.index_mask()) as u16
    }

    /// Gives `vm` a VMID of the current generation; lock held. Prefers the VM's previous
    /// VMID number (reserved for it, or still free), then any free one, then rolls over.
    fn new_vmid(&self, slow: &mut SlowState, vm: &VmVmid) -> u64 {
        let mut generation = self.generation.load(Ordering::Relaxed);
        let old = vm.id.load(Ordering::Relaxed);
        if old != 0 {
            let index = old & self.index_mask();
            let renewed = generation | index;
            if self.update_reserved(slow, old, renewed) || !slow.test_and_set(index as usize) {
                vm.id.store(renewed, Ordering::Release);
                return renewed;
            }
        }

        let index = match slow.find_free(slow.next_index) {
            Some(index) => index,
            None => {
                generation = self
                    .generation
                    .fetch_add(1 << self.bits, Ordering::Relaxed)
                    .wrapping_add(1 << self.bits);
                self.flush_context(slow, generation);
                // At most one reserved VMID per CPU and `new` checked there are more usable
                // VMIDs than CPUs, so a free one exists.
                slow.find_free(1)
                    .expect("more usable VMIDs than CPUs, checked by VmidAllocator::new")
            }
        };
        slow.test_and_set(index);
        slow.next_index = index;
        let vmid = generation | index as u64;
        vm.id.store(vmid, Ordering::Release);
        vmid
    }

    /// Starts generation `generation`: frees every VMID except those the CPUs run (kept as
    /// their reserved VMIDs), then invalidates all TLBs once. Lock held.
    fn flush_context(&self, slow: &mut SlowState, generation: u64) {
        slow.used.fill(0);
        slow.used[0] = 1;
        slow.stale_reserved_count = 0;
        for (cpu, active) in self.active.iter().enumerate() {
            let mut vmid = active.0.swap(0, Ordering::AcqRel);
            // A CPU that has not run `update` since the last rollover may still be in the
            // guest with the VMID reserved then: keep that one.
            if vmid == 0 {
                vmid = slow.reserved[cpu];
            }
            slow.test_and_set((vmid & self.index_mask()) as usize);
            slow.reserved[cpu] = vmid;
            if self.is_stale(vmid, generation) {
                slow.stale_reserved_count += 1;
            }
        }
        slow.next_index = 1;
        slow.stats.rollovers += 1;
        self.tlb.flush_all_vmids();
    }

    /// If some CPU reserved `old` at a rollover, renames those reservations to `renewed` (the
    /// same number in the current generation) and returns true. Lock held.
    fn update_reserved(&self, slow: &mut SlowState, old: u64, renewed: u64) -> bool {
        // Once every stale reservation was renewed, nothing can match.
        if slow.stale_reserved_count == 0 {
            return false;
        }
        slow.stats.reserved_scans += 1;
        let generation = renewed & !self.index_mask();
        let mut hit = false;
        for reserved in slow.reserved.iter_mut() {
            slow.stats.reserved_scan_iterations += 1;
            if *reserved == old {
                if self.is_stale(*reserved, generation) {
                    slow.stale_reserved_count -= 1;
                }
                *reserved = renewed;
                hit = true;
            }
        }
        hit
    }

    /// A reserved value that still needs renaming: a real VMID of an older generation.
    fn is_stale(&self, reserved: u64, generation: u64) -> bool {
        reserved & self.index_mask() != 0 && (reserved ^ generation) >> self.bits != 0
    }
}

impl SlowState {
    /// Marks VMID `index` used; returns whether it already was.
    fn test_and_set(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, index % 64);
        let was_set = self.used[word] & (1 << bit) != 0;
        self.used[word] |= 1 << bit;
        was_set
    }

    /// The lowest free VMID at or above `from`, if any.
    fn find_free(&self, from: usize) -> Option<usize> {
        let mut index = from;
        while index < self.vmid_count {
            let (word, bit) = (index / 64, index % 64);
            let free = !self.used[word] >> bit;
            if free != 0 {
                let found = index + free.trailing_zeros() as usize;
                return (found < self.vmid_count).then_some(found);
            }
            index = (word + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod oracle;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
