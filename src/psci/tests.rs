//! Every return code of every PSCI/SMCCC call offered, for good and bad arguments.

use smccc::arch::{
    SMCCC_ARCH_SOC_ID, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3,
};
use smccc::psci::{
    PSCI_CPU_FREEZE, PSCI_MIGRATE_32, PSCI_MIGRATE_64, PSCI_MIGRATE_INFO_UP_CPU_32,
    PSCI_SYSTEM_SUSPEND_64,
};

use super::*;
use crate::vcpu::power::VmState;

const RAM: Range<u64> = 0x4000_0000..0x6000_0000;
const ENTRY: u64 = 0x4008_0000;
/// Upper-half garbage that SMC32 calls must ignore.
const GARBAGE: u64 = 0xdead_beef_0000_0000;

/// A 4-vCPU VM with vCPU 0 on.
fn vm() -> VmPower {
    VmPower::new(4, 0).unwrap()
}

fn call(vm: &VmPower, fid: u32, args: [u64; 3]) -> PsciOutcome {
    handle(fid, args, 0, vm, RAM)
}

fn x0(vm: &VmPower, fid: u32, args: [u64; 3]) -> i32 {
    call(vm, fid, args).x0_i32()
}

#[test]
fn psci_version_is_1_1_and_has_no_smc64_id() {
    let vm = vm();
    assert_eq!(
        call(&vm, PSCI_VERSION, [0; 3]).regs(),
        [0x0001_0001, 0, 0, 0]
    );
    assert_eq!(x0(&vm, PSCI_VERSION | SMC64_BIT, [0; 3]), NOT_SUPPORTED);
}

#[test]
fn smccc_version_is_1_1() {
    let vm = vm();
    assert_eq!(x0(&vm, SMCCC_VERSION, [0; 3]), 0x0001_0001);
}

#[test]
fn psci_errors_are_sign_extended_to_64_bits() {
    let vm = vm();
    assert_eq!(call(&vm, 0x8400_00ff, [0; 3]).regs(), [u64::MAX, 0, 0, 0]);
    assert_eq!(
        call(&vm, PSCI_AFFINITY_INFO_64, [9, 0, 0]).x0,
        INVALID_PARAMETERS as i64 as u64
    );
}

#[test]
fn psci_features_lists_exactly_the_functions_offered() {
    let vm = vm();
    for fid in [
        PSCI_VERSION,
        PSCI_FEATURES,
        PSCI_CPU_SUSPEND_32,
        PSCI_CPU_SUSPEND_64,
        PSCI_CPU_OFF,
        PSCI_CPU_ON_32,
        PSCI_CPU_ON_64,
        PSCI_AFFINITY_INFO_32,
        PSCI_AFFINITY_INFO_64,
        PSCI_MIGRATE_INFO_TYPE,
        PSCI_SYSTEM_OFF,
        PSCI_SYSTEM_RESET,
        PSCI_SYSTEM_RESET2_32,
        PSCI_SYSTEM_RESET2_64,
        SMCCC_VERSION,
    ] {
        assert_eq!(
            x0(&vm, PSCI_FEATURES, [fid.into(), 0, 0]),
            SUCCESS,
            "{fid:#x}"
        );
        // SMC32 call: the upper half of the argument is ignored.
        assert_eq!(
            x0(&vm, PSCI_FEATURES, [GARBAGE | u64::from(fid), 0, 0]),
            SUCCESS
        );
    }
    for fid in [
        PSCI_MIGRATE_32,
        PSCI_MIGRATE_64,
        PSCI_MIGRATE_INFO_UP_CPU_32,
        PSCI_CPU_FREEZE,
        PSCI_SYSTEM_SUSPEND_64,
        PSCI_VERSION | SMC64_BIT,
        SMCCC_ARCH_FEATURES,
        0,
        0xffff_ffff,
    ] {
        assert_eq!(
            x0(&vm, PSCI_FEATURES, [fid.into(), 0, 0]),
            NOT_SUPPORTED,
            "{fid:#x}"
        );
    }
}

