//! Where each VM goes: a contiguous, 2 MiB aligned piece of host RAM, a home CPU and a set of
//! allowed physical CPUs per vCPU, and where each static shared memory region is in host RAM.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{ByteSize, ConfigError, CpuSet, SharedMemSpec, VmSpec};
use crate::dtb::PhysRange;
use crate::guest_layout::MAX_VCPUS;

/// Guest RAM is 2 MiB aligned in host memory so stage 2 can map it with block descriptors.
const RAM_ALIGN: u64 = 2 << 20;

/// Shared regions Bulkhead allocates are 2 MiB aligned when at least that large (stage 2 can
/// then use blocks), else page aligned.
fn shared_align(size: u64) -> u64 {
    if size >= RAM_ALIGN { RAM_ALIGN } else { 4096 }
}

/// Where a VM goes: its RAM in host memory and its vCPUs on physical CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Host physical address of the VM's RAM (`memory` bytes, 2 MiB aligned).
    pub ram_pa: u64,
    /// Each vCPU's home CPU (index = vCPU id): where it starts, and whose run queue holds it
    /// until the scheduler moves it. Always in its `allowed` set.
    pub pcpus: Vec<usize>,
    /// The CPUs each vCPU may ever run on (index = vCPU id): its `hard-affinity` set, else
    /// only its home when every vCPU has a CPU of its own, else every CPU.
    pub allowed: Vec<CpuSet>,
    /// Host physical address of each of the VM's `shared_mem` regions, same order. VMs naming
    /// the same id get the same address.
    pub shared: Vec<u64>,
}

/// Places VMs in order: RAM from the top of the RAM banks downwards, 2 MiB aligned, never
/// overlapping `avoid` (hypervisor image + heap, host DTB, modules, reserved-memory), any VM's
/// kernel or initrd (added here: they are read after placement) or another VM. A VM that does
/// not fit (RAM, or vCPUs: none, more than [`MAX_VCPUS`], or affinity to a CPU that does not
/// exist) is refused with a ConfigError and the others still get placed.
///
/// Shared memory: a region whose host address some VM gives must lie inside one RAM bank and
/// overlap nothing above nor another region; it is kept out of every VM's RAM. A region without
/// one is allocated once per id, top down like RAM, by the first VM naming it that gets placed.
/// A VM whose region cannot be had (or disagrees with an earlier VM on the id's size or host
/// address) is refused.
///
/// CPUs, once the placed VMs are known (see [`assign_cpus`]): several vCPUs may share a
/// physical CPU (the scheduler time-slices them), but when the machine has a CPU for every
/// vCPU, each unpinned vCPU gets one to itself (static partitioning, as before vCPUs could
/// share CPUs).
pub fn place(
    vms: &[VmSpec],
    ram: &[PhysRange],
    avoid: &[PhysRange],
    cpu_count: usize,
) -> Vec<Result<Placement, ConfigError>> {
    let mut busy: Vec<PhysRange> = avoid.to_vec();
    busy.extend(
        vms.iter()
            .flat_map(|vm| [Some(vm.kernel), vm.initrd])
            .flatten(),
    );
    let mut banks: Vec<PhysRange> = ram.iter().copied().filter(|b| b.size > 0).collect();
    banks.sort_by_key(|b| core::cmp::Reverse(b.end()));
    let mut regions = fixed_regions(vms, &banks, &busy);
    busy.extend(regions.iter().filter_map(|r| match r.at {
        Ok(base) => Some(PhysRange { base, size: r.size }),
        Err(_) => None,
    }));

    // Memory first: which VMs are placed decides how many vCPUs share the CPUs.
    let mut memory: Vec<Result<(u64, Vec<u64>), ConfigError>> = Vec::with_capacity(vms.len());
    for vm in vms {
        let placed = check_cpus(vm, cpu_count).and_then(|()| {
            let ram_pa =
                find_ram(&banks, vm.memory, RAM_ALIGN, &busy).ok_or_else(|| ConfigError {
                    vm: vm.name.clone(),
                    property: String::from("memory"),
                    reason: format!(
                        "no room for {} of RAM (2 MiB aligned, clear of Bulkhead, the DTB, the \
                     modules, reserved memory and the VMs placed before)",
                        ByteSize(vm.memory)
                    ),
                })?;
            let ram = PhysRange {
                base: ram_pa,
                size: vm.memory,
            };
            let (shared, new) = place_shared(vm, &regions, &banks, &busy, ram)?;
            regions.extend(new);
            Ok((ram_pa, shared))
        });
        if let Ok((ram_pa, shared)) = &placed {
            busy.push(PhysRange {
                base: *ram_pa,
                size: vm.memory,
            });
            busy.extend(
                vm.shared_mem
                    .iter()
                    .zip(shared)
                    .map(|(s, &base)| PhysRange { base, size: s.size }),
            );
        }
        memory.push(placed);
    }

    let placed: Vec<&VmSpec> = vms
        .iter()
        .zip(&memory)
        .filter(|(_, m)| m.is_ok())
        .map(|(vm, _)| vm)
        .collect();
    let mut cpus = assign_cpus(&placed, cpu_count).into_iter();
    memory
        .into_iter()
        .map(|m| {
            let (ram_pa, shared) = m?;
            // One entry per VM whose memory was placed, in order.
            let (pcpus, allowed) = cpus.next().unwrap_or_default();
            Ok(Placement {
                ram_pa,
                pcpus,
                allowed,
                shared,
            })
        })
        .collect()
}

