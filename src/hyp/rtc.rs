//! The guests' PL031 RTCs (`devices::pl031`) on the wall clock (`devices::wall_clock`) and the
//! vGIC. An RTC's match interrupt must fire on time even if the guest never looks: the earliest
//! pending match of all VMs is the platform's RTC deadline, at which the console CPU's EL2
//! timer calls [`poll_all`]. Lock order: a VM's RTC, then its vGIC.

use core::sync::atomic::Ordering;

use super::platform::Platform;
use super::vm::Vm;
use crate::devices::MmioError;
use crate::devices::mmio::AccessSize;
use crate::devices::pl031::EmulatedPl031;
use crate::guest_layout::PL031_INTID;

/// No match pending.
const NEVER: u64 = u64::MAX;

/// A guest access to its PL031: the value read (0 for a store).
pub fn access(
    vm: &Vm,
    offset: u64,
    size: AccessSize,
    write: Option<u64>,
    p: &impl Platform,
) -> Result<u64, MmioError> {
    let now = vm.config.clock.seconds(p.counter());
    let mut rtc = vm.rtc.lock();
    let value = match write {
        Some(value) => rtc.write(offset, size, value, now).map(|()| 0),
        None => rtc.read(offset, size, now),
    };
    let changed = update(vm, &rtc, p);
    drop(rtc);
    if changed {
        publish_deadline(vm, p);
    }
    value
}

/// Latches VM `vm`'s match if it came due; the console CPU's EL2 timer calls this at the RTC
/// deadline.
pub fn poll(vm: &Vm, p: &impl Platform) {
    let now = vm.config.clock.seconds(p.counter());
    let mut rtc = vm.rtc.lock();
    rtc.poll(now);
    update(vm, &rtc, p);
}

/// Polls every VM's RTC and sets the platform's RTC deadline to the earliest one left.
pub fn poll_all(vms: &[Vm], p: &impl Platform) {
    for vm in vms {
        poll(vm, p);
    }
    if let Some(vm) = vms.first() {
        publish_deadline(vm, p);
    }
}

/// Drives the interrupt line and records the match deadline (counter ticks) of `vm`'s RTC;
/// call with it locked. True if the deadline moved.
fn update(vm: &Vm, rtc: &EmulatedPl031, p: &impl Platform) -> bool {
    let level = rtc.irq_level();
    if vm.rtc_line.swap(level, Ordering::Relaxed) != level
        && let Ok(set) = vm.vgic().set_line_level(0, PL031_INTID, level)
    {
        vm.kick_vcpus(set, p);
    }
    let due = rtc
        .deadline()
        .map_or(NEVER, |secs| vm.config.clock.counter_at(secs));
    vm.rtc_deadline.swap(due, Ordering::Relaxed) != due
}

/// Tells the platform the earliest RTC match of all VMs (`vm` and its peers).
fn publish_deadline(vm: &Vm, p: &impl Platform) {
    let all = vm.peers.get().copied().unwrap_or(core::slice::from_ref(vm));
    let due = all
        .iter()
        .map(|v| v.rtc_deadline.load(Ordering::Relaxed))
        .min()
        .unwrap_or(NEVER);
    p.set_rtc_deadline((due != NEVER).then_some(due));
}
