//! Unit tests and a property test for the VMID allocator at small widths (2 and 3 bits) with
//! 1-4 simulated CPUs. Tests about rollovers have `rollover` in their name
//! (`cargo test rollover`).

use alloc::vec::Vec;

use proptest::prelude::*;

use super::oracle::{CountingTlb, GuestOracle};
use super::*;

/// A sequential simulation: each CPU stays in the guest with the last VM it entered until it
/// enters another one, and the oracle checks every entry.
struct Sim {
    alloc: VmidAllocator<CountingTlb>,
    vms: Vec<VmVmid>,
    oracle: GuestOracle,
}

impl Sim {
    fn new(bits: u8, cpus: usize, vm_count: usize) -> Self {
        Self {
            alloc: VmidAllocator::new(bits, cpus, CountingTlb::new()).unwrap(),
            vms: (0..vm_count).map(|_| VmVmid::new()).collect(),
            oracle: GuestOracle::new(cpus),
        }
    }

    /// CPU `cpu` leaves its guest, then enters a vCPU of VM `vm`; returns the hardware VMID.
    fn run(&mut self, cpu: usize, vm: usize) -> u16 {
        self.oracle.exit(cpu, self.alloc.tlb().flushes());
        let vmid = self.alloc.update(cpu, &self.vms[vm]).unwrap();
        let flushes = self.alloc.tlb().flushes();
        if let Err(violation) = self.oracle.enter(cpu, vm, vmid, flushes) {
            panic!("{violation}");
        }
        vmid
    }

    /// Runs never-seen VMs on `cpu` until one of them triggers a rollover; returns the VM that
    /// did.
    fn churn_until_rollover(&mut self, cpu: usize) -> usize {
        let before = self.alloc.stats().rollovers;
        loop {
            self.vms.push(VmVmid::new());
            let vm = self.vms.len() - 1;
            self.run(cpu, vm);
            if self.alloc.stats().rollovers > before {
                return vm;
            }
        }
    }

    fn stats(&self) -> VmidStats {
        self.alloc.stats()
    }
}

#[test]
fn new_rejects_widths_outside_2_to_16_bits() {
    for bits in [0, 1, 17, 64] {
        assert_eq!(
            VmidAllocator::new(bits, 1, CountingTlb::new()).err(),
            Some(VmidError::BitsOutOfRange { bits })
        );
    }
    assert!(VmidAllocator::new(2, 1, CountingTlb::new()).is_ok());
    assert!(VmidAllocator::new(16, 1, CountingTlb::new()).is_ok());
}

#[test]
fn new_rejects_cpu_counts_the_vmid_space_cannot_serve() {
    assert_eq!(
        VmidAllocator::new(2, 0, CountingTlb::new()).err(),
        Some(VmidError::NoCpus)
    );
    for (bits, cpus, usable) in [(2, 3, 3), (2, 4, 3), (3, 7, 7), (3, 100, 7)] {
        assert_eq!(
            VmidAllocator::new(bits, cpus, CountingTlb::new()).err(),
            Some(VmidError::TooFewVmids {
                usable,
                cpu_count: cpus
            })
        );
    }
    for (bits, cpus) in [(2, 1), (2, 2), (3, 1), (3, 6), (8, 254), (16, 65534)] {
        assert!(VmidAllocator::new(bits, cpus, CountingTlb::new()).is_ok());
    }
}

#[test]
fn update_rejects_a_cpu_beyond_the_count() {
    let alloc = VmidAllocator::new(3, 2, CountingTlb::new()).unwrap();
    assert_eq!(
        alloc.update(2, &VmVmid::new()),
        Err(VmidError::CpuOutOfRange {
            cpu: 2,
            cpu_count: 2
        })
    );
}

#[test]
fn vmid_zero_is_never_handed_out() {
    for (bits, cpus) in [(2, 1), (2, 2), (3, 1), (3, 4)] {
        let mut sim = Sim::new(bits, cpus, 0);
        for round in 0..50 {
            sim.vms.push(VmVmid::new());
            let vmid = sim.run(round % cpus, round);
            assert!((1..1 << bits).contains(&vmid), "VMID {vmid} at {bits} bits");
        }
    }
}

#[test]
fn fast_path_takes_no_lock_while_the_generation_matches() {
    let mut sim = Sim::new(3, 2, 2);
    let first = sim.run(0, 0);
    sim.run(1, 1);
    let before = sim.stats();
    for _ in 0..100 {
        assert_eq!(sim.run(0, 0), first);
        sim.run(1, 1);
    }
    assert_eq!(sim.stats(), before, "the fast path must not take the lock");
}

