//! The pvpanic device, as QEMU's `hw/misc/pvpanic.c` and Linux's
//! `drivers/misc/pvpanic/pvpanic-mmio.c` (DT compatible `qemu,pvpanic-mmio`) define it: one
//! byte register. A read returns the events the device supports; the guest writes the event
//! that happened: bit 0 `PVPANIC_PANICKED` (the kernel panicked; Linux writes it from its panic
//! notifier, before `panic=N` reboots), bit 1 `PVPANIC_CRASH_LOADED` (it panicked and a kdump
//! kernel takes over: the guest goes on by itself). This is how a KVM/QEMU host learns that a
//! guest crashed, and how Bulkhead applies `on_crash` to a Linux guest (kernel option
//! `CONFIG_PVPANIC_MMIO`). Bytes past the register read as zero and ignore writes.

/// The guest panicked (`PVPANIC_PANICKED`, include/uapi/misc/pvpanic.h).
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// The guest panicked and loaded a crash kernel (`PVPANIC_CRASH_LOADED`).
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;
/// What the device offers (QEMU's default `events` property).
pub const PVPANIC_EVENTS: u8 = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;

/// What a guest write reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvpanicEvent {
    /// Nothing the device offers (QEMU ignores such bits too).
    None,
    /// The guest panicked: its crash policy applies.
    Panicked,
    /// The guest panicked and its crash kernel runs on: noted, the guest goes on.
    CrashLoaded,
}

/// A read at `offset`: the supported events at the register, zero elsewhere.
pub fn read(offset: u64) -> u64 {
    if offset == 0 {
        u64::from(PVPANIC_EVENTS)
    } else {
        0
    }
}

/// A write of `value` at `offset`. As QEMU's `handle_event`, a panic wins over a loaded crash
/// kernel when a guest sets both.
pub fn write(offset: u64, value: u64) -> PvpanicEvent {
    if offset != 0 {
        return PvpanicEvent::None;
    }
    let event = value as u8;
    if event & PVPANIC_PANICKED != 0 {
        PvpanicEvent::Panicked
    } else if event & PVPANIC_CRASH_LOADED != 0 {
        PvpanicEvent::CrashLoaded
    } else {
        PvpanicEvent::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvpanic_register_offers_panicked_and_crash_loaded() {
        assert_eq!(read(0), 3);
        assert_eq!(read(1), 0);
        assert_eq!(read(0xffc), 0);
    }

    #[test]
    fn pvpanic_writes_report_the_event() {
        assert_eq!(write(0, 1), PvpanicEvent::Panicked);
        assert_eq!(write(0, 3), PvpanicEvent::Panicked);
        assert_eq!(write(0, 2), PvpanicEvent::CrashLoaded);
        assert_eq!(write(0, 0), PvpanicEvent::None);
        assert_eq!(
            write(0, 4),
            PvpanicEvent::None,
            "PVPANIC_SHUTDOWN is not offered"
        );
        assert_eq!(write(0, 0x100), PvpanicEvent::None, "only the byte counts");
        assert_eq!(write(1, 1), PvpanicEvent::None, "past the register");
    }
}
