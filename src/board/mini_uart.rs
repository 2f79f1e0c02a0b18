//! MMIO access to the BCM2835 auxiliary mini UART; the driver's register logic (and its
//! tests) live in `crate::drivers::mini_uart`.

use crate::drivers::mini_uart::{MiniUart, MiniUartIo, Reg};

/// The mini UART's registers at a VA mapped as device memory.
pub struct MiniUartMmio {
    va: u64,
}

// SAFETY: the registers are MMIO; every access goes through the console mutex.
unsafe impl Send for MiniUartMmio {}

impl MiniUartMmio {
    /// # Safety
    /// `va` must map the mini UART's registers (its DTB `reg`, 0x40 bytes) as device memory
    /// for the rest of the program, and no other driver may use them.
    pub unsafe fn new(va: u64) -> MiniUart<Self> {
        MiniUart::new(Self { va })
    }

    fn ptr(&self, reg: Reg) -> *mut u32 {
        (self.va + reg.offset() as u64) as *mut u32
    }
}

impl MiniUartIo for MiniUartMmio {
    fn read(&self, reg: Reg) -> u32 {
        // SAFETY: per `new`'s contract `va` maps the registers; `Reg` offsets are within the
        // 0x40-byte block and 4-byte aligned. Reading IO pops the receive FIFO, which the
        // driver logic only does when it wants the byte.
        unsafe { core::ptr::read_volatile(self.ptr(reg)) }
    }

    fn write(&self, reg: Reg, value: u32) {
        // SAFETY: as for `read`; the driver writes only IO (transmit) and IER.
        unsafe { core::ptr::write_volatile(self.ptr(reg), value) }
    }
}
