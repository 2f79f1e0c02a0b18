//! Guest-facing PSCI 1.1 and SMCCC 1.1 (KVM's `psci.c` + `hypercalls.c`).
//!
//! One entry point, [`handle`], for every HVC (and trapped SMC) a guest makes: it decodes the
//! function ID in w0, validates the arguments (guest values: nothing here may panic), updates
//! the VM's power state ([`VmPower`]) and returns the values for x0..x3 plus what the
//! hypervisor must do next ([`PsciAction`]). Function IDs and return codes come from `smccc`.
//!
//! Conventions:
//! - SMC32 function IDs use only the low 32 bits of their arguments (SMCCC 1.1 §2.5); SMC64
//!   IDs use all 64. Results are sign-extended to 64 bits, as KVM returns them.
//! - Unknown function IDs, and IDs PSCI defines but Bulkhead does not offer (MIGRATE,
//!   SYSTEM_SUSPEND, ...), return NOT_SUPPORTED (-1), as SMCCC requires.
//! - CPU_SUSPEND is emulated as WFI for every power state, standby or power-down (KVM does the
//!   same: the wake-up events are interrupts either way), and returns SUCCESS.
//! - A vCPU's MPIDR is its index in Aff0 (and Aff1/Aff2 beyond 16), see `vcpu::vcpu_mpidr`.
//! - CPU_ON with an entry point outside guest RAM returns INVALID_PARAMETERS, as Bulkhead's
//!   issue asks (PSCI 1.0+ would also allow INVALID_ADDRESS there); see [`BAD_ENTRY_POINT`].

use core::ops::Range;

use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci::error::{ALREADY_ON, INTERNAL_FAILURE, INVALID_PARAMETERS, NOT_SUPPORTED};
use smccc::psci::{
    AffinityState, MigrateType, PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF,
    PSCI_CPU_ON_32, PSCI_CPU_ON_64, PSCI_CPU_SUSPEND_32, PSCI_CPU_SUSPEND_64, PSCI_FEATURES,
    PSCI_MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_SYSTEM_RESET2_32,
    PSCI_SYSTEM_RESET2_64, PSCI_VERSION,
};

use crate::vcpu::power::{CpuOnError, PowerState, VmPower};
use crate::vcpu::vcpu_index_from_mpidr;

/// `SUCCESS` (0) for PSCI and SMCCC alike.
pub const SUCCESS: i32 = smccc::error::SUCCESS;

/// The PSCI version offered: 1.1.
pub const PSCI_VERSION_OFFERED: smccc::psci::Version = smccc::psci::Version { major: 1, minor: 1 };

/// The SMCCC version offered: 1.1.
pub const SMCCC_VERSION_OFFERED: smccc::arch::Version = smccc::arch::Version { major: 1, minor: 1 };

/// What CPU_ON returns for an entry point outside guest RAM (the choice; PSCI also
/// defines INVALID_ADDRESS for it).
pub const BAD_ENTRY_POINT: i32 = INVALID_PARAMETERS;

/// Bit 30 of a function ID: the SMC64/HVC64 calling convention.
const SMC64_BIT: u32 = 1 << 30;

/// SYSTEM_RESET2 architectural reset type 0: SYSTEM_WARM_RESET.
const RESET_TYPE_WARM: u32 = 0;

/// Reserved bits of CPU_SUSPEND's power_state in the original format (PSCI 1.1 §5.4.2:
/// bits 31:26 and 23:17 are reserved; 25:24 power level, 16 state type, 15:0 state ID).
const POWER_STATE_RESERVED: u32 = 0xfc00_0000 | 0x00fe_0000;

/// What the hypervisor does after a PSCI/SMCCC call, once it wrote the result registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciAction {
    /// Return to the caller.
    None,
    /// The calling vCPU powered itself off (CPU_OFF, or it lost a race with another vCPU's
    /// SYSTEM_OFF/RESET): stop running it until a CPU_ON.
    CpuOff,
    /// CPU_SUSPEND: treat as WFI (block until an interrupt is pending), then return.
    Standby,
    /// CPU_ON succeeded: make a `CpuOn` request on vCPU `target` (it then calls
    /// `VmPower::claim_start`), then return to the caller.
    StartVcpu {
        /// Index of the vCPU to start.
        target: usize,
    },
    /// SYSTEM_OFF: make a `Stop` request on all vCPUs with wait, then tear the VM down.
    SystemOff,
    /// SYSTEM_RESET / SYSTEM_RESET2: make a `Reset` request on all vCPUs with wait, reload the
    /// VM, then `VmPower::restart`.
    SystemReset,
}

