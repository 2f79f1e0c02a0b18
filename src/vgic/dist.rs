//! The emulated distributor (GICD_*), GICv2 and GICv3 flavours.
//!
//! GICv3 runs with affinity routing always on and a single security state (GICD_CTLR.ARE and
//! DS read as one), like KVM: the SGI/PPI rows of the per-interrupt registers are RAZ/WI here
//! and live in each redistributor's SGI frame. GICv2 banks those rows per accessing vCPU.

use super::irq::IrqState;
use super::{PRIVATE_IRQ_COUNT, SGI_COUNT, VcpuSet, Vgic, VgicError, check_access, sgi};
use crate::devices::mmio::AccessSize;
use crate::guest_layout::GicVersion;

pub(super) const CTLR: u64 = 0x0000;
pub(super) const TYPER: u64 = 0x0004;
pub(super) const IIDR: u64 = 0x0008;
pub(super) const TYPER2: u64 = 0x000c;
pub(super) const IGROUPR: u64 = 0x0080;
pub(super) const ISENABLER: u64 = 0x0100;
pub(super) const ICENABLER: u64 = 0x0180;
pub(super) const ISPENDR: u64 = 0x0200;
pub(super) const ICPENDR: u64 = 0x0280;
pub(super) const ISACTIVER: u64 = 0x0300;
pub(super) const ICACTIVER: u64 = 0x0380;
pub(super) const IPRIORITYR: u64 = 0x0400;
const ITARGETSR: u64 = 0x0800;
pub(super) const ICFGR: u64 = 0x0c00;
const SGIR: u64 = 0x0f00;
const IROUTER: u64 = 0x6000;
const PIDR2_V2: u64 = 0x0fe8;
const PIDR2_V3: u64 = 0xffe8;

/// Implementer ARM (JEP106 0x43B), product 0, revision 0.
pub(super) const IIDR_VALUE: u32 = 0x0000_043b;
/// GICD_CTLR bits: EnableGrp0 (v2: Enable), EnableGrp1, ARE, DS.
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;
/// GICD_TYPER.IDbits for 10-bit INTIDs (SPIs only, no LPIs).
const TYPER_IDBITS_10: u32 = 9 << 19;
/// IROUTER bits we keep: Aff3 [39:32], Interrupt_Routing_Mode [31], Aff2..Aff0 [23:0].
const IROUTER_MASK: u64 = 0xff_8000_0000 | 0xff_ffff;

/// A register row that holds one field per interrupt.
#[derive(Clone, Copy)]
pub(super) enum IrqField {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl IrqField {
    /// Value of this field's bit for `irq` when read.
    fn read(self, irq: &IrqState) -> bool {
        match self {
            Self::Group => irq.group1,
            Self::SetEnable | Self::ClearEnable => irq.enabled,
            Self::SetPending | Self::ClearPending => irq.pending(),
            Self::SetActive | Self::ClearActive => irq.active,
        }
    }

    /// Whether writing a one may change the pending or active state (and so the queue).
    fn moves_queue(self) -> bool {
        matches!(
            self,
            Self::SetPending | Self::ClearPending | Self::SetActive | Self::ClearActive
        )
    }

    /// Applies a written bit to `irq`. Returns whether the write may have made it deliverable.
    fn write(self, irq: &mut IrqState, intid: u32, version: GicVersion, bit: bool) -> bool {
        // GICv2 SGI pending state is per sender and set through GICD_SGIR only.
        let v2_sgi = version == GicVersion::V2 && intid < SGI_COUNT;
        match (self, bit) {
            (Self::Group, _) => irq.group1 = bit,
            (Self::SetEnable, true) => irq.enabled = true,
            (Self::ClearEnable, true) => irq.enabled = false,
            (Self::SetPending, true) if !v2_sgi => irq.pending_latch = true,
            (Self::ClearPending, true) if !v2_sgi => irq.clear_pending(),
            (Self::SetActive, true) => irq.active = true,
            (Self::ClearActive, true) => irq.active = false,
            _ => return false,
        }
        matches!(self, Self::Group | Self::SetEnable | Self::SetPending)
    }
}

impl Vgic {
    /// Whether the distributor (rather than a redistributor) holds `intid`'s registers.
    fn dist_holds(&self, intid: u32) -> bool {
        intid >= PRIVATE_IRQ_COUNT || self.version == GicVersion::V2
    }

