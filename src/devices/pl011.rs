//! An emulated ARM PL011 UART (PrimeCell r1p4, ARM DDI 0183), enough for Linux's amba-pl011
//! driver in interrupt mode and its earlycon.
//!
//! - Transmit is immediate: a byte written to DR is handed back to the caller for output, so the
//!   TX FIFO is always empty (FR.TXFE = 1, TXFF = BUSY = 0) and the TX interrupt (at or below
//!   the trigger level) is always raised. Linux only unmasks TXIM while it has bytes queued and
//!   masks it again once its buffer drains, so the always-raised TXIS keeps its handshake going.
//! - Receive: the hypervisor pushes bytes it read from the physical UART into the RX FIFO
//!   (16 entries; 1 with FIFOs disabled). RXIS is raised at the IFLS trigger level, RTIS (receive
//!   timeout) as soon as any byte waits, since we have no bit clock to time out on.
//! - A break received on the console is what the PL011 makes of a break on its line (TRM 2.4.3,
//!   "Error bits"): a 0 character with DR.BE (bit 10) in the FIFO, RSR.BE when it is read, and
//!   the break interrupt BEIS (RIS bit 9) latched until cleared through ICR. Linux's driver
//!   takes it as a break (SysRq: a break, then the command key).
//! - The interrupt line (`irq_level`) is RIS & IMSC, for the vGIC to drive SPI 1 (INTID 33).
//! - Like QEMU, transmit does not wait for CR.UARTEN/TXE: early consoles write before anyone
//!   enabled the UART. Unknown offsets read as zero and ignore writes.

use super::MmioError;
use super::mmio::AccessSize;

// Register offsets.
const DR: u64 = 0x000;
const RSR_ECR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;
const ID_BASE: u64 = 0xfe0;

/// PeriphID0-3 and PCellID0-3 (0xFE0..0xFFC): a PL011 r1p4 and the PrimeCell signature, which
/// the AMBA bus reads to bind the driver.
const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// FR bits.
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;

// LCR_H bits.
const LCR_H_FEN: u32 = 1 << 4;

// Interrupt bits (RIS / MIS / IMSC / ICR).
/// Receive interrupt.
pub const INT_RX: u32 = 1 << 4;
/// Transmit interrupt.
pub const INT_TX: u32 = 1 << 5;
/// Receive timeout interrupt.
pub const INT_RT: u32 = 1 << 6;
/// Break error interrupt.
pub const INT_BE: u32 = 1 << 9;
/// Overrun error interrupt.
pub const INT_OE: u32 = 1 << 10;
const INT_ALL: u32 = 0x7ff;
/// Interrupts derived from FIFO levels rather than latched events.
const INT_LEVEL_BITS: u32 = INT_RX | INT_TX | INT_RT;

// DR read-side error bits and RSR bits.
const DR_BE: u16 = 1 << 10;
const DR_OE: u32 = 1 << 11;
const RSR_BE: u32 = 1 << 2;
const RSR_OE: u32 = 1 << 3;

/// Depth of the receive FIFO: 16, as the r1p4 revision in our PeriphID has (Linux derives its
/// FIFO size from that revision; QEMU's PL011 is 16 deep too).
const RX_FIFO_DEPTH: usize = 16;