/// What refuses a VM whatever else runs: no vCPU, more than [`MAX_VCPUS`], or a vCPU pinned to
/// a CPU the machine does not have (or to none at all).
fn check_cpus(vm: &VmSpec, cpu_count: usize) -> Result<(), ConfigError> {
    let refuse = |property: &str, reason: String| ConfigError {
        vm: vm.name.clone(),
        property: String::from(property),
        reason,
    };
    if vm.vcpus == 0 {
        return Err(refuse("cpus", String::from("0 vCPUs")));
    }
    if vm.vcpus > MAX_VCPUS {
        return Err(refuse(
            "cpus",
            format!(
                "{} vCPUs; a VM has at most {MAX_VCPUS} (the guest's GIC layout)",
                vm.vcpus
            ),
        ));
    }
    // A machine without a CPU has none to run the VM on.
    if cpu_count == 0 {
        return Err(refuse("cpus", String::from("the machine has no CPU")));
    }
    for (vcpu, set) in vm.affinity.iter().take(vm.vcpus).enumerate() {
        let Some(set) = set else { continue };
        match set.last() {
            None => {
                return Err(refuse(
                    "hard-affinity",
                    format!("vCPU {vcpu} may run on no CPU (an empty set)"),
                ));
            }
            Some(cpu) if cpu >= cpu_count => {
                return Err(refuse(
                    "hard-affinity",
                    format!(
                        "vCPU {vcpu} is pinned to CPU {cpu} but the machine has {cpu_count} CPUs"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The home CPU and the allowed set of every vCPU of `vms` (all of them placed, each already
/// passed [`check_cpus`]), per VM.
///
/// - A pinned vCPU (`hard-affinity`) may run on its set; its home is the least-loaded CPU of
///   it (fewest vCPUs at home there, lowest index on ties). Pinned vCPUs choose first, the
///   most constrained (smallest set) first, so a vCPU that can go elsewhere does not take the
///   only CPU another may use.
/// - An unpinned vCPU, when the machine has a CPU for every vCPU of every VM: a CPU no other
///   vCPU has as home is its home and its only allowed CPU (static partitioning: it runs
///   alone there, as when a vCPU owned its CPU). CPUs that no pinned vCPU may run on are
///   preferred, so that it stays alone there. There is always such a free CPU: fewer CPUs are
///   homes than vCPUs have been placed.
/// - An unpinned vCPU when there are more vCPUs than CPUs (overcommit): it may run on every
///   CPU; its home is the least-loaded CPU (spread, lowest index on ties).
///
/// CPUs from [`CpuSet::CAPACITY`] up cannot be named in a set and are not used (the boards
/// Bulkhead runs on have far fewer).
fn assign_cpus(vms: &[&VmSpec], cpu_count: usize) -> Vec<(Vec<usize>, Vec<CpuSet>)> {
    let usable = cpu_count.min(CpuSet::CAPACITY);
    let every_cpu = (0..usable).fold(CpuSet::EMPTY, |mut set, cpu| {
        set.insert(cpu);
        set
    });
    let total: usize = vms.iter().map(|vm| vm.vcpus).sum();
    let overcommitted = total > usable;
    let pin = |vm: &VmSpec, vcpu: usize| vm.affinity.get(vcpu).copied().flatten();

    let mut out: Vec<(Vec<usize>, Vec<CpuSet>)> = vms
        .iter()
        .map(|vm| (vec![0; vm.vcpus], vec![CpuSet::EMPTY; vm.vcpus]))
        .collect();
    // How many vCPUs have each CPU as home.
    let mut load = vec![0usize; usable];
    let least_loaded = |load: &[usize], set: CpuSet| {
        set.iter()
            .filter(|&cpu| cpu < usable)
            .min_by_key(|&cpu| load[cpu])
    };

    let mut pinned: Vec<(usize, usize, CpuSet)> = vms
        .iter()
        .enumerate()
        .flat_map(|(index, vm)| {
            (0..vm.vcpus).filter_map(move |vcpu| Some((index, vcpu, pin(vm, vcpu)?)))
        })
        .collect();
    pinned.sort_by_key(|&(index, vcpu, set)| (set.len(), index, vcpu));
    let pinned_anywhere = pinned
        .iter()
        .fold(CpuSet::EMPTY, |acc, &(.., set)| acc.union(set));
    for (index, vcpu, set) in pinned {
        // check_cpus refused empty sets and CPUs the machine lacks.
        let home = least_loaded(&load, set).unwrap_or(0);
        load[home] += 1;
        out[index].0[vcpu] = home;
        out[index].1[vcpu] = set;
    }

    for (index, vm) in vms.iter().enumerate() {
        for vcpu in (0..vm.vcpus).filter(|&v| pin(vm, v).is_none()) {
            let (home, allowed) = if overcommitted {
                (least_loaded(&load, every_cpu).unwrap_or(0), every_cpu)
            } else {
                let mut free = (0..usable).filter(|&cpu| load[cpu] == 0);
                let home = free
                    .clone()
                    .find(|&cpu| !pinned_anywhere.contains(cpu))
                    .or_else(|| free.next())
                    .or_else(|| least_loaded(&load, every_cpu))
                    .unwrap_or(0);
                (home, CpuSet::single(home).unwrap_or(every_cpu))
            };
            load[home] += 1;
            out[index].0[vcpu] = home;
            out[index].1[vcpu] = allowed;
        }
    }
    out
}

/// A shared region in host memory, by id.
struct Region<'v> {
    id: &'v str,
    size: u64,
    /// Its base, or why it cannot be had.
    at: Result<u64, String>,
}

/// The regions whose host address some VM gives (the first VM to give one decides), each
/// checked against the RAM banks, `busy` and the ones before it.
fn fixed_regions<'v>(
    vms: &'v [VmSpec],
    banks: &[PhysRange],
    busy: &[PhysRange],
) -> Vec<Region<'v>> {
    let mut regions: Vec<Region<'v>> = Vec::new();
    for shm in vms.iter().flat_map(|vm| &vm.shared_mem) {
        let Some(base) = shm.host_pa else { continue };
        if regions.iter().any(|r| r.id == shm.id) {
            continue;
        }
        let range = PhysRange {
            base,
            size: shm.size,
        };
        let here = format!("host {base:#x}..{:#x}", range.end());
        let taken = regions.iter().find_map(|r| {
            let base = *r.at.as_ref().ok()?;
            let theirs = PhysRange { base, size: r.size };
            theirs
                .overlaps(&range)
                .then(|| (theirs, format!("id \"{}\"", r.id)))
        });
        let at = if shm.size == 0 || base.checked_add(shm.size).is_none() {
            Err(format!("{here} is not a usable range"))
        } else if !banks
            .iter()
            .any(|b| b.base <= base && range.end() <= b.end())
        {
            Err(format!("{here} is not inside one RAM bank"))
        } else if let Some(b) = busy.iter().find(|b| b.overlaps(&range)) {
            Err(format!(
                "{here} overlaps {:#x}..{:#x} (Bulkhead, the DTB, a module or reserved memory)",
                b.base,
                b.end()
            ))
        } else if let Some((theirs, who)) = taken {
            Err(format!(
                "{here} overlaps {who} at {:#x}..{:#x}",
                theirs.base,
                theirs.end()
            ))
        } else {
            Ok(base)
        };
        regions.push(Region {
            id: &shm.id,
            size: shm.size,
            at,
        });
    }
    regions
}

/// The host address of each of `vm`'s regions, allocating (tentatively: returned as the new
/// regions) those no one has placed yet, clear of `busy` and the VM's own `ram`.
fn place_shared<'v>(
    vm: &'v VmSpec,
    regions: &[Region<'v>],
    banks: &[PhysRange],
    busy: &[PhysRange],
    ram: PhysRange,
) -> Result<(Vec<u64>, Vec<Region<'v>>), ConfigError> {
    let refuse = |shm: &SharedMemSpec, reason: String| ConfigError {
        vm: vm.name.clone(),
        property: String::from("xen,shared-mem"),
        reason: format!("id \"{}\": {reason}", shm.id),
    };
    let mut busy = busy.to_vec();
    busy.push(ram);
    let mut new: Vec<Region<'v>> = Vec::new();
    let mut shared = Vec::with_capacity(vm.shared_mem.len());
    for shm in &vm.shared_mem {
        let base = match regions.iter().chain(&new).find(|r| r.id == shm.id) {
            Some(r) => {
                let base = r.at.clone().map_err(|e| refuse(shm, e))?;
                if r.size != shm.size {
                    return Err(refuse(
                        shm,
                        format!(
                            "{} here but {} where it was placed",
                            ByteSize(shm.size),
                            ByteSize(r.size)
                        ),
                    ));
                }
                if shm.host_pa.is_some_and(|pa| pa != base) {
                    return Err(refuse(
                        shm,
                        format!("host address differs from the region's, {base:#x}"),
                    ));
                }
                base
            }
            None => {
                let base =
                    find_ram(banks, shm.size, shared_align(shm.size), &busy).ok_or_else(|| {
                        refuse(
                            shm,
                            format!(
                                "no room for {} of shared memory (clear of Bulkhead, the DTB, \
                                 the modules, reserved memory and the VMs)",
                                ByteSize(shm.size)
                            ),
                        )
                    })?;
                busy.push(PhysRange {
                    base,
                    size: shm.size,
                });
                new.push(Region {
                    id: &shm.id,
                    size: shm.size,
                    at: Ok(base),
                });
                base
            }
        };
        shared.push(base);
    }
    Ok((shared, new))
}

/// The highest `align` aligned base for `size` bytes inside one of `banks` (sorted by end,
/// highest first) that overlaps nothing in `busy`.
fn find_ram(banks: &[PhysRange], size: u64, align: u64, busy: &[PhysRange]) -> Option<u64> {
    if size == 0 {
        return None;
    }
    banks.iter().find_map(|bank| {
        // The candidate must end at or below `limit`. Each conflict lowers `limit` to the
        // conflicting range's base, below which that range can never conflict again, so this
        // loops at most once per busy range.
        let mut limit = bank.end();
        loop {
            let base = limit.checked_sub(size)? & !(align - 1);
            if base < bank.base {
                return None;
            }
            let candidate = PhysRange { base, size };
            match busy
                .iter()
                .filter(|b| b.overlaps(&candidate))
                .map(|b| b.base)
                .min()
            {
                None => return Some(base),
                Some(lowest) => limit = lowest,
            }
        }
    })
}
