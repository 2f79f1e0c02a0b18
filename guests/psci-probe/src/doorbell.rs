//! Bulkhead's inter-VM doorbells from the guest's side: ringing one (an SMCCC vendor-specific
//! hypervisor call over HVC) and receiving one (an edge-triggered SPI in this VM's vGIC).
//!
//! The receiver polls: the probe runs with IRQs masked and has no IRQ vector, so it reads
//! the SPI's GICD_ISPENDR bit and clears it with GICD_ICPENDR. The SPI is still enabled,
//! made Group 1, given a priority, made edge-triggered and routed to this CPU as the contract
//! asks; the distributor's own group enables (GICD_CTLR) are left alone, so the interrupt
//! stays pending in the distributor instead of being forwarded to a CPU interface that never
//! acknowledges it.

use psci_probe::gic_layout::{self as gicd, Field};

use crate::machine::{self, Machine, WindowKind};
use crate::vectors::{self, Fault};

/// Rings doorbell x1 (vendor-specific hypervisor service, SMC32 fast call).
pub const DOORBELL_RING: u32 = 0x8600_0001;
/// GIC distributor base on virt, when the DTB names none.
const GICD_FALLBACK: u64 = 0x0800_0000;
/// Priority given to the doorbell SPI (mid-range; the probe never takes it).
const PRIORITY: u32 = 0xA0;
/// GICv2 ITARGETSR: CPU interface 0, the probe's primary vCPU.
const TARGET_CPU0: u32 = 1;

/// Rings doorbell `number`; returns X0.
pub fn ring(number: u32) -> u64 {
    crate::psci::hvc(DOORBELL_RING, u64::from(number), 0, 0)
}

/// Why the receiving SPI could not be set up.
#[derive(Clone, Copy)]
pub enum SetupError {
    /// The DTB names no GIC the probe knows.
    UnknownGic,
    /// A distributor access raised an exception.
    Fault(Fault),
    /// A register did not keep what was written: (offset, word read back).
    DidNotStick(u64, u32),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            SetupError::UnknownGic => write!(f, "unknown_gic"),
            SetupError::Fault(fault) => write!(f, "exception(esr={:#x})", fault.esr),
            SetupError::DidNotStick(offset, got) => {
                write!(f, "gicd[{offset:#x}]={got:#x}")
            }
        }
    }
}

/// An SPI set up to receive a doorbell.
pub struct Receiver {
    gicd: u64,
    pending: Field,
    clear: Field,
}

impl Receiver {
    /// Enables INTID `intid` in this VM's distributor as the doorbell contract asks. Does
    /// not clear a pending state: the peer may already have rung.
    pub fn enable(machine: &Machine, intid: u32) -> Result<Receiver, SetupError> {
        let gicd = machine
            .window(WindowKind::GicDistributor)
            .map_or(GICD_FALLBACK, |w| w.base);
        let receiver = Receiver {
            gicd,
            pending: gicd::bit(gicd::GICD_ISPENDR, intid),
            clear: gicd::bit(gicd::GICD_ICPENDR, intid),
        };
        let gic_version = machine.gic_version;
        let steps = || -> Result<(), SetupError> {
            receiver.update(gicd::bit(gicd::GICD_IGROUPR, intid), 1)?;
            receiver.update(gicd::byte(gicd::GICD_IPRIORITYR, intid), PRIORITY)?;
            receiver.update(gicd::config(intid), gicd::ICFGR_EDGE)?;
            match gic_version {
                3 => {
                    // Interrupt_Routing_Mode 0: to the PE named by the affinity fields.
                    let mpidr = machine::own_mpidr();
                    let (low, high) = gicd::irouter_words(intid);
                    receiver.write(low, mpidr as u32);
                    receiver.write(high, (mpidr >> 32) as u32);
                }
                2 => receiver.update(gicd::byte(gicd::GICD_ITARGETSR, intid), TARGET_CPU0)?,
                _ => return Err(SetupError::UnknownGic),
            }
            let enable = gicd::bit(gicd::GICD_ISENABLER, intid);
            receiver.write(enable.offset, enable.alone(1));
            receiver.expect(enable, 1)
        };
        match vectors::capture(steps) {
            Ok(result) => result.map(|()| receiver),
            Err(fault) => Err(SetupError::Fault(fault)),
        }
    }

    /// Moves the SPI to Group 0, the group a GICv2 guest that acknowledges its interrupts
    /// at the CPU interface uses (with GICC_CTLR.AckCtl = 0, GICC_IAR hands out only Group 0
    /// interrupts; GIC architecture v2, 4.4.4).
    pub fn use_group0(&self, intid: u32) -> Result<(), SetupError> {
        match vectors::capture(|| self.update(gicd::bit(gicd::GICD_IGROUPR, intid), 0)) {
            Ok(result) => result,
            Err(fault) => Err(SetupError::Fault(fault)),
        }
    }

    /// Whether the doorbell rang since the last call; clears its pending state if so.
    pub fn take(&self) -> bool {
        if self.pending.get(self.read(self.pending.offset)) == 0 {
            return false;
        }
        self.write(self.clear.offset, self.clear.alone(1));
        true
    }

    /// Read-modify-write of one field, checked by reading it back.
    fn update(&self, field: Field, value: u32) -> Result<(), SetupError> {
        let word = self.read(field.offset);
        self.write(field.offset, field.set(word, value));
        self.expect(field, value)
    }

    fn expect(&self, field: Field, value: u32) -> Result<(), SetupError> {
        let word = self.read(field.offset);
        if field.get(word) == value {
            Ok(())
        } else {
            Err(SetupError::DidNotStick(field.offset, word))
        }
    }

    fn read(&self, offset: u64) -> u32 {
        // The distributor window from the DTB, an aligned 32-bit register; a single LDR so a
        // missing distributor faults inside `capture` during setup.
        vectors::load_u32(self.gicd + offset)
    }

    fn write(&self, offset: u64, value: u32) {
        vectors::store_u32(self.gicd + offset, value);
    }
}
