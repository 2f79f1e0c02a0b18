//! Emulated devices the guest reaches through stage-2 faults, and the decoding of those faults.
//!
//! Register models here are plain state machines over `(offset, size, value)`: they never touch
//! hardware, so they are host-tested. Register offsets are spelled as constants rather than
//! `tock-registers` structs because nothing is memory-mapped: we model a device, we don't drive
//! one.

use core::fmt;

pub mod mmio;
pub mod pl011;
pub mod ptimer;
pub mod pvpanic;

/// Why an emulated device refused an access; the exit handler injects an abort.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MmioError {
    /// The access width is not one the register file supports (e.g. 64-bit on a PL011).
    BadSize {
        /// Offset into the device window.
        offset: u64,
        /// Access width in bytes.
        bytes: u64,
    },
    /// The access is not naturally aligned.
    Unaligned {
        /// Offset into the device window.
        offset: u64,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize { offset, bytes } => {
                write!(f, "unsupported {bytes}-byte access at offset {offset:#x}")
            }
            Self::Unaligned { offset } => write!(f, "unaligned access at offset {offset:#x}"),
        }
    }
}
