//! The guest's GIC, as far as the probe's waiting modes need it (bench.rs, fpcheck.rs,
//! spin-free waits): SGIs 1-2 and the virtual timer PPI enabled on this CPU's interface, SGIs
//! sent, interrupts acknowledged and ended by polling, and a WFI wait for a virtual-timer
//! deadline.
//!
//! The interrupt side polls: IRQs stay masked (PSTATE.I), WFI still wakes on a pending one,
//! and the INTID is read from the CPU interface (ICC_IAR1_EL1, GICv2: GICC_IAR), as an IRQ
//! handler's first step would. A vCPU waiting in WFI gives its physical CPU away under a
//! hypervisor that shares CPUs, which is what the sharing modes rely on.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::machine::{Machine, WindowKind};

/// SGIs the probe sends (bench.rs's IPI ping-pong: ping, pong, and the ping that asks for FP
/// use) and the virtual timer's PPI.
pub const SGI_PING: u32 = 1;
pub const SGI_PONG: u32 = 2;
pub const SGI_PING_FP: u32 = 3;
pub const VTIMER_PPI: u32 = 27;
/// INTIDs 1020..1023 are special (1023: nothing pending).
const SPURIOUS: u32 = 1020;
const GICD_SGIR: u64 = 0xf00;
const GICR_STRIDE: u64 = 0x20000;
const GICR_WAKER: u64 = 0x14;
const GICR_SGI_FRAME: u64 = 0x10000;
const GICC_CTLR: u64 = 0x0;
const GICC_PMR: u64 = 0x4;
const GICC_IAR: u64 = 0xc;
const GICC_EOIR: u64 = 0x10;

/// The GIC a secondary vCPU uses, published by the primary before CPU_ON (version, then the
/// distributor, redistributor and CPU-interface bases).
static PUBLISHED: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

/// The guest's GIC: its version and frame bases (0 where the DTB names none).
#[derive(Clone, Copy)]
pub struct Gic {
    pub version: u8,
    pub gicd: u64,
    pub gicr: u64,
    pub gicc: u64,
}

impl Gic {
    /// The GIC the DTB describes, with its distributor forwarding Group 1 (v3, affinity
    /// routing) / everything (v2).
    pub fn new(machine: &Machine) -> Self {
        let base = |kind| machine.window(kind).map_or(0, |w| w.base);
        let gic = Gic {
            version: machine.gic_version,
            gicd: base(WindowKind::GicDistributor),
            gicr: base(WindowKind::GicRedistributors),
            gicc: base(WindowKind::GicCpuInterface),
        };
        write32(gic.gicd, if gic.version == 3 { 0x12 } else { 1 });
        gic
    }

    /// Makes this GIC the one `published` returns (for a secondary about to be started).
    pub fn publish(&self) {
        let words = [u64::from(self.version), self.gicd, self.gicr, self.gicc];
        for (slot, word) in PUBLISHED.iter().zip(words) {
            slot.store(word, Ordering::SeqCst);
        }
    }

    /// The GIC the primary published.
    pub fn published() -> Self {
        let word = |i: usize| PUBLISHED[i].load(Ordering::SeqCst);
        Gic {
            version: word(0) as u8,
            gicd: word(1),
            gicr: word(2),
            gicc: word(3),
        }
    }

    /// Enables SGIs 1-3 and the virtual timer PPI for CPU `index` (the caller), and this
    /// CPU's interface with every priority unmasked.
    pub fn init_cpu(&self, index: u64) {
        let enables = (1 << SGI_PING) | (1 << SGI_PONG) | (1 << SGI_PING_FP) | (1 << VTIMER_PPI);
        if self.version == 3 {
            let rd = self.gicr + index * GICR_STRIDE;
            let sgi = rd + GICR_SGI_FRAME;
            write32(rd + GICR_WAKER, 0);
            write32(sgi + 0x80, u32::MAX); // IGROUPR0: Group 1
            for word in 0..8 {
                write32(sgi + 0x400 + word * 4, 0xa0a0_a0a0); // IPRIORITYR
            }
            write32(sgi + 0x100, enables); // ISENABLER0
            // SAFETY: the guest's own GIC CPU interface registers.
            unsafe {
                asm!(
                    "mrs {t}, icc_sre_el1",
                    "orr {t}, {t}, #1",
                    "msr icc_sre_el1, {t}",
                    "isb",
                    "mov {t}, #0xff",
                    "msr icc_pmr_el1, {t}",
                    "mov {t}, #1",
                    "msr icc_igrpen1_el1, {t}",
                    "isb",
                    t = out(reg) _,
                    options(nostack),
                )
            };
        } else {
            for word in 0..8 {
                write32(self.gicd + 0x400 + word * 4, 0xa0a0_a0a0); // banked rows
            }
            write32(self.gicd + 0x100, enables);
            write32(self.gicc + GICC_PMR, 0xff);
            write32(self.gicc + GICC_CTLR, 1);
        }
    }

