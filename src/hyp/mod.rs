//! Running guests: the VM (memory, devices, power, VMID), the per-CPU vCPU run loop, and the
//! exit handlers. Target-only glue between the host-tested core rooms (`vgic`, `psci`,
//! `vcpu`, `vmid`, `mm::stage2`, `devices`, `loader`, `guest_dtb`) and the arch code.
pub mod console;
pub mod console_bridge;
pub mod console_mux;
pub mod context;
pub mod cpu_features;
pub mod exit;
pub mod handle;
pub mod inject;
pub mod lazy_image;
pub mod lifecycle;
pub mod platform;
pub mod rtc;
pub mod runaway;
pub mod serror;
pub mod timer;
pub mod vcpu;
pub mod vm;
pub mod walk_level;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod host_irq;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod run;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod setup;

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
