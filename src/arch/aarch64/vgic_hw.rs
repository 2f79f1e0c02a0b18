//! The GIC virtualization hardware: list registers and the virtual CPU interface controls.
//! GICv3 through the ICH_*_EL2 system registers, GICv2 through the GICH MMIO frame.

use aarch64_cpu::registers::*;
use spin::Once;

use crate::hyp::context::GicCpuIf;
use crate::vgic::LrEntry;

/// Which interface this machine has, fixed at boot.
#[derive(Debug, Clone, Copy)]
pub enum VgicHw {
    V3,
    /// GICH frame's VA in the linear window.
    V2 {
        gich: u64,
    },
}

static HW: Once<VgicHw> = Once::new();

pub fn init(hw: VgicHw) {
    HW.call_once(|| hw);
}

fn hw() -> Option<VgicHw> {
    HW.get().copied()
}

const GICH_HCR: u64 = 0x0;
const GICH_VTR: u64 = 0x4;
const GICH_VMCR: u64 = 0x8;
const GICH_APR: u64 = 0xf0;
const GICH_LR0: u64 = 0x100;

fn gich_read(base: u64, off: u64) -> u32 {
    // SAFETY: `base` maps this CPU's banked GICH frame as device memory (set up at boot).
    unsafe { core::ptr::read_volatile((base + off) as *const u32) }
}

fn gich_write(base: u64, off: u64, value: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((base + off) as *mut u32, value) }
}

/// Most list registers we use (the hardware may have fewer).
pub const MAX_LRS: usize = crate::vgic::MAX_LIST_REGISTERS;

/// How many list registers this CPU has.
pub fn lr_count() -> usize {
    match hw() {
        Some(VgicHw::V3) => (ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1).min(MAX_LRS),
        Some(VgicHw::V2 { gich }) => ((gich_read(gich, GICH_VTR) & 0x3f) as usize + 1).min(MAX_LRS),
        None => 0,
    }
}

/// Enables the virtual CPU interface on this CPU, with the underflow maintenance interrupt
/// when `underflow` (more interrupts queued than list registers).
pub fn enable(underflow: bool) {
    match hw() {
        Some(VgicHw::V3) => {
            let uie = if underflow {
                ICH_HCR_EL2::UIE::SET
            } else {
                ICH_HCR_EL2::UIE::CLEAR
            };
            ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET + uie);
        }
        Some(VgicHw::V2 { gich }) => gich_write(gich, GICH_HCR, 1 | (u32::from(underflow) << 1)),
        None => {}
    }
}

/// How many ICH_AP0R<n>_EL2 / ICH_AP1R<n>_EL2 exist: 5 bits of preemption use <n> = 0, 6 bits
/// 0-1, 7 bits 0-3 (GICv3 architecture specification, ICH_AP0R<n>_EL2; only those
/// ICH_VTR_EL2.PREbits implements may be accessed).
fn v3_apr_count() -> usize {
    match ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) + 1 {
        ..=5 => 1,
        6 => 2,
        _ => 4,
    }
}

/// Stores the guest-owned virtual CPU interface state of the vCPU on this CPU: the virtual
/// machine control (priority mask, binary points, group enables, EOI mode) and the active
/// priorities — an interrupt still active must keep its priority masked wherever the vCPU
/// runs next (GICv3: ICH_VMCR_EL2, ICH_AP0R<n>/AP1R<n>_EL2; GICv2: GICH_VMCR, GICH_APR,
/// specification 5.3). The list registers are empty between runs (the run loop folds them).
pub fn save_cpu_interface(gic: &mut GicCpuIf) {
    match hw() {
        Some(VgicHw::V3) => {
            gic.vmcr = ICH_VMCR_EL2.get();
            let count = v3_apr_count();
            gic.ap0r[0] = ICH_AP0R0_EL2.get() as u32;
            gic.ap1r[0] = ICH_AP1R0_EL2.get() as u32;
            if count >= 2 {
                gic.ap0r[1] = ICH_AP0R1_EL2.get() as u32;
                gic.ap1r[1] = ICH_AP1R1_EL2.get() as u32;
            }
            if count >= 4 {
                gic.ap0r[2] = ICH_AP0R2_EL2.get() as u32;
                gic.ap0r[3] = ICH_AP0R3_EL2.get() as u32;
                gic.ap1r[2] = ICH_AP1R2_EL2.get() as u32;
                gic.ap1r[3] = ICH_AP1R3_EL2.get() as u32;
            }
        }
        Some(VgicHw::V2 { gich }) => {
            gic.vmcr = u64::from(gich_read(gich, GICH_VMCR));
            gic.ap1r[0] = gich_read(gich, GICH_APR);
        }
        None => {}
    }
}