    /// Reads a 1-bit-per-interrupt row of 32 interrupts starting at `first`, seen by `vcpu`.
    pub(super) fn read_bit_row(&self, vcpu: usize, first: u32, field: IrqField) -> u32 {
        (0..32).fold(0, |value, bit| match self.irq(vcpu, first + bit) {
            Some(irq) if field.read(irq) => value | (1 << bit),
            _ => value,
        })
    }

    /// Writes a 1-bit-per-interrupt row; returns the vCPUs to kick.
    pub(super) fn write_bit_row(
        &mut self,
        vcpu: usize,
        first: u32,
        field: IrqField,
        value: u32,
    ) -> VcpuSet {
        let version = self.version;
        let mut kicks = VcpuSet::EMPTY;
        for bit in 0..32 {
            let intid = first + bit;
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            if field.write(irq, intid, version, value & (1 << bit) != 0) {
                kicks = kicks.union(self.kick_for(vcpu, intid));
            }
            if field.moves_queue() && value & (1 << bit) != 0 {
                self.requeue(vcpu, intid);
            }
        }
        kicks
    }

    /// Reads `bytes` priority bytes starting at `first` (little-endian packing).
    pub(super) fn read_priorities(&self, vcpu: usize, first: u32, bytes: u64) -> u64 {
        (0..bytes as u32).fold(0, |value, byte| {
            let priority = self.irq(vcpu, first + byte).map_or(0, |irq| irq.priority);
            value | (u64::from(priority) << (8 * byte))
        })
    }

    /// Writes `bytes` priority bytes starting at `first`.
    pub(super) fn write_priorities(&mut self, vcpu: usize, first: u32, bytes: u64, value: u64) {
        for byte in 0..bytes as u32 {
            if let Some(irq) = self.irq_mut(vcpu, first + byte) {
                irq.priority = (value >> (8 * byte)) as u8;
            }
        }
    }

    /// Reads an ICFGR word: 2 bits per interrupt, bit 1 of each = edge-triggered.
    pub(super) fn read_config(&self, vcpu: usize, first: u32) -> u32 {
        (0..16).fold(0, |value, index| match self.irq(vcpu, first + index) {
            Some(irq) if irq.edge => value | (0b10 << (2 * index)),
            _ => value,
        })
    }

    /// Writes an ICFGR word. SGIs are always edge-triggered (read-only).
    pub(super) fn write_config(&mut self, vcpu: usize, first: u32, value: u32) {
        for index in 0..16 {
            let intid = first + index;
            if intid < SGI_COUNT {
                continue;
            }
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                irq.edge = value & (0b10 << (2 * index)) != 0;
                // A high line pends a level interrupt, not an edge one.
                self.requeue(vcpu, intid);
            }
        }
    }

    fn typer(&self) -> u32 {
        let it_lines = (PRIVATE_IRQ_COUNT + self.spi_count()) / 32 - 1;
        match self.version {
            GicVersion::V2 => it_lines | ((self.vcpu_count as u32 - 1) << 5),
            GicVersion::V3 => it_lines | TYPER_IDBITS_10,
        }
    }

