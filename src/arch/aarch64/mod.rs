//! AArch64 EL2: entry and early boot, exceptions, system registers, the EL2 MMU, firmware
//! PSCI calls, and the world switch.
pub mod context;
pub mod copy;
pub mod cpu;
pub mod early_console;
pub mod entry;
pub mod exceptions;
pub mod firmware;
pub mod fpsimd;
pub mod heap;
pub mod mmu;
pub mod panic;
pub mod percpu;
pub mod platform;
pub mod semihosting;
pub mod spintable;
pub mod stage2_hw;
pub mod switch;
pub mod sysregs;
pub mod vgic_hw;
