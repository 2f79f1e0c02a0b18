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

/// Zeroes `[va, va+len)` (guest RAM on first use, in the linear window) and cleans it to the
/// point of coherency. DC ZVA where the CPU allows it (DCZID_EL0.DZP = 0), one block of
/// 4 << DCZID_EL0.BS bytes per instruction; plain stores around and otherwise.
pub fn zero_to_poc(va: u64, len: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let block = 4u64 << (dczid & 0xf);
    let end = va + len;
    let mut addr = va;
    if dczid & (1 << 4) == 0 {
        // Unaligned head, if any, by stores.
        while addr < end && !addr.is_multiple_of(block) {
            // SAFETY: inside the caller's guest RAM range, mapped writable in the linear window.
            unsafe { (addr as *mut u8).write_volatile(0) };
            addr += 1;
        }
        while addr + 8 * block <= end {
            // SAFETY: DC ZVA zeroes eight aligned blocks inside the same range.
            unsafe {
                core::arch::asm!(
                    "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                    a = inout(reg) addr, b = in(reg) block, options(nostack, preserves_flags)
                )
            };
        }
        while addr + block <= end {
            // SAFETY: DC ZVA zeroes one aligned block inside the same range.
            unsafe {
                core::arch::asm!("dc zva, {}", in(reg) addr, options(nostack, preserves_flags))
            };
            addr += block;
        }
    }
    while addr + 8 <= end {
        // SAFETY: as above (8-byte stores; `va` and `len` are page multiples in practice).
        unsafe { (addr as *mut u64).write_unaligned(0) };
        addr += 8;
    }
    while addr < end {
        // SAFETY: as above.
        unsafe { (addr as *mut u8).write_volatile(0) };
        addr += 1;
    }
    clean_inval_to_poc(va, len);
}
