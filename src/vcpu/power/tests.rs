//! Unit tests of the vCPU/VM power state machine. The races are model-checked in
//! `vcpu::loom_models`.

use super::*;

#[test]
fn power_new_vm_has_only_the_boot_vcpu_on() {
    let vm = VmPower::new(4, 0).unwrap();
    assert_eq!(vm.vm_state(), VmState::Running);
    assert_eq!(vm.power_state(0), Some(PowerState::On));
    for vcpu in 1..4 {
        assert_eq!(vm.power_state(vcpu), Some(PowerState::Off));
        assert!(!vm.may_run(vcpu));
    }
    assert!(vm.may_run(0));
    assert_eq!(vm.power_state(4), None);
    assert_eq!(
        VmPower::new(2, 2).err(),
        Some(PowerError::NoSuchVcpu { vcpu: 2 })
    );
}

#[test]
fn power_cpu_on_then_claim_start_runs_the_target_at_its_entry() {
    let vm = VmPower::new(2, 0).unwrap();
    assert_eq!(vm.claim_start(1), None);
    assert_eq!(vm.cpu_on(1, 0x4008_0000, 42), Ok(()));
    assert_eq!(vm.power_state(1), Some(PowerState::OnPending));
    assert!(!vm.may_run(1));
    assert_eq!(vm.cpu_on(1, 0, 0), Err(CpuOnError::OnPending));
    assert_eq!(
        vm.claim_start(1),
        Some(StartContext {
            entry: 0x4008_0000,
            context_id: 42
        })
    );
    assert_eq!(vm.claim_start(1), None);
    assert!(vm.may_run(1));
    assert_eq!(vm.cpu_on(1, 0, 0), Err(CpuOnError::AlreadyOn));
    assert_eq!(vm.cpu_on(7, 0, 0), Err(CpuOnError::NoSuchVcpu));
}

#[test]
fn power_cpu_off_allows_a_later_cpu_on() {
    let vm = VmPower::new(2, 0).unwrap();
    vm.cpu_on(1, 0x1000, 0).unwrap();
    vm.claim_start(1).unwrap();
    vm.cpu_off(1).unwrap();
    assert_eq!(vm.power_state(1), Some(PowerState::Off));
    assert!(!vm.may_run(1));
    assert_eq!(vm.cpu_on(1, 0x2000, 7), Ok(()));
    assert_eq!(vm.claim_start(1).map(|s| s.entry), Some(0x2000));
    assert_eq!(vm.cpu_off(9), Err(PowerError::NoSuchVcpu { vcpu: 9 }));
}

#[test]
fn power_system_off_halts_every_vcpu_for_good() {
    let vm = VmPower::new(3, 0).unwrap();
    vm.cpu_on(1, 0x1000, 0).unwrap(); // pending, not yet started
    assert!(vm.stop());
    assert_eq!(vm.vm_state(), VmState::Stopping);
    vm.force_off();
    assert_eq!(vm.vm_state(), VmState::Off);
    for vcpu in 0..3 {
        assert!(!vm.may_run(vcpu));
        assert_eq!(vm.power_state(vcpu), Some(PowerState::Off));
    }
    // The pending start is gone and nothing can turn a vCPU on again.
    assert_eq!(vm.claim_start(1), None);
    assert_eq!(vm.cpu_on(2, 0x1000, 0), Err(CpuOnError::Halted));
    vm.cpu_off(0).unwrap();
    assert!(!vm.may_run(0));
    // A second event loses; a powered-off VM cannot be restarted.
    assert!(!vm.stop());
    assert_eq!(vm.vm_state(), VmState::Off);
    assert_eq!(vm.restart(0), Err(PowerError::NotStopping(VmState::Off)));
}

#[test]
fn power_reset_then_restart_runs_only_the_boot_vcpu() {
    let vm = VmPower::new(2, 0).unwrap();
    vm.cpu_on(1, 0x1000, 0).unwrap();
    vm.claim_start(1).unwrap();
    assert_eq!(
        vm.restart(0),
        Err(PowerError::NotStopping(VmState::Running))
    );
    assert!(vm.stop());
    assert!(!vm.stop(), "a second event loses");
    assert_eq!(vm.vm_state(), VmState::Stopping);
    assert!(!vm.may_run(0) && !vm.may_run(1));
    assert_eq!(vm.restart(5), Err(PowerError::NoSuchVcpu { vcpu: 5 }));
    assert_eq!(vm.restart(0), Ok(()));
    assert_eq!(vm.vm_state(), VmState::Running);
    assert!(vm.may_run(0));
    assert_eq!(vm.power_state(1), Some(PowerState::Off));
    assert_eq!(vm.cpu_on(1, 0x1000, 0), Ok(()));
}
