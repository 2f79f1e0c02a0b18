//! The virtual GIC: interrupt state of one VM and the emulation of its distributor (v2, v3)
//! and redistributors (v3), independent of list-register hardware.
//!
//! The arch code owns the CPU interface (ICH_* / GICH list registers). It talks to this room
//! through three doors:
//! - MMIO: [`Vgic::dist_read`]/[`Vgic::dist_write`] and [`Vgic::redist_read`]/
//!   [`Vgic::redist_write`] for guest accesses; [`Vgic::send_sgi1r`] for a trapped ICC_SGI1R_EL1.
//! - Injection: [`Vgic::set_pending`] (edge/pulse) and [`Vgic::set_line_level`] (level lines:
//!   the PL011, the virtual timer).
//! - List registers: before entering vCPU n, [`Vgic::take_for_lrs`] hands out the most urgent
//!   interrupts to load; on every exit, [`Vgic::fold_lr`] gives back what each loaded LR holds
//!   now. Between the two the interrupt belongs to the LR.
//!
//! Calls that may make an interrupt deliverable return a [`VcpuSet`] of vCPUs to kick (or wake
//! from WFI). The state is plain data: one VM's `Vgic` sits behind the VM's lock.
//! Guest-controlled values never panic: bad sizes/alignments are errors (inject an abort),
//! unknown offsets read as zero and ignore writes.

use crate::devices::MmioError;
use crate::devices::mmio::AccessSize;
use crate::guest_layout::{GicVersion, MAX_VCPUS, vcpu_index_from_mpidr};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use irq::IrqState;

mod dist;
mod irq;
mod lr;
mod redist;
pub mod sgi;

pub use lr::{LrEntry, LrFill, MAX_LIST_REGISTERS};

/// Number of SGIs + PPIs: the banked, per-vCPU interrupts.
pub const PRIVATE_IRQ_COUNT: u32 = 32;
/// Number of SGIs.
pub const SGI_COUNT: u32 = 16;
/// Most SPIs a GIC can have (INTIDs 32..1019).
pub const MAX_SPI_COUNT: u32 = 988;

/// A set of vCPUs of one VM (bit n = vCPU n).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct VcpuSet(u32);

impl VcpuSet {
    /// No vCPU.
    pub const EMPTY: Self = Self(0);

    /// vCPUs 0..count.
    pub fn all(count: usize) -> Self {
        if count >= 32 {
            Self(u32::MAX)
        } else {
            Self((1u32 << count) - 1)
        }
    }

    /// The set whose bit n names vCPU n.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The bit mask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// This set plus vCPU `index` (indices past 31 are ignored).
    pub fn with(self, index: usize) -> Self {
        Self(self.0 | 1u32.checked_shl(index as u32).unwrap_or(0))
    }

    /// This set minus vCPU `index`.
    pub fn without(self, index: usize) -> Self {
        Self(self.0 & !1u32.checked_shl(index as u32).unwrap_or(0))
    }

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Members of both.
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Whether vCPU `index` is a member.
    pub fn contains(self, index: usize) -> bool {
        index < 32 && self.0 & (1 << index) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..32).filter(move |&index| self.0 & (1 << index) != 0)
    }
}

/// Why a vGIC call failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VgicError {
    /// A guest access with a width or alignment the register does not allow: inject an abort.
    Mmio(MmioError),
    /// The INTID is not implemented by this vGIC (hypervisor-side bug, not guest input).
    NoSuchIntid(u32),
    /// The vCPU index is not part of this VM.
    NoSuchVcpu(usize),
    /// vGIC configuration out of range (vCPU count).
    BadConfig,
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mmio(err) => write!(f, "vGIC MMIO: {err}"),
            Self::NoSuchIntid(intid) => write!(f, "no such interrupt {intid}"),
            Self::NoSuchVcpu(index) => write!(f, "no such vCPU {index}"),
            Self::BadConfig => write!(f, "unsupported vGIC configuration"),
        }
    }
}

