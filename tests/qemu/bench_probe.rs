//! The probe's benchmark mode (`probe.bench=`, what `scripts/bench.sh` times) run as a
//! behaviour test, not timed: SGIs ping-pong between two vCPUs that wait in WFI, and the
//! virtual timer interrupts a waiting vCPU, on both GICs — every ping answered, every deadline
//! delivered.

use super::*;

fn run_bench(gic: &str) {
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--gic",
            gic,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--append",
            "probe.bench=ipi,timer,gicd,hvc probe.bench_iters=300",
        ],
        Duration::from_secs(120),
    );
    for name in ["ipi", "timer", "gicd", "hvc"] {
        r.assert_contains(&format!("PROBE: bench {name} iterations=300 insns_per_op="));
    }
    r.assert_contains("PROBE: bench done");
    // The IPI loop reports a shortfall of answered pings.
    r.assert_lacks("pongs=");
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
