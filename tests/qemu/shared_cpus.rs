//! vCPUs sharing physical CPUs: more vCPUs than CPUs, several VMs' vCPUs pinned to one CPU,
//! overlapping affinity sets. Each test checks the placement Bulkhead announces (the
//! scheduler line and each VM's home CPUs), what every guest printed, and that QEMU ended
//! with the machine powered off.
//!
//! Placement rule the home lists follow (config/place.rs): pinned vCPUs first, those with the
//! smallest affinity sets first (then in VM and vCPU order), each on the least-loaded CPU of
//! its set; then the unpinned ones, when there are more vCPUs than CPUs, on the least-loaded
//! CPU of all; ties go to the lowest index.
//! A CPU is dedicated (not in the scheduler line) only when a single vCPU may run there and
//! is pinned to it alone.

use super::*;

/// Two 4-vCPU Linux VMs on 2 CPUs boot in about 2-3 minutes under TCG on 2 host cores; the
/// limit leaves room for a loaded host.
const SHARED_LINUX: Duration = Duration::from_secs(480);

/// `vm` (a `--vm` value) with `affinity=CPUS` added.
fn pinned(vm: String, cpus: &str) -> String {
    vm.replace(",append=", &format!(",affinity={cpus},append="))
}

/// The scheduler's boot line for the shared CPUs `cpus` (e.g. "0-1") with default slices.
fn scheduler_line(cpus: &str) -> String {
    format!("bulkhead: scheduler: CPUs {cpus} shared, 10 ms slices")
}

/// Nothing fatal from anyone, every probe check passed, and the machine powered off.
fn assert_clean_end(r: &Run) {
    assert_clean_end_one_vm(r);
    r.assert_lacks("PROBE: PANIC");
    r.assert_lacks("BULKHEAD-TEST: FAIL");
    r.assert_contains("bulkhead: every VM is off; powering off");
}

/// Nothing fatal, and the machine powered off (one VM: its power-off line is the last word).
fn assert_clean_end_one_vm(r: &Run) {
    r.assert_lacks("PROBE: FAIL");
    r.assert_lacks("PROBE: FATAL");
    r.assert_lacks("bulkhead: FATAL");
    r.assert_lacks("PANIC");
    r.assert_exit_ok();
}

/// Two Linux VMs of 4 vCPUs each on a 2-CPU machine: 8 vCPUs over 2 CPUs, unpinned, so
/// every vCPU may run anywhere; both VMs see all 4 of their CPUs online, run work and
/// take timer ticks on each, and power off.
fn assert_two_4_vcpu_linux_vms_on_2_cpus(gic: &str) {
    let vms = [
        linux_vm("domU1", 4, "bulkhead.test=smoke"),
        linux_vm("domU2", 4, "bulkhead.test=smoke"),
    ];
    let r = run_vms(&vms, &["--smp", "2", "--gic", gic], SHARED_LINUX);
    r.assert_line(&scheduler_line("0-1"));
    r.assert_contains("bulkhead: domU1: 4 vCPUs on CPUs [0, 1, 0, 1]");
    r.assert_contains("bulkhead: domU2: 4 vCPUs on CPUs [0, 1, 0, 1]");
    assert_vm_smoke(&r, "domU1", 4);
    assert_vm_smoke(&r, "domU2", 4);
    assert_lines_have_one_source(&r, &["domU1", "domU2"]);
    assert_clean_end(&r);
}

#[test]
fn shared_two_linux_vms_4_vcpus_on_2_cpus_gicv3() {
    assert_two_4_vcpu_linux_vms_on_2_cpus("3");
}

#[test]
fn shared_two_linux_vms_4_vcpus_on_2_cpus_gicv2() {
    assert_two_4_vcpu_linux_vms_on_2_cpus("2");
}

