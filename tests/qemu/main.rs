//! QEMU boot tests: every test boots the real image under QEMU through `scripts/run.sh` (the
//! README's run command), with a timeout, and checks what was printed and how QEMU ended.
//! On failure the whole console log is shown.
//!
//! `scripts/test.sh` pre-builds the image and the probe guest and passes them in
//! `BULKHEAD_IMAGE` / `BULKHEAD_PROBE`; without them `run.sh` builds (and installs) itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: Option<i32>,
    log: String,
}

impl Run {
    fn assert_exit_ok(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "QEMU did not exit with 0; console:\n{}",
            self.log
        );
    }

    fn assert_line(&self, line: &str) {
        assert!(
            self.log.lines().any(|l| l.trim_end_matches('\r') == line),
            "missing line {line:?}; console:\n{}",
            self.log
        );
    }

    fn assert_contains(&self, text: &str) {
        assert!(
            self.log.contains(text),
            "missing {text:?}; console:\n{}",
            self.log
        );
    }

    fn assert_lacks(&self, text: &str) {
        assert!(
            !self.log.contains(text),
            "unexpected {text:?}; console:\n{}",
            self.log
        );
    }

    fn count(&self, text: &str) -> usize {
        self.log.matches(text).count()
    }
}

/// Runs `scripts/run.sh ARGS` with stdin closed, killing it after `timeout`.
fn run(args: &[&str], timeout: Duration) -> Run {
    run_typing(args, &[], timeout)
}

/// What to type on the console: once `after` was printed, send `text`.
struct Keys<'a> {
    after: &'a str,
    text: &'a str,
    /// All at once (a paste) rather than one byte each 20 ms (a person typing).
    paste: bool,
}

/// Typed into a Linux guest's shell once it is up: a question only the shell can answer
/// (`typed-42-ok`, with the CPUs online), then, once the answer is out (typed ahead, its echo
/// could land inside it), `poweroff -f`.
const ASK_THEN_POWER_OFF: [Keys<'static>; 2] = [
    Keys {
        after: "powers the guest off.",
        text: "echo typed-$((6*7))-ok cpus=$(cat /sys/devices/system/cpu/online)\n",
        paste: false,
    },
    Keys {
        after: "typed-42-ok",
        text: "poweroff -f\n",
        paste: false,
    },
];

