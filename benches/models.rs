//! Host benchmarks of the VMID allocator. `cargo bench --bench models` or
//! `scripts/bench-models.sh`. Plain `std::time` timing (harness = false): no extra crates.
//!
//! - fast path (generation matches): ns per `update`, 1 and 2 threads, and a check that the
//!   lock was not taken (the slow-path counter does not move);
//! - rollover cost and slow-path cost for 4, 16, 64 and 256 simulated CPUs at 16-bit VMIDs,
//!   with the reserved-scan counter showing that the common slow path does not walk the CPUs.

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use bulkhead::vmid::{VmVmid, VmidAllocator, VmidTlb};

/// Rollovers cost one broadcast TLB invalidation on hardware; here nothing.
struct NoTlb;

impl VmidTlb for NoTlb {
    fn flush_all_vmids(&self) {}
}

const FAST_PATH_CALLS: u64 = 20_000_000;

fn fast_path_one_thread() {
    let alloc = VmidAllocator::new(16, 2, NoTlb).unwrap();
    let vm = VmVmid::new();
    alloc.update(0, &vm).unwrap();
    let slow_before = alloc.stats().slow_paths;
    let start = Instant::now();
    for _ in 0..FAST_PATH_CALLS {
        black_box(alloc.update(black_box(0), &vm).unwrap());
    }
    let ns = start.elapsed().as_nanos() as f64 / FAST_PATH_CALLS as f64;
    let locked = alloc.stats().slow_paths - slow_before;
    println!(
        "fast path, 1 thread:                    {ns:6.2} ns/call  (lock taken {locked} times)"
    );
}

/// Two physical CPUs, each running a vCPU of `same_vm ? one VM : its own VM`.
fn fast_path_two_threads(same_vm: bool) {
    let alloc = Arc::new(VmidAllocator::new(16, 2, NoTlb).unwrap());
    let vms = Arc::new([VmVmid::new(), VmVmid::new()]);
    for cpu in 0..2 {
        alloc
            .update(cpu, &vms[if same_vm { 0 } else { cpu }])
            .unwrap();
    }
    let slow_before = alloc.stats().slow_paths;
    let threads: Vec<_> = (0..2)
        .map(|cpu| {
            let (alloc, vms) = (alloc.clone(), vms.clone());
            thread::spawn(move || {
                let vm = &vms[if same_vm { 0 } else { cpu }];
                let start = Instant::now();
                for _ in 0..FAST_PATH_CALLS {
                    black_box(alloc.update(black_box(cpu), vm).unwrap());
                }
                start.elapsed().as_nanos() as f64 / FAST_PATH_CALLS as f64
            })
        })
        .collect();
    let ns: Vec<f64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let locked = alloc.stats().slow_paths - slow_before;
    let what = if same_vm { "one VM  " } else { "two VMs " };
    println!(
        "fast path, 2 threads, {what}:          {:6.2} / {:6.2} ns/call  (lock taken {locked} times)",
        ns[0], ns[1]
    );
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// An allocator for `cpus` CPUs, each CPU in the guest with its own VM.
fn busy_allocator(cpus: usize) -> (VmidAllocator<NoTlb>, Vec<VmVmid>) {
    let alloc = VmidAllocator::new(16, cpus, NoTlb).unwrap();
    let vms: Vec<VmVmid> = (0..cpus).map(|_| VmVmid::new()).collect();
    for (cpu, vm) in vms.iter().enumerate() {
        alloc.update(cpu, vm).unwrap();
    }
    (alloc, vms)
}

/// Runs fresh VMs on CPU 0 until one rolls over; returns (that call's ns, the VM CPU 0 ran
/// just before, i.e. the one it holds reserved).
fn churn_to_rollover(alloc: &VmidAllocator<NoTlb>) -> (f64, VmVmid) {
    let generation = alloc.generation();
    let mut previous = VmVmid::new();
    loop {
        let vm = VmVmid::new();
        let start = Instant::now();
        alloc.update(0, &vm).unwrap();
        let ns = start.elapsed().as_nanos() as f64;
        if alloc.generation() != generation {
            return (ns, previous);
        }
        previous = vm;
    }
}

/// Slow path of VMs from the previous generation coming back on CPU 0, after a rollover:
/// with `renew`, every CPU first re-ran the VM it held at the rollover (no stale reservation
/// left). Returns (mean ns per call, reserved entries scanned per call).
fn old_vms_return(cpus: usize, renew: bool) -> (f64, f64) {
    let (alloc, vms) = busy_allocator(cpus);
    let old: Vec<VmVmid> = (0..2000).map(|_| VmVmid::new()).collect();
    for vm in &old {
        alloc.update(0, vm).unwrap();
    }
    let (_, held_by_cpu0) = churn_to_rollover(&alloc);
    if renew {
        alloc.update(0, &held_by_cpu0).unwrap();
        for (cpu, vm) in vms.iter().enumerate().skip(1) {
            alloc.update(cpu, vm).unwrap();
        }
    }
    let before = alloc.stats();
    let start = Instant::now();
    for vm in &old {
        black_box(alloc.update(0, vm).unwrap());
    }
    let ns = start.elapsed().as_nanos() as f64 / old.len() as f64;
    let after = alloc.stats();
    assert_eq!(after.slow_paths - before.slow_paths, old.len() as u64);
    let scanned = (after.reserved_scan_iterations - before.reserved_scan_iterations) as f64
        / old.len() as f64;
    (ns, scanned)
}

fn rollover_and_slow_path(cpus: usize) {
    let (alloc, _vms) = busy_allocator(cpus);
    let rollovers: Vec<f64> = (0..15).map(|_| churn_to_rollover(&alloc).0).collect();
    // Fresh VMs between rollovers: the ordinary slow path of a first run.
    let fresh: Vec<VmVmid> = (0..2000).map(|_| VmVmid::new()).collect();
    let start = Instant::now();
    for vm in &fresh {
        black_box(alloc.update(0, vm).unwrap());
    }
    let fresh_ns = start.elapsed().as_nanos() as f64 / fresh.len() as f64;
    let (renewed_ns, renewed_scan) = old_vms_return(cpus, true);
    let (stale_ns, stale_scan) = old_vms_return(cpus, false);
    println!(
        "{cpus:4} CPUs: rollover {:8.0} ns | new VM {:5.1} ns | old VM back, no stale reservation {:5.1} ns ({renewed_scan:.0} scanned) | with stale reservations {:6.1} ns ({stale_scan:.0} scanned)",
        median(rollovers),
        fresh_ns,
        renewed_ns,
        stale_ns,
    );
}

fn main() {
    // `cargo test` also runs benches in test mode with `--test`: do nothing heavy then.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    println!(
        "VMID allocator, 16-bit VMIDs (host: {} threads available)",
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    fast_path_one_thread(); // first run warms the CPU up; the second is reported too
    fast_path_one_thread();
    fast_path_two_threads(true);
    fast_path_two_threads(false);
    println!(
        "rollover: median of 15; others: mean of 2000 calls; 'scanned' = reserved entries looked at per slow path"
    );
    for cpus in [4, 16, 64, 256] {
        rollover_and_slow_path(cpus);
    }
}