/// Emulated PL011 state.
#[derive(Clone, Debug)]
pub struct EmulatedPl011 {
    /// Received characters with their error bits (DR[11:8]), as the PL011's 12-bit FIFO.
    rx_fifo: [u16; RX_FIFO_DEPTH],
    rx_head: usize,
    rx_count: usize,
    /// Receive status: sticky error bits (overrun, and break once a break was read).
    rsr: u32,
    /// Latched interrupt events (overrun, break); level-derived bits are computed.
    latched: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl Default for EmulatedPl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl EmulatedPl011 {
    /// A PL011 in its reset state.
    pub const fn new() -> Self {
        Self {
            rx_fifo: [0; RX_FIFO_DEPTH],
            rx_head: 0,
            rx_count: 0,
            rsr: 0,
            latched: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,  // TXE | RXE
            ifls: 0x12, // both trigger levels at 1/2
            imsc: 0,
            dmacr: 0,
        }
    }

    /// Back to reset state (guest reboot); pending input is dropped.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn fifo_enabled(&self) -> bool {
        self.lcr_h & LCR_H_FEN != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            RX_FIFO_DEPTH
        } else {
            1
        }
    }

    /// RX FIFO fill level at which RXIS is raised, from IFLS.RXIFLSEL (1/8 .. 7/8).
    fn rx_trigger(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        let eighths = match (self.ifls >> 3) & 0b111 {
            0 => 1,
            1 => 2,
            2 => 4,
            3 => 6,
            _ => 7,
        };
        (RX_FIFO_DEPTH * eighths / 8).max(1)
    }

    /// Queues a byte received from the host console. Returns false (and flags an overrun, as
    /// the hardware would) when the FIFO is full.
    pub fn push_rx(&mut self, byte: u8) -> bool {
        self.push_entry(u16::from(byte))
    }

    /// A break on the line: a 0 character flagged BE, and the break interrupt. False (an
    /// overrun) when the FIFO is full.
    pub fn push_break(&mut self) -> bool {
        self.latched |= INT_BE;
        self.push_entry(DR_BE)
    }

    fn push_entry(&mut self, entry: u16) -> bool {
        if self.rx_count >= self.rx_capacity() {
            self.rsr |= RSR_OE;
            self.latched |= INT_OE;
            return false;
        }
        let tail = (self.rx_head + self.rx_count) % RX_FIFO_DEPTH;
        self.rx_fifo[tail] = entry;
        self.rx_count += 1;
        true
    }

    /// How many more bytes `push_rx` accepts right now (so the caller can leave the rest in
    /// the physical UART instead of losing them).
    pub fn rx_space(&self) -> usize {
        self.rx_capacity().saturating_sub(self.rx_count)
    }

    fn pop_rx(&mut self) -> Option<u16> {
        if self.rx_count == 0 {
            return None;
        }
        let byte = self.rx_fifo[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_FIFO_DEPTH;
        self.rx_count -= 1;
        Some(byte)
    }

    fn flags(&self) -> u32 {
        let mut fr = FR_TXFE;
        if self.rx_count == 0 {
            fr |= FR_RXFE;
        }
        if self.rx_count >= self.rx_capacity() {
            fr |= FR_RXFF;
        }
        // Never TXFF or BUSY: output is immediate.
        fr & !(FR_TXFF | FR_BUSY)
    }

    /// Raw interrupt status: latched events plus FIFO-level conditions.
    fn raw_interrupts(&self) -> u32 {
        let mut ris = self.latched & !INT_LEVEL_BITS;
        // TX FIFO is always empty, hence at or below any trigger level.
        ris |= INT_TX;
        if self.rx_count >= self.rx_trigger() {
            ris |= INT_RX;
        }
        if self.rx_count > 0 {
            ris |= INT_RT;
        }
        ris
    }

    /// Level of the UART's interrupt line (the vGIC's SPI for INTID 33).
    pub fn irq_level(&self) -> bool {
        self.raw_interrupts() & self.imsc != 0
    }

    fn check(offset: u64, size: AccessSize) -> Result<(), MmioError> {
        if size == AccessSize::Double {
            return Err(MmioError::BadSize { offset, bytes: 8 });
        }
        if !offset.is_multiple_of(size.bytes()) {
            return Err(MmioError::Unaligned { offset });
        }
        Ok(())
    }

    /// A guest read of `size` at `offset` in the PL011 window.
    pub fn read(&mut self, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        Self::check(offset, size)?;
        let register = offset & !3;
        let value = match register {
            DR => self.read_dr(),
            RSR_ECR => self.rsr,
            FR => self.flags(),
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.raw_interrupts(),
            MIS => self.raw_interrupts() & self.imsc,
            DMACR => self.dmacr,
            ID_BASE..=0xffc => {
                let index = ((register - ID_BASE) / 4) as usize;
                ID_BYTES.get(index).copied().map_or(0, u32::from)
            }
            _ => 0,
        };
        // Sub-word reads see the addressed bytes of the 32-bit register.
        let shift = (offset & 3) * 8;
        Ok((u64::from(value) >> shift) & size.mask())
    }

    fn read_dr(&mut self) -> u32 {
        match self.pop_rx() {
            Some(entry) => {
                // The overrun flag travels with the next character read (DR[11]).
                let error = if self.rsr & RSR_OE != 0 { DR_OE } else { 0 };
                if entry & DR_BE != 0 {
                    self.rsr |= RSR_BE;
                }
                u32::from(entry) | error
            }
            None => 0,
        }
    }

    /// A guest write of `value` (`size` wide) at `offset`. Returns the byte to transmit, if the
    /// write was to DR; such a write changes no state (the transmitter is modelled as always
    /// empty), so the interrupt line keeps its level (`console_bridge::uart_write` relies on it).
    pub fn write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<Option<u8>, MmioError> {
        Self::check(offset, size)?;
        if offset & 3 != 0 {
            // A write to the upper bytes of a register: nothing we model lives there.
            return Ok(None);
        }
        let value = (value & size.mask()) as u32;
        match offset {
            DR => return Ok(Some(value as u8)),
            RSR_ECR => {
                self.rsr = 0;
                self.latched &= !(INT_OE | INT_BE);
            }
            ILPR => self.ilpr = value & 0xff,
            IBRD => self.ibrd = value & 0xffff,
            FBRD => self.fbrd = value & 0x3f,
            LCR_H => {
                let was_fifo = self.fifo_enabled();
                self.lcr_h = value & 0xff;
                if was_fifo != self.fifo_enabled() {
                    // Changing FEN flushes the FIFOs (a 1-deep holding register can't keep 32).
                    self.rx_count = 0;
                }
            }
            CR => self.cr = value & 0xff87,
            IFLS => self.ifls = value & 0x3f,
            IMSC => self.imsc = value & INT_ALL,
            ICR => self.latched &= !value,
            DMACR => self.dmacr = value & 0x7,
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(uart: &mut EmulatedPl011, offset: u64) -> u32 {
        uart.read(offset, AccessSize::Word).unwrap() as u32
    }

    fn write(uart: &mut EmulatedPl011, offset: u64, value: u32) -> Option<u8> {
        uart.write(offset, AccessSize::Word, u64::from(value))
            .unwrap()
    }

    #[test]
    fn a_data_register_write_changes_no_state() {
        let mut uart = EmulatedPl011::new();
        write(&mut uart, IMSC, 0x7ff);
        uart.push_rx(b'a');
        uart.push_break();
        for size in [AccessSize::Byte, AccessSize::Half, AccessSize::Word] {
            let before = format!("{uart:?}");
            let level = uart.irq_level();
            assert_eq!(uart.write(DR, size, 0x41), Ok(Some(0x41)));
            assert_eq!(format!("{uart:?}"), before);
            assert_eq!(uart.irq_level(), level);
        }
    }

    #[test]
    fn primecell_ids_match_a_pl011() {
        let mut uart = EmulatedPl011::new();
        let ids: Vec<u32> = (0..8).map(|i| read(&mut uart, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn tx_is_immediate_and_never_busy() {
        let mut uart = EmulatedPl011::new();
        assert_eq!(write(&mut uart, DR, 0x141), Some(0x41));
        // earlycon writes DR with a byte store.
        assert_eq!(uart.write(DR, AccessSize::Byte, 0x42).unwrap(), Some(0x42));
        let fr = read(&mut uart, FR);
        assert_eq!(fr & (FR_TXFF | FR_BUSY), 0);
        assert_ne!(fr & FR_TXFE, 0);
        // 16-bit FR read, as the arm vendor driver does.
        assert_eq!(uart.read(FR, AccessSize::Half).unwrap() as u32, fr);
    }

    #[test]
    fn tx_interrupt_follows_imsc() {
        let mut uart = EmulatedPl011::new();
        assert!(!uart.irq_level());
        assert_ne!(read(&mut uart, RIS) & INT_TX, 0);
        // Linux unmasks TXIM while it has queued bytes ...
        write(&mut uart, IMSC, INT_TX);
        assert!(uart.irq_level());
        assert_eq!(read(&mut uart, MIS), INT_TX);
        // ... writes a batch from the handler; TXIS stays up so it keeps going ...
        for byte in b"hello" {
            assert_eq!(write(&mut uart, DR, u32::from(*byte)), Some(*byte));
        }
        assert!(uart.irq_level());
        // ... and masks it when its buffer is empty.
        write(&mut uart, IMSC, 0);
        assert!(!uart.irq_level());
    }

    #[test]
    fn rx_fifo_delivers_bytes_in_order_with_interrupts() {
        let mut uart = EmulatedPl011::new();
        write(&mut uart, LCR_H, LCR_H_FEN | 0x60);
        write(&mut uart, IMSC, INT_RX | INT_RT);
        assert_ne!(read(&mut uart, FR) & FR_RXFE, 0);
        assert!(!uart.irq_level());
        assert!(uart.push_rx(b'a'));
        assert!(uart.push_rx(b'b'));
        // Below the 1/2 trigger: only the receive timeout fires.
        assert_eq!(read(&mut uart, MIS), INT_RT);
        assert!(uart.irq_level());
        assert_eq!(read(&mut uart, FR) & FR_RXFE, 0);
        assert_eq!(read(&mut uart, DR), u32::from(b'a'));
        assert_eq!(read(&mut uart, DR), u32::from(b'b'));
        assert_ne!(read(&mut uart, FR) & FR_RXFE, 0);
        assert!(!uart.irq_level());
        for i in 0..8 {
            uart.push_rx(i);
        }
        assert_eq!(read(&mut uart, MIS), INT_RX | INT_RT);
    }

    #[test]
    fn rx_overrun_is_reported_and_cleared() {
        let mut uart = EmulatedPl011::new();
        write(&mut uart, LCR_H, LCR_H_FEN);
        for i in 0..RX_FIFO_DEPTH {
            assert!(uart.push_rx(i as u8));
        }
        assert_eq!(uart.rx_space(), 0);
        assert_ne!(read(&mut uart, FR) & FR_RXFF, 0);
        assert!(!uart.push_rx(0xff));
        assert_ne!(read(&mut uart, RIS) & INT_OE, 0);
        assert_eq!(read(&mut uart, DR), DR_OE);
        assert_eq!(read(&mut uart, RSR_ECR), RSR_OE);
        write(&mut uart, RSR_ECR, 0);
        write(&mut uart, ICR, INT_OE);
        assert_eq!(read(&mut uart, RSR_ECR), 0);
        assert_eq!(read(&mut uart, RIS) & INT_OE, 0);
    }

    #[test]
    fn break_is_a_zero_character_flagged_be_with_its_interrupt() {
        let mut uart = EmulatedPl011::new();
        write(&mut uart, LCR_H, LCR_H_FEN);
        write(&mut uart, IMSC, INT_BE);
        assert!(uart.push_rx(b'x'));
        assert!(uart.push_break());
        assert!(uart.push_rx(b'h'));
        assert_eq!(read(&mut uart, RIS) & INT_BE, INT_BE);
        assert_eq!(read(&mut uart, MIS), INT_BE);
        assert!(uart.irq_level());
        // In order: the byte before, the break (0 with BE), the byte after.
        assert_eq!(read(&mut uart, DR), u32::from(b'x'));
        assert_eq!(read(&mut uart, RSR_ECR), 0);
        assert_eq!(read(&mut uart, DR), 1 << 10);
        assert_eq!(read(&mut uart, RSR_ECR), RSR_BE);
        assert_eq!(read(&mut uart, DR), u32::from(b'h'));
        // ICR clears the interrupt; ECR the status.
        write(&mut uart, ICR, INT_BE);
        assert_eq!(read(&mut uart, RIS) & INT_BE, 0);
        assert!(!uart.irq_level());
        write(&mut uart, RSR_ECR, 0);
        assert_eq!(read(&mut uart, RSR_ECR), 0);
        // A break into a full FIFO is an overrun, like any character.
        for i in 0..RX_FIFO_DEPTH {
            uart.push_rx(i as u8);
        }
        assert!(!uart.push_break());
        assert_ne!(read(&mut uart, RIS) & INT_OE, 0);
    }

    #[test]
    fn without_fifo_the_holding_register_is_one_deep() {
        let mut uart = EmulatedPl011::new();
        assert!(uart.push_rx(1));
        assert!(!uart.push_rx(2));
        write(&mut uart, IMSC, INT_RX);
        assert!(uart.irq_level());
    }

    #[test]
    fn control_registers_hold_their_values() {
        let mut uart = EmulatedPl011::new();
        assert_eq!(read(&mut uart, CR), 0x300);
        assert_eq!(read(&mut uart, IFLS), 0x12);
        write(&mut uart, IBRD, 13);
        write(&mut uart, FBRD, 0xff);
        write(&mut uart, CR, 0x301);
        assert_eq!(read(&mut uart, IBRD), 13);
        assert_eq!(read(&mut uart, FBRD), 0x3f);
        assert_eq!(read(&mut uart, CR), 0x301);
        uart.reset();
        assert_eq!(read(&mut uart, IBRD), 0);
    }

    #[test]
    fn bad_accesses_are_errors_and_unknown_offsets_are_raz_wi() {
        let mut uart = EmulatedPl011::new();
        assert_eq!(
            uart.read(DR, AccessSize::Double),
            Err(MmioError::BadSize {
                offset: 0,
                bytes: 8
            })
        );
        assert_eq!(
            uart.read(0x19, AccessSize::Half),
            Err(MmioError::Unaligned { offset: 0x19 })
        );
        assert_eq!(read(&mut uart, 0x800), 0);
        assert_eq!(write(&mut uart, 0x800, 0xffff_ffff), None);
        // Byte read of FR's low byte works; high bytes of ID registers are zero.
        assert_eq!(
            uart.read(FR, AccessSize::Byte).unwrap() as u32,
            read(&mut uart, FR) & 0xff
        );
        assert_eq!(uart.read(0xfe1, AccessSize::Byte).unwrap(), 0);
    }
}
