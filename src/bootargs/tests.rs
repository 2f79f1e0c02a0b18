use super::*;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

fn warned(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    warnings(cmdline, |w| out.push(w.to_string()));
    out
}

#[test]
fn no_bootargs_gives_the_defaults_and_no_warning() {
    assert_eq!(Settings::parse(""), Settings::default());
    assert_eq!(warned(""), Vec::<String>::new());
    assert_eq!(
        Settings::default().in_force(16).to_string(),
        "settings: loglevel=info vmid_bits=16 console_escape=^A console_idle_ms=200 \
         sched_slice_ms=10"
    );
}

#[test]
fn every_key_is_read() {
    let s = Settings::parse(
        "console=ttyAMA0 loglevel=debug bulkhead.vmid_bits=3 bulkhead.console_escape=^b \
         bulkhead.console_idle_ms=5000 bulkhead.guest_mem=1G bulkhead.guest_smp=2 \
         bulkhead.hotplug_test=10 bulkhead.guest_format=raw bulkhead.semihosting=1 \
         bulkhead.rtc=1893456000 bulkhead.sched_slice_ms=25",
    );
    assert_eq!(
        s,
        Settings {
            log_level: log::LevelFilter::Debug,
            vmid_bits: Some(3),
            console_escape: 2,
            console_idle_ms: 5000,
            sched_slice_ms: 25,
            guest_mem: Some(1 << 30),
            guest_smp: Some(2),
            hotplug_test: Some(10),
            guest_format: GuestFormat::Raw,
            semihosting: true,
            rtc: Some(1_893_456_000),
        }
    );
    assert_eq!(
        s.in_force(8).to_string(),
        "settings: loglevel=debug vmid_bits=3 console_escape=^B console_idle_ms=5000 \
         sched_slice_ms=25 guest_mem=1024M guest_smp=2 hotplug_test=10 guest_format=raw rtc=1893456000"
    );
}

#[test]
fn log_levels_by_name_and_linux_number() {
    for (arg, level) in [
        ("error", log::LevelFilter::Error),
        ("3", log::LevelFilter::Error),
        ("warn", log::LevelFilter::Warn),
        ("4", log::LevelFilter::Warn),
        ("info", log::LevelFilter::Info),
        ("6", log::LevelFilter::Info),
        ("debug", log::LevelFilter::Debug),
        ("7", log::LevelFilter::Debug),
        ("trace", log::LevelFilter::Trace),
        ("8", log::LevelFilter::Trace),
    ] {
        let cmdline = alloc::format!("loglevel={arg}");
        assert_eq!(Settings::parse(&cmdline).log_level, level, "{arg}");
        assert_eq!(warned(&cmdline), Vec::<String>::new());
    }
}

#[test]
fn console_escape_as_caret_letter_or_byte_value() {
    for (arg, byte) in [
        ("^A", 1),
        ("^z", 26),
        ("2", 2),
        ("0x1d", 0x1d),
        ("255", 255),
    ] {
        let cmdline = alloc::format!("bulkhead.console_escape={arg}");
        assert_eq!(Settings::parse(&cmdline).console_escape, byte, "{arg}");
    }
    for arg in ["^", "^1", "0", "256", "0x100", "ctrl-b", ""] {
        let cmdline = alloc::format!("bulkhead.console_escape={arg}");
        assert_eq!(Settings::parse(&cmdline).console_escape, 1, "{arg}");
        assert_eq!(warned(&cmdline).len(), 1, "{arg}");
    }
    assert_eq!(
        Settings::parse("bulkhead.console_escape=0x7f")
            .in_force(8)
            .to_string(),
        "settings: loglevel=info vmid_bits=8 console_escape=0x7f console_idle_ms=200 \
         sched_slice_ms=10"
    );
}