/// Three VMs whose affinity sets overlap on 4 CPUs: Linux on {0,1}, a 2-vCPU probe pinned
/// per vCPU to 1 and 2 (resetting twice, its RAM read back after each reset), and a 1-vCPU
/// FP checker free on {2,3} (so it shares CPU 2 with the probe or runs on 3). CPU 1 carries
/// Linux and the probe; no CPU is dedicated.
#[test]
fn shared_three_vms_overlapping_affinity_on_4_cpus() {
    let vms = [
        pinned(linux_vm("lin", 2, "bulkhead.test=smoke"), "0-1"),
        pinned(probe_vm("pb", 2, "probe.reboots=2 probe.memcheck=4"), "1:2"),
        pinned(probe_vm("pc", 1, "probe.fpcheck=300"), "2-3"),
    ];
    let r = run_vms(&vms, &["--smp", "4"], LINUX);
    r.assert_line(&scheduler_line("0-3"));
    // pb's single-CPU sets go first (1, 2); lin's two tie on {0,1} after CPU 0 took one.
    r.assert_contains("bulkhead: lin: 2 vCPUs on CPUs [0, 0]");
    r.assert_contains("bulkhead: pb: 2 vCPUs on CPUs [1, 2]");
    r.assert_contains("bulkhead: pc: 1 vCPUs on CPUs [3]");
    assert_vm_smoke(&r, "lin", 2);
    assert_eq!(r.count("bulkhead: pb reset"), 2, "{}", r.log);
    r.assert_line("pb: PROBE: memcheck boot=3 verified=1024");
    // The probe's normal checks (its secondary started and stopped twice) on every boot.
    r.assert_contains("pb: PROBE: PASS secondary_cpu_off_did_not_return_round2");
    r.assert_contains("pb: PROBE: DONE pass=");
    r.assert_line("pc: PROBE: fpcheck cpu=0 rounds=300 vl=16");
    r.assert_line("pc: PROBE: PASS fpcheck_cpu0");
    r.assert_line("pc: PROBE: DONE pass=1 fail=0");
    assert_lines_have_one_source(&r, &["lin", "pb", "pc"]);
    assert_clean_end(&r);
}

