//! Architecture code: the only place (with `board/` and `boot/`) that holds `unsafe` and `asm!`.
//! Built only for the bare-metal AArch64 target; host tests never see it.
pub mod aarch64;
pub use aarch64::*;