impl From<MmioError> for VgicError {
    fn from(err: MmioError) -> Self {
        Self::Mmio(err)
    }
}

/// One VM's virtual GIC.
#[derive(Clone, Debug)]
pub struct Vgic {
    version: GicVersion,
    vcpu_count: usize,
    /// GICD_CTLR group enables (bit 0: Group 0 / v2 Enable, bit 1: Group 1).
    dist_enables: u32,
    /// SGIs and PPIs, per vCPU.
    private: Vec<[IrqState; PRIVATE_IRQ_COUNT as usize]>,
    /// SPIs, INTID 32 + index.
    spis: Vec<IrqState>,
    /// GICv3 GICR_WAKER.ProcessorSleep per vCPU.
    processor_sleep: Vec<bool>,
}

impl Vgic {
    /// A reset vGIC of `version` for `vcpu_count` vCPUs with `spi_count` SPIs (rounded up to
    /// a multiple of 32).
    pub fn new(version: GicVersion, vcpu_count: usize, spi_count: u32) -> Result<Self, VgicError> {
        if vcpu_count == 0 || vcpu_count > MAX_VCPUS || spi_count > MAX_SPI_COUNT {
            return Err(VgicError::BadConfig);
        }
        let spi_count = spi_count.div_ceil(32) * 32;
        let mut private = [IrqState::level(); PRIVATE_IRQ_COUNT as usize];
        for sgi in &mut private[..SGI_COUNT as usize] {
            *sgi = IrqState::sgi();
        }
        Ok(Self {
            version,
            vcpu_count,
            dist_enables: 0,
            private: vec![private; vcpu_count],
            spis: vec![IrqState::level(); spi_count as usize],
            processor_sleep: vec![true; vcpu_count],
        })
    }

    /// Back to the reset state, keeping the configuration (guest reboot).
    pub fn reset(&mut self) {
        if let Ok(fresh) = Self::new(self.version, self.vcpu_count, self.spis.len() as u32) {
            *self = fresh;
        }
    }

    /// The GIC architecture emulated.
    pub fn version(&self) -> GicVersion {
        self.version
    }

    /// vCPUs in the VM.
    pub fn vcpu_count(&self) -> usize {
        self.vcpu_count
    }

    /// SPIs implemented.
    pub fn spi_count(&self) -> u32 {
        self.spis.len() as u32
    }

    fn check_vcpu(&self, vcpu: usize) -> Result<(), VgicError> {
        if vcpu < self.vcpu_count {
            Ok(())
        } else {
            Err(VgicError::NoSuchVcpu(vcpu))
        }
    }

