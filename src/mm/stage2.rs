//! Stage-2 translation for one VM: what to do with a faulting IPA, the VTCR_EL2 geometry, and
//! the page table itself (an `aarch64-paging` `Stage2` mapping).
//!
//! Guest RAM is mapped lazily: the first access to an unmapped IPA faults, and
//! [`GuestMemoryMap::decide`] says whether to map RAM (a whole 2 MiB block when the block lies
//! inside RAM and host and guest addresses are 2 MiB congruent, else one 4 KiB page), map a
//! passed-through device page (the GICv2 GICV behind the guest's GICC), emulate a device, or
//! inject an external abort. [`Stage2Map`] then writes the entry.
//!
//! TLB and cache maintenance are the caller's (arch code) job: before mapping RAM for a guest
//! that may run with its MMU off, clean+invalidate the range to PoC; after `unmap_all`,
//! `tlbi vmalls12e1is` with the VM's VMID in VTTBR (aarch64-paging only issues
//! `tlbi ipas2e1is` per entry, and only while the map is marked active).

use crate::guest_layout::{
    GICC_BASE, GICC_SIZE, GICD_BASE, GICD_SIZE_V2, GICD_SIZE_V3, GICR_BASE, GICR_STRIDE,
    GUEST_RAM_BASE, GicVersion, PL011_BASE, PL011_SIZE, PL031_BASE, PL031_SIZE, PVPANIC_BASE,
    PVPANIC_SIZE,
};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::linearmap::LinearTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2, Translation};
use aarch64_paging::{MapError, Mapping};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

pub use super::layout::PAGE_SIZE;
/// 2 MiB level-2 block.
pub const BLOCK_SIZE: u64 = 0x20_0000;

fn page_aligned(value: u64) -> bool {
    value.is_multiple_of(PAGE_SIZE)
}

/// Why a stage-2 operation failed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Stage2Error {
    /// No usable stage-2 geometry for this PARange / IPA size.
    UnsupportedIpaSize {
        /// IPA bits asked for.
        ipa_bits: u32,
    },
    /// A range is not page aligned, or wraps.
    Misaligned {
        /// Start of the range.
        ipa: u64,
        /// Its size.
        size: u64,
    },
    /// The table library refused the update.
    Map(MapError),
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedIpaSize { ipa_bits } => {
                write!(f, "no stage-2 geometry for a {ipa_bits}-bit IPA space")
            }
            Self::Misaligned { ipa, size } => {
                write!(f, "stage-2 range {ipa:#x}+{size:#x} is not page aligned")
            }
            Self::Map(err) => write!(f, "stage-2 table update: {err}"),
        }
    }
}

impl From<MapError> for Stage2Error {
    fn from(err: MapError) -> Self {
        Self::Map(err)
    }
}

/// VTCR_EL2 geometry for a 4 KiB granule and a single (not concatenated) root table, the only
/// shape `aarch64-paging` builds.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Stage2Geometry {
    /// Size of the guest IPA space in bits.
    pub ipa_bits: u32,
    /// VTCR_EL2.T0SZ = 64 - ipa_bits.
    pub t0sz: u8,
    /// VTCR_EL2.SL0 encoding of the start level (4 KiB granule: 0b10 = level 0, 0b01 = 1).
    pub sl0: u8,
    /// Translation start level (root table level for `aarch64-paging`).
    pub start_level: usize,
    /// VTCR_EL2.PS: output (physical) address size, PARange encoding.
    pub ps: u8,
}

