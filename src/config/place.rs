//! Where each VM goes: a contiguous, 2 MiB aligned piece of host RAM and one physical CPU per
//! vCPU (static partitioning: a physical CPU runs at most one vCPU, ever), and where each
//! static shared memory region is in host RAM.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{ByteSize, ConfigError, CpuSet, SharedMemSpec, VmSpec};
use crate::dtb::PhysRange;

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
    /// index = vCPU id
    pub pcpus: Vec<usize>,
    /// Host physical address of each of the VM's `shared_mem` regions, same order. VMs naming
    /// the same id get the same address.
    pub shared: Vec<u64>,
}

/// Places VMs in order: RAM from the top of the RAM banks downwards, 2 MiB aligned, never
/// overlapping `avoid` (hypervisor image + heap, host DTB, modules, reserved-memory), any VM's
/// kernel or initrd (added here: they are read after placement) or another VM; vCPUs on their
/// hard-affinity CPU if free, else first free CPU (lowest index) — each physical CPU runs at
/// most one vCPU in total (static partitioning). A VM that does not fit (RAM or CPUs, or
/// affinity to a CPU that does not exist / is already taken) is refused with a ConfigError and
/// the others still get placed.
///
/// Shared memory: a region whose host address some VM gives must lie inside one RAM bank and
/// overlap nothing above nor another region; it is kept out of every VM's RAM. A region without
/// one is allocated once per id, top down like RAM, by the first VM naming it that gets placed.
/// A VM whose region cannot be had (or disagrees with an earlier VM on the id's size or host
/// address) is refused.
///
/// Within a VM, pinned vCPUs choose first (fewest allowed CPUs first), so an unpinned vCPU
/// never takes the CPU a sibling is pinned to; unpinned vCPUs prefer CPUs that no later VM is
/// pinned to, so a VM without affinity does not starve a pinned one listed after it.
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
    // Which VM (index) and vCPU each physical CPU runs.
    let mut owners: Vec<Option<(usize, usize)>> = vec![None; cpu_count];

    let mut placements = Vec::with_capacity(vms.len());
    for (index, vm) in vms.iter().enumerate() {
        let later_pins = vms[index + 1..]
            .iter()
            .flat_map(|v| v.affinity.iter().flatten())
            .fold(CpuSet::EMPTY, |acc, set| acc.union(*set));
        let placed = assign_cpus(vm, index, vms, &owners, later_pins).and_then(|pcpus| {
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
            Ok(Placement {
                ram_pa,
                pcpus,
                shared,
            })
        });
        if let Ok(p) = &placed {
            busy.push(PhysRange {
                base: p.ram_pa,
                size: vm.memory,
            });
            busy.extend(
                vm.shared_mem
                    .iter()
                    .zip(&p.shared)
                    .map(|(s, &base)| PhysRange { base, size: s.size }),
            );
            for (vcpu, &cpu) in p.pcpus.iter().enumerate() {
                owners[cpu] = Some((index, vcpu));
            }
        }
        placements.push(placed);
    }
    placements
}

/// Chooses a physical CPU for each vCPU of `vm` (the VM at `index` in `vms`), given which CPUs
/// earlier VMs own. Changes nothing: the caller commits only if the RAM fits too.
fn assign_cpus(
    vm: &VmSpec,
    index: usize,
    vms: &[VmSpec],
    owners: &[Option<(usize, usize)>],
    later_pins: CpuSet,
) -> Result<Vec<usize>, ConfigError> {
    let refuse = |property: &str, reason: String| ConfigError {
        vm: vm.name.clone(),
        property: String::from(property),
        reason,
    };
    let cpu_count = owners.len();
    if vm.vcpus == 0 {
        return Err(refuse("cpus", String::from("0 vCPUs")));
    }
    let free = owners.iter().filter(|o| o.is_none()).count();
    if vm.vcpus > free {
        return Err(refuse(
            "cpus",
            format!(
                "{} vCPUs but only {free} of the {cpu_count} CPUs are free (one vCPU per CPU)",
                vm.vcpus
            ),
        ));
    }
    let mut owners = owners.to_vec();
    let mut pcpus = vec![usize::MAX; vm.vcpus];
    let pin = |vcpu: usize| vm.affinity.get(vcpu).copied().flatten();

    let mut pinned: Vec<(usize, CpuSet)> = (0..vm.vcpus)
        .filter_map(|vcpu| Some((vcpu, pin(vcpu)?)))
        .collect();
    pinned.sort_by_key(|(vcpu, set)| (set.len(), *vcpu));
    for (vcpu, set) in pinned {
        if let Some(cpu) = set.iter().find(|&c| c >= cpu_count) {
            return Err(refuse(
                "hard-affinity",
                format!("vCPU {vcpu} is pinned to CPU {cpu} but the machine has {cpu_count} CPUs"),
            ));
        }
        let Some(cpu) = set.iter().find(|&c| owners[c].is_none()) else {
            let holders: Vec<String> = set
                .iter()
                .filter_map(|c| {
                    let (owner, v) = owners[c]?;
                    let who = if owner == index {
                        String::from("this VM")
                    } else {
                        vms[owner].name.clone()
                    };
                    Some(format!("CPU {c} runs {who}'s vCPU {v}"))
                })
                .collect();
            return Err(refuse(
                "hard-affinity",
                format!(
                    "vCPU {vcpu} may run only on {} {set}, taken ({})",
                    if set.len() == 1 { "CPU" } else { "CPUs" },
                    holders.join(", ")
                ),
            ));
        };
        owners[cpu] = Some((index, vcpu));
        pcpus[vcpu] = cpu;
    }
    for vcpu in (0..vm.vcpus).filter(|&v| pin(v).is_none()) {
        let mut free = (0..cpu_count).filter(|&c| owners[c].is_none());
        let cpu = free
            .clone()
            .find(|&c| !later_pins.contains(c))
            .or_else(|| free.next())
            // The count check above leaves a free CPU for every vCPU.
            .ok_or_else(|| refuse("cpus", String::from("no free CPU")))?;
        owners[cpu] = Some((index, vcpu));
        pcpus[vcpu] = cpu;
    }
    Ok(pcpus)
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