#[test]
fn smccc_arch_features_offers_no_workarounds() {
    let vm = vm();
    assert_eq!(
        x0(&vm, SMCCC_ARCH_FEATURES, [SMCCC_VERSION.into(), 0, 0]),
        SUCCESS
    );
    assert_eq!(
        x0(&vm, SMCCC_ARCH_FEATURES, [SMCCC_ARCH_FEATURES.into(), 0, 0]),
        SUCCESS
    );
    for fid in [
        SMCCC_ARCH_WORKAROUND_1,
        SMCCC_ARCH_WORKAROUND_2,
        SMCCC_ARCH_WORKAROUND_3,
        SMCCC_ARCH_SOC_ID,
        PSCI_VERSION,
    ] {
        assert_eq!(
            x0(&vm, SMCCC_ARCH_FEATURES, [fid.into(), 0, 0]),
            NOT_SUPPORTED
        );
    }
}

#[test]
fn psci_unknown_or_unoffered_functions_are_not_supported() {
    let vm = vm();
    for fid in [
        0,
        0x8400_00ff,
        PSCI_CPU_OFF | SMC64_BIT, // CPU_OFF has no SMC64 id
        PSCI_SYSTEM_OFF | SMC64_BIT,
        SMCCC_VERSION | SMC64_BIT,
        PSCI_MIGRATE_32,
        PSCI_MIGRATE_INFO_UP_CPU_32,
        PSCI_SYSTEM_SUSPEND_64,
        SMCCC_ARCH_WORKAROUND_1,
        0x8600_0000, // SiP service
        0xffff_ffff,
    ] {
        let outcome = call(&vm, fid, [1, ENTRY, 0]);
        assert_eq!(outcome.x0_i32(), NOT_SUPPORTED, "{fid:#x}");
        assert_eq!(outcome.action, PsciAction::None);
    }
    assert_eq!(vm.power_state(1), Some(PowerState::Off));
}

#[test]
fn psci_cpu_on_succeeds_once_then_already_on_while_pending_and_after() {
    for fid in [PSCI_CPU_ON_32, PSCI_CPU_ON_64] {
        let vm = vm();
        let outcome = call(&vm, fid, [1, ENTRY, 0x1234]);
        assert_eq!(outcome.regs(), [0, 0, 0, 0]);
        assert_eq!(outcome.action, PsciAction::StartVcpu { target: 1 });
        assert_eq!(x0(&vm, fid, [1, ENTRY, 0]), ALREADY_ON);
        assert_eq!(
            x0(&vm, PSCI_AFFINITY_INFO_32, [1, 0, 0]),
            AffinityState::OnPending as i32
        );
        let start = vm.claim_start(1).unwrap();
        assert_eq!((start.entry, start.context_id), (ENTRY, 0x1234));
        assert_eq!(x0(&vm, fid, [1, ENTRY, 0]), ALREADY_ON);
        // The caller itself is on.
        assert_eq!(x0(&vm, fid, [0, ENTRY, 0]), ALREADY_ON);
    }
}

#[test]
fn psci_cpu_on_rejects_unknown_mpidrs() {
    let vm = vm();
    for mpidr in [4, 0xf, 0x10, 0x100, 0x1_0000, 1 << 31, 1 << 32, u64::MAX] {
        let outcome = call(&vm, PSCI_CPU_ON_64, [mpidr, ENTRY, 0]);
        assert_eq!(outcome.x0_i32(), INVALID_PARAMETERS, "{mpidr:#x}");
        assert_eq!(outcome.action, PsciAction::None);
    }
}