/// Physical address bits of an ID_AA64MMFR0_EL1.PARange value (None for reserved values).
pub const fn pa_range_bits(pa_range: u8) -> Option<u32> {
    match pa_range {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

/// Picks the stage-2 geometry: `wanted_ipa_bits` capped by the CPU's PA size (PARange from
/// ID_AA64MMFR0_EL1) and by what one 4 KiB root table can do.
///
/// - 52-bit PA needs FEAT_LPA2 descriptors; we stay at 48 bits (PS = 0b101).
/// - IPA of 32..=39 bits starts at level 1. 40..=48 bits need level 0, which the architecture
///   only allows when PA >= 44 bits; below that KVM concatenates level-1 tables, which
///   aarch64-paging cannot, so the IPA space is capped at 39 bits (512 GiB, plenty for guests
///   whose RAM starts at 1 GiB).
pub fn stage2_geometry(pa_range: u8, wanted_ipa_bits: u32) -> Result<Stage2Geometry, Stage2Error> {
    let unsupported = Stage2Error::UnsupportedIpaSize {
        ipa_bits: wanted_ipa_bits,
    };
    let pa_bits = pa_range_bits(pa_range).ok_or(unsupported.clone())?.min(48);
    let ps = pa_range.min(5);
    let mut ipa_bits = wanted_ipa_bits.min(pa_bits);
    if ipa_bits > 39 && pa_bits < 44 {
        ipa_bits = 39;
    }
    let (start_level, sl0) = match ipa_bits {
        32..=39 => (1, 0b01),
        40..=48 => (0, 0b10),
        _ => return Err(unsupported),
    };
    Ok(Stage2Geometry {
        ipa_bits,
        t0sz: (64 - ipa_bits) as u8,
        sl0,
        start_level,
        ps,
    })
}

impl Stage2Geometry {
    /// The VTCR_EL2 value: this geometry, 4 KiB granule, inner-shareable write-back
    /// write-allocate table walks, RES1 bit 31, and VS for 16-bit VMIDs.
    pub const fn vtcr_el2(&self, vmid_16bit: bool) -> u64 {
        const IRGN0_WBWA: u64 = 0b01 << 8;
        const ORGN0_WBWA: u64 = 0b01 << 10;
        const SH0_INNER: u64 = 0b11 << 12;
        const TG0_4K: u64 = 0b00 << 14;
        const VS_16BIT: u64 = 1 << 19;
        const RES1: u64 = 1 << 31;
        (self.t0sz as u64)
            | ((self.sl0 as u64) << 6)
            | IRGN0_WBWA
            | ORGN0_WBWA
            | SH0_INNER
            | TG0_4K
            | ((self.ps as u64) << 16)
            | if vmid_16bit { VS_16BIT } else { 0 }
            | RES1
    }
}

/// An emulated device window in the guest's IPA space.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum EmulatedDevice {
    /// The PL011 console.
    Pl011,
    /// The PL031 real-time clock.
    Pl031,
    /// The GIC distributor.
    GicDistributor,
    /// The GICv3 redistributors (offset from GICR_BASE, all vCPUs).
    GicRedistributors,
    /// The pvpanic register (`devices::pvpanic`).
    Pvpanic,
}

/// What to do about a stage-2 fault.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Stage2Decision {
    /// Map guest RAM: `size` bytes (`PAGE_SIZE` or `BLOCK_SIZE`) at `ipa` to host `pa`, normal
    /// write-back memory, read/write/execute.
    MapRam {
        /// First IPA of the mapping (aligned to `size`).
        ipa: u64,
        /// Host physical address backing it.
        pa: u64,
        /// Bytes.
        size: u64,
    },
    /// Map a passed-through device page (e.g. GICV at the guest's GICC), device memory.
    MapDevice {
        /// IPA of the page.
        ipa: u64,
        /// Host physical address.
        pa: u64,
        /// Bytes (`PAGE_SIZE`).
        size: u64,
    },
    /// Emulate the access: `offset` into `device`'s window.
    Emulate {
        /// Which device.
        device: EmulatedDevice,
        /// Offset of the faulting IPA in its window.
        offset: u64,
    },
    /// Nothing lives there: inject a synchronous external abort.
    ExternalAbort,
}

/// A device window the hypervisor emulates.
#[derive(Clone, Debug, Eq, PartialEq)]
struct EmulatedWindow {
    ipas: Range<u64>,
    device: EmulatedDevice,
}

/// A host device window mapped straight into the guest.
#[derive(Clone, Debug, Eq, PartialEq)]
struct PassthroughWindow {
    ipas: Range<u64>,
    pa: u64,
}

/// One VM's IPA space: RAM backed by host memory, emulated and passed-through device windows.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GuestMemoryMap {
    ram_ipa: u64,
    ram_size: u64,
    ram_pa: u64,
    emulated: Vec<EmulatedWindow>,
    passthrough: Vec<PassthroughWindow>,
    /// Static shared memory: host RAM another VM maps too, normal memory like RAM.
    shared: Vec<PassthroughWindow>,
}

