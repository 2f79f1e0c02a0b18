//! PSCI power state of a VM's vCPUs and of the VM itself (KVM/ARM: turn off vCPUs and flush stage 2 on system events, 2014).
//!
//! Each vCPU's state is one atomic byte, and every transition is a single compare-and-swap or
//! swap on it, so concurrent PSCI calls from several vCPUs resolve without a lock:
//! - CPU_ON racing CPU_ON on one target: exactly one moves it OFF → CLAIMED and succeeds; the
//!   others see CLAIMED/ON_PENDING (→ ON_PENDING) or ON (→ ALREADY_ON).
//! - The winner writes the entry point and context ID while the target is CLAIMED, then
//!   publishes them with CLAIMED → ON_PENDING (release); the target takes them with
//!   ON_PENDING → ON (acquire), so it never starts at a half-written entry point.
//! - SYSTEM_OFF / SYSTEM_RESET (and a crash) move the VM out of `Running` into `Stopping`
//!   and swap EVERY vCPU to HALTED. What follows is the hypervisor's decision (the VM's
//!   life-cycle policy): [`VmPower::restart`] after a reset, or [`VmPower::force_off`].
//!   No transition leads out of HALTED (CPU_ON needs OFF, starting needs ON_PENDING, a
//!   half-done CPU_ON needs CLAIMED), so once a system event has halted a vCPU nothing can
//!   power it on again until the hypervisor calls [`VmPower::restart`]. A vCPU
//!   may run only while ON; making it leave the guest is the job of the `Stop`/`Reset` request
//!   (`vcpu::request`) that the hypervisor makes, with wait, after the system event.

use alloc::vec::Vec;
use core::fmt;

use crate::sync::{AtomicU8, AtomicU64, Ordering};

/// vCPU power states as stored.
const OFF: u8 = 0;
/// A CPU_ON won the race and is writing the entry point (reported as ON_PENDING).
const CLAIMED: u8 = 1;
const ON_PENDING: u8 = 2;
const ON: u8 = 3;
/// Powered off by a system event; only `restart` leaves this state (reported as OFF).
const HALTED: u8 = 4;

/// VM states as stored.
const VM_RUNNING: u8 = 0;
const VM_OFF: u8 = 1;
const VM_STOPPING: u8 = 2;

/// A vCPU's power state as PSCI AFFINITY_INFO reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Powered off (never started, CPU_OFF, or halted by SYSTEM_OFF/RESET).
    Off,
    /// CPU_ON accepted, the vCPU has not started yet.
    OnPending,
    /// Running (or able to run) guest code.
    On,
}

/// The VM's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// vCPUs may run.
    Running,
    /// Off for good (`force_off`): no vCPU runs again.
    Off,
    /// A system event or a crash stopped every vCPU: none runs until [`VmPower::restart`]
    /// (or `force_off` makes it `Off`).
    Stopping,
}

/// Where a vCPU started by CPU_ON begins: PC and x0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartContext {
    /// The guest's entry point (PC), in guest physical address space.
    pub entry: u64,
    /// Passed to the vCPU in x0.
    pub context_id: u64,
}

/// Why a CPU_ON was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuOnError {
    /// No vCPU with that index.
    NoSuchVcpu,
    /// The target is already on.
    AlreadyOn,
    /// Another CPU_ON for the target is in progress.
    OnPending,
    /// The VM is being powered off or reset.
    Halted,
}

/// Errors of the VM-level power calls the hypervisor makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerError {
    /// No vCPU with that index.
    NoSuchVcpu {
        /// The index passed.
        vcpu: usize,
    },
    /// `restart` was called while the VM was not stopping.
    NotStopping(VmState),
}

impl fmt::Display for CpuOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NoSuchVcpu => "no such vCPU",
            Self::AlreadyOn => "vCPU already on",
            Self::OnPending => "vCPU already being turned on",
            Self::Halted => "VM is powering off or resetting",
        };
        f.write_str(text)
    }
}

impl fmt::Display for PowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchVcpu { vcpu } => write!(f, "no vCPU {vcpu}"),
            Self::NotStopping(state) => write!(f, "VM restart while {state:?}, not stopping"),
        }
    }
}

/// One vCPU's power state and its pending CPU_ON start context.
struct VcpuPower {
    state: AtomicU8,
    entry: AtomicU64,
    context_id: AtomicU64,
}

/// The power state of a VM and all its vCPUs.
pub struct VmPower {
    state: AtomicU8,
    vcpus: Vec<VcpuPower>,
}

