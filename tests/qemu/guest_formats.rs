//! Guest kernel formats: a gzip-compressed Image and an ELF executable boot, a raw binary only
//! when asked for; garbage, empty files and guests that cannot fit are refused at load time in
//! one line, and when no VM can start QEMU exits non-zero (semihosting) without `ready`.

use super::*;

/// A scratch file under `target/guest-formats/` holding `bytes`.
fn scratch(name: &str, bytes: &[u8]) -> String {
    let dir = repo().join("target/guest-formats");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// Debian's arm64 kernel and the busybox initramfs (fetched by `scripts/assets.sh` if missing):
/// the kernel's bytes and the initramfs path.
fn debian_kernel_and_initrd() -> (Vec<u8>, String) {
    let out = Command::new(repo().join("scripts/assets.sh"))
        .args(["kernel", "initramfs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("assets.sh prints {name}"))
            .to_string()
    };
    (std::fs::read(var("KERNEL=")).unwrap(), var("INITRD="))
}

/// The probe guest's ELF file (built next to its flat binary).
fn probe_elf() -> String {
    let bin = probe();
    let elf = bin
        .strip_suffix(".bin")
        .expect("probe path ends in .bin")
        .to_string()
        + ".elf";
    assert!(
        Path::new(&elf).exists(),
        "{elf} missing: scripts/build-guests.sh builds it"
    );
    elf
}

/// The probe with its Image magic wiped: a raw binary with no header Bulkhead knows (its first
/// instruction still branches over the header).
fn headerless_probe() -> String {
    let mut bytes = std::fs::read(probe()).unwrap();
    assert_eq!(
        &bytes[0x38..0x3c],
        b"ARM\x64",
        "the probe carries an Image header"
    );
    bytes[0x38..0x3c].copy_from_slice(&[0; 4]);
    scratch("probe-headerless.bin", &bytes)
}

/// Random bytes (a fixed LCG: the same file every run).
fn garbage() -> String {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect();
    scratch("garbage.bin", &bytes)
}

/// Refusals must come quickly: no guest runs, nothing waits.
const REFUSAL: Duration = Duration::from_secs(30);

/// A run that refused every VM: the reason, then QEMU's non-zero exit, and no `ready`.
fn assert_no_vm_can_start(r: &Run, reason: &str) {
    r.assert_contains(reason);
    r.assert_contains(
        "bulkhead: error: no VM can start: all 1 configured were refused (see above)",
    );
    r.assert_lacks("bulkhead: ready");
    r.assert_lacks("guest powered off");
    assert_eq!(
        r.code,
        Some(1),
        "QEMU should exit with 1; console:\n{}",
        r.log
    );
}

#[test]
fn formats_gzip_compressed_debian_kernel_boots_linux() {
    let (kernel, initrd) = debian_kernel_and_initrd();
    let mut gzip = Command::new("gzip")
        .args(["-c", "-6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gzip.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&kernel).unwrap();
    });
    let out = gzip.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    let path = scratch("Image.gz", &out.stdout);
    let r = run_smoke(&[
        "--kernel",
        &path,
        "--initrd",
        &initrd,
        "--smp",
        "2",
        "--hyp-append",
        "loglevel=debug",
    ]);
    r.assert_contains("load: gzip-compressed arm64 Image entry 0x40000000");
    assert_smoke(&r, 2);
}

#[test]
fn formats_probe_as_elf_boots_to_its_checks() {
    let elf = probe_elf();
    let r = run(
        &[
            "--kernel",
            &elf,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--hyp-append",
            "loglevel=debug",
        ],
        QUICK,
    );
    r.assert_contains("load: ELF64 AArch64 executable entry 0x40080000");
    assert_probe(&r);
}

#[test]
fn formats_raw_binary_boots_only_when_asked_for() {
    let raw = headerless_probe();
    let r = run(&["--kernel", &raw, "--smp", "2", "--mem", "256M"], REFUSAL);
    assert_no_vm_can_start(
        &r,
        "bulkhead: error: guest: kernel is not a bootable image: saw unknown header 10 00 00 14 00 00 00 00 in ",
    );
    let r = run(
        &[
            "--kernel",
            &raw,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--hyp-append",
            "bulkhead.guest_format=raw",
        ],
        QUICK,
    );
    assert_probe(&r);
}

#[test]
fn formats_garbage_kernel_is_refused_and_qemu_exits_non_zero() {
    let start = std::time::Instant::now();
    let r = run(&["--kernel", &garbage(), "--smp", "2"], REFUSAL);
    assert_no_vm_can_start(
        &r,
        "bulkhead: error: guest: kernel is not a bootable image: saw unknown header ",
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn formats_empty_kernel_is_refused_and_qemu_exits_non_zero() {
    let empty = scratch("empty.bin", &[]);
    let r = run(&["--kernel", &empty, "--smp", "2"], REFUSAL);
    assert_no_vm_can_start(
        &r,
        "bulkhead: error: VM refused: guest: multiboot,kernel: empty (0 bytes at 0x50000000)",
    );
}

#[test]
fn formats_4_mib_of_ram_is_refused_naming_the_kernel_image_size() {
    let r = run(&["--mem", "4M", "--smp", "2"], REFUSAL);
    assert_no_vm_can_start(
        &r,
        "bulkhead: error: guest: guest RAM 4 MiB is smaller than the kernel's image_size 32.1 MiB\n",
    );
}

/// vCPUs share physical CPUs: 3 vCPUs on 2 CPUs start, homed on CPUs 0, 1 and 0 (every vCPU
/// may run on either), and the probe passes its checks on all of them.
#[test]
fn formats_more_vcpus_than_cpus_are_accepted_and_the_probe_passes() {
    let r = run(
        &[
            "--kernel",
            &probe(),
            "--smp",
            "2",
            "--mem",
            "256M",
            "--hyp-append",
            "bulkhead.guest_smp=3",
        ],
        QUICK,
    );
    r.assert_contains("bulkhead: guest: 3 vCPUs on CPUs [0, 1, 0], 256 MiB RAM at ");
    r.assert_lacks("VM refused");
    assert_probe(&r);
}

/// What still refuses a vCPU count: more than a VM's GIC layout serves.
#[test]
fn formats_more_vcpus_than_a_vm_may_have_is_refused_and_qemu_exits_non_zero() {
    let r = run(
        &[
            "--kernel",
            &probe(),
            "--smp",
            "2",
            "--hyp-append",
            "bulkhead.guest_smp=9",
        ],
        REFUSAL,
    );
    assert_no_vm_can_start(
        &r,
        "bulkhead: error: VM refused: guest: bulkhead.guest_smp: 9 vCPUs; a VM has at most 8 \
         (the guest's GIC layout)",
    );
}

#[test]
fn formats_dom0less_garbage_vm_is_refused_and_the_raw_and_elf_ones_run() {
    let vms = [
        format!("name=elf,kernel={},cpus=1,mem=128M,append=", probe_elf()),
        format!("name=junk,kernel={},cpus=1,mem=128M,append=", garbage()),
        format!(
            "name=raw,kernel={},cpus=1,mem=128M,format=raw,append=",
            headerless_probe()
        ),
    ];
    let r = run_vms(&vms, &["--smp", "3"], QUICK);
    r.assert_contains("bulkhead: error: junk: kernel is not a bootable image: saw unknown header ");
    r.assert_contains("elf: PROBE: DONE pass=");
    r.assert_contains("raw: PROBE: DONE pass=");
    r.assert_lacks("PROBE: FAIL");
    r.assert_lacks("junk powered off");
    r.assert_exit_ok();
}

#[test]
fn formats_ram_that_does_not_fit_is_refused_and_qemu_exits_non_zero() {
    // run.sh gives QEMU 512 + 768 MiB; the first guest_mem= wins over run.sh's own.
    let r = run(
        &[
            "--kernel",
            &probe(),
            "--smp",
            "2",
            "--hyp-append",
            "bulkhead.guest_mem=2G",
        ],
        REFUSAL,
    );
    assert_no_vm_can_start(
        &r,
        "bulkhead: error: VM refused: guest: memory: no room for 2 GiB of RAM (",
    );
}
