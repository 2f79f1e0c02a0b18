//! Test oracle for the VMID allocator: records which VM each physical CPU runs in the guest,
//! with which hardware VMID, and checks the invariants of KVM's VMID allocator (one VMID per VM across CPUs; active VMIDs survive a rollover) at every entry:
//! - two vCPUs of one VM in the guest at the same time hold the same VMID;
//! - two different VMs in the guest at the same time hold different VMIDs (so no VMID is held
//!   by two VMs in one generation, nor across a rollover while the older user still runs);
//! - a VMID last used by another VM is only used after a broadcast TLB invalidation that came
//!   after that use (stale TLB entries of the old owner are gone).
//!
//! Used by the plain unit tests, the proptest and (behind a mutex) the loom models.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// A VM as the tests name it.
pub type VmId = usize;

/// What the oracle knows about guests running on CPUs.
pub struct GuestOracle {
    /// Per CPU: the VM in the guest there and its hardware VMID.
    running: Vec<Option<(VmId, u16)>>,
    /// Per hardware VMID: the last VM that ran with it and the TLB-flush count at that time.
    last_use: BTreeMap<u16, (VmId, u64)>,
}

impl GuestOracle {
    /// No CPU in a guest.
    pub fn new(cpu_count: usize) -> Self {
        Self {
            running: vec![None; cpu_count],
            last_use: BTreeMap::new(),
        }
    }

    /// `cpu` enters a vCPU of `vm` with hardware VMID `vmid`, after `flushes` broadcast TLB
    /// invalidations. Returns a description of the first violated invariant.
    pub fn enter(&mut self, cpu: usize, vm: VmId, vmid: u16, flushes: u64) -> Result<(), String> {
        if vmid == 0 {
            return Err(format!("CPU{cpu} enters VM{vm} with VMID 0"));
        }
        for (other, slot) in self.running.iter().enumerate() {
            match *slot {
                Some((other_vm, other_vmid))
                    if other != cpu && other_vm == vm && other_vmid != vmid =>
                {
                    return Err(format!(
                        "VM{vm} runs with VMID {other_vmid} on CPU{other} and VMID {vmid} on CPU{cpu}"
                    ));
                }
                Some((other_vm, other_vmid))
                    if other != cpu && other_vm != vm && other_vmid == vmid =>
                {
                    return Err(format!(
                        "VMID {vmid} held by VM{other_vm} on CPU{other} and VM{vm} on CPU{cpu}"
                    ));
                }
                _ => {}
            }
        }
        if let Some(&(owner, flushes_then)) = self.last_use.get(&vmid)
            && owner != vm
            && flushes <= flushes_then
        {
            return Err(format!(
                "VMID {vmid} recycled from VM{owner} to VM{vm} without a TLB flush \
                 ({flushes} flushes, {flushes_then} when VM{owner} last ran)"
            ));
        }
        self.running[cpu] = Some((vm, vmid));
        self.last_use.insert(vmid, (vm, flushes));
        Ok(())
    }

    /// `cpu` leaves the guest after `flushes` broadcast TLB invalidations.
    pub fn exit(&mut self, cpu: usize, flushes: u64) {
        if let Some((vm, vmid)) = self.running[cpu].take() {
            self.last_use.insert(vmid, (vm, flushes));
        }
    }
}

/// A [`VmidTlb`](super::VmidTlb) that only counts broadcast invalidations.
pub struct CountingTlb {
    flushes: crate::sync::AtomicU64,
}

impl CountingTlb {
    /// No flush yet.
    pub fn new() -> Self {
        Self {
            flushes: crate::sync::AtomicU64::new(0),
        }
    }

    /// Broadcast invalidations so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(crate::sync::Ordering::Acquire)
    }
}

impl super::VmidTlb for CountingTlb {
    fn flush_all_vmids(&self) {
        self.flushes.fetch_add(1, crate::sync::Ordering::AcqRel);
    }
}
