//! Machine power-off and reset: PSCI SYSTEM_OFF/RESET on `virt`, the BCM2835 PM watchdog on
//! the Raspberry Pi 4 (which has no PSCI).

use crate::arch::firmware::Firmware;
use crate::dtb::PhysRange;
use spin::Once;

/// How this machine powers off.
#[derive(Debug, Clone, Copy)]
pub enum PowerControl {
    Psci(Firmware),
    /// PM block base VA (linear window).
    Bcm2835Watchdog {
        va: u64,
    },
    None,
}

static POWER: Once<PowerControl> = Once::new();

pub fn init(control: PowerControl) {
    POWER.call_once(|| control);
}

const PM_PASSWORD: u32 = 0x5a00_0000;
const PM_RSTC: u64 = 0x1c;
const PM_RSTS: u64 = 0x20;
const PM_WDOG: u64 = 0x24;
const PM_RSTC_WRCFG_CLR: u32 = 0xffff_ffcf;
const PM_RSTC_WRCFG_FULL_RESET: u32 = 0x20;
/// RSTS "partition 63": the firmware (and QEMU) treat the reset as a halt.
const PM_RSTS_HALT: u32 = 0x555;

fn watchdog_fire(va: u64, halt: bool) {
    // SAFETY: `va` maps the PM block as device memory (set up at boot); these are the
    // documented watchdog reset writes (same sequence as Linux's bcm2835_wdt).
    unsafe {
        let reg = |off: u64| (va + off) as *mut u32;
        if halt {
            let rsts = core::ptr::read_volatile(reg(PM_RSTS));
            core::ptr::write_volatile(reg(PM_RSTS), PM_PASSWORD | rsts | PM_RSTS_HALT);
        }
        core::ptr::write_volatile(reg(PM_WDOG), PM_PASSWORD | 10);
        let rstc = core::ptr::read_volatile(reg(PM_RSTC));
        core::ptr::write_volatile(
            reg(PM_RSTC),
            PM_PASSWORD | (rstc & PM_RSTC_WRCFG_CLR) | PM_RSTC_WRCFG_FULL_RESET,
        );
    }
}

/// The PM block's VA for the watchdog, given its physical range.
pub fn map_watchdog(range: PhysRange) -> Option<u64> {
    crate::arch::mmu::map_device(range.base, range.size.max(0x1000)).ok()
}

/// Powers the machine off. Falls back to stopping this CPU.
///
/// A Raspberry Pi 4 cannot switch its own power off. The watchdog reset with the "halt"
/// partition (the one Linux's bcm2835_wdt uses for power-off) makes the boot ROM / EEPROM
/// loader stop instead of booting again: the board sits halted, at low power, until its power
/// is cycled (or GPIO 3 is pulled low). The console says so first, since a halted board and
/// a hung one look the same; under QEMU the same write ends QEMU.
pub fn power_off() -> ! {
    match POWER.get() {
        Some(PowerControl::Psci(fw)) => {
            super::console::flush();
            let err = fw.system_off();
            crate::println!("bulkhead: SYSTEM_OFF failed: {err}");
        }
        Some(PowerControl::Bcm2835Watchdog { va }) => {
            crate::println!(
                "bulkhead: halting the board (BCM2835 watchdog, halt partition): it stays off until its power is cycled"
            );
            super::console::flush();
            watchdog_fire(*va, true)
        }
        _ => {}
    }
    super::console::flush();
    crate::arch::cpu::halt()
}

/// Set when the host enabled semihosting (`bulkhead.semihosting=1`): a failed boot can then
/// end QEMU with a non-zero status.
static SEMIHOSTING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Lets [`exit_failure`] use semihosting's exit call.
pub fn enable_semihosting_exit() {
    SEMIHOSTING.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Ends a run that could not do its work (no VM can start, the boot failed): with
/// semihosting (QEMU), exit status 1; on a real board, powered off as usual.
pub fn exit_failure() -> ! {
    if SEMIHOSTING.load(core::sync::atomic::Ordering::Relaxed) {
        super::console::flush();
        crate::arch::semihosting::exit(1);
    }
    power_off()
}

/// Resets the machine.
pub fn reset() -> ! {
    super::console::flush();
    match POWER.get() {
        Some(PowerControl::Psci(fw)) => {
            let err = fw.system_reset();
            crate::println!("bulkhead: SYSTEM_RESET failed: {err}");
        }
        Some(PowerControl::Bcm2835Watchdog { va }) => watchdog_fire(*va, false),
        _ => {}
    }
    crate::arch::cpu::halt()
}
