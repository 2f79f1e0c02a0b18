//! The exchange with list registers: which interrupts to load before entering a vCPU, and
//! folding back what the hardware did with them after the exit.
//!
//! Model (KVM's `vgic_flush_lr_state` / `vgic_fold_lr_state`): on every exit the arch code
//! reads back *every* LR it loaded and calls [`Vgic::fold_lr`]; before every entry it calls
//! [`Vgic::take_for_lrs`] and loads what it gets, emptying the other LRs. So no interrupt is in
//! an LR while the vCPU is outside the guest, except SPIs another running vCPU holds.
//!
//! Edge interrupts move their pending state into the LR; level interrupts stay pending while
//! their line is high and ask for an EOI maintenance interrupt so the line is resampled.

use super::{PRIVATE_IRQ_COUNT, SGI_COUNT, Vgic};
use crate::guest_layout::GicVersion;

/// One interrupt for a list register (fields map to ICH_LR<n>_EL2 / GICH_LR<n>).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct LrEntry {
    /// Virtual INTID.
    pub intid: u32,
    /// GICv2 SGIs: the sending vCPU (LR CPUID field); 0 otherwise.
    pub source: u8,
    /// Priority (8 bits; the LR keeps the bits ICH_VTR.PRIbits implements).
    pub priority: u8,
    /// Group 1 (ICH_LR.Group) rather than Group 0.
    pub group1: bool,
    /// Pending state.
    pub pending: bool,
    /// Active state.
    pub active: bool,
    /// Ask for a maintenance interrupt when the guest deactivates it (ICH_LR.EOI): set for
    /// level-sensitive interrupts (resample the line) and GICv2 SGIs with more senders queued.
    pub eoi_maintenance: bool,
}

/// Result of [`Vgic::take_for_lrs`].
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct LrFill {
    /// How many entries of the output slice were filled.
    pub count: usize,
    /// More interrupts wanted an LR than there were: enable the underflow maintenance
    /// interrupt (ICH_HCR.UIE) so the vCPU exits once the LRs drain.
    pub overflow: bool,
}

/// Ordering key, smaller first: pending-and-deliverable before active-only (bit 40), then
/// priority (bits 39:32), then INTID (bits 31:0). One word, so the candidate array is cheap
/// to set up and compare on every fill.
type Urgency = u64;

fn urgency_key(active_only: bool, priority: u8, intid: u32) -> Urgency {
    (u64::from(active_only) << 40) | (u64::from(priority) << 32) | u64::from(intid)
}

/// A candidate kept in an output slot while `take_for_lrs` ranks them.
fn candidate(key: Urgency) -> LrEntry {
    LrEntry {
        intid: key as u32,
        priority: (key >> 32) as u8,
        pending: key >> 40 == 0,
        ..LrEntry::default()
    }
}

fn candidate_key(entry: &LrEntry) -> Urgency {
    urgency_key(!entry.pending, entry.priority, entry.intid)
}

/// Most list registers any GIC has (ICH_VTR_EL2.ListRegs and GICH_VTR.ListRegs are 4 bits).
pub const MAX_LIST_REGISTERS: usize = 16;

