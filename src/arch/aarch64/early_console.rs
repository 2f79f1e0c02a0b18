//! A console usable with the MMU off (before the runtime table): raw writes to the console
//! UART's data register at its physical address (a PL011, or the BCM2835 mini UART), no
//! formatting machinery (whose vtables hold runtime VAs that are not mapped yet).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::drivers::mini_uart::Reg as MiniReg;
use crate::dtb::{ConsoleUart, UartKind};

/// Physical address of the console UART found in the DTB, 0 if none.
static EARLY_UART_PA: AtomicU64 = AtomicU64::new(0);
/// Its kind: 0 PL011, 1 mini UART.
static EARLY_UART_KIND: AtomicU8 = AtomicU8::new(0);

/// PL011: data register, flag register and its "transmit FIFO full" bit.
const PL011_DR: u64 = 0x00;
const PL011_FR: u64 = 0x18;
const PL011_FR_TXFF: u32 = 1 << 5;
/// Mini UART: AUX_MU_LSR_REG "transmitter empty" (room for a byte).
const MINI_LSR_TX_EMPTY: u32 = 1 << 5;

pub fn set_uart(uart: ConsoleUart) {
    EARLY_UART_PA.store(uart.regs.base, Ordering::Relaxed);
    let kind = match uart.kind {
        UartKind::Pl011 => 0,
        UartKind::Bcm2835Aux => 1,
    };
    EARLY_UART_KIND.store(kind, Ordering::Relaxed);
}

fn putc(byte: u8) {
    let base = EARLY_UART_PA.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    let mini = EARLY_UART_KIND.load(Ordering::Relaxed) == 1;
    let (data, status) = if mini {
        (MiniReg::Io.offset() as u64, MiniReg::Lsr.offset() as u64)
    } else {
        (PL011_DR, PL011_FR)
    };
    let has_room = |flags: u32| {
        if mini {
            flags & MINI_LSR_TX_EMPTY != 0
        } else {
            flags & PL011_FR_TXFF == 0
        }
    };
    // SAFETY: `base` is the console UART named by the DTB; with the MMU off this physical
    // address is accessed as Device memory. Polling the status register and writing the data
    // register have no other side effects.
    unsafe {
        for _ in 0..100_000 {
            if has_room(core::ptr::read_volatile((base + status) as *const u32)) {
                break;
            }
        }
        core::ptr::write_volatile((base + data) as *mut u32, u32::from(byte));
    }
}

pub fn puts(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            putc(b'\r');
        }
        putc(b);
    }
}

pub fn put_hex(value: u64) {
    puts("0x");
    for shift in (0..16).rev() {
        let nibble = ((value >> (shift * 4)) & 0xf) as u8;
        putc(if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        });
    }
}
