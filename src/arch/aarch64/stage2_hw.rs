//! Stage-2 hardware controls: VTCR/VTTBR, TLB invalidation by VMID, and the cache
//! maintenance a guest running with its MMU off needs (KVM/ARM: turn off vCPUs and flush stage 2 on system events, 2014).

use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, Readable, VTCR_EL2, VTTBR_EL2, Writeable,
};

/// The physical address range field (ID_AA64MMFR0_EL1.PARange).
pub fn pa_range() -> u8 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) as u8
}

/// Whether the CPU implements 16-bit VMIDs.
pub fn has_16bit_vmid() -> bool {
    ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::VMIDBits) == 0b0010
}

/// Loads a VM's stage-2 on this CPU.
pub fn load(vtcr: u64, root_pa: u64, vmid: u16) {
    VTCR_EL2.set(vtcr);
    VTTBR_EL2.set(root_pa | (u64::from(vmid) << 48));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Invalidates every stage-1 and stage-2 TLB entry of the VMID loaded in VTTBR_EL2, on every
/// CPU of the inner-shareable domain.
pub fn flush_current_vmid() {
    // SAFETY: TLB maintenance has no memory-safety effect; barriers complete it.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}

/// Invalidates all EL1&0 translations of every VMID everywhere, and the instruction caches
/// (VMID rollover: recycled VMIDs must not hit stale entries).
pub fn flush_all_vmids() {
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi alle1is",
            "dsb ish",
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}

/// The VMID allocator's hardware hook.
pub struct BroadcastTlb;

impl crate::vmid::VmidTlb for BroadcastTlb {
    fn flush_all_vmids(&self) {
        flush_all_vmids();
    }
}

/// Cleans and invalidates `[va, va+len)` to the point of coherency, so a guest reading with
/// its MMU off (non-cacheable) sees what the hypervisor wrote through its cacheable mapping,
/// and later evictions cannot overwrite what the guest writes non-cacheably.
pub fn clean_inval_to_poc(va: u64, len: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    // DminLine (bits 19:16): log2 of the smallest data cache line, in 4-byte words.
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let start = va & !(line - 1);
    let lines = (va + len).saturating_sub(start).div_ceil(line);
    let (groups, rest) = (lines / 4, lines % 4);
    let mut addr = start;
    if groups > 0 {
        // SAFETY: DC CIVAC on mapped VAs (the linear window) writes back and drops the lines;
        // four per iteration, since a 32 MiB kernel has half a million lines.
        unsafe {
            core::arch::asm!(
                "1:",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "subs {n}, {n}, #1",
                "b.ne 1b",
                a = inout(reg) addr,
                line = in(reg) line,
                n = inout(reg) groups => _,
                options(nostack),
            )
        };
    }
    for _ in 0..rest {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("dc civac, {}", in(reg) addr, options(nostack, preserves_flags))
        };
        addr += line;
    }
    // SAFETY: barriers, and invalidating the instruction cache (new guest code).
    unsafe { core::arch::asm!("dsb sy", "ic ialluis", "dsb ish", "isb", options(nostack)) };
}
