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
//! from WFI).
//!
//! Each vCPU has a queue of the interrupts that are pending or active and delivered to it
//! (KVM's `ap_list`, `vgic_queue_irq_unlock`): every call that changes an interrupt's pending
//! or active state or its routing moves it onto the right queue or off every queue
//! (`Vgic::requeue`), so filling list registers and the WFI wake-up test look at those few
//! interrupts, not at every INTID. A queue is a bitmap over INTIDs rather than KVM's linked
//! list: INTIDs are dense and few (at most 1020), so a bitmap needs no allocation, keeps
//! INTID order for free, and a scan of an empty one is a handful of word tests.
//!
//! The state is plain data: one VM's `Vgic` sits behind the VM's lock.
//! Guest-controlled values never panic: bad sizes/alignments are errors (inject an abort),
//! unknown offsets read as zero and ignore writes.

use crate::devices::MmioError;
use crate::devices::mmio::AccessSize;
use crate::guest_layout::{GicVersion, MAX_VCPUS, vcpu_index_from_mpidr};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use irq::{IrqState, NOT_QUEUED};

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

    /// Members, lowest first (one step per member: this runs on every kick).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            (rest != 0).then(|| {
                let index = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                index
            })
        })
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
    /// Per vCPU, `queue_words` words: bit n set = INTID n is pending or active and delivered
    /// to that vCPU (see the module comment). Kept by `requeue` only.
    queued: Vec<u64>,
    queue_words: usize,
}

impl Vgic {
    /// A reset vGIC of `version` for `vcpu_count` vCPUs with `spi_count` SPIs (rounded up to
    /// a multiple of 32).
    pub fn new(version: GicVersion, vcpu_count: usize, spi_count: u32) -> Result<Self, VgicError> {
        if vcpu_count == 0 || vcpu_count > MAX_VCPUS || spi_count > MAX_SPI_COUNT {
            return Err(VgicError::BadConfig);
        }
        let spi_count = spi_count.div_ceil(32) * 32;
        let queue_words = (PRIVATE_IRQ_COUNT + spi_count).div_ceil(64) as usize;
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
            queued: vec![0; queue_words * vcpu_count],
            queue_words,
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

    /// Puts `intid` (seen from `bank`, the vCPU whose SGI/PPI bank it is in) on the queue of
    /// the vCPU it is delivered to if it is pending or active, and takes it off any other
    /// queue. Called after every change of an interrupt's pending or active state or routing.
    #[inline]
    fn requeue(&mut self, bank: usize, intid: u32) {
        let Some(irq) = self.irq(bank, intid) else {
            return;
        };
        let want = if !irq.wants_queue() {
            NOT_QUEUED
        } else if intid < PRIVATE_IRQ_COUNT {
            bank as u8
        } else {
            self.delivery_vcpu(bank, intid, irq)
                .map_or(NOT_QUEUED, |vcpu| vcpu as u8)
        };
        let was = irq.queued_on;
        if was != want {
            self.move_queued(bank, intid, was, want);
        }
    }

    /// Moves `intid` from queue `was` to queue `want` (either may be [`NOT_QUEUED`]).
    fn move_queued(&mut self, bank: usize, intid: u32, was: u8, want: u8) {
        let (word, bit) = (intid as usize / 64, 1u64 << (intid % 64));
        if let Some(slot) = self.queue_slot(usize::from(was), word) {
            *slot &= !bit;
        }
        if let Some(slot) = self.queue_slot(usize::from(want), word) {
            *slot |= bit;
        }
        if let Some(irq) = self.irq_mut(bank, intid) {
            irq.queued_on = want;
        }
    }

    fn queue_slot(&mut self, vcpu: usize, word: usize) -> Option<&mut u64> {
        if vcpu >= self.vcpu_count || word >= self.queue_words {
            return None;
        }
        self.queued.get_mut(vcpu * self.queue_words + word)
    }

    /// `vcpu`'s queue: bit n of word w is INTID 64w + n.
    #[inline]
    fn queue_words(&self, vcpu: usize) -> &[u64] {
        if vcpu < self.vcpu_count {
            &self.queued[vcpu * self.queue_words..(vcpu + 1) * self.queue_words]
        } else {
            &[]
        }
    }

    /// The INTIDs on `vcpu`'s queue, lowest first.
    #[cfg(test)]
    fn queued(&self, vcpu: usize) -> impl Iterator<Item = u32> + '_ {
        self.queue_words(vcpu)
            .iter()
            .enumerate()
            .flat_map(|(index, &word)| {
                let mut rest = word;
                core::iter::from_fn(move || {
                    (rest != 0).then(|| {
                        let bit = rest.trailing_zeros();
                        rest &= rest - 1;
                        index as u32 * 64 + bit
                    })
                })
            })
    }