/// The world-switch review's scenario, live: VM `live` has its two vCPUs on CPUs 0 and 1
/// (dedicated) and re-verifies its RAM on both without pause for 20 s, while four 1-vCPU
/// probes pinned two by two to CPUs 2 and 3 reset ten times each with 3-bit VMIDs (7 usable,
/// 5 VMs): their fresh VMIDs roll the generation over again and again while `live` keeps its
/// VMID on two CPUs. Every VM reads back its RAM after each boot.
#[test]
fn shared_vmid_rollover_live() {
    let mut vms = vec![pinned(
        probe_vm("live", 2, "probe.memcheck=4 probe.memloop=20000"),
        "0:1",
    )];
    for (i, cpu) in [(1, "2"), (2, "2"), (3, "3"), (4, "3")] {
        vms.push(pinned(
            probe_vm(&format!("r{i}"), 1, "probe.reboots=10 probe.memcheck=2"),
            cpu,
        ));
    }
    let r = run_vms(
        &vms,
        &[
            "--smp",
            "4",
            "--hyp-append",
            "bulkhead.vmid_bits=3 bulkhead.console_idle_ms=5000",
        ],
        LINUX,
    );
    r.assert_contains("bulkhead: VMIDs: 3 bits");
    r.assert_line(&scheduler_line("2-3"));
    r.assert_contains("bulkhead: live: 2 vCPUs on CPUs [0, 1]");
    for (i, cpu) in [(1, 2), (2, 2), (3, 3), (4, 3)] {
        r.assert_contains(&format!("bulkhead: r{i}: 1 vCPUs on CPUs [{cpu}]"));
        assert_eq!(r.count(&format!("bulkhead: r{i} reset")), 10, "{}", r.log);
        for boot in 2..=11 {
            r.assert_line(&format!("r{i}: PROBE: memcheck boot={boot} verified=512"));
        }
        r.assert_contains(&format!("r{i}: PROBE: DONE pass="));
        r.assert_contains(&format!("bulkhead: r{i} powered off"));
    }
    r.assert_line("live: PROBE: memloop start ms=20000 cpus=2");
    r.assert_line("live: PROBE: PASS memloop_cpu0");
    r.assert_line("live: PROBE: PASS memloop_cpu1");
    r.assert_contains("live: PROBE: DONE pass=");
    // Rollovers happened while `live` ran its loop on both CPUs: the first restart that
    // rolled the generation over comes between its loop's start and end, and its power-off
    // line (the count is Bulkhead's total) says at least 3.
    let at = |what: &str| {
        r.log
            .lines()
            .position(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no line {what:?}:\n{}", r.log))
    };
    let loop_start = at("live: PROBE: memloop start");
    let loop_end = at("live: PROBE: memloop cpu=0 passes=");
    let first_rollover = r.log.lines().position(|l| {
        l.split(" restarted: VMID rollovers ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .is_some_and(|n| n != "0")
    });
    assert!(
        first_rollover.is_some_and(|line| loop_start < line && line < loop_end),
        "no rollover while live ran its loop:\n{}",
        r.log
    );
    let off = r.log.lines().nth(at("bulkhead: live powered off")).unwrap();
    let rollovers: u64 = off
        .split(", ")
        .find_map(|part| part.strip_suffix(" VMID rollovers"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rollover count in {off:?}"));
    assert!(rollovers >= 3, "only {rollovers} rollovers:\n{}", r.log);
    assert_clean_end(&r);
}

/// The chaos probe (20,000 hostile operations, then its normal checks) pinned to CPU 1,
/// which it shares with a 2-vCPU Linux VM free to run on both CPUs.
#[test]
fn shared_chaos_probe_with_linux() {
    let vms = [
        linux_vm("linux", 2, "bulkhead.test=smoke"),
        pinned(probe_vm("chaos", 1, "probe.chaos=20000 probe.seed=7"), "1"),
    ];
    let r = run_vms(&vms, &["--smp", "2"], LINUX);
    r.assert_line(&scheduler_line("0-1"));
    // chaos (pinned) first on 1; then linux's vCPUs on the least-loaded: 0, then a tie -> 0.
    r.assert_contains("bulkhead: linux: 2 vCPUs on CPUs [0, 0]");
    r.assert_contains("bulkhead: chaos: 1 vCPUs on CPUs [1]");
    r.assert_contains("chaos: PROBE: chaos done ops=20000");
    r.assert_contains("chaos: PROBE: PASS chaos_cpu_on_bad_mpidr_invalid_parameters");
    r.assert_contains("chaos: PROBE: DONE pass=");
    r.assert_contains("bulkhead: chaos powered off");
    assert_vm_smoke(&r, "linux", 2);
    assert_clean_end(&r);
}

/// Loop iterations `vm` printed for its spin window.
fn spin_loops(r: &Run, vm: &str) -> u64 {
    let prefix = format!("{vm}: PROBE: spin window=2000..4000ms loops=");
    r.log
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", r.log))
}

/// Two CPU-bound 1-vCPU VMs pinned to CPU 1 busy-loop over the same two seconds of their
/// virtual time (each VM's virtual counter starts near 0 at its creation, and all are created
/// at boot): each gets 50 % ± 10 % of the loop iterations, i.e. of the CPU. A third spinning
/// VM has CPU 0 to itself: a vCPU run on the wrong CPU would share with it instead, and the
/// shares would come out 2:1.
#[test]
fn shared_fairness_two_spinning_vms_on_one_cpu() {
    let vms = [
        pinned(probe_vm("spin1", 1, "probe.spin=2000-4000"), "1"),
        pinned(probe_vm("spin2", 1, "probe.spin=2000-4000"), "1"),
        pinned(probe_vm("alone", 1, "probe.spin=2000-4000"), "0"),
    ];
    let r = run_vms(&vms, &["--smp", "2"], QUICK);
    r.assert_line(&scheduler_line("1"));
    r.assert_contains("bulkhead: spin1: 1 vCPUs on CPUs [1]");
    r.assert_contains("bulkhead: spin2: 1 vCPUs on CPUs [1]");
    r.assert_contains("bulkhead: alone: 1 vCPUs on CPUs [0]");
    let alone = spin_loops(&r, "alone");
    eprintln!("alone on CPU 0: {alone} loops");
    let (a, b) = (spin_loops(&r, "spin1"), spin_loops(&r, "spin2"));
    let share = a as f64 / (a + b) as f64;
    eprintln!("spin1 {a} loops, spin2 {b} loops: spin1's share {share:.3}");
    assert!(
        (0.4..=0.6).contains(&share),
        "spin1 got {share:.3} of the CPU ({a} vs {b} loops):\n{}",
        r.log
    );
    r.assert_contains("bulkhead: spin1 powered off");
    r.assert_contains("bulkhead: spin2 powered off");
    r.assert_contains("bulkhead: alone powered off");
    assert_clean_end(&r);
}

/// FP/SIMD state across switches on CPU 1: VM `fpa`'s two vCPUs (same-VM switches) and VM
/// `fpb`'s one (other-VM switches) fill their registers with their own patterns, give the CPU
/// away 300 times each (WFI with a 1 ms timer; every 8th time a 25 ms busy loop that the slice
/// preempts) and check every byte after each. On `max` that is SVE's Z0-Z31, P0-P15 and FFR
/// at the longest vector length (256 bytes) for `fpa` and at 32 bytes for `fpb` (ZCR_EL1 is
/// per vCPU); on cortex-a72 V0-V31. FPCR and FPSR too.
fn assert_fp_state_survives_switches(cpu: &str, gic: &str, vl_a: u64, vl_b: u64) {
    let vms = [
        pinned(probe_vm("fpa", 2, "probe.fpcheck=300"), "1:1"),
        pinned(
            probe_vm("fpb", 1, "probe.fpcheck=300 probe.fpcheck_vl=32"),
            "1",
        ),
    ];
    let r = run_vms(&vms, &["--smp", "2", "--cpu", cpu, "--gic", gic], QUICK);
    r.assert_line(&scheduler_line("1"));
    r.assert_contains("bulkhead: fpa: 2 vCPUs on CPUs [1, 1]");
    r.assert_contains("bulkhead: fpb: 1 vCPUs on CPUs [1]");
    let sve = u8::from(vl_a != 16);
    r.assert_line(&format!(
        "fpa: PROBE: fpcheck start rounds=300 sve={sve} vl={vl_a} cpus=2"
    ));
    r.assert_line(&format!(
        "fpb: PROBE: fpcheck start rounds=300 sve={sve} vl={vl_b} cpus=1"
    ));
    for cpu in 0..2 {
        r.assert_line(&format!(
            "fpa: PROBE: fpcheck cpu={cpu} rounds=300 vl={vl_a}"
        ));
        r.assert_line(&format!("fpa: PROBE: PASS fpcheck_cpu{cpu}"));
    }
    r.assert_line(&format!("fpb: PROBE: fpcheck cpu=0 rounds=300 vl={vl_b}"));
    r.assert_line("fpb: PROBE: PASS fpcheck_cpu0");
    r.assert_line("fpa: PROBE: DONE pass=2 fail=0");
    r.assert_line("fpb: PROBE: DONE pass=1 fail=0");
    assert_clean_end(&r);
}

#[test]
fn shared_fp_state_survives_switches() {
    assert_fp_state_survives_switches("cortex-a72", "2", 16, 16);
}

#[test]
fn shared_sve_state_survives_switches_on_max() {
    assert_fp_state_survives_switches("max", "3", 256, 32);
}

/// The probe's normal checks with its two vCPUs on one CPU: CPU_ON of the secondary while
/// the primary spins waiting for it (no WFI, no timer: only the scheduler's slice lets the
/// secondary run), CPU_OFF, AFFINITY_INFO, the timer and abort checks.
#[test]
fn shared_probe_checks_with_two_vcpus_on_one_cpu() {
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "2",
            "--qemu-smp",
            "1",
            "--mem",
            "256M",
        ],
        QUICK,
    );
    r.assert_line(&scheduler_line("0"));
    r.assert_contains("bulkhead: guest: 2 vCPUs on CPUs [0, 0]");
    r.assert_line("PROBE: PASS cpu_on_secondary_round2");
    assert_probe(&r);
    assert_clean_end_one_vm(&r);
}

/// Two vCPUs of one VM on one CPU (`--smp 2 --qemu-smp 1`) wake each other: the probe's IPI
/// ping-pong, where each side waits in WFI for the other's SGI, without and with FP/SIMD in
/// use on both sides, and its virtual-timer wait (a blocked vCPU woken by its own timer).
/// Every ping answered, every deadline met.
fn assert_ipi_ping_pong_on_one_cpu(gic: &str) {
    let r = bench_probe::run_probe_bench(
        gic,
        &["ipi", "ipi_fp", "timer"],
        &["--qemu-smp", "1"],
        QUICK,
    );
    r.assert_line(&scheduler_line("0"));
    r.assert_contains("bulkhead: guest: 2 vCPUs on CPUs [0, 0]");
    r.assert_line("PROBE: bench done");
    r.assert_contains("bulkhead: guest powered off");
    assert_clean_end_one_vm(&r);
}

#[test]
fn shared_ipi_ping_pong_between_two_vcpus_on_one_cpu_gicv3() {
    assert_ipi_ping_pong_on_one_cpu("3");
}

#[test]
fn shared_ipi_ping_pong_between_two_vcpus_on_one_cpu_gicv2() {
    assert_ipi_ping_pong_on_one_cpu("2");
}

/// Two VMs on one CPU ring each other's doorbells (an SPI into the other VM's vGIC) 1000
/// times, each waiting for its answer in WFI: every ring wakes the other VM's blocked vCPU.
fn assert_doorbell_ping_pong_on_one_cpu(gic: &str) {
    let shm = "shm=pingpong@0x7fe00000+0x200000";
    let args = "probe.pingpong_rounds=1000 probe.pingpong_wait=wfi";
    let vms = [
        probe_vm("ping", 1, &format!("probe.pingpong=ping {args}"))
            .replace(",append=", &format!(",{shm}/owner,bell=pong@5,append=")),
        probe_vm("pong", 1, &format!("probe.pingpong=pong {args}"))
            .replace(",append=", &format!(",{shm},bell=ping@6,append=")),
    ];
    let r = run_vms(&vms, &["--smp", "1", "--gic", gic], QUICK);
    r.assert_line(&scheduler_line("0"));
    r.assert_contains("bulkhead: ping: 1 vCPUs on CPUs [0]");
    r.assert_contains("bulkhead: pong: 1 vCPUs on CPUs [0]");
    r.assert_line("ping: PROBE: PASS pingpong_answers_match");
    r.assert_line("pong: PROBE: pingpong pong done rounds=1000");
    r.assert_line("pong: PROBE: PASS pingpong_messages_match");
    r.assert_contains("ping: PROBE: pingpong rounds=1000 ticks=");
    r.assert_contains("ping: PROBE: DONE pass=");
    r.assert_contains("pong: PROBE: DONE pass=");
    assert_clean_end(&r);
}

#[test]
fn shared_doorbell_ping_pong_between_two_vms_on_one_cpu_gicv3() {
    assert_doorbell_ping_pong_on_one_cpu("3");
}

#[test]
fn shared_doorbell_ping_pong_between_two_vms_on_one_cpu_gicv2() {
    assert_doorbell_ping_pong_on_one_cpu("2");
}

/// Console input is an SPI like any other: typed into a 2-vCPU Linux VM whose vCPUs share
/// the machine's one CPU (blocked in WFI while the shell waits), it wakes the VM and reaches
/// the shell.
#[test]
fn shared_console_input_wakes_linux_on_a_shared_cpu() {
    let r = run_typing(
        &[
            "--smp",
            "2",
            "--qemu-smp",
            "1",
            "--append",
            "console=ttyAMA0",
        ],
        &ASK_THEN_POWER_OFF,
        LINUX,
    );
    r.assert_line(&scheduler_line("0"));
    r.assert_contains("bulkhead: guest: 2 vCPUs on CPUs [0, 0]");
    r.assert_contains("typed-42-ok cpus=0-1\n");
    r.assert_contains("bulkhead: guest powered off");
    assert_clean_end_one_vm(&r);
}
