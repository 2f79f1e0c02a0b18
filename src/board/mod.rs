//! The machines Bulkhead runs on: QEMU `virt` and the Raspberry Pi 4. Everything about them is
//! read from the DTB; this room holds the drivers (UART, GIC, power) and the CPU bring-up
//! method, with the `unsafe` MMIO they need.
pub mod console;
pub mod gic;
pub mod mini_uart;
pub mod pl011;
pub mod power;
pub mod rtc;

use crate::dtb::{self, PsciConduit};
use fdt::Fdt;

/// Which machine this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardKind {
    Virt,
    Rpi4,
}

impl BoardKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Virt => "virt",
            Self::Rpi4 => "rpi4",
        }
    }

    /// Decides from the root `compatible`.
    pub fn detect(fdt: &Fdt<'_>) -> Self {
        let root = fdt.find_node("/");
        let is_rpi4 = root.is_some_and(|r| {
            dtb::is_compatible(&r, "brcm,bcm2711")
                || dtb::is_compatible(&r, "raspberrypi,4-model-b")
        });
        if is_rpi4 { Self::Rpi4 } else { Self::Virt }
    }
}

/// What the boot CPU learned about the machine.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    pub kind: BoardKind,
    pub psci: Option<PsciConduit>,
}
