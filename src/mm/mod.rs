//! placeholder

pub mod stage2;
