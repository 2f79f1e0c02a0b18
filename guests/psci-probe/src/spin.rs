//! `probe.spin=FROM-TO`: a CPU-bound loop over a window of this VM's virtual time, for the
//! fairness test of a hypervisor that shares physical CPUs. The probe busy-waits (never WFI,
//! so it never gives its CPU away) until its virtual counter reaches FROM milliseconds, counts
//! loop iterations until it reaches TO, prints
//! `PROBE: spin window=FROM..TOms loops=N` and powers off.
//!
//! Each VM's virtual counter starts near 0 when the VM is created, and VMs created together
//! at boot cover the same stretch of real time with the same window; the virtual counter runs
//! on while a VM is descheduled, so the loop count is proportional to the share of the CPU
//! the VM got during the window. Starting after FROM would shorten the window: that is a
//! `PROBE: FAIL spin_window_started_late` instead of a count.

use psci_probe::bootargs;

use crate::machine;
use crate::println;

const SPIN_ARG: &str = "probe.spin=";

/// The window `probe.spin=FROM-TO` asks for, in milliseconds (`None`: not in spin mode;
/// `Some(Err(text))`: malformed).
pub fn requested(bootargs: &'static str) -> Option<Result<(u64, u64), &'static str>> {
    bootargs::range(bootargs, SPIN_ARG)
}

/// Spins over the window and prints the loop count (or why there is none).
pub fn run(window: Result<(u64, u64), &str>) {
    let Ok((from_ms, to_ms)) = window else {
        let text = window.err().unwrap_or("");
        println!("PROBE: FAIL spin_window got={text} want=FROM-TO(ms,FROM<TO)");
        return;
    };
    let frequency = machine::counter_frequency();
    let ticks = |ms: u64| (u128::from(ms) * u128::from(frequency) / 1000) as u64;
    let (from, to) = (ticks(from_ms), ticks(to_ms));
    let start = machine::counter();
    if start >= from {
        println!(
            "PROBE: FAIL spin_window_started_late got={}ms want=<{from_ms}ms",
            start * 1000 / frequency.max(1)
        );
        return;
    }
    while machine::counter() < from {}
    let mut loops: u64 = 0;
    while machine::counter() < to {
        loops += 1;
    }
    println!("PROBE: spin window={from_ms}..{to_ms}ms loops={loops}");
}