    fn ctlr(&self) -> u32 {
        match self.version {
            GicVersion::V2 => self.dist_enables & CTLR_ENABLE_GRP0,
            GicVersion::V3 => {
                self.dist_enables & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1) | CTLR_ARE | CTLR_DS
            }
        }
    }

    /// Widths allowed at a distributor offset: bytes for priorities/targets, doublewords
    /// for IROUTER, words everywhere.
    fn dist_widths(&self, offset: u64) -> &'static [AccessSize] {
        let byte_ok = (IPRIORITYR..ITARGETSR).contains(&offset)
            || (self.version == GicVersion::V2 && (ITARGETSR..ICFGR).contains(&offset));
        let double_ok = self.version == GicVersion::V3 && (IROUTER..0x8000).contains(&offset);
        match (byte_ok, double_ok) {
            (true, _) => &[AccessSize::Byte, AccessSize::Word],
            (_, true) => &[AccessSize::Word, AccessSize::Double],
            _ => &[AccessSize::Word],
        }
    }

    /// A guest read of the distributor by `vcpu` at `offset`.
    pub fn dist_read(&self, vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, VgicError> {
        self.check_vcpu(vcpu)?;
        check_access(offset, size, self.dist_widths(offset))?;
        Ok(self.dist_read_checked(vcpu, offset, size))
    }

    fn dist_read_checked(&self, vcpu: usize, offset: u64, size: AccessSize) -> u64 {
        let row_first = |base: u64| ((offset - base) * 8) as u32;
        let bit_row = |base: u64, field: IrqField| {
            let first = row_first(base);
            if self.dist_holds(first) {
                u64::from(self.read_bit_row(vcpu, first, field))
            } else {
                0
            }
        };
        match offset {
            CTLR => u64::from(self.ctlr()),
            TYPER => u64::from(self.typer()),
            IIDR => u64::from(IIDR_VALUE),
            TYPER2 => 0,
            IGROUPR..ISENABLER => bit_row(IGROUPR, IrqField::Group),
            ISENABLER..ICENABLER => bit_row(ISENABLER, IrqField::SetEnable),
            ICENABLER..ISPENDR => bit_row(ICENABLER, IrqField::ClearEnable),
            ISPENDR..ICPENDR => bit_row(ISPENDR, IrqField::SetPending),
            ICPENDR..ISACTIVER => bit_row(ICPENDR, IrqField::ClearPending),
            ISACTIVER..ICACTIVER => bit_row(ISACTIVER, IrqField::SetActive),
            ICACTIVER..IPRIORITYR => bit_row(ICACTIVER, IrqField::ClearActive),
            IPRIORITYR..ITARGETSR => {
                let first = (offset - IPRIORITYR) as u32;
                if self.dist_holds(first) {
                    self.read_priorities(vcpu, first, size.bytes())
                } else {
                    0
                }
            }
            ITARGETSR..ICFGR if self.version == GicVersion::V2 => {
                self.read_targets(vcpu, (offset - ITARGETSR) as u32, size.bytes())
            }
            ICFGR..0x0d00 => {
                let first = ((offset - ICFGR) * 4) as u32;
                if self.dist_holds(first) {
                    u64::from(self.read_config(vcpu, first))
                } else {
                    0
                }
            }
            IROUTER..0x8000 if self.version == GicVersion::V3 => self.read_irouter(offset, size),
            PIDR2_V2 if self.version == GicVersion::V2 => 0x2b,
            PIDR2_V3 if self.version == GicVersion::V3 => 0x3b,
            _ => 0,
        }
    }

    /// Whether a distributor write at `offset` only sends SGIs (GICD_SGIR; on a GICv3 it is
    /// ignored): see `Vm::vgic_to_send_sgis`.
    pub fn is_sgir(offset: u64) -> bool {
        offset == SGIR
    }

    /// A guest write of the distributor by `vcpu`. Returns the vCPUs to kick.
    pub fn dist_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<VcpuSet, VgicError> {
        self.check_vcpu(vcpu)?;
        check_access(offset, size, self.dist_widths(offset))?;
        let word = value as u32;
        let row_first = ((offset & 0x7f) * 8) as u32;
        let bit_row = |vgic: &mut Self, field: IrqField| {
            if vgic.dist_holds(row_first) {
                vgic.write_bit_row(vcpu, row_first, field, word)
            } else {
                VcpuSet::EMPTY
            }
        };
        let kicks = match offset {
            CTLR => {
                self.dist_enables = word & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1);
                VcpuSet::all(self.vcpu_count)
            }
            IGROUPR..ISENABLER => bit_row(self, IrqField::Group),
            ISENABLER..ICENABLER => bit_row(self, IrqField::SetEnable),
            ICENABLER..ISPENDR => bit_row(self, IrqField::ClearEnable),
            ISPENDR..ICPENDR => bit_row(self, IrqField::SetPending),
            ICPENDR..ISACTIVER => bit_row(self, IrqField::ClearPending),
            ISACTIVER..ICACTIVER => bit_row(self, IrqField::SetActive),
            ICACTIVER..IPRIORITYR => bit_row(self, IrqField::ClearActive),
            IPRIORITYR..ITARGETSR => {
                let first = (offset - IPRIORITYR) as u32;
                if self.dist_holds(first) {
                    self.write_priorities(vcpu, first, size.bytes(), value);
                }
                VcpuSet::EMPTY
            }
            ITARGETSR..ICFGR if self.version == GicVersion::V2 => {
                self.write_targets((offset - ITARGETSR) as u32, size.bytes(), value)
            }
            ICFGR..0x0d00 => {
                let first = ((offset - ICFGR) * 4) as u32;
                if self.dist_holds(first) {
                    self.write_config(vcpu, first, word);
                }
                VcpuSet::EMPTY
            }
            SGIR if self.version == GicVersion::V2 => {
                let request = sgi::decode_gicd_sgir(word, vcpu, self.vcpu_count);
                self.raise_sgi(vcpu, request, true)
            }
            IROUTER..0x8000 if self.version == GicVersion::V3 => {
                self.write_irouter(offset, size, value)
            }
            _ => VcpuSet::EMPTY,
        };
        Ok(kicks)
    }

    /// GICv2 ITARGETSR bytes. SGI/PPI rows read as the accessing vCPU's own bit.
    fn read_targets(&self, vcpu: usize, first: u32, bytes: u64) -> u64 {
        (0..bytes as u32).fold(0, |value, byte| {
            let intid = first + byte;
            let targets = if intid < PRIVATE_IRQ_COUNT {
                1u8 << (vcpu & 7)
            } else {
                self.irq(vcpu, intid).map_or(0, |irq| irq.targets)
            };
            value | (u64::from(targets) << (8 * byte))
        })
    }

    fn write_targets(&mut self, first: u32, bytes: u64, value: u64) -> VcpuSet {
        let valid = VcpuSet::all(self.vcpu_count).bits() as u8;
        let mut kicks = VcpuSet::EMPTY;
        for byte in 0..bytes as u32 {
            let intid = first + byte;
            if intid < PRIVATE_IRQ_COUNT {
                continue;
            }
            if let Some(irq) = self.irq_mut(0, intid) {
                irq.targets = (value >> (8 * byte)) as u8 & valid;
                self.requeue(0, intid);
                kicks = kicks.union(self.kick_for(0, intid));
            }
        }
        kicks
    }

    /// INTID of the IROUTER at `offset`, if it names an SPI we implement.
    fn irouter_intid(&self, offset: u64) -> Option<u32> {
        let intid = u32::try_from((offset - IROUTER) / 8).ok()?;
        (intid >= PRIVATE_IRQ_COUNT && intid < PRIVATE_IRQ_COUNT + self.spi_count())
            .then_some(intid)
    }

    fn read_irouter(&self, offset: u64, size: AccessSize) -> u64 {
        let Some(intid) = self.irouter_intid(offset & !7) else {
            return 0;
        };
        let route = self.irq(0, intid).map_or(0, |irq| irq.route);
        let shift = (offset & 4) * 8;
        (route >> shift) & size.mask()
    }

    fn write_irouter(&mut self, offset: u64, size: AccessSize, value: u64) -> VcpuSet {
        let Some(intid) = self.irouter_intid(offset & !7) else {
            return VcpuSet::EMPTY;
        };
        let Some(irq) = self.irq_mut(0, intid) else {
            return VcpuSet::EMPTY;
        };
        let shift = (offset & 4) * 8;
        let field = size.mask() << shift;
        irq.route = ((irq.route & !field) | ((value << shift) & field)) & IROUTER_MASK;
        self.requeue(0, intid);
        self.kick_for(0, intid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::MmioError;

    fn read(vgic: &mut Vgic, vcpu: usize, offset: u64) -> u32 {
        vgic.dist_read(vcpu, offset, AccessSize::Word).unwrap() as u32
    }

    fn write(vgic: &mut Vgic, vcpu: usize, offset: u64, value: u32) -> VcpuSet {
        vgic.dist_write(vcpu, offset, AccessSize::Word, u64::from(value))
            .unwrap()
    }

    impl Vgic {
        /// Test helper: a 32-bit distributor write.
        pub(crate) fn dist_write_word_for_test(&mut self, vcpu: usize, offset: u64, value: u32) {
            write(self, vcpu, offset, value);
        }
    }

    #[test]
    fn typer_and_ids() {
        let mut v3 = Vgic::new(GicVersion::V3, 4, 64).unwrap();
        assert_eq!(read(&mut v3, 0, TYPER), 2 | (9 << 19));
        assert_eq!(read(&mut v3, 0, PIDR2_V3) & 0xf0, 0x30);
        assert_eq!(read(&mut v3, 0, IIDR), 0x43b);
        assert_eq!(read(&mut v3, 0, TYPER2), 0);
        let mut v2 = Vgic::new(GicVersion::V2, 4, 96).unwrap();
        assert_eq!(read(&mut v2, 0, TYPER), 3 | (3 << 5));
        assert_eq!(read(&mut v2, 0, PIDR2_V2) & 0xf0, 0x20);
    }

    #[test]
    fn v3_ctlr_has_are_and_ds_and_keeps_group_enables() {
        let mut vgic = Vgic::new(GicVersion::V3, 1, 64).unwrap();
        assert_eq!(read(&mut vgic, 0, CTLR), CTLR_ARE | CTLR_DS);
        // What Linux writes: ARE_NS | EnableGrp1A | EnableGrp1 (bits 4, 1, 0).
        write(&mut vgic, 0, CTLR, 0x13);
        assert_eq!(read(&mut vgic, 0, CTLR), 0x53);
        assert_eq!(read(&mut vgic, 0, CTLR) & (1 << 31), 0, "RWP never set");
    }

    #[test]
    fn enable_and_pending_rows_round_trip() {
        let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
        write(&mut vgic, 0, ISENABLER + 4, 0b1010);
        assert_eq!(read(&mut vgic, 0, ISENABLER + 4), 0b1010);
        write(&mut vgic, 0, ICENABLER + 4, 0b0010);
        assert_eq!(read(&mut vgic, 1, ICENABLER + 4), 0b1000);
        write(&mut vgic, 0, ISPENDR + 4, 1 << 31);
        assert_eq!(read(&mut vgic, 0, ISPENDR + 4), 1 << 31);
        write(&mut vgic, 0, ICPENDR + 4, u32::MAX);
        assert_eq!(read(&mut vgic, 0, ISPENDR + 4), 0);
        write(&mut vgic, 0, ISACTIVER + 8, 1);
        assert_eq!(read(&mut vgic, 0, ICACTIVER + 8), 1);
    }

    #[test]
    fn v3_private_rows_are_raz_wi_in_the_distributor() {
        let mut vgic = Vgic::new(GicVersion::V3, 1, 64).unwrap();
        write(&mut vgic, 0, ISENABLER, u32::MAX);
        assert_eq!(read(&mut vgic, 0, ISENABLER), 0);
        assert!(!vgic.irq(0, 1).unwrap().enabled);
        write(&mut vgic, 0, IPRIORITYR, u32::MAX);
        assert_eq!(vgic.irq(0, 0).unwrap().priority, 0);
    }

    #[test]
    fn v2_private_rows_are_banked_per_vcpu() {
        let mut vgic = Vgic::new(GicVersion::V2, 2, 64).unwrap();
        write(&mut vgic, 1, ISENABLER, 0xffff);
        assert_eq!(read(&mut vgic, 1, ISENABLER), 0xffff);
        assert_eq!(read(&mut vgic, 0, ISENABLER), 0);
        // ITARGETSR for private interrupts reads as the caller's own bit.
        assert_eq!(read(&mut vgic, 1, ITARGETSR), 0x0202_0202);
    }

    #[test]
    fn priorities_by_byte_and_word() {
        let mut vgic = Vgic::new(GicVersion::V3, 1, 64).unwrap();
        write(&mut vgic, 0, IPRIORITYR + 32, 0xa0b0_c0d0);
        assert_eq!(vgic.irq(0, 33).unwrap().priority, 0xc0);
        vgic.dist_write(0, IPRIORITYR + 35, AccessSize::Byte, 0x10)
            .unwrap();
        assert_eq!(read(&mut vgic, 0, IPRIORITYR + 32), 0x10b0_c0d0);
        assert_eq!(
            vgic.dist_read(0, IPRIORITYR + 33, AccessSize::Byte)
                .unwrap(),
            0xc0
        );
    }

    #[test]
    fn config_rows_keep_sgis_edge() {
        let mut vgic = Vgic::new(GicVersion::V2, 1, 64).unwrap();
        assert_eq!(read(&mut vgic, 0, ICFGR), 0xaaaa_aaaa);
        write(&mut vgic, 0, ICFGR, 0);
        assert_eq!(read(&mut vgic, 0, ICFGR), 0xaaaa_aaaa);
        write(&mut vgic, 0, ICFGR + 8, 0b10 << 2);
        assert!(vgic.irq(0, 33).unwrap().edge && !vgic.irq(0, 32).unwrap().edge);
    }

    #[test]
    fn irouter_routes_spis_by_affinity() {
        let mut vgic = Vgic::new(GicVersion::V3, 4, 64).unwrap();
        write(&mut vgic, 0, CTLR, 0x13);
        write(&mut vgic, 0, IGROUPR + 4, u32::MAX);
        write(&mut vgic, 0, ISENABLER + 4, 1 << 1);
        vgic.dist_write(0, IROUTER + 8 * 33, AccessSize::Double, 2)
            .unwrap();
        assert_eq!(
            vgic.dist_read(0, IROUTER + 8 * 33, AccessSize::Double)
                .unwrap(),
            2
        );
        assert_eq!(
            vgic.set_line_level(0, 33, true).unwrap(),
            VcpuSet::from_bits(0b100)
        );
        // Upper half via a 32-bit access; Aff3 = 1 names no vCPU.
        vgic.dist_write(0, IROUTER + 8 * 33 + 4, AccessSize::Word, 1)
            .unwrap();
        assert_eq!(
            vgic.dist_read(0, IROUTER + 8 * 33, AccessSize::Double)
                .unwrap(),
            0x1_0000_0002
        );
        assert!(!vgic.has_deliverable(2));
        // IROUTER for an SGI/PPI or beyond our SPIs is RAZ/WI.
        vgic.dist_write(0, IROUTER + 8 * 5, AccessSize::Double, 3)
            .unwrap();
        assert_eq!(
            vgic.dist_read(0, IROUTER + 8 * 5, AccessSize::Double)
                .unwrap(),
            0
        );
        vgic.dist_write(0, IROUTER + 8 * 200, AccessSize::Double, 3)
            .unwrap();
    }

    #[test]
    fn itargetsr_routes_spis_on_v2() {
        let mut vgic = Vgic::new(GicVersion::V2, 2, 64).unwrap();
        write(&mut vgic, 0, CTLR, 1);
        write(&mut vgic, 0, ISENABLER + 4, 1 << 1);
        write(&mut vgic, 0, ITARGETSR + 32, 0xff02_ff00);
        assert_eq!(
            read(&mut vgic, 0, ITARGETSR + 32),
            0x0302_0300,
            "vCPUs 2..7 don't exist"
        );
        assert_eq!(
            vgic.set_line_level(0, 33, true).unwrap(),
            VcpuSet::from_bits(0b01)
        );
    }

    #[test]
    fn gicd_sgir_raises_sgis_with_source() {
        let mut vgic = Vgic::new(GicVersion::V2, 4, 64).unwrap();
        write(&mut vgic, 0, CTLR, 1);
        for vcpu in 0..4 {
            write(&mut vgic, vcpu, ISENABLER, 0xffff);
        }
        let kicks = write(&mut vgic, 2, SGIR, (1 << 24) | 6);
        assert_eq!(kicks, VcpuSet::from_bits(0b1011));
        assert_eq!(vgic.irq(0, 6).unwrap().sgi_sources, 1 << 2);
        assert_eq!(read(&mut vgic, 3, ISPENDR) & (1 << 6), 1 << 6);
        assert_eq!(read(&mut vgic, 2, ISPENDR), 0);
    }

    #[test]
    fn bad_sizes_are_errors_unknown_offsets_raz_wi() {
        let mut vgic = Vgic::new(GicVersion::V3, 1, 64).unwrap();
        assert_eq!(
            vgic.dist_read(0, CTLR, AccessSize::Byte),
            Err(VgicError::Mmio(MmioError::BadSize {
                offset: 0,
                bytes: 1
            }))
        );
        assert_eq!(
            vgic.dist_write(0, TYPER, AccessSize::Double, 0),
            Err(VgicError::Mmio(MmioError::BadSize {
                offset: 4,
                bytes: 8
            }))
        );
        assert_eq!(
            vgic.dist_read(0, ISENABLER + 2, AccessSize::Word),
            Err(VgicError::Mmio(MmioError::Unaligned { offset: 0x102 }))
        );
        for offset in [0x10, 0xf00, 0xe000, 0xfffc, 0x1_0000, u64::MAX - 3] {
            assert_eq!(read(&mut vgic, 0, offset), 0);
            assert_eq!(write(&mut vgic, 0, offset, u32::MAX), VcpuSet::EMPTY);
        }
        assert_eq!(
            vgic.dist_read(9, CTLR, AccessSize::Word),
            Err(VgicError::NoSuchVcpu(9))
        );
    }
}
