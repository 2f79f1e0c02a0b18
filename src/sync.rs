//! Synchronisation primitives shared by the hypervisor and its model checker.
//!
//! The concurrent core (VMID allocator, vCPU requests, vCPU power state) imports its atomics and
//! its lock from here, never from `core` or `spin` directly. Normally these are
//! `core::sync::atomic` and `spin::Mutex`, which is what runs at EL2 on every physical CPU. In a
//! unit-test build with `--cfg loom` they become `loom`'s instrumented versions, so the very same
//! code is model-checked over all interleavings (see `scripts/test-models.sh`).
//!
//! `loom` is a `cfg(loom)` dev-dependency, so it only exists in test builds: a non-test build
//! with `--cfg loom` still gets the real primitives.

#[cfg(all(test, loom))]
pub use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(all(test, loom)))]
pub use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// How a spinning CPU waits one step: a `yield` hint on the hypervisor (so a CPU that waits for
/// a lock holder gives way to it where the hardware — or QEMU's round-robin TCG — can switch,
/// instead of burning its whole time slice), the standard spin-loop hint elsewhere.
pub struct Relax;

impl spin::relax::RelaxStrategy for Relax {
    #[inline]
    fn relax() {
        #[cfg(all(target_arch = "aarch64", target_os = "none"))]
        crate::arch::cpu::yield_hint();
        #[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
        core::hint::spin_loop();
    }
}

/// The spin lock every hypervisor room uses (`spin::Mutex` with the [`Relax`] strategy).
pub type SpinLock<T> = spin::mutex::SpinMutex<T, Relax>;
/// Its guard.
pub type SpinGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T, Relax>;

/// A mutual-exclusion lock: `spin::Mutex` on the hardware, `loom::sync::Mutex` under the model
/// checker. Both are wrapped so callers see one `lock()` that cannot fail.
pub struct Mutex<T> {
    #[cfg(all(test, loom))]
    inner: loom::sync::Mutex<T>,
    #[cfg(not(all(test, loom)))]
    inner: SpinLock<T>,
}

/// The guard returned by [`Mutex::lock`]; the lock is released when it is dropped.
#[cfg(all(test, loom))]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;
/// The guard returned by [`Mutex::lock`]; the lock is released when it is dropped.
#[cfg(not(all(test, loom)))]
pub type MutexGuard<'a, T> = SpinGuard<'a, T>;

impl<T> Mutex<T> {
    /// Creates an unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            #[cfg(all(test, loom))]
            inner: loom::sync::Mutex::new(value),
            #[cfg(not(all(test, loom)))]
            inner: SpinLock::new(value),
        }
    }

    /// Takes the lock, spinning (or, under loom, blocking the modelled thread) until it is free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(all(test, loom))]
        {
            // A loom mutex is only poisoned if a modelled thread panicked while holding it, and
            // then the model has already failed.
            self.inner
                .lock()
                .expect("loom mutex poisoned by a failed model thread")
        }
        #[cfg(not(all(test, loom)))]
        {
            self.inner.lock()
        }
    }
}

/// One step of a busy-wait loop.
///
/// On the hardware this is a `spin_loop` hint (`yield`/`isb`-style pause); under loom it yields
/// the modelled thread so the checker runs the thread being waited for instead of exploring an
/// endless spin.
#[inline]
pub fn spin_wait() {
    #[cfg(all(test, loom))]
    loom::thread::yield_now();
    #[cfg(not(all(test, loom)))]
    <Relax as spin::relax::RelaxStrategy>::relax();
}
