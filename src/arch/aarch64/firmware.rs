//! Calls to the platform firmware's PSCI (via the `smccc` crate): CPU_ON/OFF for bringing up
//! and hot-unplugging physical CPUs, SYSTEM_OFF/RESET.

use smccc::psci;
use smccc::{Hvc, Smc};

use crate::dtb::PsciConduit;

/// A firmware PSCI error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareError(pub psci::error::Error);

impl core::fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "firmware PSCI error {:?}", self.0)
    }
}

/// The firmware PSCI interface over its conduit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware(pub PsciConduit);

impl Firmware {
    pub fn cpu_on(&self, mpidr: u64, entry: u64, context: u64) -> Result<(), FirmwareError> {
        match self.0 {
            PsciConduit::Smc => psci::cpu_on::<Smc>(mpidr, entry, context),
            PsciConduit::Hvc => psci::cpu_on::<Hvc>(mpidr, entry, context),
        }
        .map_err(FirmwareError)
    }

    /// Powers this CPU off; only returns on failure.
    pub fn cpu_off(&self) -> FirmwareError {
        let err = match self.0 {
            PsciConduit::Smc => psci::cpu_off::<Smc>(),
            PsciConduit::Hvc => psci::cpu_off::<Hvc>(),
        };
        FirmwareError(err.err().unwrap_or(psci::error::Error::InternalFailure))
    }

    /// Whether the CPU is fully off (AFFINITY_INFO == OFF).
    pub fn is_off(&self, mpidr: u64) -> bool {
        let level = psci::LowestAffinityLevel::All;
        let state = match self.0 {
            PsciConduit::Smc => psci::affinity_info::<Smc>(mpidr, level),
            PsciConduit::Hvc => psci::affinity_info::<Hvc>(mpidr, level),
        };
        matches!(state, Ok(psci::AffinityState::Off))
    }

    pub fn system_off(&self) -> FirmwareError {
        let err = match self.0 {
            PsciConduit::Smc => psci::system_off::<Smc>(),
            PsciConduit::Hvc => psci::system_off::<Hvc>(),
        };
        FirmwareError(err.err().unwrap_or(psci::error::Error::InternalFailure))
    }

    pub fn system_reset(&self) -> FirmwareError {
        let err = match self.0 {
            PsciConduit::Smc => psci::system_reset::<Smc>(),
            PsciConduit::Hvc => psci::system_reset::<Hvc>(),
        };
        FirmwareError(err.err().unwrap_or(psci::error::Error::InternalFailure))
    }
}
