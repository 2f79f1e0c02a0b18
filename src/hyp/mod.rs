//! Running guests: the VM (memory, devices, power, VMID), the per-CPU vCPU run loop, and the
//! exit handlers. Target-only glue between the host-tested core rooms (`vgic`, `psci`,
//! `vcpu`, `vmid`, `mm::stage2`, `devices`, `loader`, `guest_dtb`) and the arch code.
pub mod exit;
pub mod irq;
pub mod run;
pub mod setup;
pub mod vm;

/// Rate limit for log lines a guest can provoke: the first few, then one in 1024.
pub fn guest_log_allowed() -> bool {
    use core::sync::atomic::{AtomicU32, Ordering};
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    n < 16 || n.is_multiple_of(1024)
}

/// Logs a warning about something a guest did, rate-limited.
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)*) => {
        if $crate::hyp::guest_log_allowed() {
            log::warn!($($arg)*);
        }
    };
}