#[test]
fn rollover_happens_when_the_space_is_exhausted_with_one_tlb_flush() {
    let mut sim = Sim::new(2, 1, 4);
    assert_eq!([sim.run(0, 0), sim.run(0, 1), sim.run(0, 2)], [1, 2, 3]);
    assert_eq!(sim.alloc.tlb().flushes(), 0);
    assert_eq!(sim.alloc.generation(), 1);
    // The fourth VM does not fit: new generation, VMID 3 stays reserved for VM2 (CPU0 ran it).
    assert_eq!(sim.run(0, 3), 1);
    assert_eq!(sim.alloc.tlb().flushes(), 1);
    assert_eq!(sim.alloc.generation(), 2);
    assert_eq!(sim.stats().rollovers, 1);
    // VM2 comes back to its reserved VMID; VM0 lost VMID 1 to VM3 and gets VMID 2.
    assert_eq!(sim.run(0, 2), 3);
    assert_eq!(sim.run(0, 0), 2);
    assert_eq!(sim.alloc.tlb().flushes(), 1);
}

#[test]
fn rollover_preserves_every_active_vmid_for_2_and_3_bits_and_1_to_4_cpus() {
    for bits in [2u8, 3] {
        for cpus in 1..=4usize {
            if cpus >= (1 << bits) - 1 {
                continue; // rejected by `new`, tested above
            }
            let mut sim = Sim::new(bits, cpus, cpus);
            let before: Vec<u16> = (0..cpus).map(|cpu| sim.run(cpu, cpu)).collect();
            sim.churn_until_rollover(0);
            assert_eq!(sim.alloc.tlb().flushes(), 1, "{bits} bits, {cpus} CPUs");
            // CPUs 1.. were in the guest during the rollover: their VMs keep their VMIDs, in
            // either order of coming back.
            for cpu in (1..cpus).rev() {
                assert_eq!(sim.run(cpu, cpu), before[cpu], "{bits} bits, {cpus} CPUs");
            }
            // The same VM on another CPU gets the same VMID as well.
            if cpus > 1 {
                assert_eq!(sim.run(0, 1), before[1]);
            }
        }
    }
}

#[test]
fn rollover_keeps_one_vm_on_one_vmid_when_a_cpu_returns_late() {
    // The KVM/ARM world-switch review case (one VMID per VM across CPUs) sequentially: VM0 on CPU0 and CPU1, VM1 first scheduled on CPU2 when the
    // next allocation rolls over; CPU1 re-enters VM0 first, CPU0 returns late.
    for cpu0_first in [false, true] {
        let mut sim = Sim::new(3, 3, 2);
        let vm0 = sim.run(0, 0);
        assert_eq!(sim.run(1, 0), vm0);
        // Six fillers on CPU2 take VMIDs 2..=7: the space is full.
        for _ in 0..6 {
            sim.vms.push(VmVmid::new());
            sim.run(2, sim.vms.len() - 1);
        }
        assert_eq!(sim.alloc.generation(), 1);
        sim.run(2, 1); // VM1's first run rolls over
        assert_eq!(sim.alloc.generation(), 2);
        let order = if cpu0_first { [0, 1] } else { [1, 0] };
        for cpu in order {
            assert_eq!(sim.run(cpu, 0), vm0);
        }
    }
}

#[test]
fn rollover_repeats_as_the_generation_wraps_the_vmid_space() {
    let mut sim = Sim::new(2, 1, 0);
    for round in 0..300usize {
        sim.vms.push(VmVmid::new());
        sim.run(0, round);
        let stats = sim.stats();
        assert_eq!(stats.rollovers, sim.alloc.tlb().flushes());
        assert_eq!(sim.alloc.generation(), stats.rollovers + 1);
    }
    // 3 usable VMIDs, one reserved by CPU0 at each rollover: 2 fresh VMs per generation.
    assert_eq!(sim.stats().rollovers, 149);
    assert_eq!(sim.vms[299].raw() >> 2, sim.alloc.generation());
}

#[test]
fn rollover_carries_a_reserved_vmid_of_a_cpu_that_stays_in_the_guest() {
    let mut sim = Sim::new(3, 2, 1);
    let kept = sim.run(1, 0); // CPU1 enters VM0 and stays in the guest throughout
    for _ in 0..3 {
        sim.churn_until_rollover(0);
    }
    assert_eq!(sim.stats().rollovers, 3);
    // The oracle checked that no churned VM got `kept` while VM0 ran; it comes back to it.
    assert_eq!(sim.run(1, 0), kept);
    assert_eq!(sim.run(0, 0), kept);
}

