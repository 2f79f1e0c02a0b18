//! Life cycle: what becomes of a VM that powers off, reboots or crashes (xl.cfg's
//! `on_poweroff` / `on_reboot` / `on_crash`), runaway vCPUs, and the restart rate limit.
//! A stopped VM ends the run as any power-off does: the last VM off powers the machine off and
//! QEMU exits with 0; the console line says why.

use super::*;

/// The probe guest, 1 vCPU, with guest and Bulkhead command lines.
fn run_probe(append: &str, hyp_append: &str, timeout: Duration) -> Run {
    let probe = probe();
    run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "1",
            "--mem",
            "256M",
            "--append",
            append,
            "--hyp-append",
            hyp_append,
        ],
        timeout,
    )
}

/// The microseconds of guest time the runaway line reports.
fn runaway_micros(r: &Run) -> u64 {
    let line = r
        .log
        .lines()
        .find(|l| l.contains("runaway: the same exception at its own vector"))
        .unwrap_or_else(|| panic!("no runaway line; console:\n{}", r.log));
    let after = line.split(" times in ").nth(1).expect("duration");
    after
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .expect("a number of us")
}

#[test]
fn lifecycle_runaway_vcpu_is_stopped_with_one_line_and_the_run_ends() {
    let r = run_probe("probe.crash=runaway", "", QUICK);
    r.assert_contains("PROBE: crash runaway");
    r.assert_contains(
        "bulkhead: warning: guest vcpu 0: runaway: the same exception at its own vector 16 times",
    );
    r.assert_contains(
        "(ESR_EL1 0x86000010, FAR_EL1 0x200, ELR_EL1 0x200, vector 0x200); the guest crashed",
    );
    // Stopped in well under a second of guest time.
    let us = runaway_micros(&r);
    assert!(us < 1_000_000, "{us} us; console:\n{}", r.log);
    // The default crash policy: destroy; the last VM off powers the machine off.
    r.assert_contains("bulkhead: guest crashed, on_crash=destroy: powered off (vcpu 0)");
    r.assert_contains("bulkhead: every VM is off; powering off");
    // The loop's own warnings stop with it (the rate limiter lets 16 through).
    assert!(
        r.count("instruction fetch from non-RAM IPA 0x200") <= 16,
        "{}",
        r.log
    );
    r.assert_exit_ok();
}

#[test]
fn lifecycle_runaway_under_icount_takes_under_a_second_of_guest_time() {
    // Instruction-exact guest time (1 instruction = 1 ns): the figure does not depend on load.
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "1",
            "--mem",
            "256M",
            "--icount",
            "--append",
            "probe.crash=runaway",
        ],
        QUICK,
    );
    let us = runaway_micros(&r);
    assert!(us < 1_000_000, "{us} us; console:\n{}", r.log);
    r.assert_exit_ok();
}

#[test]
fn lifecycle_pvpanic_crash_restarts_then_hits_the_reset_limit() {
    let r = run_probe(
        "probe.crash=pvpanic",
        "bulkhead.on_crash=restart bulkhead.reset_limit=2",
        QUICK,
    );
    assert_eq!(
        r.count("bulkhead: warning: guest vcpu 0: the guest panicked (pvpanic); the guest crashed"),
        3,
        "{}",
        r.log
    );
    assert_eq!(
        r.count("bulkhead: guest reset (vcpu 0, crashed, on_crash=restart)"),
        2,
        "{}",
        r.log
    );
    r.assert_contains(
        "bulkhead: warning: guest: 2 restarts within a minute of guest time, the most \
         bulkhead.reset_limit=2 allows; stopped as crashed (on_crash=restart would only loop: \
         destroy)",
    );
    r.assert_contains("bulkhead: guest crashed, on_crash=destroy: powered off (vcpu 0)");
    r.assert_lacks("PROBE: pvpanic write returned");
    r.assert_exit_ok();
}

#[test]
fn lifecycle_on_reboot_destroy_ends_the_vm_on_reboot() {
    let r = run_probe("probe.reboots=1", "bulkhead.on_reboot=destroy", QUICK);
    r.assert_line(
        "bulkhead: guest: on_poweroff=destroy, on_reboot=destroy, on_crash=destroy, restarts at \
         most 10 a minute",
    );
    r.assert_contains("PROBE: BOOT-DONE");
    r.assert_contains("bulkhead: guest rebooted, on_reboot=destroy: powered off (vcpu 0)");
    r.assert_contains("bulkhead: every VM is off; powering off");
    r.assert_lacks("PROBE: boot 2 of 2");
    r.assert_lacks("bulkhead: guest reset");
    r.assert_exit_ok();
}

#[test]
fn lifecycle_on_poweroff_restart_loops_until_the_reset_limit() {
    let r = run_probe(
        "",
        "bulkhead.on_poweroff=restart bulkhead.reset_limit=3",
        QUICK,
    );
    assert_eq!(r.count("PROBE: DONE pass="), 4, "{}", r.log);
    assert_eq!(
        r.count("bulkhead: guest reset (vcpu 0, powered off, on_poweroff=restart)"),
        3,
        "{}",
        r.log
    );
    r.assert_contains("bulkhead: warning: guest: 3 restarts within a minute of guest time");
    r.assert_contains("bulkhead: guest crashed, on_crash=destroy: powered off (vcpu 0)");
    r.assert_exit_ok();
}

#[test]
fn lifecycle_preserved_vm_stays_stopped_and_the_machine_stays_up() {
    // Two VMs: the one that crashes is preserved; the other powers off, and the machine must
    // stay up for the preserved one (QEMU is killed at the timeout).
    let vms = [
        format!(
            "name=crasher,kernel={},cpus=1,mem=128M,on_crash=preserve,append=probe.crash=pvpanic",
            probe()
        ),
        probe_vm("other", 1, ""),
    ];
    let r = run_vms(&vms, &[], Duration::from_secs(30));
    r.assert_contains(
        "bulkhead: warning: crasher crashed, on_crash=preserve: preserved (vcpu 0 at PC 0x",
    );
    r.assert_contains("): stopped with its memory and registers; the machine stays up");
    r.assert_contains("bulkhead: other powered off (vcpu 0)");
    r.assert_lacks("every VM is off");
    assert_eq!(r.code, None, "QEMU must still run; console:\n{}", r.log);
}

#[test]
fn lifecycle_linux_panic_1_reboot_loop_is_stopped_by_the_reset_limit() {
    // Linux crashes (SysRq c) in /init on every boot and `panic=1` reboots it a second later;
    // one restart a minute allowed: the second crash ends it. Instruction-exact guest time, so
    // two boots surely fall within the minute.
    let r = run(
        &[
            "--smp",
            "1",
            "--icount",
            "--append",
            "console=ttyAMA0 quiet bulkhead.test=crash panic=1",
            "--hyp-append",
            "bulkhead.reset_limit=1 bulkhead.on_crash=destroy",
        ],
        LINUX,
    );
    assert_eq!(r.count("BULKHEAD-TEST: crashing"), 2, "{}", r.log);
    r.assert_contains("Kernel panic - not syncing: sysrq triggered crash");
    assert_eq!(r.count("bulkhead: guest reset (vcpu 0)"), 1, "{}", r.log);
    r.assert_contains(
        "bulkhead: warning: guest: 1 restarts within a minute of guest time, the most \
         bulkhead.reset_limit=1 allows; stopped as crashed",
    );
    r.assert_contains("bulkhead: guest crashed, on_crash=destroy: powered off (vcpu 0)");
    r.assert_exit_ok();
}
