//! The probe's pure logic, in a library so that it also builds and unit-tests on the host
//! (`cargo test --lib` here); the probe binary itself only builds for aarch64.

#![cfg_attr(not(test), no_std)]

pub mod bootargs;
pub mod fpimage;
pub mod gic_layout;
pub mod memplan;
pub mod peers;
pub mod pingpong;
