//! Decoding software-generated interrupt requests into target vCPUs.
//!
//! GICv3 guests write ICC_SGI1R_EL1 (trapped by ICH_HCR_EL2.TC / HCR_EL2 when the hypervisor
//! emulates SGIs); GICv2 guests write GICD_SGIR in the distributor.

use super::VcpuSet;
use crate::guest_layout::vcpu_index_from_mpidr;

/// A decoded SGI request.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SgiRequest {
    /// SGI number, 0..=15.
    pub intid: u32,
    /// vCPUs that receive it.
    pub targets: VcpuSet,
}

/// Decodes an ICC_SGI1R_EL1 value written by vCPU `sender` of a VM with `vcpu_count` vCPUs.
///
/// Fields: TargetList [15:0] (Aff0 values RS*16 + bit), Aff1 [23:16], INTID [27:24],
/// Aff2 [39:32], IRM [40] (all but self), RS [47:44], Aff3 [55:48]. Targets that name no
/// vCPU are dropped, as the GIC drops SGIs to absent PEs.
pub fn decode_sgi1r(value: u64, sender: usize, vcpu_count: usize) -> SgiRequest {
    let intid = ((value >> 24) & 0xf) as u32;
    let mut targets = VcpuSet::EMPTY;
    if value & (1 << 40) != 0 {
        targets = VcpuSet::all(vcpu_count).without(sender);
    } else {
        let target_list = value & 0xffff;
        let aff1 = (value >> 16) & 0xff;
        let aff2 = (value >> 32) & 0xff;
        let aff3 = (value >> 48) & 0xff;
        let range_base = ((value >> 44) & 0xf) * 16;
        // Only the bits that are set (an IPI names one or a few CPUs): a walk of all 16 cost
        // about 130 instructions per SGI.
        let mut remaining = target_list;
        while remaining != 0 {
            let bit = u64::from(remaining.trailing_zeros());
            remaining &= remaining - 1;
            let aff0 = range_base + bit;
            if aff0 > 0xff {
                continue;
            }
            let mpidr = aff0 | (aff1 << 8) | (aff2 << 16) | (aff3 << 32);
            if let Some(index) = vcpu_index_from_mpidr(mpidr, vcpu_count) {
                targets = targets.with(index);
            }
        }
    }
    SgiRequest { intid, targets }
}

/// Decodes a GICD_SGIR value written by vCPU `sender`: TargetListFilter [25:24]
/// (0 = CPUTargetList, 1 = all but self, 2 = self, 3 = reserved: no targets),
/// CPUTargetList [23:16], SGIINTID [3:0].
pub fn decode_gicd_sgir(value: u32, sender: usize, vcpu_count: usize) -> SgiRequest {
    let intid = value & 0xf;
    let all = VcpuSet::all(vcpu_count);
    let targets = match (value >> 24) & 0b11 {
        0 => VcpuSet::from_bits((value >> 16) & 0xff).intersect(all),
        1 => all.without(sender),
        2 => VcpuSet::EMPTY.with(sender).intersect(all),
        _ => VcpuSet::EMPTY,
    };
    SgiRequest { intid, targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi1r_target_list_names_vcpus_by_aff0() {
        // SGI 3 to vCPUs 1 and 2 (Aff1 = Aff2 = Aff3 = 0).
        let request = decode_sgi1r((3 << 24) | 0b110, 0, 4);
        assert_eq!(request.intid, 3);
        assert_eq!(request.targets, VcpuSet::from_bits(0b110));
    }

    #[test]
    fn sgi1r_irm_means_everyone_else() {
        let request = decode_sgi1r((1 << 40) | (5 << 24) | 0xffff, 2, 4);
        assert_eq!(request.intid, 5);
        assert_eq!(request.targets, VcpuSet::from_bits(0b1011));
    }

    #[test]
    fn sgi1r_drops_absent_targets() {
        // Aff1 = 1 names a second cluster we don't have; TargetList bit 7 is past vCPU 3.
        assert_eq!(decode_sgi1r((1 << 16) | 1, 0, 4).targets, VcpuSet::EMPTY);
        assert_eq!(decode_sgi1r(1 << 7, 0, 4).targets, VcpuSet::EMPTY);
        // RS = 1 means Aff0 16..31.
        assert_eq!(decode_sgi1r((1 << 44) | 1, 0, 4).targets, VcpuSet::EMPTY);
        assert_eq!(decode_sgi1r((1 << 32) | 1, 0, 4).targets, VcpuSet::EMPTY);
    }

    #[test]
    fn gicd_sgir_filters() {
        let list = decode_gicd_sgir((0b0101 << 16) | 7, 0, 2);
        assert_eq!(list.intid, 7);
        assert_eq!(
            list.targets,
            VcpuSet::from_bits(0b01),
            "vCPU 2 does not exist"
        );
        assert_eq!(
            decode_gicd_sgir(1 << 24, 1, 4).targets,
            VcpuSet::from_bits(0b1101)
        );
        assert_eq!(
            decode_gicd_sgir(2 << 24, 3, 4).targets,
            VcpuSet::from_bits(0b1000)
        );
        assert_eq!(
            decode_gicd_sgir(3 << 24 | 0xff << 16, 0, 4).targets,
            VcpuSet::EMPTY
        );
    }
}