/// The result of a call: x0..x3 for the caller, and the action for the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsciOutcome {
    /// The value for x0; x1..x3 are 0 for every call offered. (One register, not four: the
    /// outcome then comes back in registers, on the null-hypercall path.)
    pub x0: u64,
    /// What the hypervisor does next.
    pub action: PsciAction,
}

impl PsciOutcome {
    fn ret(value: i32) -> Self {
        Self::with_action(value, PsciAction::None)
    }

    fn with_action(value: i32, action: PsciAction) -> Self {
        Self {
            // Sign-extend: error codes are negative 32-bit values.
            x0: i64::from(value) as u64,
            action,
        }
    }

    /// x0 as the guest reads a 32-bit result.
    pub fn x0_i32(&self) -> i32 {
        self.x0 as i32
    }

    /// x0..x3 as the guest gets them.
    pub fn regs(&self) -> [u64; 4] {
        [self.x0, 0, 0, 0]
    }
}

/// Handles PSCI/SMCCC function `fid` (w0) with arguments `args` (x1..x3) called by vCPU
/// `caller` of the VM whose power state is `vm` and whose RAM is `guest_ram` (IPAs).
pub fn handle(
    fid: u32,
    args: [u64; 3],
    caller: usize,
    vm: &VmPower,
    guest_ram: Range<u64>,
) -> PsciOutcome {
    // SMC32 calls: the upper halves of x1..x3 are not arguments (may hold anything). Masked
    // where a call reads them: most calls take none.
    let smc32 = fid & SMC64_BIT == 0;
    let arg = |index: usize| {
        if smc32 {
            args[index] & 0xffff_ffff
        } else {
            args[index]
        }
    };
    match fid {
        PSCI_VERSION => PsciOutcome::ret(u32::from(PSCI_VERSION_OFFERED) as i32),
        PSCI_FEATURES => PsciOutcome::ret(psci_features(arg(0) as u32)),
        PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 => cpu_suspend(arg(0) as u32),
        PSCI_CPU_OFF => match vm.cpu_off(caller) {
            Ok(()) => PsciOutcome::with_action(SUCCESS, PsciAction::CpuOff),
            Err(_) => PsciOutcome::ret(INTERNAL_FAILURE),
        },
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => cpu_on([arg(0), arg(1), arg(2)], vm, guest_ram),
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => affinity_info(arg(0), arg(1), vm),
        PSCI_MIGRATE_INFO_TYPE => {
            // No Trusted OS to migrate.
            PsciOutcome::ret(MigrateType::MigrationNotRequired as i32)
        }
        PSCI_SYSTEM_OFF => system_event(vm, SystemEvent::Off),
        PSCI_SYSTEM_RESET => system_event(vm, SystemEvent::Reset),
        PSCI_SYSTEM_RESET2_32 | PSCI_SYSTEM_RESET2_64 => {
            // Only the architectural warm reset; vendor types and reserved architectural
            // types are invalid (PSCI 1.1 §5.16). The cookie (x2) is unused.
            if arg(0) as u32 == RESET_TYPE_WARM {
                system_event(vm, SystemEvent::Reset)
            } else {
                // Vendor-specific types (bit 31 set, none offered) and the reserved
                // architectural ones alike.
                PsciOutcome::ret(INVALID_PARAMETERS)
            }
        }
        SMCCC_VERSION => PsciOutcome::ret(u32::from(SMCCC_VERSION_OFFERED) as i32),
        SMCCC_ARCH_FEATURES => PsciOutcome::ret(arch_features(arg(0) as u32)),
        _ => PsciOutcome::ret(NOT_SUPPORTED),
    }
}

/// PSCI_FEATURES: SUCCESS (no feature flags) for every function offered, including
/// SMCCC_VERSION (how PSCI advertises SMCCC 1.1). CPU_SUSPEND's flags are 0: original
/// power_state format, platform-coordinated mode only.
fn psci_features(fid: u32) -> i32 {
    match fid {
        PSCI_VERSION
        | PSCI_FEATURES
        | PSCI_CPU_SUSPEND_32
        | PSCI_CPU_SUSPEND_64
        | PSCI_CPU_OFF
        | PSCI_CPU_ON_32
        | PSCI_CPU_ON_64
        | PSCI_AFFINITY_INFO_32
        | PSCI_AFFINITY_INFO_64
        | PSCI_MIGRATE_INFO_TYPE
        | PSCI_SYSTEM_OFF
        | PSCI_SYSTEM_RESET
        | PSCI_SYSTEM_RESET2_32
        | PSCI_SYSTEM_RESET2_64
        | SMCCC_VERSION => SUCCESS,
        _ => NOT_SUPPORTED,
    }
}

