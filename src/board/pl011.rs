//! Driver for the physical PL011 UART (the hypervisor's console). A break on its line (TRM
//! 2.4.3) arrives as a 0 character flagged DR.BE, with the break interrupt: reported as
//! [`Received::Break`].

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::console::Received;

register_bitfields! [u32,
    FR [
        BUSY OFFSET(3) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
    ],
    CR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        RXE OFFSET(9) NUMBITS(1) [],
    ],
    IMSC [
        RXIM OFFSET(4) NUMBITS(1) [],
        RTIM OFFSET(6) NUMBITS(1) [],
        BEIM OFFSET(9) NUMBITS(1) [],
    ],
    DR [
        DATA OFFSET(0) NUMBITS(8) [],
        BE OFFSET(10) NUMBITS(1) [],
    ],
    ICR [
        BEIC OFFSET(9) NUMBITS(1) [],
    ],
];

register_structs! {
    pub Pl011Regs {
        (0x000 => dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x038 => imsc: ReadWrite<u32, IMSC::Register>),
        (0x03c => _reserved3),
        (0x044 => icr: WriteOnly<u32, ICR::Register>),
        (0x048 => @END),
    }
}

pub struct Pl011 {
    regs: &'static Pl011Regs,
}

// SAFETY: the registers are MMIO; every access goes through the console mutex.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `va` must map the PL011 registers as device memory for the rest of the program, and no
    /// other driver may use them.
    pub unsafe fn new(va: u64) -> Self {
        // SAFETY: per the function contract, `va` maps the registers for good.
        let regs = unsafe { &*(va as *const Pl011Regs) };
        Self { regs }
    }

    pub fn putc(&self, byte: u8) {
        // Bounded wait: a wedged UART must not wedge the hypervisor.
        for _ in 0..1_000_000 {
            if !self.regs.fr.is_set(FR::TXFF) {
                break;
            }
            crate::arch::cpu::yield_hint();
        }
        self.regs.dr.set(u32::from(byte));
    }

    pub fn getc(&self) -> Option<Received> {
        if self.regs.fr.is_set(FR::RXFE) {
            return None;
        }
        let dr = self.regs.dr.extract();
        if dr.is_set(DR::BE) {
            // The break interrupt stays raised until cleared (QEMU does not raise it).
            self.regs.icr.write(ICR::BEIC::SET);
            return Some(Received::Break);
        }
        Some(Received::Byte(dr.read(DR::DATA) as u8))
    }

    /// Enables receive interrupts (for guest console input).
    /// Unmasks the receive interrupts. Only error interrupts are cleared: clearing RX/RT
    /// could drop one that just fired (QEMU raises RX once, when the FIFO reaches its trigger).
    pub fn enable_rx_irq(&self) {
        self.regs.icr.set(0x780);
        self.regs
            .imsc
            .write(IMSC::RXIM::SET + IMSC::RTIM::SET + IMSC::BEIM::SET);
    }

    /// Whether received bytes are waiting.
    pub fn has_input(&self) -> bool {
        !self.regs.fr.is_set(FR::RXFE)
    }

    /// Waits (bounded) until the transmitter is no longer busy: every byte written is out.
    pub fn flush(&self) {
        for _ in 0..1_000_000 {
            if !self.regs.fr.is_set(FR::BUSY) {
                return;
            }
            crate::arch::cpu::yield_hint();
        }
    }

    /// Masks the receive interrupts (bytes stay in the hardware FIFO).
    pub fn disable_rx_irq(&self) {
        self.regs.imsc.set(0);
    }
}