#[test]
fn rollover_skips_the_reserved_scan_once_no_cpu_holds_a_stale_vmid() {
    let mut sim = Sim::new(3, 2, 2);
    sim.run(0, 0);
    sim.run(1, 1);
    let first_fresh = sim.vms.len();
    let rolled = sim.churn_until_rollover(0);
    let last_before = rolled - 1; // CPU0 ran it at the rollover: reserved, like VM1 on CPU1
    let scans = |sim: &Sim| sim.stats().reserved_scan_iterations;

    // VM1 comes back: the reserved VMIDs are scanned (two CPUs' entries looked at).
    let before = scans(&sim);
    sim.run(1, 1);
    assert_eq!(scans(&sim), before + 2);

    // An old VM that was not running: CPU0 still holds a stale reservation, so scan.
    let before = scans(&sim);
    sim.run(1, first_fresh);
    assert_eq!(scans(&sim), before + 2);
    sim.run(1, 1);

    // The last VM CPU0 ran comes back: its reservation is renewed, no stale one is left...
    sim.run(0, last_before);
    // ...so the next old VM takes the slow path without scanning.
    let (before, slow_before) = (scans(&sim), sim.stats().slow_paths);
    sim.run(0, first_fresh + 1);
    assert_eq!(sim.stats().slow_paths, slow_before + 1);
    assert_eq!(
        scans(&sim),
        before,
        "no stale reservation: the scan must be skipped"
    );
}

/// One step of a random schedule: a CPU leaves its guest, or enters a vCPU of a VM.
#[derive(Debug, Clone)]
enum Step {
    Exit { cpu: usize },
    Enter { cpu: usize, vm: usize },
}

fn schedule() -> impl Strategy<Value = (u8, usize, Vec<Step>)> {
    (2u8..=3)
        .prop_flat_map(|bits| (Just(bits), 1..=((1usize << bits) - 2).min(4)))
        .prop_flat_map(|(bits, cpus)| {
            let step = prop_oneof![
                1 => (0..cpus).prop_map(|cpu| Step::Exit { cpu }),
                6 => (0..cpus, 0..8usize).prop_map(|(cpu, vm)| Step::Enter { cpu, vm }),
            ];
            (
                Just(bits),
                Just(cpus),
                proptest::collection::vec(step, 1..200),
            )
        })
}

proptest! {
    #[test]
    fn rollover_random_schedules_keep_the_vmid_invariants((bits, cpus, steps) in schedule()) {
        let alloc = VmidAllocator::new(bits, cpus, CountingTlb::new()).unwrap();
        let vms: Vec<VmVmid> = (0..8).map(|_| VmVmid::new()).collect();
        let mut oracle = GuestOracle::new(cpus);
        for step in steps {
            match step {
                Step::Exit { cpu } => oracle.exit(cpu, alloc.tlb().flushes()),
                Step::Enter { cpu, vm } => {
                    oracle.exit(cpu, alloc.tlb().flushes());
                    let vmid = alloc.update(cpu, &vms[vm]).unwrap();
                    let checked = oracle.enter(cpu, vm, vmid, alloc.tlb().flushes());
                    prop_assert!(checked.is_ok(), "{}", checked.unwrap_err());
                    prop_assert!(alloc.is_current(vms[vm].raw()));
                }
            }
            prop_assert_eq!(alloc.stats().rollovers, alloc.tlb().flushes());
        }
    }
}

#[test]
fn oracle_catches_each_violation_it_checks() {
    let mut oracle = GuestOracle::new(3);
    oracle.enter(0, 0, 1, 0).unwrap();
    assert!(oracle.enter(1, 0, 2, 0).is_err(), "one VM, two VMIDs");
    assert!(oracle.enter(1, 1, 1, 0).is_err(), "two VMs, one VMID");
    assert!(oracle.enter(1, 1, 0, 0).is_err(), "VMID 0");
    oracle.enter(1, 0, 1, 0).unwrap();
    oracle.exit(0, 0);
    oracle.exit(1, 0);
    assert!(
        oracle.enter(2, 1, 1, 0).is_err(),
        "recycled without a flush"
    );
    oracle.enter(2, 1, 1, 1).unwrap();
}

/// A retired VMID is never handed out again before a rollover, and a VM that retires its VMID
/// gets a fresh one; with 2-bit VMIDs, the fourth life of one VM forces a rollover.
#[test]
fn rollover_after_a_vm_retires_its_vmid_three_times() {
    let flushes = std::sync::atomic::AtomicUsize::new(0);
    struct Count<'a>(&'a std::sync::atomic::AtomicUsize);
    impl VmidTlb for Count<'_> {
        fn flush_all_vmids(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let alloc = VmidAllocator::new(2, 1, Count(&flushes)).unwrap();
    let vm = VmVmid::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(alloc.update(0, &vm).unwrap());
        vm.retire();
    }
    seen.sort();
    assert_eq!(
        seen,
        [1, 2, 3],
        "each life gets a VMID no earlier life used"
    );
    assert_eq!(flushes.load(std::sync::atomic::Ordering::SeqCst), 0);
    let fourth = alloc.update(0, &vm).unwrap();
    assert_ne!(fourth, 0);
    assert_eq!(
        flushes.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "recycling needs a flush"
    );
    assert_eq!(alloc.stats().rollovers, 1);
}