#[test]
fn malformed_values_warn_naming_the_word_and_what_is_accepted() {
    let cmdline = "loglevel=verbose bulkhead.vmid_bits=abc bulkhead.guest_mem=abc \
                   bulkhead.guest_smp=-1 bulkhead.console_idle_ms=1e3 bulkhead.hotplug_test=x";
    assert_eq!(
        warned(cmdline),
        [
            "bootarg loglevel=verbose: not error, warn, info, debug, trace or 0-8; using info",
            "bootarg bulkhead.vmid_bits=abc: not a number of bits from 1 to 16; using the CPU's \
             VMID width",
            "bootarg bulkhead.guest_mem=abc: not a size like 512M or 1G (K, M or G, or bytes); \
             using the guest's default",
            "bootarg bulkhead.guest_smp=-1: not a number of vCPUs; using as many vCPUs as CPUs",
            "bootarg bulkhead.console_idle_ms=1e3: not milliseconds from 0 to 60000; using 200",
            "bootarg bulkhead.hotplug_test=x: not a number of cycles from 0 to 10000; using no test",
        ]
    );
    assert_eq!(Settings::parse(cmdline), Settings::default());
}

#[test]
fn out_of_range_values_warn_and_keep_the_default() {
    for arg in [
        "bulkhead.vmid_bits=0",
        "bulkhead.vmid_bits=17",
        "bulkhead.vmid_bits=99999999999999999999999",
        "bulkhead.console_idle_ms=60001",
        "bulkhead.guest_mem=0",
        "bulkhead.guest_mem=1.5G",
        "bulkhead.guest_mem=99999999999G",
        "bulkhead.hotplug_test=10001",
        "bulkhead.sched_slice_ms=0",
        "bulkhead.sched_slice_ms=1001",
        "bulkhead.sched_slice_ms=-5",
        "loglevel=9",
        "loglevel=",
    ] {
        assert_eq!(Settings::parse(arg), Settings::default(), "{arg}");
        assert_eq!(warned(arg).len(), 1, "{arg}");
    }
}

#[test]
fn unknown_keys_of_ours_warn_and_others_are_ignored() {
    // The warning lists every key Bulkhead knows, in the table's order.
    let known: Vec<String> = KEYS.iter().map(|k| format!("{}=", k.name)).collect();
    let known = known.join(", ");
    assert!(
        known.starts_with("loglevel=, bulkhead.vmid_bits=, "),
        "{known}"
    );
    assert!(known.contains("bulkhead.on_crash=, "), "{known}");
    assert_eq!(
        warned("console=ttyAMA0 earlycon bulkhead.frobnicate=1 root=/dev/vda bulkhead.frob"),
        [
            format!("bootarg bulkhead.frobnicate=1: unknown; Bulkhead knows {known}"),
            format!("bootarg bulkhead.frob: unknown; Bulkhead knows {known}"),
        ]
    );
    // A prefix of a key is not the key.
    assert_eq!(warned("loglevelx=3").len(), 0);
    assert_eq!(warned("bulkhead.vmid_bitsx=3").len(), 1);
}

#[test]
fn a_key_without_a_value_warns() {
    assert_eq!(
        warned("bulkhead.vmid_bits"),
        [
            "bootarg bulkhead.vmid_bits: needs =a number of bits from 1 to 16; using the CPU's VMID width"
        ]
    );
}

#[test]
fn the_first_of_a_repeated_key_counts() {
    let cmdline = "bulkhead.guest_smp=2 loglevel=warn bulkhead.guest_smp=4";
    assert_eq!(Settings::parse(cmdline).guest_smp, Some(2));
    assert_eq!(
        warned(cmdline),
        [
            "bootarg bulkhead.guest_smp=4: bulkhead.guest_smp was given before; the first one is used"
        ]
    );
}

#[test]
fn vmid_bits_in_force_never_exceed_the_cpu() {
    let s = Settings::parse("bulkhead.vmid_bits=12");
    assert_eq!(s.vmid_bits_in_force(8), 8);
    assert_eq!(s.vmid_bits_in_force(16), 12);
    assert_eq!(Settings::default().vmid_bits_in_force(16), 16);
}

