//! The BCM2835 auxiliary mini UART ("UART1", `brcm,bcm2835-aux-uart`): the Raspberry Pi 4's
//! console on GPIO 14/15 when config.txt says `enable_uart=1`.
//!
//! Registers (BCM2711 ARM Peripherals, section 2.2 "Mini UART"; offsets from the UART's own
//! `reg`, 0x7e215040, i.e. AUX base + 0x40): an 8250-like block with a 32-bit stride and
//! 8-deep FIFOs. The data sheet has known mistakes, collected on the eLinux "BCM2835 datasheet
//! errata" page: in `AUX_MU_IER_REG` bit 0 enables the *receive* interrupt and bit 1 the
//! *transmit* one (swapped in the document), and bits 3:2 must be set for interrupts to be
//! raised at all. QEMU's model (hw/char/bcm2835_aux.c) agrees on bits 0/1 and ignores 3:2.
//!
//! The baud rate is *not* set here: the mini UART's divisor runs off the VideoCore core clock,
//! which the firmware fixes (and programs the divisor for 115200) when config.txt says
//! `enable_uart=1`; QEMU models no divisor at all. Bulkhead only uses the UART as it finds
//! it: it never writes `AUX_MU_BAUD_REG`, `AUX_MU_LCR_REG` or `AUX_MU_CNTL_REG`.
//!
//! The receive interrupt is level-triggered (asserted while the receive FIFO holds data and
//! the interrupt is enabled), like the PL011's: masking it keeps bytes waiting in the FIFO.

use tock_registers::LocalRegisterCopy;
use tock_registers::register_bitfields;

register_bitfields! [u32,
    /// AUX_MU_IER_REG, with the errata's bit order.
    pub IER [
        RX_ENABLE OFFSET(0) NUMBITS(1) [],
        TX_ENABLE OFFSET(1) NUMBITS(1) [],
        /// "Must be set to receive interrupts" (errata).
        INT_ENABLE OFFSET(2) NUMBITS(2) [],
    ],
    /// AUX_MU_LSR_REG.
    pub LSR [
        DATA_READY OFFSET(0) NUMBITS(1) [],
        RX_OVERRUN OFFSET(1) NUMBITS(1) [],
        /// The transmit FIFO can accept at least one byte.
        TX_EMPTY OFFSET(5) NUMBITS(1) [],
        /// The transmit FIFO is empty and the transmitter idle.
        TX_IDLE OFFSET(6) NUMBITS(1) [],
    ],
];

/// The mini UART registers the console uses (offsets from the UART's `reg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// AUX_MU_IO_REG (0x00): receive / transmit data.
    Io,
    /// AUX_MU_IER_REG (0x04): interrupt enables.
    Ier,
    /// AUX_MU_LSR_REG (0x14): line status.
    Lsr,
}

impl Reg {
    /// Byte offset from the UART's base.
    pub const fn offset(self) -> usize {
        match self {
            Self::Io => 0x00,
            Self::Ier => 0x04,
            Self::Lsr => 0x14,
        }
    }
}

/// 32-bit register access to one mini UART.
pub trait MiniUartIo {
    fn read(&self, reg: Reg) -> u32;
    fn write(&self, reg: Reg, value: u32);
}

/// How long `putc` / `flush` poll before giving up: a wedged UART must not wedge the
/// hypervisor (at 115200 baud a byte takes ~87 µs; this is far more than a full FIFO).
const POLL_LIMIT: u32 = 1_000_000;

/// The console driver.
pub struct MiniUart<R> {
    io: R,
}

impl<R: MiniUartIo> MiniUart<R> {
    pub const fn new(io: R) -> Self {
        Self { io }
    }

    fn lsr(&self) -> LocalRegisterCopy<u32, LSR::Register> {
        LocalRegisterCopy::new(self.io.read(Reg::Lsr))
    }