impl Vgic {
    /// Picks the interrupts `vcpu` should see next, most urgent first, into `out` (one slot per
    /// free list register). Pending+enabled interrupts come first by priority; interrupts that
    /// are only active follow, so the guest can still deactivate them.
    pub fn take_for_lrs(&mut self, vcpu: usize, out: &mut [LrEntry]) -> LrFill {
        let mut fill = LrFill::default();
        if vcpu >= self.vcpu_count {
            return fill;
        }
        // One pass over the vCPU's queue (everything pending or active for it is there) keeps
        // the `out.len()` most urgent candidates, sorted, in `out` itself: this runs on nearly
        // every guest entry, so no rescans per list register and no scratch array to clear.
        let slots = out.len().min(MAX_LIST_REGISTERS);
        let mut picked = 0;
        for (index, &word) in self.queue_words(vcpu).iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let intid = index as u32 * 64 + rest.trailing_zeros();
                rest &= rest - 1;
                let Some(key) = self.urgency(vcpu, intid) else {
                    continue;
                };
                if picked == slots {
                    // Full: a candidate less urgent than every pick (or any, if there are no
                    // slots) only means more is waiting.
                    fill.overflow = true;
                    if slots == 0 || key >= candidate_key(&out[slots - 1]) {
                        continue;
                    }
                    picked -= 1;
                }
                let at = out[..picked].partition_point(|e| candidate_key(e) < key);
                // Most fills pick one interrupt: no call to `memmove` to move nothing.
                if at < picked {
                    out.copy_within(at..picked, at + 1);
                }
                out[at] = candidate(key);
                picked += 1;
            }
        }
        // Each candidate becomes its real entry; slot `fill.count` <= the candidate's own.
        for at in 0..picked {
            if let Some(entry) = self.take_one(vcpu, out[at].intid) {
                out[fill.count] = entry;
                fill.count += 1;
            }
        }
        fill
    }

    /// How urgent `intid` is for `vcpu`, or `None` if it is not a candidate for an LR.
    fn urgency(&self, vcpu: usize, intid: u32) -> Option<Urgency> {
        let irq = self.irq(vcpu, intid)?;
        if irq.in_lr || (!irq.active && !irq.pending()) {
            return None;
        }
        let deliverable = self.deliverable(irq);
        if !deliverable && !irq.active {
            return None;
        }
        if intid >= PRIVATE_IRQ_COUNT && self.delivery_vcpu(vcpu, intid, irq) != Some(vcpu) {
            return None;
        }
        Some(urgency_key(!deliverable, irq.priority, intid))
    }

    /// Moves `intid` into an LR entry for `vcpu`.
    fn take_one(&mut self, vcpu: usize, intid: u32) -> Option<LrEntry> {
        let version = self.version;
        let deliverable = self
            .irq(vcpu, intid)
            .is_some_and(|irq| self.deliverable(irq));
        let irq = self.irq_mut(vcpu, intid)?;
        let mut entry = LrEntry {
            intid,
            source: 0,
            priority: irq.priority,
            group1: irq.group1,
            pending: deliverable,
            active: irq.active,
            eoi_maintenance: !irq.edge,
        };
        if entry.pending && irq.edge {
            if version == GicVersion::V2 && intid < SGI_COUNT {
                // One sender per LR: hand out the lowest, keep the rest queued.
                let source = irq.sgi_sources.trailing_zeros() as u8;
                irq.sgi_sources &= !(1u8.checked_shl(u32::from(source)).unwrap_or(0));
                entry.source = source;
                entry.eoi_maintenance = irq.sgi_sources != 0;
            } else {
                irq.pending_latch = false;
            }
        }
        irq.in_lr = true;
        // An edge interrupt's pending state moved into the LR: off the queue unless active.
        self.requeue(vcpu, intid);
        Some(entry)
    }

    /// Gives back one list register's content after an exit: `entry` is what was loaded,
    /// with `pending`/`active` updated from the LR's State field. Unknown INTIDs are ignored.
    pub fn fold_lr(&mut self, vcpu: usize, entry: &LrEntry) {
        let version = self.version;
        let Some(irq) = self.irq_mut(vcpu, entry.intid) else {
            return;
        };
        irq.in_lr = false;
        irq.active = entry.active;
        if irq.edge {
            if entry.pending {
                if version == GicVersion::V2 && entry.intid < SGI_COUNT {
                    irq.sgi_sources |= 1u8.checked_shl(u32::from(entry.source)).unwrap_or(0);
                } else {
                    irq.pending_latch = true;
                }
            }
        } else if !entry.pending {
            // The guest acknowledged it: a software-set pending state is consumed; the line,
            // if still high, keeps the interrupt pending.
            irq.pending_latch = false;
        }
        self.requeue(vcpu, entry.intid);
    }
}

#[cfg(test)]
mod tests {
    use super::super::VcpuSet;
    use super::*;

    /// A v3 vGIC with the distributor and both groups enabled and `intids` enabled.
    fn vgic(version: GicVersion, vcpus: usize, intids: &[u32]) -> Vgic {
        let mut vgic = Vgic::new(version, vcpus, 64).unwrap();
        vgic.dist_enables = 0b11;
        for vcpu in 0..vcpus {
            for &intid in intids {
                let irq = vgic.irq_mut(vcpu, intid).unwrap();
                irq.enabled = true;
                irq.group1 = true;
                irq.priority = 0xa0;
            }
        }
        vgic
    }