#[test]
fn psci_cpu_on_rejects_entry_points_outside_guest_ram() {
    let vm = vm();
    for entry in [0, RAM.start - 4, RAM.end, RAM.end + 0x1000, u64::MAX] {
        assert_eq!(
            x0(&vm, PSCI_CPU_ON_64, [1, entry, 0]),
            BAD_ENTRY_POINT,
            "{entry:#x}"
        );
    }
    assert_eq!(vm.power_state(1), Some(PowerState::Off));
    assert_eq!(x0(&vm, PSCI_CPU_ON_64, [1, RAM.start, 0]), SUCCESS);
    assert_eq!(x0(&vm, PSCI_CPU_ON_64, [2, RAM.end - 4, 0]), SUCCESS);
}

#[test]
fn psci_cpu_on_32_ignores_the_upper_halves_of_its_arguments() {
    let vm = vm();
    let outcome = call(
        &vm,
        PSCI_CPU_ON_32,
        [GARBAGE | 1, GARBAGE | ENTRY, GARBAGE | 7],
    );
    assert_eq!(outcome.action, PsciAction::StartVcpu { target: 1 });
    let start = vm.claim_start(1).unwrap();
    assert_eq!((start.entry, start.context_id), (ENTRY, 7));
    // The same values through the SMC64 id are an unknown MPIDR.
    assert_eq!(
        x0(&vm, PSCI_CPU_ON_64, [GARBAGE | 2, ENTRY, 0]),
        INVALID_PARAMETERS
    );
}

#[test]
fn psci_cpu_on_during_system_off_is_an_internal_failure() {
    let vm = vm();
    assert_eq!(
        call(&vm, PSCI_SYSTEM_OFF, [0; 3]).action,
        PsciAction::SystemOff
    );
    assert_eq!(x0(&vm, PSCI_CPU_ON_64, [1, ENTRY, 0]), INTERNAL_FAILURE);
}

#[test]
fn psci_cpu_off_powers_the_caller_off() {
    let vm = vm();
    let outcome = call(&vm, PSCI_CPU_OFF, [GARBAGE; 3]);
    assert_eq!(outcome.action, PsciAction::CpuOff);
    assert_eq!(outcome.x0_i32(), SUCCESS);
    assert!(!vm.may_run(0));
    assert_eq!(
        x0(&vm, PSCI_AFFINITY_INFO_64, [0, 0, 0]),
        AffinityState::Off as i32
    );
    // A caller index the VM does not have is the hypervisor's bug, not the guest's.
    let outcome = handle(PSCI_CPU_OFF, [0; 3], 9, &vm, RAM);
    assert_eq!(outcome.x0_i32(), INTERNAL_FAILURE);
}

#[test]
fn psci_cpu_suspend_is_standby_for_valid_power_states() {
    let vm = vm();
    for fid in [PSCI_CPU_SUSPEND_32, PSCI_CPU_SUSPEND_64] {
        // Standby, power-down (bit 16), power level 1, any state ID.
        for power_state in [0, 1 << 16, 1 << 24, 0xffff, (1 << 16) | 0x0300_0000] {
            let outcome = call(&vm, fid, [power_state, ENTRY, 0]);
            assert_eq!(outcome.x0_i32(), SUCCESS, "{power_state:#x}");
            assert_eq!(outcome.action, PsciAction::Standby);
        }
        for power_state in [1 << 17, 1 << 23, 1 << 26, 1 << 31] {
            let outcome = call(&vm, fid, [power_state, ENTRY, 0]);
            assert_eq!(outcome.x0_i32(), INVALID_PARAMETERS, "{power_state:#x}");
            assert_eq!(outcome.action, PsciAction::None);
        }
        // power_state is 32 bits in both conventions.
        assert_eq!(call(&vm, fid, [GARBAGE, 0, 0]).action, PsciAction::Standby);
    }
}