    /// Polls `done` (bounded); `relax` runs between polls (a CPU yield hint on the board).
    fn wait(&self, done: impl Fn(&Self) -> bool, relax: &dyn Fn()) -> bool {
        for _ in 0..POLL_LIMIT {
            if done(self) {
                return true;
            }
            relax();
        }
        false
    }

    /// Sends one byte once the transmit FIFO has room (or the bounded wait ran out).
    pub fn putc(&self, byte: u8, relax: &dyn Fn()) {
        self.wait(|u| u.lsr().is_set(LSR::TX_EMPTY), relax);
        self.io.write(Reg::Io, u32::from(byte));
    }

    /// Waits until everything written has left the transmitter (before a reset or power-off
    /// cuts it short).
    pub fn flush(&self, relax: &dyn Fn()) {
        self.wait(|u| u.lsr().is_set(LSR::TX_IDLE), relax);
    }

    /// Whether received bytes are waiting.
    pub fn has_input(&self) -> bool {
        self.lsr().is_set(LSR::DATA_READY)
    }

    /// One received byte. The data register is read only when the FIFO holds one: reading it
    /// pops the FIFO.
    pub fn getc(&self) -> Option<u8> {
        self.has_input()
            .then(|| (self.io.read(Reg::Io) & 0xff) as u8)
    }

    /// Raises the (level) interrupt while received bytes wait. The transmit interrupt stays
    /// off: it would be pending whenever the transmit FIFO is empty, i.e. nearly always.
    pub fn enable_rx_irq(&self) {
        let ier = IER::RX_ENABLE::SET + IER::INT_ENABLE.val(0b11);
        self.io.write(Reg::Ier, ier.value);
    }

