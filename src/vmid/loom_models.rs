//! Loom models of the VMID allocator. Built only with
//! `RUSTFLAGS="--cfg loom"`; run by `scripts/test-models.sh`. Every physical CPU is a loom
//! thread running the real `VmidAllocator` on loom's atomics and mutex; a `GuestOracle` behind a
//! mutex checks each guest entry.

extern crate std;

use loom::sync::Arc;
use loom::thread;

use super::oracle::{CountingTlb, GuestOracle};
use super::{VmVmid, VmidAllocator};
use crate::sync::Mutex;

/// Shared state of one model run.
struct World {
    alloc: VmidAllocator<CountingTlb>,
    oracle: Mutex<GuestOracle>,
}

impl World {
    fn new(bits: u8, cpus: usize) -> Arc<Self> {
        Arc::new(Self {
            alloc: VmidAllocator::new(bits, cpus, CountingTlb::new()).unwrap(),
            oracle: Mutex::new(GuestOracle::new(cpus)),
        })
    }

    /// Physical CPU `cpu` leaves its guest (if any) and enters a vCPU of VM `vm_name`, as the
    /// run loop does: update the VMID, then enter. Returns the hardware VMID.
    fn run(&self, cpu: usize, vm_name: usize, vm: &VmVmid) -> u16 {
        self.exit(cpu);
        let vmid = self.alloc.update(cpu, vm).unwrap();
        let mut oracle = self.oracle.lock();
        let flushes = self.alloc.tlb().flushes();
        if let Err(violation) = oracle.enter(cpu, vm_name, vmid, flushes) {
            panic!("{violation}");
        }
        vmid
    }

    fn exit(&self, cpu: usize) {
        let mut oracle = self.oracle.lock();
        oracle.exit(cpu, self.alloc.tlb().flushes());
    }
}

/// One VMID per VM across a rollover (KVM/ARM world-switch review, 2012): VM0 has vCPUs in the guest on CPU0 and CPU1, the VMID space is full,
/// and VM1 is scheduled for the first time on CPU2, so its allocation rolls over. CPU0 and
/// CPU1 re-enter VM0 in any order and at any point — CPU0 "returning late" included. The
/// oracle asserts that the two vCPUs of VM0 never run with different VMIDs and that no VMID is
/// held by two VMs at once.
#[test]
fn loom_vcpus_of_one_vm_share_a_vmid_across_rollover() {
    loom::model(|| {
        let world = World::new(3, 3);
        let (vm0, vm1) = (Arc::new(VmVmid::new()), Arc::new(VmVmid::new()));
        // Setup, before the CPUs race: six VMs that ran on CPU0 and left take VMIDs 1..=6.
        for filler in 0..6 {
            world.run(0, 10 + filler, &VmVmid::new());
        }
        let vmid = world.run(0, 0, &vm0);
        assert_eq!(world.run(1, 0, &vm0), vmid);
        assert_eq!(world.alloc.generation(), 1);

        let cpu2 = {
            let (world, vm1) = (world.clone(), vm1.clone());
            thread::spawn(move || {
                world.run(2, 1, &vm1);
            })
        };
        let cpu1 = {
            let (world, vm0) = (world.clone(), vm0.clone());
            thread::spawn(move || world.run(1, 0, &vm0))
        };
        let cpu0_late = {
            let (world, vm0) = (world.clone(), vm0.clone());
            thread::spawn(move || world.run(0, 0, &vm0))
        };
        cpu2.join().unwrap();
        let (on_cpu1, on_cpu0) = (cpu1.join().unwrap(), cpu0_late.join().unwrap());

        assert_eq!(on_cpu0, on_cpu1, "VM0 ended on two VMIDs");
        assert_eq!(world.alloc.generation(), 2);
        assert_eq!(world.alloc.tlb().flushes(), 1);
        assert_ne!(world.alloc.update(2, &vm1).unwrap(), on_cpu0);
    });
}

/// Rollover while other CPUs are in the guest. VM A runs on CPU0, VM B on CPU1,
/// fillers used up the rest of the space on CPU2; CPU2 then runs a new VM C, which rolls
/// over, while CPU0 and CPU1 exit and re-enter their VMs at any point. Every VMID active at
/// the rollover stays with its VM, and a VMID recycled from a filler is only used after the
/// broadcast TLB invalidation (the oracle checks the flush count at every entry).
#[test]
fn loom_rollover_preserves_active_vmids_and_flushes_before_reuse() {
    loom::model(|| {
        let world = World::new(3, 3);
        let (vm_a, vm_b, vm_c) = (
            Arc::new(VmVmid::new()),
            Arc::new(VmVmid::new()),
            Arc::new(VmVmid::new()),
        );
        let vmid_a = world.run(0, 0, &vm_a);
        let vmid_b = world.run(1, 1, &vm_b);
        for filler in 0..5 {
            world.run(2, 10 + filler, &VmVmid::new());
        }
        assert_eq!(world.alloc.tlb().flushes(), 0);

        let cpu2 = {
            let (world, vm_c) = (world.clone(), vm_c.clone());
            thread::spawn(move || world.run(2, 2, &vm_c))
        };
        let cpu0 = {
            let (world, vm_a) = (world.clone(), vm_a.clone());
            thread::spawn(move || world.run(0, 0, &vm_a))
        };
        let cpu1 = {
            let (world, vm_b) = (world.clone(), vm_b.clone());
            thread::spawn(move || world.run(1, 1, &vm_b))
        };
        let vmid_c = cpu2.join().unwrap();
        assert_eq!(cpu0.join().unwrap(), vmid_a, "VM A lost its VMID");
        assert_eq!(cpu1.join().unwrap(), vmid_b, "VM B lost its VMID");
        assert!(vmid_c != vmid_a && vmid_c != vmid_b);
        assert_eq!(world.alloc.tlb().flushes(), 1);
        // After the race, both preserved VMs still resolve to their VMIDs on any CPU.
        assert_eq!(world.run(2, 0, &vm_a), vmid_a);
    });
}
