//! Polled output to the PL011 at virt's address, enough for `PROBE:` lines.
//!
//! There is no lock: only one CPU prints at a time by construction (the primary is spinning
//! silently while the secondary prints), and a lock would need exclusives, which are not
//! guaranteed to work on the Device memory the probe runs on with the MMU off.

use core::fmt;

/// PL011 base on QEMU virt and on Bulkhead's virt-like guest machine.
const PL011_BASE: usize = 0x0900_0000;
/// Data register: a write queues one byte.
const UARTDR: usize = 0x000;
/// Flag register.
const UARTFR: usize = 0x018;
/// UARTFR.TXFF: the transmit FIFO is full.
const FR_TXFF: u32 = 1 << 5;
/// Bound on the wait for FIFO space, so a wedged UART cannot hang the probe.
const MAX_POLLS_PER_BYTE: u32 = 100_000;

/// The console; zero-sized, every write goes straight to the UART.
pub struct Console;

impl Console {
    fn put_byte(byte: u8) {
        let dr = (PL011_BASE + UARTDR) as *mut u32;
        let fr = (PL011_BASE + UARTFR) as *const u32;
        for _ in 0..MAX_POLLS_PER_BYTE {
            // SAFETY: UARTFR of the PL011 every virt-like guest has; an aligned 32-bit
            // device read with no side effect.
            if unsafe { fr.read_volatile() } & FR_TXFF == 0 {
                break;
            }
        }
        // SAFETY: UARTDR of that PL011; an aligned 32-bit write of one character.
        unsafe { dr.write_volatile(u32::from(byte)) };
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(Self::put_byte);
        Ok(())
    }
}

/// `println!` to the console. Output is one `\n`-terminated line per call.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::Console, $($arg)*);
    }};
}