impl GuestMemoryMap {
    /// RAM only: `ram_size` bytes at `ram_ipa`, backed by host memory at `ram_pa`.
    pub fn new(ram_ipa: u64, ram_size: u64, ram_pa: u64) -> Result<Self, Stage2Error> {
        let misaligned = Stage2Error::Misaligned {
            ipa: ram_ipa,
            size: ram_size,
        };
        if !page_aligned(ram_ipa) || !page_aligned(ram_size) || !page_aligned(ram_pa) {
            return Err(misaligned);
        }
        if ram_ipa.checked_add(ram_size).is_none() || ram_pa.checked_add(ram_size).is_none() {
            return Err(misaligned);
        }
        Ok(Self {
            ram_ipa,
            ram_size,
            ram_pa,
            emulated: Vec::new(),
            passthrough: Vec::new(),
            shared: Vec::new(),
        })
    }

    /// The `virt`-like guest machine: RAM at 0x4000_0000, the PL011, the PL031, the GIC distributor,
    /// and either the GICv3 redistributors (emulated) or the GICv2 CPU interface (the host's
    /// GICV at `gicv_pa`, passed through).
    pub fn virt_guest(
        ram_size: u64,
        ram_pa: u64,
        gic: GicVersion,
        vcpu_count: usize,
        gicv_pa: Option<u64>,
    ) -> Result<Self, Stage2Error> {
        let mut map = Self::new(GUEST_RAM_BASE, ram_size, ram_pa)?;
        map.add_emulated(PL011_BASE..PL011_BASE + PL011_SIZE, EmulatedDevice::Pl011);
        map.add_emulated(PL031_BASE..PL031_BASE + PL031_SIZE, EmulatedDevice::Pl031);
        map.add_emulated(
            PVPANIC_BASE..PVPANIC_BASE + PVPANIC_SIZE,
            EmulatedDevice::Pvpanic,
        );
        match gic {
            GicVersion::V3 => {
                map.add_emulated(
                    GICD_BASE..GICD_BASE + GICD_SIZE_V3,
                    EmulatedDevice::GicDistributor,
                );
                let gicr_end = GICR_BASE + GICR_STRIDE * vcpu_count as u64;
                map.add_emulated(GICR_BASE..gicr_end, EmulatedDevice::GicRedistributors);
            }
            GicVersion::V2 => {
                map.add_emulated(
                    GICD_BASE..GICD_BASE + GICD_SIZE_V2,
                    EmulatedDevice::GicDistributor,
                );
                if let Some(pa) = gicv_pa {
                    map.add_passthrough(GICC_BASE..GICC_BASE + GICC_SIZE, pa)?;
                }
            }
        }
        Ok(map)
    }

    /// Adds an emulated device window.
    pub fn add_emulated(&mut self, ipas: Range<u64>, device: EmulatedDevice) {
        self.emulated.push(EmulatedWindow { ipas, device });
    }

    /// Adds a host device window mapped 1:1 (page by page) at `pa`.
    /// Maps host RAM at `pa` (shared with another VM) at `ipas`, as normal memory.
    pub fn add_shared(&mut self, ipas: Range<u64>, pa: u64) -> Result<(), Stage2Error> {
        let size = ipas.end.saturating_sub(ipas.start);
        if !page_aligned(ipas.start) || !page_aligned(size) || size == 0 || !page_aligned(pa) {
            return Err(Stage2Error::Misaligned {
                ipa: ipas.start,
                size,
            });
        }
        self.shared.push(PassthroughWindow { ipas, pa });
        Ok(())
    }

    pub fn add_passthrough(&mut self, ipas: Range<u64>, pa: u64) -> Result<(), Stage2Error> {
        let size = ipas.end.saturating_sub(ipas.start);
        if !page_aligned(ipas.start) || !page_aligned(size) || !page_aligned(pa) {
            return Err(Stage2Error::Misaligned {
                ipa: ipas.start,
                size,
            });
        }
        self.passthrough.push(PassthroughWindow { ipas, pa });
        Ok(())
    }

    /// Guest RAM as an IPA range.
    pub fn ram(&self) -> Range<u64> {
        self.ram_ipa..self.ram_ipa + self.ram_size
    }

