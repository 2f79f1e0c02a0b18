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
/// read once at boot), and a time the guest writes to its RTC stays there.
#[test]
fn linux_guest_has_a_clock() {
    let r = run_typing(
        &["--smp", "1", "--append", "console=ttyAMA0"],
        &[
            Keys {
                after: "powers the guest off.",
                text: "echo year-$(date +%Y)-end hw-$(hwclock -r -u | awk '{print $5}')-end\n",
                paste: false,
            },
            // Set the system clock to 2031, store it in the RTC, set the system clock back to
            // 2001, then load it from the RTC again.
            Keys {
                after: "-end hw-",
                text: "date -s '2031-06-01 12:00:00' >/dev/null; hwclock -w -u; \
                       date -s '2001-01-01 00:00:00' >/dev/null; hwclock -s -u; \
                       echo set-$(date +%Y)-end\n",
                paste: false,
            },
            Keys {
                after: "set-2031-end",
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
    r.assert_contains("bulkhead: guest powered off");
    r.assert_exit_ok();
}