    /// The state of `intid` as seen from `vcpu` (SGIs/PPIs are banked per vCPU).
    fn irq(&self, vcpu: usize, intid: u32) -> Option<&IrqState> {
        if intid < PRIVATE_IRQ_COUNT {
            self.private.get(vcpu)?.get(intid as usize)
        } else {
            self.spis.get((intid - PRIVATE_IRQ_COUNT) as usize)
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut IrqState> {
        if intid < PRIVATE_IRQ_COUNT {
            self.private.get_mut(vcpu)?.get_mut(intid as usize)
        } else {
            self.spis.get_mut((intid - PRIVATE_IRQ_COUNT) as usize)
        }
    }

    /// The vCPU an interrupt is delivered to: `owner` for SGIs/PPIs, the routing for SPIs
    /// (GICv2: the lowest vCPU in ITARGETSR, as KVM; GICv3: IROUTER's affinity, vCPU 0 for
    /// "any PE" routing).
    fn delivery_vcpu(&self, owner: usize, intid: u32, irq: &IrqState) -> Option<usize> {
        if intid < PRIVATE_IRQ_COUNT {
            return Some(owner);
        }
        match self.version {
            GicVersion::V2 => {
                let targets = VcpuSet::from_bits(u32::from(irq.targets))
                    .intersect(VcpuSet::all(self.vcpu_count));
                targets.iter().next()
            }
            GicVersion::V3 => {
                if irq.route & (1 << 31) != 0 {
                    Some(0)
                } else {
                    vcpu_index_from_mpidr(irq.route, self.vcpu_count)
                }
            }
        }
    }

    /// Whether the distributor forwards interrupts of this group.
    fn group_enabled(&self, irq: &IrqState) -> bool {
        match self.version {
            // GICv2 without Security Extensions: one Enable bit for everything.
            GicVersion::V2 => self.dist_enables & 1 != 0,
            GicVersion::V3 => self.dist_enables & (1 << u32::from(irq.group1)) != 0,
        }
    }

    /// Pending, enabled and forwarded: the interrupt wants to be signalled.
    fn deliverable(&self, irq: &IrqState) -> bool {
        irq.pending() && irq.enabled && self.group_enabled(irq)
    }

    /// The vCPUs to kick because `intid` (seen from `owner`) is now deliverable.
    fn kick_for(&self, owner: usize, intid: u32) -> VcpuSet {
        match self.irq(owner, intid) {
            Some(irq) if self.deliverable(irq) => match self.delivery_vcpu(owner, intid, irq) {
                Some(target) => VcpuSet::EMPTY.with(target),
                None => VcpuSet::EMPTY,
            },
            _ => VcpuSet::EMPTY,
        }
    }

    /// Makes `intid` pending, as an edge would. `vcpu` selects the bank for an SGI/PPI and is
    /// ignored for SPIs (the guest's routing decides). Returns the vCPU to kick.
    pub fn set_pending(&mut self, vcpu: usize, intid: u32) -> Result<VcpuSet, VgicError> {
        self.check_vcpu(vcpu)?;
        let irq = self
            .irq_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchIntid(intid))?;
        irq.pending_latch = true;
        Ok(self.kick_for(vcpu, intid))
    }

    /// Drives the input line of a level-sensitive interrupt (e.g. the virtual timer PPI 27 of
    /// `vcpu`, or the PL011's SPI 33 with any `vcpu`). Returns the vCPU to kick.
    pub fn set_line_level(
        &mut self,
        vcpu: usize,
        intid: u32,
        level: bool,
    ) -> Result<VcpuSet, VgicError> {
        self.check_vcpu(vcpu)?;
        let irq = self
            .irq_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchIntid(intid))?;
        irq.line_level = level;
        // A level interrupt whose line dropped while a list register of a running vCPU holds
        // it pending: kick that vCPU, so the exit folds the LR and the next entry no longer
        // offers it (KVM's `vgic_prune_ap_list` runs on every exit for the same reason).
        let retire = !level && irq.in_lr && !irq.pending();
        if retire {
            let irq = *irq;
            return Ok(self
                .delivery_vcpu(vcpu, intid, &irq)
                .map_or(VcpuSet::EMPTY, |holder| VcpuSet::EMPTY.with(holder)));
        }
        Ok(self.kick_for(vcpu, intid))
    }

    /// Delivers the SGIs a trapped ICC_SGI1R_EL1 write by `sender` asks for (GICv3).
    /// Returns the vCPUs to kick.
    pub fn send_sgi1r(&mut self, sender: usize, value: u64) -> Result<VcpuSet, VgicError> {
        self.check_vcpu(sender)?;
        let request = sgi::decode_sgi1r(value, sender, self.vcpu_count);
        Ok(self.raise_sgi(sender, request, true))
    }