impl VmPower {
    /// A running VM of `vcpu_count` vCPUs in which only `boot_vcpu` is on (secondaries start
    /// powered off and wait for CPU_ON).
    pub fn new(vcpu_count: usize, boot_vcpu: usize) -> Result<Self, PowerError> {
        if boot_vcpu >= vcpu_count {
            return Err(PowerError::NoSuchVcpu { vcpu: boot_vcpu });
        }
        let vcpus = (0..vcpu_count)
            .map(|index| VcpuPower {
                state: AtomicU8::new(if index == boot_vcpu { ON } else { OFF }),
                entry: AtomicU64::new(0),
                context_id: AtomicU64::new(0),
            })
            .collect();
        Ok(Self {
            state: AtomicU8::new(VM_RUNNING),
            vcpus,
        })
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// The VM's state.
    pub fn vm_state(&self) -> VmState {
        match self.state.load(Ordering::Acquire) {
            VM_RUNNING => VmState::Running,
            VM_OFF => VmState::Off,
            _ => VmState::Stopping,
        }
    }

    /// vCPU `vcpu`'s state as AFFINITY_INFO reports it, `None` if there is no such vCPU.
    pub fn power_state(&self, vcpu: usize) -> Option<PowerState> {
        let state = self.vcpus.get(vcpu)?.state.load(Ordering::Acquire);
        Some(match state {
            ON => PowerState::On,
            CLAIMED | ON_PENDING => PowerState::OnPending,
            _ => PowerState::Off,
        })
    }

    /// True if vCPU `vcpu` is on. The run loop checks this after taking its requests and
    /// before [`enter_guest`](super::request::VcpuRequests::enter_guest).
    pub fn may_run(&self, vcpu: usize) -> bool {
        self.vcpus
            .get(vcpu)
            .is_some_and(|v| v.state.load(Ordering::Acquire) == ON)
    }

    /// PSCI CPU_ON: asks vCPU `target` to start at `entry` with `context_id` in x0. On success
    /// the hypervisor makes a `CpuOn` request on the target, which then calls
    /// [`claim_start`](Self::claim_start).
    pub fn cpu_on(&self, target: usize, entry: u64, context_id: u64) -> Result<(), CpuOnError> {
        let vcpu = self.vcpus.get(target).ok_or(CpuOnError::NoSuchVcpu)?;
        match vcpu
            .state
            .compare_exchange(OFF, CLAIMED, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                // Only the CLAIMED owner writes these; the release below publishes them.
                vcpu.entry.store(entry, Ordering::Relaxed);
                vcpu.context_id.store(context_id, Ordering::Relaxed);
                vcpu.state
                    .compare_exchange(CLAIMED, ON_PENDING, Ordering::Release, Ordering::Relaxed)
                    .map(|_| ())
                    // A system event halted the target meanwhile.
                    .map_err(|_| CpuOnError::Halted)
            }
            Err(CLAIMED | ON_PENDING) => Err(CpuOnError::OnPending),
            Err(ON) => Err(CpuOnError::AlreadyOn),
            Err(_) => Err(CpuOnError::Halted),
        }
    }

    /// vCPU side of CPU_ON: if a CPU_ON is pending for `vcpu`, turns it on and returns where
    /// to start; `None` if there is none (or the VM is being powered off or reset).
    pub fn claim_start(&self, vcpu: usize) -> Option<StartContext> {
        let vcpu = self.vcpus.get(vcpu)?;
        vcpu.state
            .compare_exchange(ON_PENDING, ON, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(StartContext {
            entry: vcpu.entry.load(Ordering::Relaxed),
            context_id: vcpu.context_id.load(Ordering::Relaxed),
        })
    }

    /// PSCI CPU_OFF by `vcpu` itself: ON → OFF (a halted vCPU stays halted).
    pub fn cpu_off(&self, vcpu: usize) -> Result<(), PowerError> {
        let power = self
            .vcpus
            .get(vcpu)
            .ok_or(PowerError::NoSuchVcpu { vcpu })?;
        // Fails only if the vCPU is not ON, i.e. a system event halted it: nothing to do.
        let _ = power
            .state
            .compare_exchange(ON, OFF, Ordering::AcqRel, Ordering::Relaxed);
        Ok(())
    }

    /// PSCI SYSTEM_OFF / SYSTEM_RESET, or a crash: leaves `Running` for `Stopping` and halts
    /// every vCPU. Returns true for the call that moved the VM out of `Running` (that vCPU
    /// drives what follows: a reset, or off for good, as the VM's policy says); a concurrent
    /// second event returns false (its vCPU just stops). Afterwards the hypervisor makes a
    /// `Stop` request on all vCPUs with wait.
    pub fn stop(&self) -> bool {
        let won = self
            .state
            .compare_exchange(VM_RUNNING, VM_STOPPING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        for vcpu in &self.vcpus {
            vcpu.state.swap(HALTED, Ordering::AcqRel);
        }
        won
    }

    /// Turns the VM off for good whatever its state (a VM whose images could not be loaded or
    /// reloaded): every vCPU halted, the VM `Off`.
    pub fn force_off(&self) {
        self.state.store(VM_OFF, Ordering::Release);
        for vcpu in &self.vcpus {
            vcpu.state.swap(HALTED, Ordering::AcqRel);
        }
    }

    /// After a reset: all vCPUs off except `boot_vcpu`, which is on, and the VM running again.
    /// Call only once every vCPU has stopped (the `Stop` request with wait returned).
    pub fn restart(&self, boot_vcpu: usize) -> Result<(), PowerError> {
        if boot_vcpu >= self.vcpus.len() {
            return Err(PowerError::NoSuchVcpu { vcpu: boot_vcpu });
        }
        let state = self.vm_state();
        if state != VmState::Stopping {
            return Err(PowerError::NotStopping(state));
        }
        for (index, vcpu) in self.vcpus.iter().enumerate() {
            let state = if index == boot_vcpu { ON } else { OFF };
            vcpu.state.store(state, Ordering::Release);
        }
        self.state.store(VM_RUNNING, Ordering::Release);
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
