//! Bulkhead: a small AArch64 type-1 hypervisor.
//!
//! The library holds everything; `main.rs` only names the EL2 entry. Core logic (VMIDs, page
//! tables, PSCI, vCPU requests, vGIC state, device emulation, DTB handling) is plain Rust and
//! is unit-tested on the host. `unsafe` and `asm!` live only in `arch/` and `board/`.
#![cfg_attr(not(test), no_std)]
// `unsafe` is refused everywhere but in `arch/` and `board/` (and the assembly in `boot/`).
#![deny(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

extern crate alloc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[allow(unsafe_code)]
pub mod arch;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[allow(unsafe_code)]
pub mod board;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod hypervisor;

pub mod bootargs;
pub mod bundle;
pub mod config;
pub mod devices;
pub mod drivers;
pub mod dtb;
pub mod guest_dtb;
pub mod guest_layout;
pub mod hyp;
pub mod loader;
pub mod mm;
pub mod psci;
pub mod sched;
pub mod sync;
pub mod units;
pub mod vcpu;
pub mod vgic;
pub mod vmid;
