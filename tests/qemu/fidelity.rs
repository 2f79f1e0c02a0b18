//! The guest sees a faithful Armv8 machine and nothing of EL2 (the probe guest's
//! `fidelity.rs` checks): IMPLEMENTATION DEFINED registers UNDEFINED, OS lock / debug ROM /
//! ACTLR / set-way emulated, big-endian MMIO, alignment faults for unaligned device accesses,
//! external aborts on a stage-1 walk at the walk's level, ICC_SGI0R_EL1's Group 0 rule,
//! CPU_ON on a pending target ALREADY_ON, PAN on an injected exception, software step over
//! an emulated load, AArch32 EL0 aborts at their vector, a 16-bit T32 WFI completed 2 bytes on, the GIC CPU interface's active
//! priorities clear after CPU_OFF/CPU_ON — on GICv2 and GICv3,
//! on `cortex-a72` and `max`; and guest RAM zeroed before a VM first runs, even over host RAM
//! full of old data.

use super::*;

/// The probe on `cpu` and GICv`gic`; every check passes, the fidelity ones among them.
fn assert_probe_fidelity(cpu: &str, gic: &str) {
    let probe = probe();
    let r = run(
        &[
            "--kernel", &probe, "--cpu", cpu, "--gic", gic, "--smp", "2", "--mem", "256M",
        ],
        QUICK,
    );
    assert_probe(&r);
    let mut checks = vec![
        "impdef_l2ctlr_undefined",
        "impdef_cpuactlr_undefined",
        "os_lock_locks",
        "os_lock_unlocks",
        "mdrar_reads_zero",
        "actlr_write_ignored",
        "dc_cisw_completes",
        "mmio_big_endian_load",
        "mmio_big_endian_store",
        "mmio_unaligned_alignment_fault",
        "mmio_unaligned_far",
        "stage1_walk_into_hole_fsc",
        "stage1_walk_into_hole_far",
        "single_step_over_mmio_stops_after_it",
        "single_step_over_mmio_loads",
        "aarch32_el0_abort_vector_ec",
        "aarch32_el0_abort_far",
        "aarch32_el0_abort_elr",
        "t32_wfi_pending_wakeup",
        "t32_wfi_resumes_after_2_bytes",
        "apr_set_before_cpu_off",
        "apr_clear_after_cpu_on",
        "cpu_on_secondary_twice_round1",
        "cpu_on_secondary_twice_round2",
    ];
    // The Cortex-A72 has no FEAT_WFxT (QEMU's `max` has, see the probe's `check_wfit`) and
    // no FEAT_PAN.
    if cpu == "cortex-a72" {
        checks.push("wfit_undefined_without_wfxt");
    } else {
        checks.extend([
            "pan_set_on_injected_exception",
            "pan_set_on_native_exception",
        ]);
    }
    if gic == "3" {
        checks.extend([
            "icc_sgi0r_skips_group1_sgi",
            "icc_sgi0r_raises_group0_sgi",
            "icc_sgi1r_raises_group1_sgi",
        ]);
    } else {
        checks.push("icc_sgi0r_undefined_without_gicv3");
    }
    for check in checks {
        r.assert_contains(&format!("PROBE: PASS {check}\n"));
    }
}

#[test]
fn fidelity_probe_cortex_a72_gicv3() {
    assert_probe_fidelity("cortex-a72", "3");
}

#[test]
fn fidelity_probe_cortex_a72_gicv2() {
    assert_probe_fidelity("cortex-a72", "2");
}

#[test]
fn fidelity_probe_max_gicv3() {
    assert_probe_fidelity("max", "3");
}

#[test]
fn fidelity_probe_max_gicv2() {
    assert_probe_fidelity("max", "2");
}

/// Host RAM where the guest's RAM will be placed is filled with a pattern before the machine
/// starts (QEMU's generic loader): the probe must still read zero wherever nothing was loaded.
/// With `--mem 64M`, run.sh gives QEMU 832 MiB at 0x4000_0000 and Bulkhead places the guest's
/// RAM at the top: 0x7000_0000..0x7400_0000.
#[test]
fn fidelity_guest_ram_zeroed_over_old_host_ram() {
    const GUEST_RAM_PA: u64 = 0x7000_0000;
    const SIZE: usize = 64 << 20;
    let garbage = std::env::temp_dir().join(format!("bulkhead-old-ram-{}.bin", std::process::id()));
    let pattern: Vec<u8> = (0..SIZE).map(|i| 0xa5 ^ (i as u8)).collect();
    std::fs::write(&garbage, pattern).unwrap();
    let probe = probe();
    let loader = format!(
        "loader,file={},addr={GUEST_RAM_PA:#x},force-raw=on",
        garbage.display()
    );
    let r = run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "2",
            "--mem",
            "64M",
            "--append",
            "probe.zeroed_ram=1",
            "--",
            "-device",
            &loader,
        ],
        QUICK,
    );
    let _ = std::fs::remove_file(&garbage);
    assert_probe(&r);
    r.assert_contains("PROBE: PASS ram_zeroed_before_first_run\n");
}
