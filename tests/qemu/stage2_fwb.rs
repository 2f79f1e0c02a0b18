//! Stage-2 forced Write-Back (FEAT_S2FWB): on a CPU that has it (QEMU `max`), guest RAM is
//! mapped with HCR_EL2.FWB and nothing is cleaned to PoC for the guest; on one that lacks it
//! (cortex-a72), everything EL2 writes for a guest is. The probe guest runs with its MMU off
//! (its data accesses non-cacheable, forced Write-Back under FWB) and checks its RAM reads back
//! across resets.
use super::*;

fn memcheck_across_resets(cpu: &str) -> Run {
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--cpu",
            cpu,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--append",
            "probe.reboots=2 probe.memcheck=4",
        ],
        QUICK,
    );
    r.assert_line("PROBE: memcheck boot=1 verified=0");
    for boot in 2..=3 {
        r.assert_line(&format!("PROBE: memcheck boot={boot} verified=1024"));
    }
    assert_probe(&r);
    r
}

#[test]
fn stage2_fwb_on_max_guest_ram_reads_back_across_resets() {
    let r = memcheck_across_resets("max");
    r.assert_contains("bulkhead: stage 2: guest RAM forced Write-Back (FEAT_S2FWB)");
}

#[test]
fn stage2_fwb_absent_on_cortex_a72_ram_is_cleaned() {
    let r = memcheck_across_resets("cortex-a72");
    r.assert_contains("bulkhead: stage 2: guest RAM cleaned to PoC when first mapped");
}
