//! The guest's view of the machine: a QEMU `virt`-like layout, whatever the physical board.
//!
//! Every guest sees RAM at IPA 0x4000_0000, a PL011 at 0x0900_0000 and a GIC at `virt`'s
//! addresses. The loader, the guest DTB writer, the stage-2 fault handler and the emulated
//! devices all take their addresses from here so they cannot drift apart.

/// Where guest RAM starts in the IPA space (QEMU `virt`).
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;

/// The emulated PL011 UART (QEMU `virt`'s `pl011@9000000`).
pub const PL011_BASE: u64 = 0x0900_0000;
/// Size of the PL011 register window.
pub const PL011_SIZE: u64 = 0x1000;
/// The PL011's interrupt as an SPI number (DT cell) ...
pub const PL011_SPI: u32 = 1;
/// ... and as a GIC INTID (SPIs start at 32).
pub const PL011_INTID: u32 = 32 + PL011_SPI;
/// The PL011 reference clock QEMU `virt` advertises (`apb-pclk`, 24 MHz).
pub const PL011_CLOCK_HZ: u32 = 24_000_000;

/// The pvpanic device (`qemu,pvpanic-mmio`, `devices::pvpanic`): a free slot in `virt`'s
/// map (QEMU's `virt` has no MMIO pvpanic), one 4 KiB page.
pub const PVPANIC_BASE: u64 = 0x0906_0000;
/// Size of its window; the register is the first byte (the DT `reg` says 2, as QEMU's
/// ISA device's port range).
pub const PVPANIC_SIZE: u64 = 0x1000;

/// GIC distributor (v2 and v3).
pub const GICD_BASE: u64 = 0x0800_0000;
/// GICv3 distributor window.
pub const GICD_SIZE_V3: u64 = 0x1_0000;
/// GICv2 distributor window (architected 4 KiB).
pub const GICD_SIZE_V2: u64 = 0x1000;
/// GICv2 CPU interface as seen by the guest (backed by the physical GICV).
pub const GICC_BASE: u64 = 0x0801_0000;
/// GICv2 CPU interface size: two 4 KiB pages (GICC_DIR lives at +0x1000).
pub const GICC_SIZE: u64 = 0x2000;
/// First GICv3 redistributor; one per vCPU, `GICR_STRIDE` apart.
pub const GICR_BASE: u64 = 0x080a_0000;
/// One redistributor = RD_base frame + SGI_base frame, 64 KiB each.
pub const GICR_STRIDE: u64 = 0x2_0000;

/// Architected timer PPIs as QEMU `virt` lists them (DT PPI numbers, INTID = 16 + n).
pub const TIMER_PPI_SECURE_PHYS: u32 = 13;
/// Non-secure EL1 physical timer PPI.
pub const TIMER_PPI_NONSECURE_PHYS: u32 = 14;
/// EL1 virtual timer PPI: the one the guest uses; INTID 27.
pub const TIMER_PPI_VIRT: u32 = 11;
/// EL2 (hypervisor) physical timer PPI.
pub const TIMER_PPI_HYP: u32 = 10;
/// INTID of the virtual timer interrupt the hypervisor injects.
pub const VTIMER_INTID: u32 = 16 + TIMER_PPI_VIRT;

/// Upper bound on vCPUs per VM: GICv2 can address at most 8 CPU interfaces, and the boards we
/// run on have 4 CPUs.
pub const MAX_VCPUS: usize = 8;

/// Which GIC architecture the guest sees (always the host's kind: GICv2 guests need the
/// physical GICV, GICv3 guests the ICH_* system registers).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum GicVersion {
    /// GICv2: emulated distributor, CPU interface backed by GICV.
    V2,
    /// GICv3: emulated distributor and redistributors, system-register CPU interface.
    V3,
}

/// vCPU numbering (MPIDR affinity <-> index) is defined once, in `vcpu`.
pub use crate::vcpu::{vcpu_index_from_mpidr, vcpu_mpidr};

// The device windows must not overlap each other or RAM (checked at build time).
const _: () = assert!(GICD_BASE + GICD_SIZE_V3 <= GICC_BASE);
const _: () = assert!(GICC_BASE + GICC_SIZE <= GICR_BASE);
const _: () = assert!(gicr_base(MAX_VCPUS) <= PL011_BASE);
const _: () = assert!(PL011_BASE + PL011_SIZE <= PVPANIC_BASE);
const _: () = assert!(PVPANIC_BASE + PVPANIC_SIZE <= GUEST_RAM_BASE);
const _: () = assert!(VTIMER_INTID == 27 && PL011_INTID == 33);

/// Base IPA of vCPU `index`'s GICv3 redistributor.
pub const fn gicr_base(index: usize) -> u64 {
    GICR_BASE + (index as u64) * GICR_STRIDE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpidr_round_trips_for_every_vcpu() {
        for i in 0..MAX_VCPUS {
            assert_eq!(vcpu_mpidr(i), i as u64);
            assert_eq!(vcpu_index_from_mpidr(vcpu_mpidr(i), MAX_VCPUS), Some(i));
        }
        assert_eq!(vcpu_mpidr(17), 0x101);
        assert_eq!(vcpu_index_from_mpidr(0x101, 32), Some(17));
    }

    #[test]
    fn mpidr_outside_vm_is_rejected() {
        assert_eq!(vcpu_index_from_mpidr(4, 4), None);
        assert_eq!(vcpu_index_from_mpidr(0x10, 64), None);
        assert_eq!(vcpu_index_from_mpidr(1 << 16, 4), None);
        assert_eq!(vcpu_index_from_mpidr(1 << 32, 4), None);
        // Only affinity fields: callers strip IROUTER.IRM / MPIDR bit 31 themselves.
        assert_eq!(vcpu_index_from_mpidr((1 << 31) | 2, 4), None);
        assert_eq!(vcpu_index_from_mpidr(2, 4), Some(2));
    }
}
