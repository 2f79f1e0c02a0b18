//! World switch: placeholder exit paths until guests run (every guest exit is unexpected).
core::arch::global_asm!(
    ".section .text, \"ax\"",
    ".global guest_exit_sync",
    ".global guest_exit_irq",
    ".global guest_exit_serror",
    "guest_exit_sync:",
    "guest_exit_irq:",
    "guest_exit_serror:",
    "    b park",
);