    /// Masks every mini UART interrupt (received bytes stay in the FIFO).
    pub fn disable_rx_irq(&self) {
        self.io.write(Reg::Ier, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// A mini UART model: an 8-byte receive FIFO, a transmit FIFO that drains one byte per
    /// `ticks_per_byte` line-status reads, and a log of every access. Reading IO with an empty
    /// FIFO returns 0xff (garbage), as a careless driver would see.
    #[derive(Default)]
    struct FakeUart {
        rx: RefCell<VecDeque<u8>>,
        tx_fifo: RefCell<usize>,
        sent: RefCell<Vec<u8>>,
        ier: RefCell<u32>,
        accesses: RefCell<Vec<(bool, Reg, u32)>>,
        wedged: bool,
    }

    impl MiniUartIo for &FakeUart {
        fn read(&self, reg: Reg) -> u32 {
            let value = match reg {
                Reg::Io => self.rx.borrow_mut().pop_front().map_or(0xff, u32::from),
                Reg::Ier => *self.ier.borrow(),
                Reg::Lsr => {
                    let mut fifo = self.tx_fifo.borrow_mut();
                    if !self.wedged && *fifo > 0 {
                        *fifo -= 1;
                    }
                    let mut lsr = 0;
                    if !self.rx.borrow().is_empty() {
                        lsr |= 1;
                    }
                    if *fifo < 8 {
                        lsr |= 1 << 5;
                    }
                    if *fifo == 0 {
                        lsr |= 1 << 6;
                    }
                    lsr
                }
            };
            self.accesses.borrow_mut().push((false, reg, value));
            value
        }

        fn write(&self, reg: Reg, value: u32) {
            self.accesses.borrow_mut().push((true, reg, value));
            match reg {
                Reg::Io => {
                    *self.tx_fifo.borrow_mut() += 1;
                    self.sent.borrow_mut().push(value as u8);
                }
                Reg::Ier => *self.ier.borrow_mut() = value,
                Reg::Lsr => {}
            }
        }
    }

    fn no_relax() {}

    #[test]
    fn register_offsets_match_the_bcm2711_peripherals_manual() {
        // AUX base 0x7e215000: AUX_MU_IO_REG 0x40, AUX_MU_IER_REG 0x44, AUX_MU_LSR_REG 0x54.
        assert_eq!(0x40 + Reg::Io.offset(), 0x40);
        assert_eq!(0x40 + Reg::Ier.offset(), 0x44);
        assert_eq!(0x40 + Reg::Lsr.offset(), 0x54);
    }

    #[test]
    fn putc_waits_for_fifo_room_and_sends_every_byte() {
        let fake = FakeUart::default();
        let uart = MiniUart::new(&fake);
        for b in b"bulkhead: hello from the mini UART\n" {
            uart.putc(*b, &no_relax);
        }
        assert_eq!(
            &fake.sent.borrow()[..],
            b"bulkhead: hello from the mini UART\n"
        );
        // The FIFO never held more than its 8 bytes.
        let mut level = 0i32;
        for (write, reg, _) in fake.accesses.borrow().iter() {
            match (write, reg) {
                (true, Reg::Io) => level += 1,
                (false, Reg::Lsr) => level = (level - 1).max(0),
                _ => {}
            }
            assert!(level <= 8);
        }
    }

    #[test]
    fn putc_on_a_wedged_uart_gives_up_instead_of_hanging() {
        let fake = FakeUart {
            tx_fifo: RefCell::new(8),
            wedged: true,
            ..Default::default()
        };
        let uart = MiniUart::new(&fake);
        uart.putc(b'x', &no_relax);
        uart.flush(&no_relax);
        assert_eq!(&fake.sent.borrow()[..], b"x");
    }

    #[test]
    fn getc_reads_data_only_when_the_line_status_says_so() {
        let fake = FakeUart::default();
        let uart = MiniUart::new(&fake);
        assert_eq!(uart.getc(), None);
        assert!(!uart.has_input());
        // An empty FIFO's data register was never read (it would return garbage).
        assert!(!fake.accesses.borrow().iter().any(|a| a.1 == Reg::Io));
        fake.rx.borrow_mut().extend(b"ls\n");
        assert!(uart.has_input());
        assert_eq!(uart.getc(), Some(b'l'));
        assert_eq!(uart.getc(), Some(b's'));
        assert_eq!(uart.getc(), Some(b'\n'));
        assert_eq!(uart.getc(), None);
    }

    #[test]
    fn rx_interrupt_enable_never_enables_the_transmit_interrupt() {
        let fake = FakeUart::default();
        let uart = MiniUart::new(&fake);
        uart.enable_rx_irq();
        let ier = *fake.ier.borrow();
        assert_eq!(ier & 1, 1, "receive interrupt (bit 0) on");
        assert_eq!(ier & 2, 0, "transmit interrupt (bit 1) off");
        assert_eq!(ier & 0b1100, 0b1100, "bits 3:2 set (errata)");
        uart.disable_rx_irq();
        assert_eq!(*fake.ier.borrow(), 0);
    }

    #[test]
    fn the_console_only_touches_data_interrupt_enable_and_line_status() {
        // The baud divisor, line and extra control belong to the firmware (enable_uart=1).
        let fake = FakeUart::default();
        let uart = MiniUart::new(&fake);
        uart.putc(b'a', &no_relax);
        uart.enable_rx_irq();
        fake.rx.borrow_mut().push_back(b'b');
        let _ = uart.getc();
        uart.disable_rx_irq();
        uart.flush(&no_relax);
        let writes: Vec<Reg> = fake
            .accesses
            .borrow()
            .iter()
            .filter(|a| a.0)
            .map(|a| a.1)
            .collect();
        assert!(
            writes.iter().all(|r| matches!(r, Reg::Io | Reg::Ier)),
            "{writes:?}"
        );
    }

    #[test]
    fn flush_waits_until_the_transmitter_is_idle() {
        let fake = FakeUart::default();
        let uart = MiniUart::new(&fake);
        for b in b"poweroff" {
            uart.putc(*b, &no_relax);
        }
        uart.flush(&no_relax);
        assert_eq!(*fake.tx_fifo.borrow(), 0);
    }
}