/// Runs `scripts/run.sh ARGS`, killing it after `timeout`, typing `keys` in order on its
/// console (stdin is closed when there is nothing to type).
fn run_typing(args: &[&str], keys: &[Keys<'_>], timeout: Duration) -> Run {
    run_typing_env(args, &[], keys, timeout)
}

/// [`run_typing`] with extra environment variables for `scripts/run.sh`.
fn run_typing_env(
    args: &[&str],
    env: &[(&str, &str)],
    keys: &[Keys<'_>],
    timeout: Duration,
) -> Run {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    // `timeout` (coreutils) runs QEMU in its own process group and kills that group, and
    // only that group, when time is up.
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=10")
        .arg(format!("{}", timeout.as_secs()))
        .arg(repo().join("scripts/run.sh"));
    // A card boots its own image.
    if let Ok(image) = std::env::var("BULKHEAD_IMAGE")
        && !args.contains(&"--sdcard")
    {
        cmd.args(["--image", &image]);
    }
    let stdin = if !keys.is_empty() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot start scripts/run.sh");
    let mut input = child.stdin.take();
    let collect = |mut from: Box<dyn Read + Send>| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (seen, thread)
    };
    let (out, out_thread) = collect(Box::new(child.stdout.take().unwrap()));
    let (err, err_thread) = collect(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let mut typed = 0;
    let code = loop {
        // Look at the output in its own statement: the reader thread must never wait for the
        // lock while we type (a full pipe would stall QEMU).
        let ready = keys.get(typed).filter(|next| {
            let seen = out.lock().unwrap();
            String::from_utf8_lossy(&seen).contains(next.after)
        });
        if let (Some(next), Some(stdin)) = (ready, input.as_mut()) {
            // A person reacts after a moment; the shell gets to print its prompt (busybox
            // also queries the cursor position there) before the keys arrive.
            std::thread::sleep(Duration::from_secs(2));
            if next.paste {
                let _ = stdin.write_all(next.text.as_bytes());
                let _ = stdin.flush();
            } else {
                for b in next.text.bytes() {
                    let _ = stdin.write_all(&[b]);
                    let _ = stdin.flush();
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            typed += 1;
        }
        if let Some(status) = child.try_wait().unwrap() {
            // `timeout` exits with 124 (or 137 after SIGKILL) when it had to stop the run.
            break status.code().filter(|c| *c != 124 && *c != 137);
        }
        if start.elapsed() > timeout + Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(input);
    let _ = out_thread.join();
    let _ = err_thread.join();
    // Serial consoles end lines with "\r\n"; compare on "\n".
    let mut log = String::from_utf8_lossy(&out.lock().unwrap()).replace('\r', "");
    log.push_str("\n--- stderr ---\n");
    log.push_str(&String::from_utf8_lossy(&err.lock().unwrap()));
    if code.is_none() {
        log.push_str(&format!("\n--- killed after {timeout:?} ---\n"));
    }
    Run { code, log }
}

/// Runs `scripts/SCRIPT` and returns the last line it printed (the path of what it built).
fn built_by(script: &str) -> String {
    let out = Command::new(repo().join("scripts").join(script))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

fn probe() -> String {
    std::env::var("BULKHEAD_PROBE").unwrap_or_else(|_| built_by("build-guests.sh"))
}

const QUICK: Duration = Duration::from_secs(120);
const LINUX: Duration = Duration::from_secs(300);

// ---- the hypervisor itself -------------------------------------------------------

#[test]
fn no_guest_virt_gicv3_4_cpus() {
    let r = run(&["--no-guest", "--gic", "3", "--smp", "4"], QUICK);
    r.assert_line("bulkhead: ready: cpus=4/4 el=2 mmu=runtime gic=v3 board=virt");
    // The banner's version is the crate's (Cargo.toml), so a user can tell what they run.
    r.assert_line(&format!(
        "bulkhead: Bulkhead {} starting on virt (EL2)",
        env!("CARGO_PKG_VERSION")
    ));
    r.assert_exit_ok();
}

#[test]
fn no_guest_virt_gicv2_4_cpus() {
    let r = run(&["--no-guest", "--gic", "2", "--smp", "4"], QUICK);
    r.assert_line("bulkhead: ready: cpus=4/4 el=2 mmu=runtime gic=v2 board=virt");
    r.assert_exit_ok();
}

#[test]
fn no_guest_virt_1_cpu() {
    let r = run(&["--no-guest", "--smp", "1"], QUICK);
    r.assert_line("bulkhead: ready: cpus=1/1 el=2 mmu=runtime gic=v3 board=virt");
    r.assert_exit_ok();
}

#[test]
fn no_guest_raspi4b() {
    let r = run(&["--no-guest", "--board", "rpi4"], Duration::from_secs(180));
    r.assert_line("bulkhead: ready: cpus=4/4 el=2 mmu=runtime gic=v2 board=rpi4");
    r.assert_exit_ok();
}

#[test]
fn hotplug_cycles_every_secondary_10_times() {
    let r = run(
        &["--no-guest", "--hyp-append", "bulkhead.hotplug_test=10"],
        QUICK,
    );
    r.assert_line("bulkhead: hotplug: 10 cycles of 3 secondary cpus off/on ok");
    r.assert_line("bulkhead: ready: cpus=4/4 el=2 mmu=runtime gic=v3 board=virt");
    r.assert_lacks("per-CPU state lost");
    r.assert_exit_ok();
}

#[test]
fn entered_at_el1_says_so() {
    let r = run(&["--no-guest", "--el1"], QUICK);
    r.assert_contains("bulkhead: error: entered at EL1; Bulkhead must be started at EL2");
    r.assert_lacks("bulkhead: ready");
    r.assert_exit_ok();
}

// ---- guests ----------------------------------------------------------------------

/// Boots the Debian guest in smoke-test mode with extra `run.sh` arguments.
fn run_smoke(args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--append", "console=ttyAMA0 bulkhead.test=smoke"]);
    run(&all, LINUX)
}

fn assert_smoke(r: &Run, cpus: usize) {
    r.assert_contains("BULKHEAD-TEST: init reached");
    r.assert_contains(&format!("BULKHEAD-TEST: cpus online={cpus} "));
    for cpu in 0..cpus {
        r.assert_contains(&format!("BULKHEAD-TEST: work ran on cpu {cpu}\n"));
    }
    r.assert_contains("BULKHEAD-TEST: timer ticks on all cpus");
    r.assert_contains("BULKHEAD-TEST: smoke passed");
    r.assert_lacks("BULKHEAD-TEST: FAIL");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_lacks("bulkhead: FATAL");
    r.assert_lacks("PANIC");
    r.assert_exit_ok();
}

#[test]
fn linux_smp4_gicv3() {
    let r = run_smoke(&["--gic", "3", "--smp", "4"]);
    assert_smoke(&r, 4);
}

#[test]
fn linux_smp4_gicv2() {
    let r = run_smoke(&["--gic", "2", "--smp", "4"]);
    assert_smoke(&r, 4);
}

#[test]
fn linux_console_input_reaches_the_shell() {
    let r = run_typing(
        &["--smp", "2", "--append", "console=ttyAMA0"],
        &[
            Keys {
                after: "powers the guest off.",
                text: "echo typed-$((6*7))-ok\n",
                paste: false,
            },
            // Only once the answer is out: typed ahead, its echo could land inside it.
            Keys {
                after: "typed-42-ok",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    // The shell computed it, so the bytes went host UART -> Bulkhead -> guest PL011 -> sh.
    r.assert_contains("typed-42-ok");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

#[test]
fn linux_on_raspi4b_sees_a_virt_machine() {
    let r = run_smoke(&["--board", "rpi4", "--mem", "256M"]);
    r.assert_contains(&format!(
        "bulkhead: Bulkhead {} starting on rpi4 (EL2)",
        env!("CARGO_PKG_VERSION")
    ));
    assert_smoke(&r, 4);
}

/// Boots the Debian guest with `args`, and once its shell answered pastes (all at once) a
/// 300-character line whose length the shell reports as `N42=<count>`, then powers it off.
fn paste_300_bytes(args: &[&str]) -> Run {
    let line = "ab".repeat(150);
    // The marker is computed by the shell, so the echoed command line cannot match it.
    let paste = format!("echo {line} | wc -c | sed s/^/N$((6*7))=/\n");
    run_typing(
        args,
        &[
            Keys {
                after: "powers the guest off.",
                text: "echo shell-$((2*3))-up\n",
                paste: false,
            },
            Keys {
                after: "shell-6-up",
                text: &paste,
                paste: true,
            },
            Keys {
                after: "N42=",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    )
}

#[test]
fn linux_console_paste_is_not_lost() {
    // 300 bytes at once overflow every FIFO on the way (host PL011, guest PL011): Bulkhead must
    // hold input back, not drop it, and not storm on the host UART's interrupt. Paste only
    // once the shell answered, so the guest's tty is open.
    let r = paste_300_bytes(&["--smp", "2", "--append", "console=ttyAMA0"]);
    // 300 characters and the newline: every byte arrived.
    r.assert_contains("N42=301\n");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

#[test]
fn linux_1_vcpu() {
    let r = run_smoke(&["--smp", "1"]);
    assert_smoke(&r, 1);
}

#[test]
fn linux_reboots_twice_then_powers_off() {
    let r = run(
        &[
            "--smp",
            "4",
            "--append",
            "console=ttyAMA0 bulkhead.test=reboot mem=511M",
        ],
        LINUX,
    );
    r.assert_contains("BULKHEAD-TEST: boot 1\n");
    r.assert_contains("BULKHEAD-TEST: boot 2\n");
    r.assert_contains("BULKHEAD-TEST: boot 3\n");
    r.assert_contains("BULKHEAD-TEST: reboot cycle done (boots=3)");
    assert_eq!(r.count("bulkhead: guest reset"), 2, "{}", r.log);
    r.assert_contains("bulkhead: guest powered off");
    r.assert_lacks("BULKHEAD-TEST: FAIL");
    r.assert_exit_ok();
}

fn assert_probe(r: &Run) {
    r.assert_contains("PROBE: DONE pass=");
    r.assert_contains(" fail=0\n");
    r.assert_lacks("PROBE: FAIL");
    r.assert_contains("PROBE: PASS abort_load_hole_below_ram");
    r.assert_contains("PROBE: PASS cpu_on_bad_mpidr");
    r.assert_contains("PROBE: PASS secondary_cpu_off_did_not_return_round2");
    r.assert_contains("PROBE: PASS ptimer_istatus_rises");
    r.assert_contains("PROBE: PASS ptimer_tval_write_sets_cval");
    r.assert_contains("PROBE: PASS id_aa64pfr0_el2_hidden");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

#[test]
fn probe_guest_psci_errors_and_aborts() {
    let probe = probe();
    let r = run(&["--kernel", &probe, "--smp", "2", "--mem", "256M"], QUICK);
    assert_probe(&r);
}

#[test]
fn probe_guest_with_2_bit_vmids_and_resets() {
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--append",
            "probe.reboots=3",
            "--hyp-append",
            "bulkhead.vmid_bits=2",
        ],
        QUICK,
    );
    r.assert_contains("bulkhead: VMIDs: 2 bits");
    assert_eq!(r.count("bulkhead: guest reset"), 3, "{}", r.log);
    // Four lives of one VM with 3 usable VMIDs: the fourth needs a rollover.
    r.assert_contains(", 1 VMID rollovers, heap ");
    assert_probe(&r);
}

#[test]
fn image_has_a_linux_arm64_header() {
    let image = std::env::var("BULKHEAD_IMAGE").unwrap_or_else(|_| {
        let out = Command::new(repo().join("scripts/build.sh"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    let bytes = std::fs::read(Path::new(&image)).unwrap();
    assert_eq!(&bytes[0x38..0x3c], b"ARM\x64");
    let text_offset = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    let image_size = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    assert_eq!(text_offset, 0x80000);
    assert!(
        image_size >= bytes.len() as u64,
        "image_size must cover the file and its BSS"
    );
    // Branch instruction at code0.
    assert_eq!(bytes[3] & 0xfc, 0x14);
}

// ---- chaos: guests are hostile ------------------------------------------------------------

/// Chaos runs finish in a few seconds under TCG; a wedged hypervisor (interrupt storm, fault
/// loop) is what this limit catches.
const CHAOS: Duration = Duration::from_secs(45);

/// Boots the probe with `probe.chaos=ops probe.seed=seed [extra]` and checks that the
/// hypervisor survived: the chaos finished, every normal check after it passed, nothing
/// fatal was printed, and the guest powered the machine off.
fn run_chaos(gic: &str, ops: u64, seed: u64, extra: &str) -> Run {
    let probe = probe();
    let append = format!("probe.chaos={ops} probe.seed={seed} {extra}");
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
            append.trim_end(),
        ],
        CHAOS,
    );
    r.assert_contains(&format!(
        "PROBE: chaos start ops={ops} seed={seed:#x} gic=v{gic}"
    ));
    r.assert_lacks("bulkhead: FATAL");
    r.assert_lacks("PANIC");
    r.assert_lacks("PROBE: FATAL");
    assert_probe(&r);
    r.assert_contains("PROBE: PASS chaos_cpu_on_bad_mpidr_invalid_parameters");
    r
}

/// The chaos line names how many operations ran; all of them must have.
fn assert_chaos_done(r: &Run, ops: u64) {
    r.assert_contains(&format!("PROBE: chaos done ops={ops} faults="));
}

// Seed 3 with 20000 operations on GICv3 once wedged Bulkhead in a maintenance-interrupt
// storm (op 7667 made many SPIs active through GICD_ISACTIVER, op 17680 armed CNTP).
#[test]
fn probe_guest_survives_chaos_gicv3() {
    let r = run_chaos("3", 20_000, 3, "");
    assert_chaos_done(&r, 20_000);
}

// Seed 1 with 20000 operations on GICv2 once wedged Bulkhead in a stage-2 fault loop (op
// 19476: an unaligned load from the passed-through GIC CPU interface).
#[test]
fn probe_guest_survives_chaos_gicv2() {
    let r = run_chaos("2", 20_000, 1, "");
    assert_chaos_done(&r, 20_000);
}

/// The single operation of the GICv2 fault loop above: `ldrsw` from GICC + 0xbdf. The
/// alignment fault stage 2 reports must reach the guest, not remap the page forever.
#[test]
fn probe_guest_chaos_unaligned_gicc_load_gicv2() {
    let r = run_chaos("2", 19_477, 1, "probe.chaos_only=19476 probe.chaos_trace=1");
    r.assert_contains("PROBE: chaos op 19476: LoadSignedWord addr=0x8010bdf");
    assert_chaos_done(&r, 1);
}

// ---- guest RAM across resets ------------------------------------------------------------

/// Six lives of one VM with 3 usable VMIDs (so VMIDs roll over): every boot reads back, word for
/// word, the 4 MiB pattern the boot before it wrote, although stage 2 was emptied and the
/// VMID changed in between.
#[test]
fn probe_guest_ram_reads_back_across_resets_and_vmid_rollover() {
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--append",
            "probe.reboots=5 probe.memcheck=4",
            "--hyp-append",
            "bulkhead.vmid_bits=2",
        ],
        QUICK,
    );
    r.assert_line("PROBE: memcheck boot=1 verified=0");
    for boot in 2..=6 {
        r.assert_line(&format!("PROBE: memcheck boot={boot} verified=1024"));
    }
    assert_eq!(r.count("PROBE: memcheck boot="), 6, "{}", r.log);
    r.assert_contains(" VMID rollovers, heap ");
    r.assert_lacks(", 0 VMID rollovers");
    assert_probe(&r);
}

// ---- several VMs (Xen dom0less) -------------------------------------------------------------

/// A `--vm` value for a Debian Linux guest in smoke-test mode.
fn linux_vm(name: &str, cpus: usize, mode: &str) -> String {
    format!(
        "name={name},kernel=.cache/kernel/Image,initrd=.cache/initramfs/initrd.gz,cpus={cpus},mem=512M,append=console=ttyAMA0 {mode}"
    )
}

/// A `--vm` value for the probe guest.
fn probe_vm(name: &str, cpus: usize, args: &str) -> String {
    format!(
        "name={name},kernel={},cpus={cpus},mem=128M,append={args}",
        probe()
    )
}

/// Several VMs' lines are held whole; a VM descheduled mid-line for long (2 CPUs run all the
/// test's vCPUs) would see its line shown in two parts. The tests check whole lines, so they
/// give a line 5 s.
const WHOLE_LINES: &str = "bulkhead.console_idle_ms=5000";

fn run_vms(vms: &[String], extra: &[&str], timeout: Duration) -> Run {
    let mut args: Vec<&str> = extra.to_vec();
    if !args.contains(&"--hyp-append") {
        args.extend(["--hyp-append", WHOLE_LINES]);
    }
    for vm in vms {
        args.extend(["--vm", vm]);
    }
    run(&args, timeout)
}

/// The smoke checks of one Linux VM, on its own prefixed lines.
fn assert_vm_smoke(r: &Run, name: &str, cpus: usize) {
    r.assert_contains(&format!("{name}: [")); // kernel log lines carry the prefix
    let online = if cpus == 1 {
        String::from("0")
    } else {
        format!("0-{}", cpus - 1)
    };
    r.assert_line(&format!(
        "{name}: BULKHEAD-TEST: cpus online={cpus} ({online})"
    ));
    for cpu in 0..cpus {
        r.assert_line(&format!("{name}: BULKHEAD-TEST: work ran on cpu {cpu}"));
    }
    r.assert_line(&format!("{name}: BULKHEAD-TEST: timer ticks on all cpus"));
    r.assert_line(&format!("{name}: BULKHEAD-TEST: smoke passed"));
    r.assert_contains(&format!("bulkhead: {name} powered off"));
}

/// No line mixes two VMs or a VM and the hypervisor: every line is one source's.
fn assert_lines_have_one_source(r: &Run, names: &[&str]) {
    let console = r.log.split("\n--- stderr ---").next().unwrap_or("");
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with("+ ") || line.starts_with("assets:") {
            continue;
        }
        let own = line.starts_with("bulkhead: ")
            || names.iter().any(|n| line.starts_with(&format!("{n}: ")));
        assert!(own, "a line of no single source: {line:?}\n{}", r.log);
        let sources = names
            .iter()
            .filter(|n| line.contains(&format!("{n}: BULKHEAD-TEST")))
            .count();
        assert!(sources <= 1, "two VMs in one line: {line:?}");
    }
}

fn assert_two_linux_vms(gic: &str) {
    let vms = [
        linux_vm("domU1", 2, "bulkhead.test=smoke"),
        linux_vm("domU2", 2, "bulkhead.test=smoke"),
    ];
    let r = run_vms(&vms, &["--smp", "4", "--gic", gic], LINUX);
    r.assert_contains("bulkhead: domU1: 2 vCPUs on CPUs [0, 1]");
    r.assert_contains("bulkhead: domU2: 2 vCPUs on CPUs [2, 3]");
    assert_vm_smoke(&r, "domU1", 2);
    assert_vm_smoke(&r, "domU2", 2);
    assert_lines_have_one_source(&r, &["domU1", "domU2"]);
    r.assert_contains("bulkhead: every VM is off; powering off");
    r.assert_lacks("BULKHEAD-TEST: FAIL");
    r.assert_lacks("PANIC");
    r.assert_exit_ok();
}

#[test]
fn dom0less_two_linux_vms_gicv3() {
    assert_two_linux_vms("3");
}

#[test]
fn dom0less_two_linux_vms_gicv2() {
    assert_two_linux_vms("2");
}

#[test]
fn dom0less_three_vms_linux_linux_probe() {
    let vms = [
        linux_vm("linux2", 2, "bulkhead.test=smoke"),
        linux_vm("linux1", 1, "bulkhead.test=smoke"),
        probe_vm("probe", 1, "probe.memcheck=4"),
    ];
    let r = run_vms(&vms, &["--smp", "4"], LINUX);
    assert_vm_smoke(&r, "linux2", 2);
    assert_vm_smoke(&r, "linux1", 1);
    r.assert_contains("probe: PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    r.assert_contains("bulkhead: probe powered off");
    assert_lines_have_one_source(&r, &["linux2", "linux1", "probe"]);
    r.assert_exit_ok();
}

#[test]
fn dom0less_one_vm_resets_while_another_runs() {
    let vms = [
        linux_vm("linux", 2, "bulkhead.test=smoke"),
        probe_vm("resetter", 1, "probe.reboots=3 probe.memcheck=2"),
    ];
    let r = run_vms(&vms, &["--smp", "4"], LINUX);
    assert_eq!(r.count("bulkhead: resetter reset"), 3, "{}", r.log);
    assert_eq!(r.count("bulkhead: linux reset"), 0, "{}", r.log);
    r.assert_line("resetter: PROBE: memcheck boot=4 verified=512");
    r.assert_contains("resetter: PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    assert_vm_smoke(&r, "linux", 2);
    r.assert_exit_ok();
}

#[test]
fn dom0less_a_bad_vm_is_refused_and_the_others_run() {
    let probe = probe();
    let vms = [
        probe_vm("good", 1, ""),
        format!("name=bad,kernel={probe},cpus=9,mem=64M"),
        probe_vm("alsogood", 1, ""),
    ];
    let r = run_vms(&vms, &["--smp", "2"], QUICK);
    r.assert_contains("bulkhead: error: VM refused: bad: cpus: ");
    r.assert_contains("good: PROBE: DONE pass=");
    r.assert_contains("alsogood: PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    r.assert_lacks("bad powered off");
    r.assert_exit_ok();
}

/// Four VMs, 7 usable VMIDs, each VM resetting itself ten times (every life takes a fresh
/// VMID): VMIDs roll over while the other VMs' vCPUs run, and every guest reads back after
/// every reset what it wrote before it — a TLB entry of another VM or of an older VMID
/// generation would show up as wrong data.
#[test]
fn dom0less_vmid_rollover_under_four_resetting_vms() {
    let vms: Vec<String> = (0..4)
        .map(|i| probe_vm(&format!("vm{i}"), 1, "probe.reboots=10 probe.memcheck=4"))
        .collect();
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
    for i in 0..4 {
        assert_eq!(r.count(&format!("bulkhead: vm{i} reset")), 10, "{}", r.log);
        r.assert_line(&format!("vm{i}: PROBE: memcheck boot=11 verified=1024"));
        r.assert_contains(&format!("vm{i}: PROBE: DONE pass="));
    }
    r.assert_lacks("PROBE: FAIL");
    r.assert_lacks(", 0 VMID rollovers");
    let rollovers: Vec<&str> = r
        .log
        .lines()
        .filter(|l| l.contains("powered off") && l.contains("VMID rollovers"))
        .collect();
    eprintln!("rollover lines: {rollovers:#?}");
    r.assert_exit_ok();
}

#[test]
fn dom0less_chaos_probe_next_to_linux() {
    let vms = [
        linux_vm("linux", 2, "bulkhead.test=smoke"),
        probe_vm("chaos", 1, "probe.chaos=20000 probe.seed=7"),
    ];
    let r = run_vms(&vms, &["--smp", "4"], LINUX);
    r.assert_contains("chaos: PROBE: chaos done ops=20000");
    r.assert_contains("chaos: PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    assert_vm_smoke(&r, "linux", 2);
    r.assert_lacks("bulkhead: FATAL");
    r.assert_exit_ok();
}

/// EL2 memory is constant across a VM's lives: after the first reset every restart finds the
/// hypervisor heap exactly as full as before.
#[test]
fn dom0less_heap_is_constant_across_100_resets() {
    let vms = [probe_vm("looper", 1, "probe.reboots=100")];
    // 100 restarts within seconds: far over the default restart limit.
    let hyp = format!("{WHOLE_LINES} bulkhead.reset_limit=off");
    let r = run_vms(&vms, &["--smp", "2", "--hyp-append", &hyp], LINUX);
    let heap: Vec<&str> = r
        .log
        .lines()
        .filter_map(|l| l.split("heap ").nth(1))
        .filter(|rest| rest.contains("bytes in use"))
        .collect();
    assert_eq!(heap.len(), 100, "{}", r.log);
    assert!(
        heap.iter().all(|h| *h == heap[0]),
        "heap use changed: {heap:?}"
    );
    // One VM: its console passes through unprefixed.
    r.assert_contains("PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    r.assert_exit_ok();
}

/// Console input goes to one VM at a time; Ctrl-A three times moves it to the next.
#[test]
fn dom0less_console_focus_switching() {
    let vms = [linux_vm("domU1", 1, ""), linux_vm("domU2", 1, "")];
    let mut args: Vec<&str> = vec!["--smp", "2", "--hyp-append", WHOLE_LINES];
    for vm in &vms {
        args.extend(["--vm", vm]);
    }
    let r = run_typing(
        &args,
        &[
            // Both shells up before anything is typed (input to a VM whose console is not
            // open yet would be dropped by its tty).
            Keys {
                after: "domU1: A busybox shell",
                text: "",
                paste: false,
            },
            Keys {
                after: "domU2: A busybox shell",
                text: "echo first-$((6*7))\n",
                paste: false,
            },
            Keys {
                after: "first-42",
                text: "\x01\x01\x01",
                paste: false,
            },
            Keys {
                after: "bulkhead: console input to domU2",
                text: "echo second-$((7*7))\n",
                paste: false,
            },
            // Not typed ahead: the tty would echo it into the middle of the output.
            Keys {
                after: "second-49",
                text: "poweroff -f\n",
                paste: false,
            },
            Keys {
                after: "bulkhead: domU2 powered off",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    r.assert_line("domU1: first-42");
    r.assert_contains("domU2: second-49");
    r.assert_lacks("domU2: first-42");
    r.assert_contains("bulkhead: domU1 powered off");
    r.assert_exit_ok();
}

/// Xen's own QEMU command line boots Bulkhead: a dom0less DTB made the way Xen users make it
/// (QEMU's dumped DTB plus `xen,domain` nodes, compiled with dtc) given with `-dtb`, the files
/// placed by QEMU's generic loader. No run.sh.
#[test]
fn dom0less_plain_xen_style_qemu_command_line() {
    let image = std::env::var("BULKHEAD_IMAGE").unwrap_or_else(|_| {
        let out = Command::new(repo().join("scripts/build.sh"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    let probe = probe();
    let dir = std::env::temp_dir().join(format!("bulkhead-xen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let qemu_dtb = dir.join("qemu.dtb");
    let machine = "virt,virtualization=on,gic-version=3";
    let status = Command::new("qemu-system-aarch64")
        .args(["-M", &format!("{machine},dumpdtb={}", qemu_dtb.display())])
        .args([
            "-cpu",
            "cortex-a72",
            "-smp",
            "2",
            "-m",
            "1024M",
            "-display",
            "none",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let dts = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(&qemu_dtb)
        .output()
        .unwrap();
    let size = std::fs::metadata(&probe).unwrap().len();
    let mut source = String::from_utf8(dts.stdout).unwrap();
    for (i, addr) in [(1, 0x5000_0000u64), (2, 0x5100_0000)] {
        source.push_str(&format!(
            "/ {{ chosen {{ domU{i} {{ compatible = \"xen,domain\"; #address-cells = <1>; #size-cells = <1>;
               memory = <0 0x10000>; cpus = <1>; vpl011;
               module@{addr:x} {{ compatible = \"multiboot,kernel\", \"multiboot,module\";
                   reg = <{addr:#x} {size:#x}>; bootargs = \"probe.memcheck=2\"; }}; }}; }}; }};\n"
        ));
    }
    let dts_path = dir.join("dom0less.dts");
    let dtb_path = dir.join("dom0less.dtb");
    std::fs::write(&dts_path, source).unwrap();
    let status = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(&dtb_path)
        .arg(&dts_path)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("timeout")
        .args(["--kill-after=10", "120", "qemu-system-aarch64"])
        .args([
            "-M",
            machine,
            "-cpu",
            "cortex-a72",
            "-smp",
            "2",
            "-m",
            "1024M",
        ])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-dtb")
        .arg(&dtb_path)
        .args([
            "-device",
            &format!("loader,file={probe},addr=0x50000000,force-raw=on"),
        ])
        .args([
            "-device",
            &format!("loader,file={probe},addr=0x51000000,force-raw=on"),
        ])
        .args(["-kernel", &image, "-append", WHOLE_LINES])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let r = Run {
        code: out.status.code(),
        log: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    r.assert_contains("bulkhead: domU1: 1 vCPUs");
    r.assert_contains("domU1: PROBE: DONE pass=");
    r.assert_contains("domU2: PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    r.assert_contains("bulkhead: every VM is off; powering off");
    r.assert_exit_ok();
}

// ---- Raspberry Pi 4 SD card: the card's own files, booted as its firmware would -------------

/// Runs `scripts/mkimage-rpi4.sh ARGS -o target/test-sdcard/NAME.img` (with the pre-built image
/// when `BULKHEAD_IMAGE` is set) and returns the card's path.
fn make_sdcard(name: &str, args: &[&str]) -> PathBuf {
    let out = repo()
        .join("target/test-sdcard")
        .join(format!("{name}.img"));
    let mut cmd = Command::new(repo().join("scripts/mkimage-rpi4.sh"));
    if let Ok(image) = std::env::var("BULKHEAD_IMAGE") {
        cmd.args(["--image", &image]);
    }
    let made = cmd.args(args).arg("-o").arg(&out).output().unwrap();
    assert!(
        made.status.success(),
        "mkimage-rpi4.sh failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    out
}

/// The card `scripts/mkimage-rpi4.sh` makes with no options, made once per test run.
fn default_sdcard() -> &'static Path {
    static CARD: OnceLock<PathBuf> = OnceLock::new();
    CARD.get_or_init(|| make_sdcard("default", &[]))
}

/// A file from the card's boot partition (the FAT at 1 MiB), read with mtools.
fn card_file(card: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@1048576", card.display()))
        .arg(format!("::/{name}"))
        .output()
        .expect("mtype (mtools)");
    assert!(
        out.status.success(),
        "{name} not on the card: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn rpi4_sdcard_has_partition_table_firmware_config_cmdline_image_and_bundle() {
    let card = default_sdcard();
    let bytes = std::fs::read(card).unwrap();
    // MBR: signature, one bootable FAT32-LBA partition at 1 MiB that fits in the file.
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    let entry = &bytes[0x1be..0x1ce];
    assert_eq!(entry[0], 0x80, "bootable");
    assert_eq!(entry[4], 0x0c, "FAT32 (LBA)");
    let first = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(entry[12..16].try_into().unwrap()) as usize;
    assert_eq!(first, 2048);
    assert!((first + count) * 512 <= bytes.len());
    assert!(
        bytes.len().is_power_of_two(),
        "QEMU's -drive if=sd wants it"
    );
    assert!(
        bytes[0x1ce..0x1fe].iter().all(|&b| b == 0),
        "one partition only"
    );
    // The FAT's boot sector says FAT32.
    assert_eq!(&bytes[first * 512 + 0x52..first * 512 + 0x5a], b"FAT32   ");

    for firmware in ["start4.elf", "fixup4.dat", "bootcode.bin"] {
        assert!(card_file(card, firmware).len() > 1000, "{firmware}");
    }
    let config = String::from_utf8(card_file(card, "config.txt")).unwrap();
    let settings: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for line in [
        "arm_64bit=1",
        "enable_uart=1",
        "enable_gic=1",
        "kernel=bulkhead.bin",
        "initramfs bundle.bin followkernel",
    ] {
        assert!(
            settings.contains(&line),
            "config.txt lacks {line:?}:\n{config}"
        );
    }
    assert!(
        !settings.iter().any(|l| l.starts_with("armstub")),
        "the firmware's own armstub enters at EL2"
    );
    assert!(
        !settings.iter().any(|l| l.starts_with("device_tree")),
        "the firmware picks the board's DTB"
    );
    assert_eq!(card_file(card, "cmdline.txt"), b"loglevel=info\n");

    let image = card_file(card, "bulkhead.bin");
    assert_eq!(&image[0x38..0x3c], b"ARM\x64");
    if let Ok(built) = std::env::var("BULKHEAD_IMAGE") {
        assert!(
            std::fs::read(built).unwrap() == image,
            "the card holds another image"
        );
    }
    // The DTBs the firmware loads on a Pi 4 B, a Pi 400 and a CM4: each names the mini UART
    // (on GPIO 14/15) as the console.
    for (name, model) in [
        ("bcm2711-rpi-4-b.dtb", "raspberrypi,4-model-b"),
        ("bcm2711-rpi-400.dtb", "raspberrypi,400"),
        ("bcm2711-rpi-cm4.dtb", "raspberrypi,4-compute-module"),
    ] {
        let dtb = card_file(card, name);
        let fdt = bulkhead::dtb::parse(&dtb).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert!(bulkhead::dtb::is_compatible(&root, model), "{name}");
        let console = bulkhead::dtb::console_uart(&fdt).unwrap();
        assert_eq!(console.kind, bulkhead::dtb::UartKind::Bcm2835Aux, "{name}");
        assert_eq!(console.regs.base, 0xfe21_5040, "{name}");
    }

    // The bundle: one VM, 4 vCPUs, 512 MiB, Debian's kernel and the busybox initramfs.
    let file = card_file(card, "bundle.bin");
    let bundle = bulkhead::bundle::Bundle::parse(&file).unwrap();
    assert_eq!(bundle.vms.len(), 1);
    let vm = &bundle.vms[0];
    assert_eq!(vm.vcpus, Some(4));
    assert_eq!(vm.memory_kib, Some(512 * 1024));
    assert_eq!(vm.bootargs, Some("console=ttyAMA0"));
    let span = |s: bulkhead::bundle::Span| &file[s.offset as usize..(s.offset + s.size) as usize];
    let kernel = span(vm.kernel);
    assert_eq!(&kernel[0x38..0x3c], b"ARM\x64", "an arm64 Image");
    assert_eq!(
        &span(vm.ramdisk.unwrap())[..2],
        &[0x1f, 0x8b],
        "a gzip initramfs"
    );
}

#[test]
fn rpi4_sdcard_default_card_gives_a_linux_shell_on_the_mini_uart() {
    let card = default_sdcard().to_str().unwrap().to_string();
    // Typed into QEMU's second serial port: the mini UART. The shell computes the answer, so
    // the bytes went mini UART -> Bulkhead -> guest PL011 -> sh.
    let r = run_typing(&["--sdcard", &card], &ASK_THEN_POWER_OFF, LINUX);
    r.assert_contains(&format!(
        "bulkhead: Bulkhead {} starting on rpi4 (EL2)",
        env!("CARGO_PKG_VERSION")
    ));
    r.assert_contains("bulkhead: guest: 4 vCPUs on CPUs [0, 1, 2, 3], 512 MiB RAM at ");
    r.assert_contains("typed-42-ok cpus=0-3\n");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_contains("bulkhead: halting the board");
    r.assert_lacks("bulkhead: FATAL");
    r.assert_exit_ok();
}

#[test]
fn rpi4_sdcard_linux_smoke_checks_on_the_mini_uart() {
    let card = make_sdcard(
        "smoke",
        &["--guest-append", "console=ttyAMA0 bulkhead.test=smoke"],
    );
    let r = run(&["--sdcard", card.to_str().unwrap()], LINUX);
    r.assert_contains(&format!(
        "bulkhead: Bulkhead {} starting on rpi4 (EL2)",
        env!("CARGO_PKG_VERSION")
    ));
    // Bulkhead found the bundle QEMU put at linux,initrd-start, as the firmware would.
    r.assert_contains("bulkhead: guest: 4 vCPUs on CPUs [0, 1, 2, 3], 512 MiB RAM at ");
    assert_smoke(&r, 4);
    r.assert_contains("bulkhead: halting the board");
}

#[test]
fn rpi4_sdcard_with_a_corrupt_bundle_says_so_and_halts() {
    // A bundle cut short, as a card written incompletely would hold it.
    let dir = repo().join("target/test-sdcard");
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = repo().join("tests/data/bundle-tiny.bin");
    let bytes = std::fs::read(&tiny).unwrap();
    let cut = dir.join("bundle-cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
    let card = make_sdcard("corrupt", &["--bundle", cut.to_str().unwrap()]);
    let r = run(&["--sdcard", card.to_str().unwrap()], QUICK);
    r.assert_contains("bulkhead: error: guest bundle at 0x");
    r.assert_contains(": truncated: module module@2000 ends at byte 8204, only ");
    r.assert_contains("; no guest");
    r.assert_line("bulkhead: error: no VM can start: all 1 configured were refused (see above)");
    r.assert_lacks("bulkhead: ready");
    // The board halts (no semihosting on raspi4b): QEMU ends as on any power-off.
    r.assert_exit_ok();
}

#[test]
fn rpi4_uboot_card_boot_scr_writes_module_nodes_and_boots_linux() {
    // The U-Boot route: the card's u-boot.bin reads boot.scr from the card (QEMU's SD card),
    // which loads Bulkhead, Image and initrd.gz and writes the multiboot module nodes.
    let card = make_sdcard(
        "uboot",
        &[
            "--uboot",
            "--guest-append",
            "console=ttyAMA0 bulkhead.test=smoke",
        ],
    );
    let r = run(&["--sdcard", card.to_str().unwrap()], LINUX);
    r.assert_contains("Found U-Boot script /boot.scr");
    r.assert_contains("Bulkhead: loading the hypervisor and its guest");
    r.assert_contains(&format!(
        "bulkhead: Bulkhead {} starting on rpi4 (EL2)",
        env!("CARGO_PKG_VERSION")
    ));
    r.assert_contains("bulkhead: guest: 4 vCPUs on CPUs [0, 1, 2, 3], 512 MiB RAM at ");
    assert_smoke(&r, 4);
}

#[test]
fn rpi4_sdcard_bundle_with_two_vms_runs_the_first_and_says_so() {
    let dir = repo().join("target/test-sdcard");
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other-kernel");
    std::fs::write(&other, b"never started").unwrap();
    let bundle = dir.join("two-vms.bin");
    let made = Command::new(repo().join("scripts/mkbundle.sh"))
        .args([
            "--append",
            "console=ttyAMA0 bulkhead.test=smoke",
            "--vm",
            "--kernel",
        ])
        .arg(&other)
        .args(["--no-initrd", "--cpus", "1", "-o"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let card = make_sdcard("two-vms", &["--bundle", bundle.to_str().unwrap()]);
    let r = run(&["--sdcard", card.to_str().unwrap()], LINUX);
    r.assert_line(
        "bulkhead: warning: guest bundle holds 2 VMs; Bulkhead runs one: vm0 (the others are ignored)",
    );
    assert_smoke(&r, 4);
}

#[test]
fn rpi4_sdcard_paste_into_the_mini_uart_is_not_lost() {
    // As linux_console_paste_is_not_lost, through the mini UART's 8-byte FIFO: Bulkhead masks
    // its receive interrupt while the guest's FIFO is full, and drops nothing.
    let card = default_sdcard().to_str().unwrap().to_string();
    let r = paste_300_bytes(&["--sdcard", &card]);
    r.assert_contains("N42=301\n");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

// ---- between VMs: static shared memory and doorbells ----------------------------------------

/// The `--vm` values of the probe's ping and pong VMs: one shared region (Xen's static shared
/// memory, host memory allocated by Bulkhead), a doorbell each way.
fn pingpong_vms(rounds: u32) -> [String; 2] {
    let shm = "shm=pingpong@0x7fe00000+0x200000";
    [
        probe_vm(
            "ping",
            1,
            &format!("probe.pingpong=ping probe.pingpong_rounds={rounds}"),
        )
        .replace(",append=", &format!(",{shm}/owner,bell=pong@5,append=")),
        probe_vm(
            "pong",
            1,
            &format!("probe.pingpong=pong probe.pingpong_rounds={rounds}"),
        )
        .replace(",append=", &format!(",{shm},bell=ping@6,append=")),
    ]
}

fn assert_pingpong(gic: &str) {
    let vms = pingpong_vms(1000);
    let r = run_vms(&vms, &["--smp", "2", "--gic", gic], QUICK);
    r.assert_line("ping: PROBE: pingpong region=0x7fe00000+0x200000 id=pingpong ring=0 to=pong receive_spi=6 from=pong");
    r.assert_line("ping: PROBE: PASS pingpong_answers_match");
    r.assert_line("pong: PROBE: pingpong pong done rounds=1000");
    r.assert_line("pong: PROBE: PASS pingpong_messages_match");
    r.assert_contains("ping: PROBE: pingpong rounds=1000 ticks=");
    // Each VM may ring only its own doorbell.
    r.assert_line("ping: PROBE: PASS doorbell_bad_number_refused");
    r.assert_line("pong: PROBE: PASS doorbell_bad_number_refused");
    r.assert_line("ping: PROBE: PASS doorbell_arch_features");
    r.assert_lacks("PROBE: FAIL");
    r.assert_contains("ping: PROBE: DONE pass=");
    r.assert_contains("pong: PROBE: DONE pass=");
    r.assert_exit_ok();
}

#[test]
fn shm_pingpong_1000_round_trips_gicv3() {
    assert_pingpong("3");
}

#[test]
fn shm_pingpong_1000_round_trips_gicv2() {
    assert_pingpong("2");
}

/// A third VM, given neither the region nor a doorbell: the region's IPA is a hole to it (an
/// external abort) and the doorbell call is not supported.
#[test]
fn shm_region_and_doorbells_are_only_for_the_vms_given_them() {
    let [ping, pong] = pingpong_vms(10);
    let vms = [
        ping,
        pong,
        probe_vm("outsider", 1, "probe.touch_ipa=0x7fe00000"),
    ];
    let r = run_vms(&vms, &["--smp", "3"], QUICK);
    r.assert_line("outsider: PROBE: PASS touch_ipa_aborts");
    r.assert_line("outsider: PROBE: PASS doorbell_not_supported_without_config");
    r.assert_line("outsider: PROBE: PASS doorbell_arch_features_without_config");
    r.assert_line("ping: PROBE: PASS pingpong_answers_match");
    r.assert_lacks("PROBE: FAIL");
    r.assert_exit_ok();
}

/// A Linux VM finds the region where Xen would describe it (`/reserved-memory`, compatible
/// `xen,shared-memory-v1`) and reads and writes it through `/dev/mem` (it lies outside the
/// guest's RAM, so Debian's STRICT_DEVMEM lets busybox `devmem` map it).
#[test]
fn shm_linux_sees_reserved_memory_and_uses_it_via_dev_mem() {
    let linux =
        linux_vm("linux", 1, "").replace(",append=", ",shm=pingpong@0x7fe00000+0x200000,append=");
    let vms = [linux];
    let mut args: Vec<&str> = vec!["--smp", "2", "--hyp-append", WHOLE_LINES];
    for vm in &vms {
        args.extend(["--vm", vm]);
    }
    let r = run_typing(
        &args,
        &[
            Keys {
                after: "A busybox shell",
                text: "cat /proc/device-tree/reserved-memory/xen-shmem@7fe00000/compatible; echo; \
                       devmem 0x7fe00000 32 0xcafe1234; devmem 0x7fe00ffc 32 0x5eed; \
                       echo got-$(devmem 0x7fe00000 32)-$(devmem 0x7fe00ffc 32)\n",
                paste: false,
            },
            // "got-0x" is in the output only (the echoed command has "got-$(").
            Keys {
                after: "got-0x",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    r.assert_contains("xen,shared-memory-v1");
    r.assert_contains("got-0xCAFE1234-0x00005EED");
    r.assert_exit_ok();
}

// ---- CPU models ------------------------------------------------------------------
// Debian's kernel on every CPU model QEMU offers: the guest sees a feature that works or none
// (the ID registers are sanitised by `hyp::cpu_features`), so it boots to its checks and never
// touches a trapped feature (Bulkhead would log the trapped access).

/// The smoke boot on QEMU CPU `model`, GIC `gic`, 2 vCPUs; returns the run for more checks.
fn assert_cpu_model_boots(model: &str, gic: &str) -> Run {
    let r = run_smoke(&["--cpu", model, "--gic", gic, "--smp", "2"]);
    assert_smoke(&r, 2);
    r.assert_lacks("trapped MRS");
    r.assert_lacks("trapped MSR");
    r.assert_lacks("SANITY CHECK");
    r.assert_lacks("Memory Tagging");
    r.assert_lacks("Scalable Matrix Extension");
    r.assert_lacks("Activity Monitors");
    r
}

#[test]
fn linux_cpu_cortex_a53_gicv3() {
    assert_cpu_model_boots("cortex-a53", "3");
}

#[test]
fn linux_cpu_cortex_a57_gicv3() {
    assert_cpu_model_boots("cortex-a57", "3");
}

#[test]
fn linux_cpu_cortex_a72_gicv3() {
    assert_cpu_model_boots("cortex-a72", "3");
}

#[test]
fn linux_cpu_cortex_a76_gicv3() {
    assert_cpu_model_boots("cortex-a76", "3");
}

#[test]
fn linux_cpu_neoverse_n1_gicv3() {
    assert_cpu_model_boots("neoverse-n1", "3");
}

#[test]
fn linux_cpu_neoverse_v1_gicv3() {
    let r = assert_cpu_model_boots("neoverse-v1", "3");
    r.assert_contains("CPU features: detected: Scalable Vector Extension");
}

#[test]
fn linux_cpu_max_gicv3() {
    let r = assert_cpu_model_boots("max", "3");
    // Exposed and working: SVE (CPTR_EL2.TZ = 0), pointer authentication (HCR_EL2.API/APK).
    r.assert_contains("CPU features: detected: Scalable Vector Extension");
    r.assert_contains("CPU features: detected: Address authentication");
    r.assert_contains("CPU features: detected: Generic authentication");
    r.assert_contains("CPU features: detected: GIC system register CPU interface");
}

#[test]
fn linux_cpu_max_gicv2() {
    let r = assert_cpu_model_boots("max", "2");
    r.assert_contains("CPU features: detected: Scalable Vector Extension");
    r.assert_lacks("GIC system register CPU interface");
}

/// The probe's CPU checks (no EL2, the guest's GIC, no PMU and PMU accesses UNDEFINED,
/// read-only ID registers) on the richest CPU, with each GIC.
fn assert_probe_cpu_features_on_max(gic: &str) {
    let probe = probe();
    let r = run(
        &[
            "--kernel", &probe, "--cpu", "max", "--gic", gic, "--smp", "2", "--mem", "256M",
        ],
        QUICK,
    );
    assert_probe(&r);
    for check in [
        "id_aa64pfr0_gic_is_the_guests",
        "id_aa64dfr0_pmu_hidden",
        "id_reserved_reads_zero",
        "pmcr_el0_read_undefined",
        "id_aa64pfr0_write_undefined",
    ] {
        r.assert_contains(&format!("PROBE: PASS {check}\n"));
    }
}

#[test]
fn probe_guest_cpu_features_on_max_gicv3() {
    assert_probe_cpu_features_on_max("3");
}

#[test]
fn probe_guest_cpu_features_on_max_gicv2() {
    assert_probe_cpu_features_on_max("2");
}

// Topic files: each is a child module, so it reaches the harness above through `super::*`.
mod bench_probe;
mod console_clock;
mod fidelity;
mod guest_formats;
mod lifecycle;
mod run_script;
mod shared_cpus;
mod stage2_fwb;