    /// Makes `intid` pending, as an edge would. `vcpu` selects the bank for an SGI/PPI and is
    /// ignored for SPIs (the guest's routing decides). Returns the vCPU to kick.
    pub fn set_pending(&mut self, vcpu: usize, intid: u32) -> Result<VcpuSet, VgicError> {
        self.check_vcpu(vcpu)?;
        let irq = self
            .irq_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchIntid(intid))?;
        irq.pending_latch = true;
        self.requeue(vcpu, intid);
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
        let irq = *irq;
        self.requeue(vcpu, intid);
        if retire {
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
                self.requeue(target, request.intid);
                kicks = kicks.union(self.kick_for(target, request.intid));
            }
        }
        kicks
    }

    /// Whether nothing is pending or active for `vcpu` (its queue is empty): nothing to put in
    /// its list registers.
    pub fn nothing_queued(&self, vcpu: usize) -> bool {
        self.queue_words(vcpu).iter().all(|&word| word == 0)
    }

    /// Whether `vcpu` has an interrupt to take (pending, enabled, forwarded): the WFI wake-up
    /// test. The CPU interface's priority mask is not considered (that lives in the LR
    /// hardware).
    #[inline(always)]
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        // Everything pending for `vcpu` is on its queue (a plain loop: the WFI path).
        for (index, &word) in self.queue_words(vcpu).iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let intid = index as u32 * 64 + rest.trailing_zeros();
                rest &= rest - 1;
                if self.irq(vcpu, intid).is_some_and(|irq| {
                    self.deliverable(irq)
                        && (intid < PRIVATE_IRQ_COUNT
                            || self.delivery_vcpu(vcpu, intid, irq) == Some(vcpu))
                }) {
                    return true;
                }
            }
        }
        false
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

    /// What the queues must hold, recomputed from every interrupt's state.
    fn expected_queue(vgic: &Vgic, vcpu: usize) -> Vec<u32> {
        (0..PRIVATE_IRQ_COUNT + vgic.spi_count())
            .filter(|&intid| {
                let irq = vgic.irq(vcpu, intid).unwrap();
                irq.wants_queue() && vgic.delivery_vcpu(vcpu, intid, irq) == Some(vcpu)
            })
            .collect()
    }

    /// The WFI test as a scan of every INTID (what the queues replace).
    fn deliverable_by_scan(vgic: &Vgic, vcpu: usize) -> bool {
        (0..PRIVATE_IRQ_COUNT + vgic.spi_count()).any(|intid| {
            let irq = vgic.irq(vcpu, intid).unwrap();
            vgic.deliverable(irq) && vgic.delivery_vcpu(vcpu, intid, irq) == Some(vcpu)
        })
    }

    /// Random guest and device activity (distributor and redistributor writes, SGIs, lines,
    /// list-register round trips): after every step each vCPU's queue holds exactly its
    /// pending or active interrupts, and the queue-based WFI test agrees with a full scan.
    #[test]
    fn queues_follow_every_state_change() {
        for version in [GicVersion::V2, GicVersion::V3] {
            let mut vgic = Vgic::new(version, 4, 64).unwrap();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = move |bound: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % bound
            };
            for step in 0..5_000 {
                let vcpu = next(4) as usize;
                let intid = next(96) as u32;
                match next(9) {
                    0 => _ = vgic.set_pending(vcpu, intid),
                    1 => _ = vgic.set_line_level(vcpu, intid, next(2) == 0),
                    2 => _ = vgic.send_sgi1r(vcpu, (next(16) << 24) | next(16)),
                    3 | 4 => {
                        // A per-interrupt row (group .. active, config) or routing.
                        let offset = match next(4) {
                            0 => 0x80 + next(0x380 / 4) * 4,
                            1 => 0xc00 + next(0x18 / 4) * 4,
                            2 if version == GicVersion::V2 => 0x800 + next(0x60 / 4) * 4,
                            2 => 0x6000 + 8 * (32 + next(64)),
                            _ => 0,
                        };
                        let value = (next(1 << 32) & next(1 << 32)) | next(4);
                        _ = vgic.dist_write(vcpu, offset, AccessSize::Word, value);
                    }
                    5 if version == GicVersion::V2 => {
                        _ = vgic.dist_write(vcpu, 0xf00, AccessSize::Word, next(1 << 26))
                    }
                    5 => {
                        let row = [0x80, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0xc04];
                        let offset = vcpu as u64 * 0x20000 + 0x10000 + row[next(8) as usize];
                        _ = vgic.redist_write(offset, AccessSize::Word, next(1 << 32));
                    }
                    _ => {
                        // Entry and exit: load LRs, let the guest do anything, fold back.
                        let mut lrs = [LrEntry::default(); 4];
                        let fill = vgic.take_for_lrs(vcpu, &mut lrs);
                        for entry in &mut lrs[..fill.count] {
                            match next(3) {
                                0 => {}
                                1 => (entry.pending, entry.active) = (false, true),
                                _ => (entry.pending, entry.active) = (false, false),
                            }
                            vgic.fold_lr(vcpu, entry);
                        }
                    }
                }
                for vcpu in 0..4 {
                    assert_eq!(
                        vgic.queued(vcpu).collect::<Vec<_>>(),
                        expected_queue(&vgic, vcpu),
                        "{version:?} step {step} vcpu {vcpu}"
                    );
                    assert_eq!(
                        vgic.has_deliverable(vcpu),
                        deliverable_by_scan(&vgic, vcpu),
                        "{version:?} step {step} vcpu {vcpu}"
                    );
                }
            }
            vgic.reset();
            assert!((0..4).all(|vcpu| vgic.queued(vcpu).next().is_none()));
        }
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
