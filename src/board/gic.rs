//! The physical GIC, initialised with `arm-gic`: GICv3 (virt) or GICv2 (virt, GIC-400 on RPi4).

use core::ptr::NonNull;

use crate::sync::SpinLock;
use arm_gic::UniqueMmioPointer;
use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::{GicCpuInterface, GicV3};

use crate::dtb::GicInfo;

enum HostGic {
    V2(GicV2<'static>),
    V3(GicV3<'static>),
}

// SAFETY: the driver only holds MMIO pointers; every use is under the GIC mutex.
unsafe impl Send for HostGic {}

static GIC: SpinLock<Option<HostGic>> = SpinLock::new(None);

/// Why the GIC could not be brought up.
#[derive(Debug)]
pub enum GicInitError {
    Map,
    Driver,
}

/// Maps the GIC and initialises the distributor and the boot CPU's interface.
pub fn init_primary(info: &GicInfo, cpu_count: usize) -> Result<(), GicInitError> {
    let map = |r: crate::dtb::PhysRange| {
        crate::arch::mmu::map_device(r.base, r.size).map_err(|_| GicInitError::Map)
    };
    let gic = match *info {
        GicInfo::V3 { gicd, gicr, .. } => {
            let gicd_va = map(gicd)?;
            let gicr_va = map(gicr)?;
            GicCpuInterface::enable_system_register_el2(true);
            // SAFETY: both windows were just mapped as device memory and nothing else drives
            // the GIC distributor/redistributors.
            let mut gic = unsafe {
                GicV3::new(
                    UniqueMmioPointer::new(
                        NonNull::new(gicd_va as *mut _).ok_or(GicInitError::Map)?,
                    ),
                    NonNull::new(gicr_va as *mut _).ok_or(GicInitError::Map)?,
                    cpu_count,
                )
            }
            .map_err(|_| GicInitError::Driver)?;
            gic.setup(0);
            HostGic::V3(gic)
        }
        GicInfo::V2 { gicd, gicc, .. } => {
            let gicd_va = map(gicd)?;
            let gicc_va = map(gicc)?;
            V2_GICD_VA.call_once(|| gicd_va);
            // SAFETY: as above.
            let mut gic = unsafe { GicV2::new(gicd_va as *mut _, gicc_va as *mut _) };
            gic.setup();
            HostGic::V2(gic)
        }
    };
    *GIC.lock() = Some(gic);
    Ok(())
}

/// Initialises this (secondary) CPU's GIC interface.
pub fn init_secondary(cpu: usize) {
    match GIC.lock().as_mut() {
        Some(HostGic::V3(gic)) => {
            GicCpuInterface::enable_system_register_el2(true);
            gic.init_cpu(cpu);
            GicCpuInterface::enable_group1(true);
        }
        Some(HostGic::V2(gic)) => gic.setup(),
        None => {}
    }
}

use arm_gic::IntId;
use arm_gic::InterruptGroup;

/// arm-gic builds INTIDs only per class.
fn to_intid(raw: u32) -> IntId {
    match raw {
        0..16 => IntId::sgi(raw),
        16..32 => IntId::ppi(raw - 16),
        _ => IntId::spi(raw - 32),
    }
}

/// GICv2 distributor VA (for ITARGETSR, which arm-gic's GicV2 has no setter for).
static V2_GICD_VA: spin::Once<u64> = spin::Once::new();

fn set_v2_target_cpu0(intid: u32) {
    let Some(&gicd) = V2_GICD_VA.get() else {
        return;
    };
    if !(32..1020).contains(&intid) {
        return;
    }
    // SAFETY: GICD_ITARGETSR<n> is a byte-accessible array at 0x800 in the distributor frame
    // mapped at boot; this sets the SPI's target to CPU interface 0.
    unsafe { core::ptr::write_volatile((gicd + 0x800 + u64::from(intid)) as *mut u8, 1) };
}

/// The SGI Bulkhead sends to make another physical CPU leave its guest (a "kick").
pub const KICK_SGI: u32 = 8;

/// Enables a private interrupt (SGI/PPI) on the calling CPU, at the default priority.
pub fn enable_private(intid: u32, cpu: usize) {
    let id = to_intid(intid);
    match GIC.lock().as_mut() {
        Some(HostGic::V3(gic)) => {
            let _ = gic.set_interrupt_priority(id, Some(cpu), 0x80);
            let _ = gic.enable_interrupt(id, Some(cpu), true);
            GicCpuInterface::set_priority_mask(0xff);
        }
        Some(HostGic::V2(gic)) => {
            gic.set_interrupt_priority(id, 0x80);
            let _ = gic.enable_interrupt(id, true);
            gic.set_priority_mask(0xff);
        }
        None => {}
    }
}

/// Enables a shared interrupt, delivered to the boot CPU.
pub fn enable_shared(intid: u32) {
    let id = to_intid(intid);
    match GIC.lock().as_mut() {
        Some(HostGic::V3(gic)) => {
            let _ = gic.set_interrupt_priority(id, None, 0x80);
            let _ = gic
                .distributor()
                .set_routing(id, Some(crate::arch::cpu::boot_mpidr()));
            let _ = gic.enable_interrupt(id, None, true);
        }
        Some(HostGic::V2(gic)) => {
            gic.set_interrupt_priority(id, 0x80);
            set_v2_target_cpu0(intid);
            let _ = gic.enable_interrupt(id, true);
        }
        None => {}
    }
}

/// Acknowledges the highest-priority pending physical interrupt on this CPU. The `IntId`
/// is the raw IAR value (GICv2 SGIs carry their source CPU in bits 12:10); hand it back to
/// [`eoi`] unchanged.
pub fn ack() -> Option<IntId> {
    let mut guard = GIC.lock();
    match guard.as_mut() {
        Some(HostGic::V3(_)) => {
            drop(guard);
            GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1)
        }
        // Non-secure accesses to GICC_IAR see the non-secure (group 1) interrupts.
        Some(HostGic::V2(gic)) => gic.get_and_acknowledge_interrupt(InterruptGroup::Group0),
        None => None,
    }
}

/// Ends (priority drop + deactivate) a physical interrupt taken with [`ack`].
pub fn eoi(id: IntId) {
    let mut guard = GIC.lock();
    match guard.as_mut() {
        Some(HostGic::V3(_)) => {
            drop(guard);
            GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
        }
        Some(HostGic::V2(gic)) => gic.end_interrupt(id, InterruptGroup::Group0),
        None => {}
    }
}

/// Sends the kick SGI to physical CPU `pcpu` (MPIDR `mpidr`).
pub fn kick(pcpu: usize, mpidr: u64) {
    let id = IntId::sgi(KICK_SGI);
    let mut guard = GIC.lock();
    match guard.as_mut() {
        Some(HostGic::V3(_)) => {
            drop(guard);
            let target = arm_gic::gicv3::SgiTarget::List {
                affinity3: (mpidr >> 32) as u8,
                affinity2: (mpidr >> 16) as u8,
                affinity1: (mpidr >> 8) as u8,
                target_list: 1 << (mpidr & 0xf),
            };
            let _ = GicCpuInterface::send_sgi(
                id,
                target,
                arm_gic::gicv3::SgiTargetGroup::CurrentGroup1,
            );
        }
        Some(HostGic::V2(gic)) => {
            let target = arm_gic::gicv2::SgiTarget::List {
                target_list_filter: arm_gic::gicv2::SgiTargetListFilter::CPUTargetList,
                target_list: 1 << (pcpu & 7),
            };
            gic.send_sgi(id, target);
        }
        None => {}
    }
}

/// Enables or disables a private interrupt on the calling CPU.
pub fn set_private_enabled(intid: u32, cpu: usize, enabled: bool) {
    let id = to_intid(intid);
    match GIC.lock().as_mut() {
        Some(HostGic::V3(gic)) => {
            let _ = gic.enable_interrupt(id, Some(cpu), enabled);
        }
        Some(HostGic::V2(gic)) => {
            let _ = gic.enable_interrupt(id, enabled);
        }
        None => {}
    }
}