    /// Host physical address backing guest RAM at `ipa`, if `ipa` is RAM.
    pub fn ram_pa(&self, ipa: u64) -> Option<u64> {
        self.ram()
            .contains(&ipa)
            .then(|| self.ram_pa + (ipa - self.ram_ipa))
    }

    /// Decides what a stage-2 fault at `ipa` calls for.
    pub fn decide(&self, ipa: u64) -> Stage2Decision {
        if let Some(pa) = self.ram_pa(ipa) {
            let block = ipa & !(BLOCK_SIZE - 1);
            let ram = self.ram();
            let block_inside = block >= ram.start
                && block
                    .checked_add(BLOCK_SIZE)
                    .is_some_and(|end| end <= ram.end);
            let congruent = self
                .ram_pa
                .wrapping_sub(self.ram_ipa)
                .is_multiple_of(BLOCK_SIZE);
            return if block_inside && congruent {
                Stage2Decision::MapRam {
                    ipa: block,
                    pa: pa & !(BLOCK_SIZE - 1),
                    size: BLOCK_SIZE,
                }
            } else {
                let page = ipa & !(PAGE_SIZE - 1);
                Stage2Decision::MapRam {
                    ipa: page,
                    pa: pa & !(PAGE_SIZE - 1),
                    size: PAGE_SIZE,
                }
            };
        }
        if let Some(window) = self.shared.iter().find(|w| w.ipas.contains(&ipa)) {
            let pa = window.pa + (ipa - window.ipas.start);
            let block = ipa & !(BLOCK_SIZE - 1);
            let block_inside = block >= window.ipas.start
                && block
                    .checked_add(BLOCK_SIZE)
                    .is_some_and(|end| end <= window.ipas.end);
            let congruent = window
                .pa
                .wrapping_sub(window.ipas.start)
                .is_multiple_of(BLOCK_SIZE);
            let size = if block_inside && congruent {
                BLOCK_SIZE
            } else {
                PAGE_SIZE
            };
            return Stage2Decision::MapRam {
                ipa: ipa & !(size - 1),
                pa: pa & !(size - 1),
                size,
            };
        }
        if let Some(window) = self.passthrough.iter().find(|w| w.ipas.contains(&ipa)) {
            let page = ipa & !(PAGE_SIZE - 1);
            return Stage2Decision::MapDevice {
                ipa: page,
                pa: window.pa + (page - window.ipas.start),
                size: PAGE_SIZE,
            };
        }
        if let Some(window) = self.emulated.iter().find(|w| w.ipas.contains(&ipa)) {
            return Stage2Decision::Emulate {
                device: window.device,
                offset: ipa - window.ipas.start,
            };
        }
        Stage2Decision::ExternalAbort
    }
}

/// Stage-2 attributes of guest RAM: normal inner/outer write-back, inner shareable,
/// read/write, executable, access flag set (no access-flag faults).
pub fn ram_attributes() -> Stage2Attributes {
    Stage2Attributes::VALID
        | Stage2Attributes::ACCESS_FLAG
        | Stage2Attributes::SH_INNER
        | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
        | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
        | Stage2Attributes::S2AP_ACCESS_RW
}

/// Stage-2 attributes of guest RAM under HCR_EL2.FWB: MemAttr 0b0110, Normal Write-Back
/// whatever the guest's stage 1 says — with its MMU off too, so nothing EL2 writes for it needs
/// cleaning to PoC (Arm ARM D8.6.6, "Stage 2 memory type and Cacheability attributes when
/// FEAT_S2FWB is enabled"; KVM's `MT_S2_FWB_NORMAL`). aarch64-paging names the bits for the
/// non-FWB encoding only: 0b01_10 is its OUTER_NC | INNER_WT.
pub fn ram_attributes_forced_write_back() -> Stage2Attributes {
    Stage2Attributes::VALID
        | Stage2Attributes::ACCESS_FLAG
        | Stage2Attributes::SH_INNER
        | Stage2Attributes::MEMATTR_NORMAL_OUTER_NC
        | Stage2Attributes::MEMATTR_NORMAL_INNER_WT
        | Stage2Attributes::S2AP_ACCESS_RW
}