    fn take(vgic: &mut Vgic, vcpu: usize, slots: usize) -> (Vec<LrEntry>, bool) {
        let mut out = vec![LrEntry::default(); slots];
        let fill = vgic.take_for_lrs(vcpu, &mut out);
        out.truncate(fill.count);
        (out, fill.overflow)
    }

    #[test]
    fn level_line_dropping_while_in_an_lr_kicks_its_holder_and_retires_it() {
        let mut vgic = vgic(GicVersion::V3, 2, &[40]);
        vgic.irq_mut(0, 40).unwrap().route = 1; // Aff0 = 1: vCPU 1
        assert_eq!(
            vgic.set_line_level(0, 40, true).unwrap(),
            VcpuSet::from_bits(0b10)
        );
        let (lrs, _) = take(&mut vgic, 1, 4);
        assert_eq!(lrs.len(), 1);
        // vCPU 0 (say, masking the device) drops the line: vCPU 1 must exit.
        assert_eq!(
            vgic.set_line_level(0, 40, false).unwrap(),
            VcpuSet::from_bits(0b10)
        );
        // Its exit folds the LR (still pending in hardware); the next entry does not offer it.
        vgic.fold_lr(1, &lrs[0]);
        assert!(take(&mut vgic, 1, 4).0.is_empty());
        // Dropping a line nobody holds kicks no one.
        assert_eq!(vgic.set_line_level(0, 40, false).unwrap(), VcpuSet::EMPTY);
    }

    #[test]
    fn enabled_pending_interrupt_is_picked_once() {
        let mut vgic = vgic(GicVersion::V3, 2, &[27]);
        assert_eq!(
            vgic.set_line_level(1, 27, true).unwrap(),
            VcpuSet::from_bits(0b10)
        );
        assert!(
            take(&mut vgic, 0, 4).0.is_empty(),
            "vCPU 0's timer is not pending"
        );
        let (entries, overflow) = take(&mut vgic, 1, 4);
        assert!(!overflow);
        assert_eq!(entries.len(), 1);
        let entry = entries[0];
        assert_eq!(
            (entry.intid, entry.pending, entry.active),
            (27, true, false)
        );
        assert!(entry.group1 && entry.eoi_maintenance);
        // In an LR now: not handed out again until folded back.
        assert!(take(&mut vgic, 1, 4).0.is_empty());
    }

    #[test]
    fn disabled_or_ungrouped_interrupts_are_not_picked() {
        let mut vgic = vgic(GicVersion::V3, 1, &[]);
        vgic.set_pending(0, 40).unwrap();
        assert!(take(&mut vgic, 0, 4).0.is_empty(), "SPI 40 is disabled");
        let mut vgic = self::vgic(GicVersion::V3, 1, &[40]);
        vgic.irq_mut(0, 40).unwrap().route = 0;
        vgic.dist_enables = 0b01; // Group 1 off
        vgic.set_pending(0, 40).unwrap();
        assert!(!vgic.has_deliverable(0));
        assert!(take(&mut vgic, 0, 4).0.is_empty());
        vgic.dist_enables = 0b10;
        assert!(vgic.has_deliverable(0));
        assert_eq!(take(&mut vgic, 0, 4).0.len(), 1);
    }

    #[test]
    fn highest_priority_first_and_overflow_reported() {
        let mut vgic = vgic(GicVersion::V3, 1, &[1, 2, 27, 33]);
        vgic.irq_mut(0, 1).unwrap().priority = 0x80;
        vgic.irq_mut(0, 2).unwrap().priority = 0x20;
        vgic.irq_mut(0, 33).unwrap().priority = 0x40;
        vgic.irq_mut(0, 27).unwrap().priority = 0xf0;
        for intid in [1, 2, 33] {
            vgic.set_pending(0, intid).unwrap();
        }
        vgic.set_line_level(0, 27, true).unwrap();
        let (entries, overflow) = take(&mut vgic, 0, 3);
        assert_eq!(
            entries.iter().map(|e| e.intid).collect::<Vec<_>>(),
            [2, 33, 1]
        );
        assert!(overflow, "the timer did not fit");
    }

    #[test]
    fn active_interrupts_come_back_after_pending_ones() {
        let mut vgic = vgic(GicVersion::V3, 1, &[3, 5]);
        vgic.irq_mut(0, 3).unwrap().active = true;
        vgic.irq_mut(0, 3).unwrap().priority = 0x00;
        vgic.requeue(0, 3);
        vgic.set_pending(0, 5).unwrap();
        let (entries, _) = take(&mut vgic, 0, 4);
        assert_eq!(entries.iter().map(|e| e.intid).collect::<Vec<_>>(), [5, 3]);
        assert!(entries[1].active && !entries[1].pending);
    }

