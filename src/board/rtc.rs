//! The host's PL031 real-time clock (QEMU `virt` has one; the Raspberry Pi 4 has none), read
//! once at boot: the guests' RTCs run from that time on the generic counter
//! (`devices::wall_clock`), so nothing touches this device again.

use tock_registers::interfaces::Readable;
use tock_registers::register_structs;
use tock_registers::registers::ReadOnly;

use crate::dtb::PhysRange;

register_structs! {
    /// The registers read here (ARM DDI 0224, 3.2): the counter and the peripheral ID.
    Pl031Regs {
        (0x000 => dr: ReadOnly<u32>),
        (0x004 => _reserved0),
        (0xfe0 => periph_id0: ReadOnly<u32>),
        (0xfe4 => periph_id1: ReadOnly<u32>),
        (0xfe8 => @END),
    }
}

/// The host PL031's time in seconds since the Unix epoch, if `regs` holds a PL031 (its
/// PeriphID says part 0x031) that has been set (a counter of 0 means nobody loaded it).
pub fn read_seconds(regs: PhysRange) -> Option<u64> {
    let va = crate::arch::mmu::map_device(regs.base, 0x1000).ok()?;
    // SAFETY: `map_device` mapped the device's 4 KiB register window as device memory in the
    // runtime table for good; these are read-only, side-effect-free registers, read once.
    let regs = unsafe { &*(va as *const Pl031Regs) };
    let part = (regs.periph_id0.get() & 0xff) | ((regs.periph_id1.get() & 0xf) << 8);
    if part != 0x031 {
        log::warn!("the host RTC's PeriphID says part {part:#x}, not a PL031: not used");
        return None;
    }
    let secs = regs.dr.get();
    (secs != 0).then_some(u64::from(secs))
}