/// Stage-2 attributes of a passed-through device: Device-nGnRE, read/write, never executable.
pub fn device_attributes() -> Stage2Attributes {
    Stage2Attributes::VALID
        | Stage2Attributes::ACCESS_FLAG
        | Stage2Attributes::MEMATTR_DEVICE_nGnRE
        | Stage2Attributes::S2AP_ACCESS_RW
        | Stage2Attributes::XN
}

/// One VM's stage-2 page table.
///
/// `T` turns table physical addresses into pointers the hypervisor can write through; with the
/// hypervisor's heap linearly mapped, that is a `LinearTranslation` with the heap's VA→PA
/// offset (on the host in tests: offset 0, the pointer is the "physical address").
/// The caller must `mark_inactive`/not drop a map a CPU still uses (aarch64-paging panics on
/// dropping an active map).
pub struct Stage2Map<T: Translation<Stage2Attributes> = LinearTranslation<Stage2Attributes>> {
    mapping: Mapping<T, Stage2>,
    ipa_limit: u64,
    /// Whether HCR_EL2.FWB is set where this table is used: guest RAM then gets the
    /// forced Write-Back encoding.
    forced_write_back: bool,
}

impl Stage2Map<LinearTranslation<Stage2Attributes>> {
    /// An empty table for `geometry`, whose tables live at `pa = va + table_va_to_pa` (must
    /// be page aligned).
    pub fn new_linear(geometry: &Stage2Geometry, table_va_to_pa: isize) -> Self {
        Self::new(geometry, LinearTranslation::new(table_va_to_pa))
    }
}

impl<T: Translation<Stage2Attributes>> Drop for Stage2Map<T> {
    /// A table is dropped only with its VM, which no vCPU can still run (they borrow the VM):
    /// it is no longer live, and aarch64-paging may free it.
    fn drop(&mut self) {
        while self.mapping.active() {
            self.mapping.mark_inactive();
        }
    }
}

impl<T: Translation<Stage2Attributes>> Stage2Map<T> {
    /// An empty table for `geometry` using `translation` for its table pages.
    pub fn new(geometry: &Stage2Geometry, translation: T) -> Self {
        Self {
            mapping: Mapping::new(translation, geometry.start_level, Stage2),
            ipa_limit: 1u64 << geometry.ipa_bits,
            forced_write_back: false,
        }
    }

    /// Maps guest RAM with FEAT_S2FWB's forced Write-Back encoding from now on (for CPUs that
    /// run its guest with HCR_EL2.FWB set).
    pub fn use_forced_write_back(&mut self) {
        self.forced_write_back = true;
    }

    /// Physical address of the root table, for VTTBR_EL2.BADDR (the caller adds the VMID).
    pub fn root_pa(&self) -> u64 {
        self.mapping.root_address().0 as u64
    }

    /// Records that the table may be loaded in VTTBR_EL2 from now on: aarch64-paging then
    /// checks break-before-make on every update and invalidates the TLB entries (by IPA, for
    /// the VMID in VTTBR_EL2) of whatever an update replaces.
    pub fn mark_live(&self) {
        self.mapping.mark_active();
    }

    fn region(&self, ipa: u64, size: u64) -> Result<MemoryRegion, Stage2Error> {
        let misaligned = Stage2Error::Misaligned { ipa, size };
        let end = ipa.checked_add(size).ok_or(misaligned.clone())?;
        if !page_aligned(ipa) || !page_aligned(size) || size == 0 || end > self.ipa_limit {
            return Err(misaligned);
        }
        let start = usize::try_from(ipa).map_err(|_| misaligned.clone())?;
        let end = usize::try_from(end).map_err(|_| misaligned)?;
        Ok(MemoryRegion::new(start, end))
    }