    /// Sends SGI `intid` to the CPU with MPIDR affinity `mpidr` (v2: interface `index`).
    pub fn send_sgi(&self, intid: u32, mpidr: u64, index: u64) {
        if self.version == 3 {
            let value =
                (u64::from(intid) << 24) | (((mpidr >> 8) & 0xff) << 16) | (1 << (mpidr & 0xf));
            // SAFETY: generating an SGI has no memory effects.
            unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) };
        } else {
            write32(self.gicd + GICD_SGIR, (1 << (16 + index)) | intid);
        }
    }

    /// Waits in WFI for an interrupt and acknowledges it: the INTID (GICv2: with its source
    /// bits, which `end` needs back).
    pub fn acknowledge(&self) -> u32 {
        loop {
            let iar = self.read_iar();
            if iar & 0x3ff < SPURIOUS {
                return iar;
            }
            wfi();
        }
    }

    /// Acknowledges the highest-priority pending interrupt, if any (see `acknowledge`).
    pub fn try_acknowledge(&self) -> Option<u32> {
        let iar = self.read_iar();
        (iar & 0x3ff < SPURIOUS).then_some(iar)
    }

    /// ICC_IAR1_EL1 (GICv2: GICC_IAR): the INTID acknowledged, or a special one (1020-1023).
    #[inline(always)]
    fn read_iar(&self) -> u32 {
        if self.version == 3 {
            let iar: u64;
            // SAFETY: acknowledging an interrupt at the guest's own CPU interface.
            unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nostack)) };
            iar as u32
        } else {
            read32(self.gicc + GICC_IAR)
        }
    }

    /// Ends (EOIs and deactivates) an interrupt `acknowledge` returned.
    pub fn end(&self, iar: u32) {
        if self.version == 3 {
            // SAFETY: as for `acknowledge`.
            unsafe {
                asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(iar), options(nostack))
            };
        } else {
            write32(self.gicc + GICC_EOIR, iar);
        }
    }

    /// Arms the virtual timer for `deadline`, waits for its interrupt in WFI; returns the
    /// counter when the INTID was read. Other interrupts are ended and ignored.
    pub fn wait_for_vtimer(&self, deadline: u64) -> u64 {
        set_vtimer(deadline, 1);
        loop {
            let iar = self.acknowledge();
            let now = crate::machine::counter();
            if iar & 0x3ff == VTIMER_PPI {
                // Disable first: the level-sensitive line must be low before the EOI.
                set_vtimer(0, 0);
                self.end(iar);
                return now;
            }
            self.end(iar);
        }
    }
}

/// Waits for an interrupt (or any other wake-up event); IRQs stay masked.
#[inline(always)]
pub fn wfi() {
    // SAFETY: WFI only waits.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

fn set_vtimer(cval: u64, ctl: u64) {
    // SAFETY: the guest's own virtual timer.
    unsafe {
        asm!("msr cntv_cval_el0, {}", "msr cntv_ctl_el0, {}", "isb", in(reg) cval, in(reg) ctl,
            options(nostack))
    };
}

/// One STR: an emulated register's access must carry a syndrome (no writeback addressing).
pub fn write32(addr: u64, value: u32) {
    crate::vectors::store_u32(addr, value)
}

pub fn read32(addr: u64) -> u32 {
    crate::vectors::load_u32(addr)
}