    #[test]
    fn edge_pending_moves_into_lr_and_folds_back() {
        let mut vgic = vgic(GicVersion::V3, 1, &[4]);
        vgic.set_pending(0, 4).unwrap();
        let (entries, _) = take(&mut vgic, 0, 4);
        assert!(
            !vgic.irq(0, 4).unwrap().pending(),
            "pending state lives in the LR"
        );
        // Exit before the guest acknowledged it: still pending.
        vgic.fold_lr(0, &entries[0]);
        assert!(vgic.irq(0, 4).unwrap().pending());
        // Next entry: guest acknowledges (active), exit.
        let (mut entries, _) = take(&mut vgic, 0, 4);
        entries[0].pending = false;
        entries[0].active = true;
        vgic.fold_lr(0, &entries[0]);
        assert!(vgic.irq(0, 4).unwrap().active && !vgic.irq(0, 4).unwrap().pending());
        // Guest EOIs: inactive, nothing left.
        let (mut entries, _) = take(&mut vgic, 0, 4);
        assert!(entries[0].active);
        entries[0].active = false;
        vgic.fold_lr(0, &entries[0]);
        assert!(take(&mut vgic, 0, 4).0.is_empty());
    }

    #[test]
    fn level_interrupt_repeats_while_line_is_high() {
        let mut vgic = vgic(GicVersion::V3, 1, &[33]);
        vgic.set_line_level(0, 33, true).unwrap();
        let (mut entries, _) = take(&mut vgic, 0, 4);
        entries[0].pending = false; // acknowledged and EOIed, line still high
        vgic.fold_lr(0, &entries[0]);
        assert_eq!(take(&mut vgic, 0, 4).0.len(), 1);
        let mut vgic = self::vgic(GicVersion::V3, 1, &[33]);
        vgic.set_line_level(0, 33, true).unwrap();
        let (mut entries, _) = take(&mut vgic, 0, 4);
        vgic.set_line_level(0, 33, false).unwrap();
        entries[0].pending = false;
        vgic.fold_lr(0, &entries[0]);
        assert!(take(&mut vgic, 0, 4).0.is_empty());
    }

    #[test]
    fn v2_sgis_from_two_senders_take_two_rounds() {
        let mut vgic = vgic(GicVersion::V2, 4, &[1]);
        vgic.dist_write_word_for_test(0, 0xf00, (0b0100 << 16) | 1);
        vgic.dist_write_word_for_test(3, 0xf00, (0b0100 << 16) | 1);
        let (mut entries, _) = take(&mut vgic, 2, 4);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].intid, entries[0].source), (1, 0));
        assert!(entries[0].eoi_maintenance, "another sender is queued");
        entries[0].pending = false;
        vgic.fold_lr(2, &entries[0]);
        let (entries, _) = take(&mut vgic, 2, 4);
        assert_eq!((entries[0].intid, entries[0].source), (1, 3));
        assert!(!entries[0].eoi_maintenance);
    }

    #[test]
    fn spis_go_only_to_their_routed_vcpu() {
        let mut vgic = vgic(GicVersion::V3, 2, &[40]);
        vgic.irq_mut(0, 40).unwrap().route = 1; // Aff0 = 1
        assert_eq!(vgic.set_pending(0, 40).unwrap(), VcpuSet::from_bits(0b10));
        assert!(take(&mut vgic, 0, 4).0.is_empty());
        assert!(!vgic.has_deliverable(0));
        assert!(vgic.has_deliverable(1));
        assert_eq!(take(&mut vgic, 1, 4).0[0].intid, 40);
    }

    #[test]
    fn take_for_unknown_vcpu_is_empty() {
        let mut vgic = vgic(GicVersion::V3, 1, &[1]);
        vgic.set_pending(0, 1).unwrap();
        assert_eq!(take(&mut vgic, 7, 4).0.len(), 0);
        vgic.fold_lr(
            7,
            &LrEntry {
                intid: 1,
                ..LrEntry::default()
            },
        );
        vgic.fold_lr(
            0,
            &LrEntry {
                intid: 5000,
                ..LrEntry::default()
            },
        );
    }
}
