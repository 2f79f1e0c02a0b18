//! The world switch: `guest_enter` saves the host's callee-saved registers on the EL2 stack,
//! loads the guest's general-purpose registers, PC and PSTATE, and `eret`s. A guest exception
//! lands in the runtime vectors' lower-EL entries (boot/vectors.S), which push x0/x1 and go to
//! `guest_exit_common` with the exit kind: it stores the guest's registers back into its
//! `GuestRegs` and returns from `guest_enter` with that kind.
//!
//! Everything else the guest owns (EL1 system registers, timer, vGIC, FP) is switched in Rust
//! around this (`sysregs.rs`, `vgic_hw.rs`); EL2 itself never touches FP/SIMD.

use core::mem::offset_of;

pub use crate::hyp::vcpu::GuestRegs;

const _: () = assert!(offset_of!(GuestRegs, pc) == 31 * 8);
const _: () = assert!(offset_of!(GuestRegs, pstate) == 32 * 8);

/// Why `guest_enter` returned: its return value is one of these (`repr(u64)`, the vector
/// entries' EXIT_* kinds), so the run loop branches on it with no conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum ExitKind {
    /// Synchronous exception (ESR_EL2 says which).
    Sync = EXIT_SYNC,
    /// Physical IRQ or FIQ.
    Irq = EXIT_IRQ,
    /// SError from the guest.
    SError = EXIT_SERROR,
}

pub(super) const EXIT_SYNC: u64 = 0;
pub(super) const EXIT_IRQ: u64 = 1;
pub(super) const EXIT_SERROR: u64 = 2;
/// Host frame: x19..x30 (12 registers) + the `GuestRegs` pointer + padding.
const HOST_FRAME: usize = 14 * 8;

core::arch::global_asm!(
    ".section .text, \"ax\"",
    // guest_enter(x0 = &mut GuestRegs) -> x0 = exit kind. Clobbers all caller-saved registers.
    ".global guest_enter",
    "guest_enter:",
    "    sub  sp, sp, #{host_frame}",
    "    stp  x19, x20, [sp, #0]",
    "    stp  x21, x22, [sp, #16]",
    "    stp  x23, x24, [sp, #32]",
    "    stp  x25, x26, [sp, #48]",
    "    stp  x27, x28, [sp, #64]",
    "    stp  x29, x30, [sp, #80]",
    "    str  x0, [sp, #96]",
    "    ldp  x1, x2, [x0, #{pc}]",
    "    msr  elr_el2, x1",
    "    msr  spsr_el2, x2",
    "    ldp  x2, x3, [x0, #16]",
    "    ldp  x4, x5, [x0, #32]",
    "    ldp  x6, x7, [x0, #48]",
    "    ldp  x8, x9, [x0, #64]",
    "    ldp  x10, x11, [x0, #80]",
    "    ldp  x12, x13, [x0, #96]",
    "    ldp  x14, x15, [x0, #112]",
    "    ldp  x16, x17, [x0, #128]",
    "    ldp  x18, x19, [x0, #144]",
    "    ldp  x20, x21, [x0, #160]",
    "    ldp  x22, x23, [x0, #176]",
    "    ldp  x24, x25, [x0, #192]",
    "    ldp  x26, x27, [x0, #208]",
    "    ldp  x28, x29, [x0, #224]",
    "    ldr  x30, [x0, #240]",
    "    ldp  x0, x1, [x0, #0]",
    "    eret",
    "    dsb nsh",
    "    isb",
    // The lower-EL vectors come here with the guest's x0/x1 pushed on the host frame, x1 =
    // the exit kind, every other guest register live.
    ".global guest_exit_common",
    "guest_exit_common:",
    "    ldr  x0, [sp, #16 + 96]",
    "    stp  x2, x3, [x0, #16]",
    "    stp  x4, x5, [x0, #32]",
    "    stp  x6, x7, [x0, #48]",
    "    stp  x8, x9, [x0, #64]",
    "    stp  x10, x11, [x0, #80]",
    "    stp  x12, x13, [x0, #96]",
    "    stp  x14, x15, [x0, #112]",
    "    stp  x16, x17, [x0, #128]",
    "    stp  x18, x19, [x0, #144]",
    "    stp  x20, x21, [x0, #160]",
    "    stp  x22, x23, [x0, #176]",
    "    stp  x24, x25, [x0, #192]",
    "    stp  x26, x27, [x0, #208]",
    "    stp  x28, x29, [x0, #224]",
    "    str  x30, [x0, #240]",
    "    ldp  x2, x3, [sp], #16",
    "    stp  x2, x3, [x0, #0]",
    "    mrs  x2, elr_el2",
    "    mrs  x3, spsr_el2",
    "    stp  x2, x3, [x0, #{pc}]",
    // The exit kind, in x1 since the vector entry.
    "    mov  x0, x1",
    "    ldp  x19, x20, [sp, #0]",
    "    ldp  x21, x22, [sp, #16]",
    "    ldp  x23, x24, [sp, #32]",
    "    ldp  x25, x26, [sp, #48]",
    "    ldp  x27, x28, [sp, #64]",
    "    ldp  x29, x30, [sp, #80]",
    "    add  sp, sp, #{host_frame}",
    "    ret",
    host_frame = const HOST_FRAME,
    pc = const offset_of!(GuestRegs, pc),
);

unsafe extern "C" {
    /// Returns x1 as the lower-EL vector entries set it: EXIT_SYNC, EXIT_IRQ or EXIT_SERROR
    /// (boot/vectors.S `guest_entry`), each an [`ExitKind`].
    fn guest_enter(regs: *mut GuestRegs) -> ExitKind;
}

/// Runs the guest until its next exit. The caller must have loaded the guest's EL1 state,
/// stage-2 (VTTBR/VTCR) and traps (HCR_EL2) on this CPU.
pub fn run_guest(regs: &mut GuestRegs) -> ExitKind {
    // SAFETY: `guest_enter` saves/restores every callee-saved register and the stack pointer
    // per the AAPCS64 contract and only writes `*regs`, which we borrow mutably. Stage-2 and
    // HCR_EL2 confine the guest to its own memory; EL2 state is unchanged on return. The
    // value it returns is set only by the vector entries, to one of `ExitKind`'s.
    unsafe { guest_enter(regs) }
}