/// Every key the table knows parses its own documented example without a warning, and the
/// unknown-key text lists each of them.
#[test]
fn the_key_table_is_consistent() {
    let unknown = warned("bulkhead.nope")[0].clone();
    for key in KEYS {
        assert!(is_ours(key.name), "{}", key.name);
        assert!(unknown.contains(&alloc::format!("{}=", key.name)));
    }
    assert!(KEYS.len() <= 32, "the seen-set is a u32");
}

proptest::proptest! {
    /// Any word sequence parses without panicking, and each of our words gives at most one
    /// warning.
    #[test]
    fn never_panics(words in proptest::collection::vec("(bulkhead\\.[a-z_]{0,12}|loglevel|console)(=[ -~]{0,8})?", 0..8)) {
        let cmdline = words.join(" ");
        let _ = Settings::parse(&cmdline);
        let ours = cmdline.split_ascii_whitespace().filter(|w| {
            let key = w.split('=').next().unwrap();
            is_ours(key)
        }).count();
        proptest::prop_assert!(warned(&cmdline).len() <= ours);
    }
}

#[test]
fn guest_format_and_semihosting_take_only_their_values() {
    assert_eq!(
        warned("bulkhead.guest_format=elf bulkhead.semihosting=yes"),
        [
            "bootarg bulkhead.guest_format=elf: not raw or auto; using auto (by the kernel's header)",
            "bootarg bulkhead.semihosting=yes: not 0 or 1; using 0 (no semihosting calls)",
        ]
    );
    let s = Settings::parse("bulkhead.guest_format=elf bulkhead.semihosting=yes");
    assert_eq!(
        (s.guest_format, s.semihosting),
        (GuestFormat::Detect, false)
    );
    let s = Settings::parse("bulkhead.guest_format=auto bulkhead.semihosting=0");
    assert_eq!(
        (s.guest_format, s.semihosting),
        (GuestFormat::Detect, false)
    );
}

#[test]
fn sched_slice_ms_takes_1_to_1000_ms_and_warns_otherwise() {
    assert_eq!(Settings::default().sched_slice_ms, 10);
    for (arg, ms) in [("1", 1), ("10", 10), ("250", 250), ("1000", 1000)] {
        let cmdline = alloc::format!("bulkhead.sched_slice_ms={arg}");
        assert_eq!(Settings::parse(&cmdline).sched_slice_ms, ms, "{arg}");
        assert_eq!(warned(&cmdline), Vec::<String>::new(), "{arg}");
    }
    assert_eq!(
        warned("bulkhead.sched_slice_ms=0 bulkhead.sched_slice_ms=5"),
        [
            "bootarg bulkhead.sched_slice_ms=0: not milliseconds from 1 to 1000; using 10",
            "bootarg bulkhead.sched_slice_ms=5: bulkhead.sched_slice_ms was given before; the \
             first one is used",
        ]
    );
    assert_eq!(
        warned("bulkhead.sched_slice_ms=2ms bulkhead.sched_slice_ms"),
        [
            "bootarg bulkhead.sched_slice_ms=2ms: not milliseconds from 1 to 1000; using 10",
            "bootarg bulkhead.sched_slice_ms: bulkhead.sched_slice_ms was given before; the \
             first one is used",
        ]
    );
    assert_eq!(
        warned("bulkhead.sched_slice_ms"),
        ["bootarg bulkhead.sched_slice_ms: needs =milliseconds from 1 to 1000; using 10"]
    );
    assert_eq!(
        Settings::parse("bulkhead.sched_slice_ms=0").sched_slice_ms,
        10
    );
    assert_eq!(
        Settings::parse("bulkhead.sched_slice_ms=4")
            .in_force(16)
            .to_string(),
        "settings: loglevel=info vmid_bits=16 console_escape=^A console_idle_ms=200 \
         sched_slice_ms=4"
    );
}