    /// Maps `size` bytes at `ipa` to host `pa` with `attributes`. 2 MiB aligned ranges become
    /// block entries.
    pub fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        attributes: Stage2Attributes,
    ) -> Result<(), Stage2Error> {
        let region = self.region(ipa, size)?;
        let pa = usize::try_from(pa).map_err(|_| Stage2Error::Misaligned { ipa, size })?;
        self.mapping.map_range(
            &region,
            PhysicalAddress(pa),
            attributes,
            Constraints::empty(),
        )?;
        Ok(())
    }

    /// Carries out a mapping decision; `Emulate` and `ExternalAbort` map nothing.
    pub fn apply(&mut self, decision: &Stage2Decision) -> Result<(), Stage2Error> {
        match *decision {
            Stage2Decision::MapRam { ipa, pa, size } => {
                let attributes = if self.forced_write_back {
                    ram_attributes_forced_write_back()
                } else {
                    ram_attributes()
                };
                self.map(ipa, pa, size, attributes)
            }
            Stage2Decision::MapDevice { ipa, pa, size } => {
                self.map(ipa, pa, size, device_attributes())
            }
            Stage2Decision::Emulate { .. } | Stage2Decision::ExternalAbort => Ok(()),
        }
    }

    /// Removes every mapping (guest reset) and frees the subtables; the root table stays, so
    /// VTTBR need not change. The caller invalidates the VM's TLB entries.
    pub fn unmap_all(&mut self) -> Result<(), Stage2Error> {
        let region = self.region(0, self.ipa_limit)?;
        self.mapping.map_range(
            &region,
            PhysicalAddress(0),
            Stage2Attributes::empty(),
            Constraints::empty(),
        )?;
        self.mapping.compact_subtables();
        Ok(())
    }

    /// The valid leaf entry covering `ipa`: (PA of `ipa`, entry size, attributes).
    pub fn lookup(&self, ipa: u64) -> Option<(u64, u64, Stage2Attributes)> {
        let region = self.region(ipa & !(PAGE_SIZE - 1), PAGE_SIZE).ok()?;
        let mut found = None;
        self.mapping
            .walk_range(&region, &mut |range, descriptor, level| {
                if descriptor.is_valid() && found.is_none() {
                    let size = (range.end().0 - range.start().0) as u64;
                    let entry_size = match level {
                        3 => PAGE_SIZE,
                        2 => BLOCK_SIZE,
                        _ => size,
                    };
                    let entry_start = ipa & !(entry_size - 1);
                    let pa = descriptor.output_address().0 as u64 + (ipa - entry_start);
                    found = Some((pa, entry_size, descriptor.flags()));
                }
                Ok(())
            })
            .ok()?;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn ram_in_an_aligned_block_gets_a_2mib_block() {
        let map = GuestMemoryMap::new(0x4000_0000, 64 * MIB, 0x8_0000_0000).unwrap();
        assert_eq!(
            map.decide(0x4021_2345),
            Stage2Decision::MapRam {
                ipa: 0x4020_0000,
                pa: 0x8_0020_0000,
                size: BLOCK_SIZE
            }
        );
    }

    #[test]
    fn ram_edges_and_incongruent_backing_get_pages() {
        // RAM ends 1 MiB into a block: the last, partial block is mapped page by page.
        let map = GuestMemoryMap::new(0x4000_0000, 3 * MIB, 0x8_0000_0000).unwrap();
        assert_eq!(
            map.decide(0x4020_1004),
            Stage2Decision::MapRam {
                ipa: 0x4020_1000,
                pa: 0x8_0020_1000,
                size: PAGE_SIZE
            }
        );
        assert_eq!(
            map.decide(0x4000_0000).clone(),
            Stage2Decision::MapRam {
                ipa: 0x4000_0000,
                pa: 0x8_0000_0000,
                size: BLOCK_SIZE
            }
        );
        // Host backing only 4 KiB aligned: a block would map the wrong host memory.
        let map = GuestMemoryMap::new(0x4000_0000, 64 * MIB, 0x8_0000_1000).unwrap();
        assert_eq!(
            map.decide(0x4000_0010),
            Stage2Decision::MapRam {
                ipa: 0x4000_0000,
                pa: 0x8_0000_1000,
                size: PAGE_SIZE
            }
        );
    }

    #[test]
    fn devices_are_emulated_or_passed_through_and_holes_abort() {
        let map =
            GuestMemoryMap::virt_guest(64 * MIB, 0x8_0000_0000, GicVersion::V3, 4, None).unwrap();
        assert_eq!(
            map.decide(0x0900_0018),
            Stage2Decision::Emulate {
                device: EmulatedDevice::Pl011,
                offset: 0x18
            }
        );
        assert_eq!(
            map.decide(0x0901_0008),
            Stage2Decision::Emulate {
                device: EmulatedDevice::Pl031,
                offset: 8
            }
        );
        assert_eq!(
            map.decide(0x0800_0004),
            Stage2Decision::Emulate {
                device: EmulatedDevice::GicDistributor,
                offset: 4
            }
        );
        assert_eq!(
            map.decide(0x080a_0000 + 3 * 0x2_0000 + 0x1_0100),
            Stage2Decision::Emulate {
                device: EmulatedDevice::GicRedistributors,
                offset: 3 * 0x2_0000 + 0x1_0100
            }
        );
        // Past vCPU 3's redistributor, before RAM, after RAM: nothing there.
        assert_eq!(
            map.decide(0x080a_0000 + 4 * 0x2_0000),
            Stage2Decision::ExternalAbort
        );
        assert_eq!(map.decide(0x3fff_fff8), Stage2Decision::ExternalAbort);
        assert_eq!(
            map.decide(0x4000_0000 + 64 * MIB),
            Stage2Decision::ExternalAbort
        );
        assert_eq!(map.decide(u64::MAX), Stage2Decision::ExternalAbort);
        let v2 = GuestMemoryMap::virt_guest(
            64 * MIB,
            0x8_0000_0000,
            GicVersion::V2,
            2,
            Some(0x0804_0000),
        )
        .unwrap();
        assert_eq!(
            v2.decide(0x0801_1008),
            Stage2Decision::MapDevice {
                ipa: 0x0801_1000,
                pa: 0x0804_1000,
                size: PAGE_SIZE
            }
        );
        assert_eq!(v2.decide(0x080a_0000), Stage2Decision::ExternalAbort);
    }

    #[test]
    fn misaligned_maps_are_refused() {
        assert!(GuestMemoryMap::new(0x4000_0800, MIB, 0).is_err());
        assert!(GuestMemoryMap::new(0x4000_0000, MIB, 0x10).is_err());
        assert!(GuestMemoryMap::new(u64::MAX - 0xfff, 0x2000, 0).is_err());
    }

    #[test]
    fn geometry_follows_parange() {
        // Cortex-A72 (QEMU, RPi4): PARange 0b100 = 44 bits.
        let a72 = stage2_geometry(4, 40).unwrap();
        assert_eq!(
            a72,
            Stage2Geometry {
                ipa_bits: 40,
                t0sz: 24,
                sl0: 0b10,
                start_level: 0,
                ps: 4
            }
        );
        // 40-bit PA: level 0 is not allowed and level 1 would need concatenation: 39 bits.
        let pa40 = stage2_geometry(2, 40).unwrap();
        assert_eq!(
            (pa40.ipa_bits, pa40.t0sz, pa40.sl0, pa40.start_level),
            (39, 25, 0b01, 1)
        );
        // 36-bit PA caps the IPA.
        let pa36 = stage2_geometry(1, 40).unwrap();
        assert_eq!((pa36.ipa_bits, pa36.t0sz, pa36.sl0), (36, 28, 0b01));
        // 52-bit PA: we stay at 48.
        let pa52 = stage2_geometry(6, 52).unwrap();
        assert_eq!((pa52.ipa_bits, pa52.ps, pa52.start_level), (48, 5, 0));
        assert!(stage2_geometry(7, 40).is_err());
        assert!(stage2_geometry(4, 30).is_err());
    }

    #[test]
    fn vtcr_value() {
        let geometry = stage2_geometry(4, 40).unwrap();
        // T0SZ 24, SL0 0b10, IRGN/ORGN WBWA, SH inner, TG0 4K, PS 0b100, RES1.
        assert_eq!(geometry.vtcr_el2(false), 0x8004_3598);
        assert_eq!(geometry.vtcr_el2(true), 0x8004_3598 | (1 << 19));
    }

    fn table() -> Stage2Map {
        Stage2Map::new_linear(&stage2_geometry(4, 40).unwrap(), 0)
    }

    #[test]
    fn block_and_page_mappings_land_in_the_table() {
        let mut s2 = table();
        s2.apply(&Stage2Decision::MapRam {
            ipa: 0x4020_0000,
            pa: 0x8_0020_0000,
            size: BLOCK_SIZE,
        })
        .unwrap();
        let (pa, size, attributes) = s2.lookup(0x4021_2345).unwrap();
        assert_eq!((pa, size), (0x8_0021_2345, BLOCK_SIZE));
        assert!(attributes.contains(Stage2Attributes::S2AP_ACCESS_RW));
        assert!(!attributes.contains(Stage2Attributes::XN));
        s2.apply(&Stage2Decision::MapRam {
            ipa: 0x4060_1000,
            pa: 0x8_0060_1000,
            size: PAGE_SIZE,
        })
        .unwrap();
        assert_eq!(
            s2.lookup(0x4060_1ff8).map(|(pa, size, _)| (pa, size)),
            Some((0x8_0060_1ff8, PAGE_SIZE))
        );
        assert_eq!(s2.lookup(0x4060_2000), None, "only one page was mapped");
        assert_eq!(s2.lookup(0x4000_0000), None);
        s2.apply(&Stage2Decision::MapDevice {
            ipa: 0x0801_0000,
            pa: 0x0804_0000,
            size: PAGE_SIZE,
        })
        .unwrap();
        let (_, _, device) = s2.lookup(0x0801_0004).unwrap();
        assert!(device.contains(Stage2Attributes::XN));
        assert!(device.contains(Stage2Attributes::MEMATTR_DEVICE_nGnRE));
        assert_ne!(s2.root_pa(), 0);
        assert_eq!(s2.root_pa() % PAGE_SIZE, 0);
    }

    #[test]
    fn forced_write_back_maps_ram_with_memattr_0110_and_devices_unchanged() {
        let memattr = |a: Stage2Attributes| (a.bits() >> 2) & 0xf;
        for fwb in [false, true] {
            let mut s2 = table();
            if fwb {
                s2.use_forced_write_back();
            }
            s2.apply(&Stage2Decision::MapRam {
                ipa: 0x4020_0000,
                pa: 0x8_0020_0000,
                size: BLOCK_SIZE,
            })
            .unwrap();
            s2.apply(&Stage2Decision::MapDevice {
                ipa: 0x0801_0000,
                pa: 0x0804_0000,
                size: PAGE_SIZE,
            })
            .unwrap();
            let (_, _, ram) = s2.lookup(0x4020_0000).unwrap();
            let (_, _, device) = s2.lookup(0x0801_0000).unwrap();
            // Without FWB: outer and inner Write-Back (0b1111); with it: forced Write-Back.
            assert_eq!(memattr(ram), if fwb { 0b0110 } else { 0b1111 });
            // Device-nGnRE is 0b0001 in both encodings.
            assert_eq!(memattr(device), 0b0001);
        }
    }

    #[test]
    fn unmap_all_empties_the_table() {
        let mut s2 = table();
        let root = s2.root_pa();
        s2.map(0x4000_0000, 0x8_0000_0000, 4 * BLOCK_SIZE, ram_attributes())
            .unwrap();
        s2.map(0x4080_3000, 0x8_0080_3000, PAGE_SIZE, ram_attributes())
            .unwrap();
        assert!(s2.lookup(0x4060_0000).is_some());
        s2.unmap_all().unwrap();
        assert_eq!(s2.lookup(0x4060_0000), None);
        assert_eq!(s2.lookup(0x4080_3000), None);
        assert_eq!(s2.root_pa(), root);
        // And it can be refilled.
        s2.map(0x4000_0000, 0x8_0000_0000, BLOCK_SIZE, ram_attributes())
            .unwrap();
        assert!(s2.lookup(0x4000_0000).is_some());
    }

    #[test]
    fn bad_ranges_are_errors_not_panics() {
        let mut s2 = table();
        assert!(s2.map(0x4000_0800, 0, PAGE_SIZE, ram_attributes()).is_err());
        assert!(s2.map(1 << 40, 0, PAGE_SIZE, ram_attributes()).is_err());
        assert!(
            s2.map(u64::MAX - 0xfff, 0, PAGE_SIZE, ram_attributes())
                .is_err()
        );
        assert!(s2.map(0, 0, 0, ram_attributes()).is_err());
        assert_eq!(s2.lookup(u64::MAX), None);
    }
}
