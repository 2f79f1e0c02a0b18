//! The guest's clock (its PL031) and the shared console: a serial break reaching the focused
//! guest, the live statistics key, and hypervisor lines a guest cannot forge.

use super::*;

/// The number printed between `start` and `end` (the shell computed it, so the echoed command,
/// which holds `$(...)` there, cannot match).
fn number_between(r: &Run, start: &str, end: &str) -> u64 {
    r.log
        .match_indices(start)
        .find_map(|(at, _)| {
            let rest = &r.log[at + start.len()..];
            let digits = rest.split(end).next()?;
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {start}<number>{end}; console:\n{}", r.log))
}

/// `date` and `hwclock` work in a Linux guest: its RTC runs from the host's (QEMU's PL031,
/// read once at boot), a time the guest writes to its RTC stays there, and an RTC alarm
/// raises the PL031's interrupt on time.
#[test]
fn linux_guest_has_a_clock() {
    let r = run_typing(
        &["--smp", "1", "--append", "console=ttyAMA0"],
        &[
            Keys {
                after: "powers the guest off.",
                text: "echo year-$(date +%Y)-end hw-$(hwclock -r -u | awk '{print $5}')-end \
                       done-$((2*5))\n",
                paste: false,
            },
            // Set the system clock to 2031, store it in the RTC, set the system clock back to
            // 2001, then load it from the RTC again.
            Keys {
                after: "done-10",
                text: "date -s '2031-06-01 12:00:00' >/dev/null; hwclock -w -u; \
                       date -s '2001-01-01 00:00:00' >/dev/null; hwclock -s -u; \
                       echo set-$(date +%Y)-end\n",
                paste: false,
            },
            // An alarm two seconds ahead: the RTC's match interrupt must fire by itself.
            Keys {
                after: "set-2031-end",
                text: "echo +2 > /sys/class/rtc/rtc0/wakealarm; sleep 4; \
                       echo alarm-$(awk '/pl031/ {print $2}' /proc/interrupts)-end \
                       done-$((4*4))\n",
                paste: false,
            },
            Keys {
                after: "done-16",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    r.assert_contains("bulkhead: guest clock: ");
    r.assert_contains("from the host's PL031");
    r.assert_contains("rtc-pl031 9010000.pl031: registered as rtc0");
    let year = number_between(&r, "year-", "-end");
    assert!(year >= 2025, "date says {year}; console:\n{}", r.log);
    let hw_year = number_between(&r, "hw-", "-end");
    assert_eq!(
        hw_year, year,
        "hwclock and date disagree; console:\n{}",
        r.log
    );
    r.assert_contains("set-2031-end");
    let alarms = number_between(&r, "alarm-", "-end");
    assert_eq!(
        alarms, 1,
        "RTC interrupts after one alarm; console:\n{}",
        r.log
    );
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

/// A serial break on the host UART reaches the guest as a break: Linux's SysRq (break, then
/// a key) answers. QEMU's mux sends the break (`Ctrl-A b`).
#[test]
fn linux_guest_gets_a_serial_break_as_sysrq() {
    let r = run_typing_env(
        &["--smp", "1", "--append", "console=ttyAMA0"],
        &[("BULKHEAD_QEMU_MUX", "1")],
        &[
            Keys {
                after: "powers the guest off.",
                text: "echo 1 > /proc/sys/kernel/sysrq; echo sysrq-$((2*4))-on\n",
                paste: false,
            },
            // The break, then SysRq's key (`h`: help, which prints "sysrq: HELP : ...").
            Keys {
                after: "sysrq-8-on",
                text: "\x01bh",
                paste: false,
            },
            Keys {
                after: "sysrq: HELP",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    r.assert_contains("sysrq: HELP");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

/// The statistics key (the escape twice, then `s`; Ctrl-A is QEMU's own on a terminal, so a
/// test without QEMU's mux types it raw) prints live statistics while the guest keeps running.
#[test]
fn statistics_key_prints_live_statistics_while_the_guest_runs() {
    let r = run_typing(
        &["--smp", "2", "--append", "console=ttyAMA0"],
        &[
            Keys {
                after: "powers the guest off.",
                text: "\x01\x01s",
                paste: false,
            },
            // The guest still answers afterwards: nothing was stopped.
            Keys {
                after: "bulkhead: stats: guest vcpu 1",
                text: "echo still-$((5*5))-running\n",
                paste: false,
            },
            Keys {
                after: "still-25-running",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    let stats: Vec<&str> = r
        .log
        .lines()
        .filter(|l| l.starts_with("bulkhead: stats: "))
        .collect();
    assert_eq!(
        stats.len(),
        3,
        "one VM line and two vCPU lines; console:\n{}",
        r.log
    );
    assert!(
        stats[0].starts_with("bulkhead: stats: guest running, VMID ")
            && stats[0].contains(" 2 vCPUs, ")
            && stats[0].contains(" stage-2 mapping faults, ")
            && stats[0].contains(" exits (irq "),
        "{}",
        stats[0]
    );
    assert!(stats[1].starts_with("bulkhead: stats: guest vcpu 0 on CPU 0: on, "));
    assert!(stats[2].starts_with("bulkhead: stats: guest vcpu 1 on CPU 1: on, "));
    r.assert_contains("still-25-running");
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

/// A guest printing a line that starts `bulkhead:` cannot pass it off as the hypervisor's:
/// with one VM its lines pass unchanged, but that one shows after its name.
#[test]
fn guest_line_starting_bulkhead_cannot_pass_for_the_hypervisors() {
    let r = run_typing(
        &["--smp", "1", "--append", "console=ttyAMA0"],
        &[
            Keys {
                after: "powers the guest off.",
                text: "printf 'bulk%s: forged %s\\n' head $((6*7))\n",
                paste: false,
            },
            Keys {
                after: "forged 42",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    r.assert_line("guest: bulkhead: forged 42");
    assert!(
        !r.log.lines().any(|l| l.starts_with("bulkhead: forged")),
        "a forged hypervisor line; console:\n{}",
        r.log
    );
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}

/// At `loglevel=trace` every guest exit is logged, thousands of lines while the guest prints
/// its own byte by byte (one exit each): yet every guest line stays whole and every hypervisor
/// line is a line of its own.
#[test]
fn probe_lines_stay_whole_at_loglevel_trace() {
    let probe = probe();
    let r = run(
        &[
            "--kernel",
            &probe,
            "--smp",
            "2",
            "--mem",
            "256M",
            "--hyp-append",
            "loglevel=trace",
        ],
        QUICK,
    );
    let console = r.log.split("\n--- stderr ---").next().unwrap_or("");
    let trace = console.matches("bulkhead: trace: ").count();
    assert!(
        trace > 1000,
        "expected thousands of trace lines, saw {trace}"
    );
    // The probe's lines and Bulkhead's are the only ones: a line cut in two would leave a
    // piece that starts with neither, a line printed into another shows its tag inside.
    for line in console.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("bulkhead: ") || line.starts_with("PROBE: "),
            "a line cut short: {line:?}"
        );
        for tag in ["bulkhead: ", "PROBE: "] {
            if let Some(at) = line.find(tag) {
                assert_eq!(at, 0, "{tag:?} inside a line: {line:?}");
            }
        }
    }
    assert_probe(&r);
}

/// On a board without an RTC (the Raspberry Pi 4) `bulkhead.rtc=` sets the guests' clock.
#[test]
fn linux_guest_clock_from_bulkhead_rtc_on_raspi4b() {
    let r = run_typing(
        &[
            "--board",
            "rpi4",
            "--mem",
            "256M",
            "--append",
            "console=ttyAMA0",
            "--hyp-append",
            "bulkhead.rtc=1893456000",
        ],
        &[
            Keys {
                after: "powers the guest off.",
                text: "echo year-$(date -u +%Y)-end done-$((3*3))\n",
                paste: false,
            },
            Keys {
                after: "done-9",
                text: "poweroff -f\n",
                paste: false,
            },
        ],
        LINUX,
    );
    r.assert_contains(
        "bulkhead: guest clock: 1893456000 s since 1970-01-01 UTC, from bulkhead.rtc=",
    );
    // 1893456000 is 2030-01-01 00:00:00 UTC; the guest's clock ran on from there.
    assert_eq!(number_between(&r, "year-", "-end"), 2030, "{}", r.log);
    r.assert_exit_ok();
}