/// Loads `gic` into this CPU's virtual CPU interface (the reverse of [`save_cpu_interface`]).
pub fn restore_cpu_interface(gic: &GicCpuIf) {
    match hw() {
        Some(VgicHw::V3) => {
            ICH_VMCR_EL2.set(gic.vmcr);
            let count = v3_apr_count();
            ICH_AP0R0_EL2.set(gic.ap0r[0].into());
            ICH_AP1R0_EL2.set(gic.ap1r[0].into());
            if count >= 2 {
                ICH_AP0R1_EL2.set(gic.ap0r[1].into());
                ICH_AP1R1_EL2.set(gic.ap1r[1].into());
            }
            if count >= 4 {
                ICH_AP0R2_EL2.set(gic.ap0r[2].into());
                ICH_AP0R3_EL2.set(gic.ap0r[3].into());
                ICH_AP1R2_EL2.set(gic.ap1r[2].into());
                ICH_AP1R3_EL2.set(gic.ap1r[3].into());
            }
        }
        Some(VgicHw::V2 { gich }) => {
            gich_write(gich, GICH_VMCR, gic.vmcr as u32);
            gich_write(gich, GICH_APR, gic.ap1r[0]);
        }
        None => {}
    }
}

fn v3_lr_write(index: usize, value: u64) {
    match index {
        0 => ICH_LR0_EL2.set(value),
        1 => ICH_LR1_EL2.set(value),
        2 => ICH_LR2_EL2.set(value),
        3 => ICH_LR3_EL2.set(value),
        4 => ICH_LR4_EL2.set(value),
        5 => ICH_LR5_EL2.set(value),
        6 => ICH_LR6_EL2.set(value),
        7 => ICH_LR7_EL2.set(value),
        8 => ICH_LR8_EL2.set(value),
        9 => ICH_LR9_EL2.set(value),
        10 => ICH_LR10_EL2.set(value),
        11 => ICH_LR11_EL2.set(value),
        12 => ICH_LR12_EL2.set(value),
        13 => ICH_LR13_EL2.set(value),
        14 => ICH_LR14_EL2.set(value),
        15 => ICH_LR15_EL2.set(value),
        _ => {}
    }
}

fn v3_lr_read(index: usize) -> u64 {
    match index {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}

/// Encodes an entry in ICH_LR<n>_EL2 format.
fn v3_encode(e: &LrEntry) -> u64 {
    let state = (u64::from(e.pending)) | (u64::from(e.active) << 1);
    u64::from(e.intid)
        | (u64::from(e.eoi_maintenance) << 41)
        | (u64::from(e.priority) << 48)
        | (u64::from(e.group1) << 60)
        | (state << 62)
}

/// Encodes an entry in GICH_LR<n> format (5 priority bits, CPUID for SGIs).
fn v2_encode(e: &LrEntry) -> u32 {
    let state = u32::from(e.pending) | (u32::from(e.active) << 1);
    (e.intid & 0x3ff)
        | ((u32::from(e.source) & 7) << 10)
        | (u32::from(e.eoi_maintenance) << 19)
        | ((u32::from(e.priority) >> 3) << 23)
        | (state << 28)
        | (u32::from(e.group1) << 30)
}

/// Writes list register `index` (`None` empties it).
pub fn write_lr(index: usize, entry: Option<&LrEntry>) {
    match hw() {
        Some(VgicHw::V3) => v3_lr_write(index, entry.map_or(0, v3_encode)),
        Some(VgicHw::V2 { gich }) => gich_write(
            gich,
            GICH_LR0 + 4 * index as u64,
            entry.map_or(0, v2_encode),
        ),
        None => {}
    }
}

/// Reads back the (pending, active) state of list register `index`.
pub fn read_lr_state(index: usize) -> (bool, bool) {
    let state = match hw() {
        Some(VgicHw::V3) => (v3_lr_read(index) >> 62) as u32,
        Some(VgicHw::V2 { gich }) => gich_read(gich, GICH_LR0 + 4 * index as u64) >> 28,
        None => 0,
    };
    (state & 1 != 0, state & 2 != 0)
}
