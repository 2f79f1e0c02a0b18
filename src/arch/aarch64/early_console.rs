//! A console usable with the MMU off (before the runtime table): raw writes to the PL011 data
//! register at its physical address, no formatting machinery (whose vtables hold runtime VAs
//! that are not mapped yet).

use core::sync::atomic::{AtomicU64, Ordering};

/// Physical address of the PL011 found in the DTB, 0 if none.
static EARLY_UART_PA: AtomicU64 = AtomicU64::new(0);

const UART_DR: u64 = 0x00;
const UART_FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

pub fn set_uart(pa: u64) {
    EARLY_UART_PA.store(pa, Ordering::Relaxed);
}

pub fn uart() -> u64 {
    EARLY_UART_PA.load(Ordering::Relaxed)
}

fn putc(byte: u8) {
    let base = uart();
    if base == 0 {
        return;
    }
    // SAFETY: `base` is the PL011 named by the DTB; with the MMU off this physical address is
    // accessed as Device memory. Polling FR and writing DR have no other side effects.
    unsafe {
        for _ in 0..100_000 {
            if core::ptr::read_volatile((base + UART_FR) as *const u32) & FR_TXFF == 0 {
                break;
            }
        }
        core::ptr::write_volatile((base + UART_DR) as *mut u32, u32::from(byte));
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
