//! The probe's benchmark mode (`probe.bench=`, what `scripts/bench.sh` times) run as a
//! behaviour test, not timed: SGIs ping-pong between two vCPUs that wait in WFI, and the
//! virtual timer interrupts a waiting vCPU, on both GICs — every ping answered, every deadline
//! delivered.

use super::*;

/// The probe (2 vCPUs, 256 MiB, `run.sh` options `extra` too) running the benchmarks `names`
/// 300 times each on GIC `gic`: each reports, and every ping was answered (the IPI loops
/// report a shortfall of answered pings).
pub(super) fn run_probe_bench(gic: &str, names: &[&str], extra: &[&str], timeout: Duration) -> Run {
    let probe = probe();
    let benches = format!("probe.bench={} probe.bench_iters=300", names.join(","));
    let mut args = vec!["--kernel", &probe, "--gic", gic, "--smp", "2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--mem", "256M", "--append", &benches]);
    let r = run(&args, timeout);
    for name in names {
        r.assert_contains(&format!("PROBE: bench {name} iterations=300 insns_per_op="));
    }
    r.assert_lacks("pongs=");
    r
}

fn run_bench(gic: &str) {
    let r = run_probe_bench(
        gic,
        &["ipi", "timer", "gicd", "hvc"],
        &[],
        Duration::from_secs(120),
    );
    r.assert_contains("PROBE: bench done");
    r.assert_lacks("PROBE: FATAL");
    r.assert_lacks("bulkhead: FATAL");
}

#[test]
fn probe_bench_ipis_and_timer_gicv3() {
    run_bench("3");
}

#[test]
fn probe_bench_ipis_and_timer_gicv2() {
    run_bench("2");
}
