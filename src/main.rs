//! The Bulkhead image: the EL2 entry lives in `bulkhead::arch` (built only for the bare-metal
//! target). On the host this binary is empty so that `cargo test` stays host-only.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use bulkhead as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("bulkhead is a bare-metal image: build it with `cargo image`");
}