#[test]
fn psci_affinity_info_reports_on_off_and_on_pending() {
    let vm = vm();
    for fid in [PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64] {
        assert_eq!(x0(&vm, fid, [0, 0, 0]), AffinityState::On as i32);
        assert_eq!(x0(&vm, fid, [3, 0, 0]), AffinityState::Off as i32);
        assert_eq!(x0(&vm, fid, [4, 0, 0]), INVALID_PARAMETERS);
        assert_eq!(x0(&vm, fid, [0, 1, 0]), INVALID_PARAMETERS);
        assert_eq!(x0(&vm, fid, [0, 3, 0]), INVALID_PARAMETERS);
    }
    call(&vm, PSCI_CPU_ON_64, [2, ENTRY, 0]);
    assert_eq!(
        x0(&vm, PSCI_AFFINITY_INFO_64, [2, 0, 0]),
        AffinityState::OnPending as i32
    );
    // SMC32: upper halves ignored; SMC64: they make the MPIDR / level invalid.
    assert_eq!(
        x0(&vm, PSCI_AFFINITY_INFO_32, [GARBAGE, GARBAGE, 0]),
        AffinityState::On as i32
    );
    assert_eq!(
        x0(&vm, PSCI_AFFINITY_INFO_64, [GARBAGE, 0, 0]),
        INVALID_PARAMETERS
    );
    assert_eq!(
        x0(&vm, PSCI_AFFINITY_INFO_64, [0, GARBAGE, 0]),
        INVALID_PARAMETERS
    );
}

#[test]
fn psci_migrate_info_type_says_no_migration_needed() {
    let vm = vm();
    assert_eq!(x0(&vm, PSCI_MIGRATE_INFO_TYPE, [0; 3]), 2);
}

#[test]
fn psci_system_off_stops_the_vm_and_a_racing_second_event_only_stops_its_caller() {
    let vm = vm();
    call(&vm, PSCI_CPU_ON_64, [1, ENTRY, 0]);
    vm.claim_start(1).unwrap();
    let outcome = call(&vm, PSCI_SYSTEM_OFF, [GARBAGE; 3]);
    assert_eq!(outcome.action, PsciAction::SystemOff);
    assert_eq!(outcome.x0_i32(), SUCCESS);
    assert_eq!(vm.vm_state(), VmState::Stopping);
    assert!(!vm.may_run(0) && !vm.may_run(1));
    let second = handle(PSCI_SYSTEM_RESET, [0; 3], 1, &vm, RAM);
    assert_eq!(second.action, PsciAction::CpuOff);
    assert_eq!(vm.vm_state(), VmState::Stopping);
}

#[test]
fn psci_system_reset_and_reset2_warm_reset_the_vm() {
    let fids = [
        (PSCI_SYSTEM_RESET, 0),
        (PSCI_SYSTEM_RESET2_32, 0),
        (PSCI_SYSTEM_RESET2_32, GARBAGE), // reset type 0 once truncated
        (PSCI_SYSTEM_RESET2_64, 0),
    ];
    for (fid, reset_type) in fids {
        let vm = vm();
        let outcome = call(&vm, fid, [reset_type, 0x1234, 0]);
        assert_eq!(outcome.action, PsciAction::SystemReset, "{fid:#x}");
        assert_eq!(outcome.x0_i32(), SUCCESS);
        assert_eq!(vm.vm_state(), VmState::Stopping);
        assert!(!vm.may_run(0));
    }
}

#[test]
fn psci_system_reset2_rejects_vendor_and_reserved_reset_types() {
    for fid in [PSCI_SYSTEM_RESET2_32, PSCI_SYSTEM_RESET2_64] {
        for reset_type in [1, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, 0xffff_ffff] {
            let vm = vm();
            let outcome = call(&vm, fid, [reset_type, 0, 0]);
            assert_eq!(
                outcome.x0_i32(),
                INVALID_PARAMETERS,
                "{fid:#x} {reset_type:#x}"
            );
            assert_eq!(outcome.action, PsciAction::None);
            assert_eq!(vm.vm_state(), VmState::Running);
        }
    }
    // reset_type is 32 bits in both conventions: the SMC64 id ignores its upper half too.
    let vm = vm();
    assert_eq!(
        call(&vm, PSCI_SYSTEM_RESET2_64, [GARBAGE, 0, 0]).action,
        PsciAction::SystemReset
    );
}
