//! Bulkhead's vendor-specific hypervisor service calls (SMCCC v1.1, Arm DEN0028, owning entity
//! 6: function IDs 0x8600_0000..0x8600_FFFF for SMC32/HVC32 fast calls):
//!
//! | function ID   | call                | arguments          | returns in x0 (x1..x3)            |
//! |---------------|---------------------|--------------------|-----------------------------------|
//! | `0x8600_0001` | ring a doorbell     | x1 = doorbell number | 0, NOT_SUPPORTED (-1): this VM has no doorbells, INVALID_PARAMETER (-3): not one of its numbers |
//! | `0x8600_FF00` | call count          | —                  | 1                                 |
//! | `0x8600_FF01` | call UID            | —                  | Bulkhead's UUID in w0..w3         |
//! | `0x8600_FF03` | revision            | —                  | 1, 0                              |
//!
//! A doorbell raises an edge SPI in the peer VM (its config says which); the guest DTB lists
//! the doorbells a VM may ring (`/bulkhead-doorbells/doorbell@K`) and those that ring it
//! (`incoming@SPI`). `SMCCC_ARCH_FEATURES(0x8600_0001)` says whether this VM has any.

use crate::hyp::platform::Platform;
use crate::hyp::vm::Vm;
use crate::vcpu::power::VmState;
use smccc::arch::error::{INVALID_PARAMETER, NOT_SUPPORTED};

/// Ring doorbell x1.
pub const DOORBELL_RING: u32 = 0x8600_0001;
const CALL_COUNT: u32 = 0x8600_FF00;
const CALL_UID: u32 = 0x8600_FF01;
const REVISION: u32 = 0x8600_FF03;
/// SMCCC_ARCH_FEATURES: whether a function is implemented.
const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;

/// Bulkhead's vendor UID, `b0cea5a1-e4d0-4b1f-9a5e-62756c6b6864` ("bulkhd"), as SMCCC returns
/// a UID: four 32-bit words, little-endian byte order within each.
const UID: [u32; 4] = [0xa1a5_ceb0, 0x1f4b_d0e4, 0x7562_5e9a, 0x6468_6b6c];

fn ret(x0: i64) -> [u64; 4] {
    [x0 as u64, 0, 0, 0]
}

/// SMCCC function ID bits 29:24: the owning entity; 6 is "vendor specific hypervisor service".
const OWNER_SHIFT: u32 = 24;
const OWNER_MASK: u32 = 0x3f;
const OWNER_VENDOR_HYP: u32 = 6;

/// Whether this call is Bulkhead's to answer here: a vendor hypervisor call, or the
/// ARCH_FEATURES query about the doorbell. Two compares: it sits in front of every hypercall.
#[inline(always)]
pub fn is_vendor_call(fid: u32, x1: u64) -> bool {
    (fid >> OWNER_SHIFT) & OWNER_MASK == OWNER_VENDOR_HYP
        || (fid == SMCCC_ARCH_FEATURES && x1 as u32 == DOORBELL_RING)
}

/// A call `is_vendor_call` accepted; unknown vendor calls are NOT_SUPPORTED.
#[inline(never)]
pub fn call(fid: u32, args: [u64; 3], vm: &Vm, p: &impl Platform) -> [u64; 4] {
    match fid {
        DOORBELL_RING => ret(ring(vm, args[0], p)),
        CALL_COUNT => ret(1),
        CALL_UID => UID.map(u64::from),
        REVISION => [1, 0, 0, 0],
        SMCCC_ARCH_FEATURES => ret(if vm.config.doorbells_out.is_empty() {
            i64::from(NOT_SUPPORTED)
        } else {
            0
        }),
        _ => ret(i64::from(NOT_SUPPORTED)),
    }
}

/// Rings doorbell `number` of `vm`: the peer's SPI goes pending (edge) and its vCPUs hear of it.
fn ring(vm: &Vm, number: u64, p: &impl Platform) -> i64 {
    if vm.config.doorbells_out.is_empty() {
        return i64::from(NOT_SUPPORTED);
    }
    let Some(bell) = usize::try_from(number)
        .ok()
        .and_then(|n| vm.config.doorbells_out.get(n))
    else {
        return i64::from(INVALID_PARAMETER);
    };
    let peer = vm
        .peers
        .get()
        .and_then(|vms| vms.iter().find(|v| v.id == bell.peer_id));
    if let Some(peer) = peer
        && peer.power.vm_state() == VmState::Running
        && let Ok(set) = peer.vgic().set_pending(0, 32 + bell.spi)
    {
        peer.kick_vcpus(set, p);
    }
    // A peer that is off or resetting misses the ring, as a powered-off machine would.
    0
}