/// SMCCC_ARCH_FEATURES: the two calls offered are implemented; the Spectre workarounds
/// (WORKAROUND_1/2/3) and SOC_ID are not. NOT_SUPPORTED for a workaround tells the guest there
/// is no firmware mitigation to call, which is accurate: Bulkhead does not implement them (on
/// QEMU TCG there is nothing to mitigate; on hardware a guest then reports itself unmitigated
/// rather than trusting a call that does nothing).
fn arch_features(fid: u32) -> i32 {
    match fid {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => SUCCESS,
        _ => NOT_SUPPORTED,
    }
}

fn cpu_suspend(power_state: u32) -> PsciOutcome {
    if power_state & POWER_STATE_RESERVED != 0 {
        return PsciOutcome::ret(INVALID_PARAMETERS);
    }
    PsciOutcome::with_action(SUCCESS, PsciAction::Standby)
}

fn cpu_on(
    [target_mpidr, entry, context_id]: [u64; 3],
    vm: &VmPower,
    ram: Range<u64>,
) -> PsciOutcome {
    let Some(target) = vcpu_index_from_mpidr(target_mpidr, vm.vcpu_count()) else {
        return PsciOutcome::ret(INVALID_PARAMETERS);
    };
    if !ram.contains(&entry) {
        return PsciOutcome::ret(BAD_ENTRY_POINT);
    }
    match vm.cpu_on(target, entry, context_id) {
        Ok(()) => PsciOutcome::with_action(SUCCESS, PsciAction::StartVcpu { target }),
        Err(CpuOnError::AlreadyOn) => PsciOutcome::ret(ALREADY_ON),
        // A target another CPU_ON is already starting: ALREADY_ON, as KVM's
        // `kvm_psci_vcpu_on` answers for any target that is not off (PSCI allows ON_PENDING
        // here too; guests and test suites written against KVM expect ALREADY_ON).
        Err(CpuOnError::OnPending) => PsciOutcome::ret(ALREADY_ON),
        Err(CpuOnError::NoSuchVcpu) => PsciOutcome::ret(INVALID_PARAMETERS),
        // The VM is powering off or resetting; the caller is being stopped too.
        Err(CpuOnError::Halted) => PsciOutcome::ret(INTERNAL_FAILURE),
    }
}

fn affinity_info(target_mpidr: u64, lowest_level: u64, vm: &VmPower) -> PsciOutcome {
    // Levels above 0 are optional since PSCI 1.0; one vCPU per affinity instance here.
    if lowest_level != 0 {
        return PsciOutcome::ret(INVALID_PARAMETERS);
    }
    let state = vcpu_index_from_mpidr(target_mpidr, vm.vcpu_count())
        .and_then(|target| vm.power_state(target));
    match state {
        Some(PowerState::On) => PsciOutcome::ret(AffinityState::On as i32),
        Some(PowerState::Off) => PsciOutcome::ret(AffinityState::Off as i32),
        Some(PowerState::OnPending) => PsciOutcome::ret(AffinityState::OnPending as i32),
        None => PsciOutcome::ret(INVALID_PARAMETERS),
    }
}

/// A VM-wide power event requested by a vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SystemEvent {
    /// PSCI SYSTEM_OFF.
    Off,
    /// PSCI SYSTEM_RESET or SYSTEM_RESET2.
    Reset,
}

/// Stops the VM; what then becomes of it (off, restarted, preserved) is the hypervisor's
/// decision, by the VM's policy for this event.
fn system_event(vm: &VmPower, event: SystemEvent) -> PsciOutcome {
    let action = match (vm.stop(), event) {
        (true, SystemEvent::Off) => PsciAction::SystemOff,
        (true, SystemEvent::Reset) => PsciAction::SystemReset,
        // Another vCPU's system event is already in progress and drives the VM.
        (false, _) => PsciAction::CpuOff,
    };
    PsciOutcome::with_action(SUCCESS, action)
}

#[cfg(all(test, not(loom)))]
mod tests;