    /// Delivers the SGIs a trapped ICC_SGI0R_EL1 or ICC_ASGI1R_EL1 write asks for: same
    /// fields as ICC_SGI1R_EL1, but only targets where the SGI is Group 0 receive it. The
    /// guest's GIC has one Security state (GICD_CTLR.DS = 1), where SGI0R generates Group 0
    /// SGIs and ASGI1R, naming the other (absent) Security state's Group 1, is treated the
    /// same way, as KVM's `vgic_v3_dispatch_sgi(.., allow_group1 = false)` (GICv3 spec 12.2).
    pub fn send_sgi0r(&mut self, sender: usize, value: u64) -> Result<VcpuSet, VgicError> {
        self.check_vcpu(sender)?;
        let request = sgi::decode_sgi1r(value, sender, self.vcpu_count);
        Ok(self.raise_sgi(sender, request, false))
    }

    /// Raises `request`; an SGI configured as Group 1 at a target is raised there only when
    /// `allow_group1` (an access that targets Group 1 can generate either group).
    fn raise_sgi(
        &mut self,
        sender: usize,
        request: sgi::SgiRequest,
        allow_group1: bool,
    ) -> VcpuSet {
        let mut kicks = VcpuSet::EMPTY;
        let version = self.version;
        for target in request.targets.iter() {
            if let Some(irq) = self.irq_mut(target, request.intid)
                && (allow_group1 || !irq.group1)
            {
                match version {
                    GicVersion::V2 => {
                        irq.sgi_sources |= 1u8.checked_shl(sender as u32).unwrap_or(0)
                    }
                    GicVersion::V3 => irq.pending_latch = true,
                }
                kicks = kicks.union(self.kick_for(target, request.intid));
            }
        }
        kicks
    }

    /// Whether `vcpu` has an interrupt to take (pending, enabled, forwarded): the WFI wake-up
    /// test. The CPU interface's priority mask is not considered (that lives in the LR
    /// hardware).
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        let Some(private) = self.private.get(vcpu) else {
            return false;
        };
        private.iter().any(|irq| self.deliverable(irq))
            || self.spis.iter().enumerate().any(|(index, irq)| {
                self.deliverable(irq)
                    && self.delivery_vcpu(vcpu, PRIVATE_IRQ_COUNT + index as u32, irq) == Some(vcpu)
            })
    }
}

/// Checks that an access is naturally aligned and one of the `allowed` widths.
fn check_access(offset: u64, size: AccessSize, allowed: &[AccessSize]) -> Result<(), VgicError> {
    if !allowed.contains(&size) {
        return Err(MmioError::BadSize {
            offset,
            bytes: size.bytes(),
        }
        .into());
    }
    if !offset.is_multiple_of(size.bytes()) {
        return Err(MmioError::Unaligned { offset }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_set_operations() {
        let set = VcpuSet::EMPTY.with(0).with(3).with(40);
        assert_eq!(set.bits(), 0b1001);
        assert!(set.contains(3) && !set.contains(1) && !set.contains(99));
        assert_eq!(set.without(0).iter().collect::<Vec<_>>(), [3]);
        assert_eq!(VcpuSet::all(4).bits(), 0xf);
        assert_eq!(VcpuSet::all(32).bits(), u32::MAX);
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert_eq!(
            Vgic::new(GicVersion::V3, 0, 64).unwrap_err(),
            VgicError::BadConfig
        );
        assert_eq!(
            Vgic::new(GicVersion::V2, 9, 64).unwrap_err(),
            VgicError::BadConfig
        );
        assert_eq!(
            Vgic::new(GicVersion::V3, 1, 2000).unwrap_err(),
            VgicError::BadConfig
        );
        assert_eq!(Vgic::new(GicVersion::V3, 1, 40).unwrap().spi_count(), 64);
    }

    #[test]
    fn injection_rejects_unknown_intids_and_vcpus() {
        let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
        assert_eq!(vgic.set_pending(0, 96), Err(VgicError::NoSuchIntid(96)));
        assert_eq!(
            vgic.set_line_level(2, 27, true),
            Err(VgicError::NoSuchVcpu(2))
        );
        assert_eq!(vgic.send_sgi1r(5, 0), Err(VgicError::NoSuchVcpu(5)));
    }
}
