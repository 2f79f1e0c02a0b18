//! The state of one virtual interrupt, as the distributor and redistributors see it.

/// Per-interrupt state. One exists per (vCPU, INTID) for SGIs/PPIs and one per SPI.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(crate) struct IrqState {
    /// ISENABLER/ICENABLER.
    pub enabled: bool,
    /// Edge pending, or pending set by software (ISPENDR, SGI generation).
    pub pending_latch: bool,
    /// Input line of a level-sensitive interrupt (device or timer output).
    pub line_level: bool,
    /// Active in the distributor's view (folded back from a list register).
    pub active: bool,
    /// ICFGR: edge-triggered (true) or level-sensitive (false).
    pub edge: bool,
    /// IGROUPR: Group 1 (true) or Group 0.
    pub group1: bool,
    /// IPRIORITYR, as written (lower is more urgent).
    pub priority: u8,
    /// Currently held by a list register of the vCPU it was given to; not offered again until
    /// folded back.
    pub in_lr: bool,
    /// GICv2 SGIs: one pending bit per source vCPU (GICv2 keeps SGIs from different
    /// senders apart; the LR carries the source as CPUID).
    pub sgi_sources: u8,
    /// GICv2 SPIs: ITARGETSR byte (one bit per vCPU).
    pub targets: u8,
    /// GICv3 SPIs: IROUTER value (affinity fields and Interrupt_Routing_Mode).
    pub route: u64,
    /// The vCPU whose queue (`Vgic::queued`) holds this interrupt, or [`NOT_QUEUED`].
    pub queued_on: u8,
}

/// `IrqState::queued_on` of an interrupt on no vCPU's queue.
pub(crate) const NOT_QUEUED: u8 = u8::MAX;

impl IrqState {
    /// A reset SGI: edge-triggered, disabled.
    pub const fn sgi() -> Self {
        Self {
            enabled: false,
            pending_latch: false,
            line_level: false,
            active: false,
            edge: true,
            group1: false,
            priority: 0,
            in_lr: false,
            sgi_sources: 0,
            targets: 0,
            route: 0,
            queued_on: NOT_QUEUED,
        }
    }

    /// A reset PPI or SPI: level-sensitive, disabled.
    pub const fn level() -> Self {
        Self {
            edge: false,
            ..Self::sgi()
        }
    }

    /// Whether the interrupt is pending in the GIC's sense.
    pub fn pending(&self) -> bool {
        self.pending_latch || self.sgi_sources != 0 || (!self.edge && self.line_level)
    }

    /// Whether the interrupt belongs on its vCPU's queue: pending or active.
    pub fn wants_queue(&self) -> bool {
        self.active || self.pending()
    }

    /// Clears every pending source (ICPENDR).
    pub fn clear_pending(&mut self) {
        self.pending_latch = false;
        self.sgi_sources = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_pending_follows_the_line_edge_does_not() {
        let mut level = IrqState::level();
        level.line_level = true;
        assert!(level.pending());
        level.line_level = false;
        assert!(!level.pending());
        let mut edge = IrqState::sgi();
        edge.line_level = true;
        assert!(!edge.pending());
        edge.sgi_sources = 0b10;
        assert!(edge.pending());
        edge.clear_pending();
        assert!(!edge.pending());
    }
}
