//! Exceptions taken at EL2 from EL2 itself: always a hypervisor bug or an unexpected event, so
//! print everything useful and stop the machine. (Guest exits go to the world switch instead.)

use super::early_console;

/// Registers saved by the runtime vectors (boot/vectors.S `save_frame`).
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 36 * 8);

const KIND_NAMES: [&str; 16] = [
    "sync (SP_EL0)",
    "irq (SP_EL0)",
    "fiq (SP_EL0)",
    "serror (SP_EL0)",
    "sync",
    "irq",
    "fiq",
    "serror",
    "lower sync",
    "lower irq",
    "lower fiq",
    "lower serror",
    "lower aarch32 sync",
    "lower aarch32 irq",
    "lower aarch32 fiq",
    "lower aarch32 serror",
];

/// Runtime vectors, exception from EL2: report and stop. (EL2 runs with IRQs masked; it
/// waits for interrupts with WFI, so even an IRQ taken here is a bug.)
#[unsafe(no_mangle)]
extern "C" fn el2_exception(frame: &mut ExceptionFrame, kind: u64) {
    let name = KIND_NAMES.get(kind as usize).copied().unwrap_or("?");
    crate::println!(
        "bulkhead: FATAL: unexpected EL2 exception: {name} ESR={:#018x} ELR={:#018x} FAR={:#018x} SPSR={:#x}",
        frame.esr,
        frame.elr,
        frame.far,
        frame.spsr
    );
    for (i, pair) in frame.x.chunks(2).enumerate() {
        match pair {
            [a, b] => crate::println!(
                "bulkhead:   x{:<2}={a:#018x} x{:<2}={b:#018x}",
                2 * i,
                2 * i + 1
            ),
            [a] => crate::println!("bulkhead:   x{:<2}={a:#018x}", 2 * i),
            _ => {}
        }
    }
    crate::board::power::power_off()
}

/// Early vectors (MMU off or boot table): raw report, then the asm parks the CPU.
#[unsafe(no_mangle)]
extern "C" fn boot_early_exception(kind: u64, esr: u64, elr: u64, far: u64) {
    early_console::puts("bulkhead: FATAL: early exception kind=");
    early_console::put_hex(kind);
    early_console::puts(" ESR=");
    early_console::put_hex(esr);
    early_console::puts(" ELR=");
    early_console::put_hex(elr);
    early_console::puts(" FAR=");
    early_console::put_hex(far);
    early_console::puts("\n");
}
