//! The physical GIC, initialised with `arm-gic`: GICv3 (virt) or GICv2 (virt, GIC-400 on RPi4).

use core::ptr::NonNull;

use arm_gic::UniqueMmioPointer;
use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use spin::Mutex;

use crate::dtb::GicInfo;

enum HostGic {
    V2(GicV2<'static>),
    V3(GicV3<'static>),
}

// SAFETY: the driver only holds MMIO pointers; every use is under the GIC mutex.
unsafe impl Send for HostGic {}

static GIC: Mutex<Option<HostGic>> = Mutex::new(None);

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
