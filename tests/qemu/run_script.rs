//! `scripts/run.sh` as a user meets it (options checked before anything runs, relative paths,
//! a pasteable command line, real usage text), Bulkhead's bootarg checks, and the debug image.

use super::*;

/// Runs `scripts/run.sh ARGS` from `dir` with stdin closed (at most `timeout`); returns how it
/// ended and how long it took. No `--image` is added.
fn run_sh_in(dir: &Path, args: &[&str], timeout: Duration) -> (Run, Duration) {
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(timeout.as_secs().to_string())
        .arg(repo().join("scripts/run.sh"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("cannot start scripts/run.sh");
    let mut log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    log.push_str("\n--- stderr ---\n");
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    let run = Run {
        code: out.status.code().filter(|c| *c != 124 && *c != 137),
        log,
    };
    (run, start.elapsed())
}

/// A scratch directory whose path has a space and a comma in it (QEMU option values need
/// their commas doubled), emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = repo()
        .join("target/run-script")
        .join(format!("{name} dir,1"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_sh_refuses_bad_options_before_anything_runs() {
    let probe = probe();
    let vm = |extra: &str| format!("name=a,kernel={probe}{extra}");
    let (vm_mem, vm_cpus) = (vm(",mem=1.5G"), vm(",cpus=two"));
    let cases: &[(&[&str], &str)] = &[
        (
            &["--mem", "1.5G"],
            "run.sh: --mem 1.5G: not a size like 512M",
        ),
        (
            &["--mem", "lots"],
            "run.sh: --mem lots: not a size like 512M",
        ),
        (
            &["--mem", "1000k"],
            "run.sh: --mem 1000k: not a whole number of MiB",
        ),
        (&["--mem", "0"], "run.sh: --mem 0: no memory"),
        (
            &["--no-guest", "--kernel"],
            "run.sh: --kernel needs a value",
        ),
        (&["--smp", "two"], "run.sh: --smp two: not a whole number"),
        (
            &["--smp", "0"],
            "run.sh: --smp 0: not a whole number of 1 or more",
        ),
        (&["--gic", "4"], "run.sh: --gic 4: not 2 or 3"),
        (&["--gic", "2", "--smp", "9"], "GICv2 serves at most 8 CPUs"),
        (&["--board", "pi5"], "run.sh: --board pi5: not virt or rpi4"),
        (
            &["--board", "rpi4", "--gic", "3"],
            "run.sh: --gic does not apply to --board rpi4: the Pi 4 has a GIC-400 (GICv2)",
        ),
        (
            &["--board", "rpi4", "--smp", "2"],
            "run.sh: --smp does not apply to --board rpi4",
        ),
        (
            &["--board", "rpi4", "--cpu", "cortex-a53"],
            "run.sh: --cpu does not apply to --board rpi4",
        ),
        (
            &["--board", "rpi4", "--vm", &vm("")],
            "run.sh: --vm needs --board virt",
        ),
        (
            &["--cpu", "cortex-z99"],
            "run.sh: --cpu cortex-z99: QEMU has no such CPU",
        ),
        (&["--cpu", "a72"], "run.sh: --cpu a72: QEMU has no such CPU"),
        (
            &["--kernel", "no-such-Image"],
            "run.sh: --kernel no-such-Image: no such file",
        ),
        (
            &["--initrd", "/no/such.cpio"],
            "run.sh: --initrd /no/such.cpio: no such file",
        ),
        (
            &["--image", "no-such.bin"],
            "run.sh: --image no-such.bin: no such file",
        ),
        (
            &["--sdcard", "no-such.img"],
            "run.sh: --sdcard no-such.img: no such file",
        ),
        (
            &["--sdcard", &probe, "--smp", "2"],
            "run.sh: --smp does not apply with --sdcard",
        ),
        (&["--frobnicate"], "run.sh: unknown option '--frobnicate'"),
        (&["--vm", &vm_mem], "VM a: mem=1.5G is not a size like 256M"),
        (&["--vm", &vm_cpus], "VM a: cpus=two is not a whole number"),
        (
            &["--vm", "name=a,kernel=no-such-Image"],
            "VM a: no kernel file 'no-such-Image'",
        ),
        (
            &["--vm", &vm(",colour=red")],
            "unknown VM field 'colour=red'",
        ),
        (
            &["--vm", &vm(""), "--mem", "1G"],
            "run.sh: --mem does not apply with --vm",
        ),
        (
            &["--no-guest", "--append", "quiet"],
            "run.sh: --append does not apply with --no-guest",
        ),
    ];
    // From another directory: the checks do not depend on where the caller is.
    let elsewhere = std::env::temp_dir();
    for &(args, message) in cases {
        let (r, took) = run_sh_in(&elsewhere, args, Duration::from_secs(60));
        assert_eq!(r.code, Some(2), "{args:?}: exit code; output:\n{}", r.log);
        r.assert_contains(message);
        // One line, and nothing installed, built or started.
        let stderr = r.log.split("--- stderr ---\n").nth(1).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        for sign in [
            "setup:",
            "Compiling",
            "Finished",
            "+ qemu",
            "bulkhead:",
            "unbound",
        ] {
            r.assert_lacks(sign);
        }
        assert!(
            took < Duration::from_secs(5),
            "{args:?}: refused after {took:?}"
        );
    }
}

#[test]
fn run_sh_help_is_usage_text() {
    let (r, _) = run_sh_in(&repo(), &["--help"], Duration::from_secs(30));
    r.assert_exit_ok();
    assert!(
        r.log.starts_with("Usage: scripts/run.sh [OPTIONS]"),
        "{}",
        r.log
    );
    for option in [
        "--mem SIZE",
        "--kernel PATH",
        "--vm \"name=N",
        "--hyp-append",
        "--sdcard",
    ] {
        r.assert_contains(option);
    }
    r.assert_lacks("set -euo");
    r.assert_lacks("\n#");
}

/// Relative `--kernel` and `--image` from a directory whose path has a space and a comma, a
/// lower-case size, and an echoed QEMU command line that a shell splits back into the
/// arguments QEMU got (the bootargs with their spaces, one argument).
#[test]
fn run_sh_relative_paths_with_commas_boot_the_probe() {
    let dir = scratch("relative");
    std::fs::copy(probe(), dir.join("probe,v1.bin")).unwrap();
    let image = std::env::var("BULKHEAD_IMAGE").unwrap_or_else(|_| build_image());
    std::fs::copy(image, dir.join("bulkhead.bin")).unwrap();
    let hyp_append = "loglevel=info bulkhead.console_idle_ms=300";
    let (r, _) = run_sh_in(
        &dir,
        &[
            "--image",
            "bulkhead.bin",
            "--kernel",
            "probe,v1.bin",
            "--smp",
            "2",
            "--mem",
            "128m",
            "--hyp-append",
            hyp_append,
        ],
        QUICK,
    );
    assert_probe(&r);
    r.assert_line("bulkhead: settings: loglevel=info vmid_bits=8 console_escape=^A console_idle_ms=300 sched_slice_ms=10 guest_mem=128M guest_smp=2");
    r.assert_contains("bulkhead: guest: 2 vCPUs on CPUs [0, 1], 128 MiB RAM at ");
    r.assert_lacks("bulkhead: warning: bootarg");

    // The echoed line, split by bash as a paste would be.
    let echoed = r
        .log
        .lines()
        .find_map(|l| l.strip_prefix("+ "))
        .expect("no echoed QEMU command line");
    let split = Command::new("bash")
        .arg("-c")
        .arg(format!("for a in {echoed}; do printf '%s\\n' \"$a\"; done"))
        .output()
        .unwrap();
    let args: Vec<String> = String::from_utf8(split.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let append = args.iter().position(|a| a == "-append").expect("-append");
    assert_eq!(
        args[append + 1],
        format!("{hyp_append} bulkhead.semihosting=1 bulkhead.guest_mem=128M bulkhead.guest_smp=2"),
        "{echoed}"
    );
    let kernel = dir.join("probe,v1.bin").display().to_string();
    assert!(
        args.iter()
            .any(|a| a.contains(&format!("kernel={},bootargs=", kernel.replace(',', ",,")))),
        "{echoed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bootargs_unknown_and_malformed_warn_and_the_settings_line_shows() {
    let r = run(
        &[
            "--no-guest",
            "--hyp-append",
            "console=ttyAMA0 loglevel=verbose bulkhead.frobnicate=1 bulkhead.vmid_bits=abc \
             bulkhead.guest_mem=abc bulkhead.console_escape=^B",
        ],
        QUICK,
    );
    r.assert_line(
        "bulkhead: warning: bootarg loglevel=verbose: not error, warn, info, debug, trace or \
         0-8; using info",
    );
    r.assert_contains("bulkhead: warning: bootarg bulkhead.frobnicate=1: unknown; Bulkhead knows loglevel=, bulkhead.vmid_bits=, ");
    r.assert_line(
        "bulkhead: warning: bootarg bulkhead.vmid_bits=abc: not a number of bits from 1 to 16; \
         using the CPU's VMID width",
    );
    r.assert_line(
        "bulkhead: warning: bootarg bulkhead.guest_mem=abc: not a size like 512M or 1G (K, M or \
         G, or bytes); using the guest's default",
    );
    assert_eq!(r.count("bulkhead: warning: bootarg"), 4, "{}", r.log);
    r.assert_lacks("console=ttyAMA0:");
    r.assert_line(
        "bulkhead: settings: loglevel=info vmid_bits=8 console_escape=^B console_idle_ms=200 \
         sched_slice_ms=10",
    );
    r.assert_line("bulkhead: ready: cpus=4/4 el=2 mmu=runtime gic=v3 board=virt");
    r.assert_exit_ok();
}

/// `scripts/build.sh`: the image it built.
fn build_image() -> String {
    built_by("build.sh")
}

/// `cargo run --target aarch64-unknown-none-softfloat -- ARGS` (the unoptimised image, booted
/// by scripts/cargo-runner.sh through run.sh), in its own target directory like build.sh. Built
/// first with a long timeout, so that the run itself gets a short one.
fn cargo_run_debug(args: &[&str]) -> Run {
    let cargo = |verb: &str, timeout: u64| {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", &timeout.to_string(), "cargo", verb])
            .args([
                "--target",
                "aarch64-unknown-none-softfloat",
                "--bin",
                "bulkhead",
            ])
            .env("CARGO_TARGET_DIR", repo().join("target/image"))
            .current_dir(repo())
            .stdin(Stdio::null());
        cmd
    };
    let built = cargo("build", 900).output().unwrap();
    assert!(
        built.status.success(),
        "debug build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = cargo("run", QUICK.as_secs())
        .arg("--")
        .args(args)
        .output()
        .unwrap();
    let mut log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    log.push_str("\n--- stderr ---\n");
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    Run {
        code: out.status.code().filter(|c| *c != 124 && *c != 137),
        log,
    }
}

/// The unoptimised image runs its early boot at the physical address with its pointers
/// relocated there (build.rs, boot/entry.S): it reaches `ready`, and runs the probe guest.
#[test]
fn debug_image_boots_to_ready_and_runs_a_guest() {
    let r = cargo_run_debug(&["--no-guest"]);
    r.assert_contains("Finished `dev` profile");
    r.assert_line("bulkhead: ready: cpus=4/4 el=2 mmu=runtime gic=v3 board=virt");
    r.assert_exit_ok();
    let probe = probe();
    let r = cargo_run_debug(&["--kernel", &probe, "--smp", "2", "--mem", "128M"]);
    assert_probe(&r);
}
