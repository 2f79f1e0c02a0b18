//! Virtual CPUs: the state other physical CPUs share with a vCPU's run loop.
//!
//! - [`request`]: request bits, guest mode and kicks (KVM's vCPU requests);
//! - [`power`]: PSCI power state of each vCPU and of the VM (KVM/ARM: turn off vCPUs and flush stage 2 on system events, 2014);
//! - the vCPU ↔ MPIDR numbering below, used by PSCI, the guest DTB and the vGIC.

pub mod power;
pub mod request;

#[cfg(all(test, loom))]
mod loom_models;

/// Highest vCPU count the MPIDR numbering covers (Aff0 0..16, Aff1 and Aff2 0..256).
pub const MPIDR_VCPU_LIMIT: usize = 1 << 20;

/// The affinity fields of vCPU `index`'s MPIDR_EL1 (what the guest DTB puts in `cpus/cpu@N/reg`
/// and PSCI calls name): Aff0 = `index % 16`, Aff1 = `(index / 16) % 256`,
/// Aff2 = `index / 4096`, as KVM does; GICv3 SGIs reach at most 16 Aff0 values per cluster.
/// VMPIDR_EL2 is this value with bit 31 (RES1) set. `index` must be below [`MPIDR_VCPU_LIMIT`].
pub const fn vcpu_mpidr(index: usize) -> u64 {
    let index = index as u64;
    (index & 0xf) | ((index >> 4) & 0xff) << 8 | ((index >> 12) & 0xff) << 16
}

/// The vCPU whose MPIDR affinity is `mpidr`, among `vcpu_count` vCPUs; `None` if no vCPU has
/// it (including any bit outside the affinity fields, or Aff3 set).
pub fn vcpu_index_from_mpidr(mpidr: u64, vcpu_count: usize) -> Option<usize> {
    const AFFINITY_0_TO_2: u64 = 0x00ff_ffff;
    if mpidr & !AFFINITY_0_TO_2 != 0 {
        return None;
    }
    let (aff0, aff1, aff2) = (mpidr & 0xff, (mpidr >> 8) & 0xff, (mpidr >> 16) & 0xff);
    if aff0 >= 16 {
        return None;
    }
    let index = usize::try_from(aff0 | aff1 << 4 | aff2 << 12).ok()?;
    (index < vcpu_count).then_some(index)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn mpidr_numbering_round_trips() {
        for index in [0, 1, 15, 16, 17, 255, 4095, 4096, MPIDR_VCPU_LIMIT - 1] {
            assert_eq!(
                vcpu_index_from_mpidr(vcpu_mpidr(index), MPIDR_VCPU_LIMIT),
                Some(index)
            );
        }
        assert_eq!(vcpu_mpidr(3), 3);
        assert_eq!(vcpu_mpidr(17), 0x101);
    }

    #[test]
    fn mpidr_outside_the_vcpus_or_with_stray_bits_is_no_vcpu() {
        assert_eq!(vcpu_index_from_mpidr(4, 4), None);
        assert_eq!(vcpu_index_from_mpidr(0x10, 64), None); // Aff0 >= 16
        assert_eq!(vcpu_index_from_mpidr(1 << 31, 4), None); // RES1 bit is not affinity
        assert_eq!(vcpu_index_from_mpidr(1 << 32, 4), None); // Aff3
        assert_eq!(vcpu_index_from_mpidr(1 << 24, 4), None); // MT/U bits
        assert_eq!(vcpu_index_from_mpidr(u64::MAX, 4), None);
        assert_eq!(vcpu_index_from_mpidr(0, 0), None);
    }
}
