//! Stage-2 hardware controls: VTCR/VTTBR, TLB invalidation by VMID, and the cache
//! maintenance a guest running with its MMU off needs (KVM/ARM: turn off vCPUs and flush stage 2 on system events, 2014).

use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, ID_AA64MMFR2_EL1, Readable, VTCR_EL2, VTTBR_EL2, Writeable,
};

/// The physical address range field (ID_AA64MMFR0_EL1.PARange).
pub fn pa_range() -> u8 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) as u8
}

/// Whether the CPU implements 16-bit VMIDs.
pub fn has_16bit_vmid() -> bool {
    ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::VMIDBits) == 0b0010
}

/// Whether the CPU implements FEAT_S2FWB: guests then run with HCR_EL2.FWB set
/// (`hyp::cpu_features::El2Controls`) and their RAM mapped forced Write-Back, so what EL2
/// writes for them needs no cleaning to PoC (`sync_for_guest`).
pub fn has_fwb() -> bool {
    ID_AA64MMFR2_EL1.read(ID_AA64MMFR2_EL1::FWB) == 1
}

/// CTR_EL0: DminLine (log2 words), IDC (bit 28), DIC (bit 29).
fn ctr() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    ctr
}

/// The smallest data cache line in bytes: CTR_EL0.DminLine (bits 19:16) is its log2 in
/// 4-byte words.
fn dcache_line(ctr: u64) -> u64 {
    4u64 << ((ctr >> 16) & 0xf)
}

/// Makes `[va, va+len)`, just written by EL2 through its cacheable mapping, what a guest
/// whose stage 2 forces Write-Back (FEAT_S2FWB) sees, data and instructions: its data
/// accesses go through the same caches, so only instruction fetches need care — the data
/// cleaned to the point of unification unless CTR_EL0.IDC says it need not be, and the
/// instruction caches invalidated unless CTR_EL0.DIC says they need not be (as KVM with FWB:
/// no `clean_dcache_guest_page`, `invalidate_icache_guest_page` only).
pub fn sync_for_guest(va: u64, len: u64) {
    let ctr = ctr();
    if ctr & (1 << 28) == 0 {
        let line = dcache_line(ctr);
        let mut addr = va & !(line - 1);
        while addr < va + len {
            // SAFETY: DC CVAU on mapped VAs (the linear window) only writes lines back.
            unsafe {
                core::arch::asm!("dc cvau, {}", in(reg) addr, options(nostack, preserves_flags))
            };
            addr += line;
        }
    }
    // SAFETY: barriers, and invalidating the instruction caches (new guest code).
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
    if ctr & (1 << 29) == 0 {
        // SAFETY: as above.
        unsafe { core::arch::asm!("ic ialluis", "dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: as above.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// Makes what EL2 wrote at `[va, va+len)` visible to a guest that may run with its MMU off:
/// cleaned to PoC, or with FEAT_S2FWB only what instruction fetches need.
pub fn clean_for_guest(va: u64, len: u64) {
    if has_fwb() {
        sync_for_guest(va, len);
    } else {
        clean_inval_to_poc(va, len);
    }
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

/// Invalidates this CPU's stage-1 TLB entries of the VMID loaded in VTTBR_EL2, and its
/// instruction cache: another vCPU of the same VM ran here last, and the guest may have
/// relied on CPU-local maintenance (a local ASID flush, `ic iallu`) done on the CPU its vCPU
/// ran on then, which never reached this one. As KVM's `__kvm_flush_cpu_context`, called from
/// `kvm_arch_vcpu_load` when `last_vcpu_ran` differs (KVM/arm64, 2017: "Invalidate TLB on
/// vCPU migration"). HCR_EL2.FB broadcasts the guest's own TLBIs, but not what a vCPU already
/// cached here under the VMID before.
pub fn flush_local_stage1() {
    // SAFETY: TLB and I-cache invalidation have no memory-safety effect; barriers complete it.
    unsafe {
        core::arch::asm!(
            "dsb nshst",
            "tlbi vmalle1",
            "ic iallu",
            "dsb nsh",
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
    let line = dcache_line(ctr());
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

/// Zeroes `[va, va+len)` (guest RAM on first use, in the linear window) and makes the zeroes
/// what the guest sees (`clean_for_guest`): a guest must never see what the RAM held before,
/// caches on or off. DC ZVA where the CPU allows it (DCZID_EL0.DZP = 0), one block of
/// 4 << DCZID_EL0.BS bytes per instruction; plain stores around and otherwise. Without
/// FEAT_S2FWB the zeroes must reach PoC (a guest with its MMU off reads non-cacheably): when a
/// DC ZVA block is one cache line, each line is zeroed and cleaned in the same pass (3
/// instructions per line instead of 2 + 2.5 in two passes).
pub fn zero_to_poc(va: u64, len: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let block = 4u64 << (dczid & 0xf);
    let line = dcache_line(ctr());
    let fwb = has_fwb();
    let end = va + len;
    let mut addr = va;
    let mut cleaned_to = va;
    if dczid & (1 << 4) == 0 {
        // Unaligned head, if any, by stores.
        while addr < end && !addr.is_multiple_of(block) {
            // SAFETY: inside the caller's guest RAM range, mapped writable in the linear window.
            unsafe { (addr as *mut u8).write_volatile(0) };
            addr += 1;
        }
        if !fwb && block == line {
            let bulk_start = addr;
            let groups = (end - addr) / (8 * block);
            if groups > 0 {
                // SAFETY: DC ZVA zeroes, then DC CIVAC writes back and drops, eight aligned
                // lines per iteration inside the same range (a DC CIVAC is ordered after the
                // DC ZVA to the same line before it in program order).
                unsafe {
                    core::arch::asm!(
                        "1:",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "dc civac, {a}", "add {a}, {a}, {b}",
                        "subs {n}, {n}, #1",
                        "b.ne 1b",
                        a = inout(reg) addr, b = in(reg) block, n = inout(reg) groups => _,
                        options(nostack),
                    )
                };
            }
            // Everything before `bulk_start` and after `addr` is cleaned below.
            if bulk_start == va {
                cleaned_to = addr;
            }
        } else {
            while addr + 16 * block <= end {
                // SAFETY: DC ZVA zeroes sixteen aligned blocks inside the same range.
                unsafe {
                    core::arch::asm!(
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        "dc zva, {a}", "add {a}, {a}, {b}", "dc zva, {a}", "add {a}, {a}, {b}",
                        a = inout(reg) addr, b = in(reg) block, options(nostack, preserves_flags)
                    )
                };
            }
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
    if fwb {
        sync_for_guest(va, len);
    } else {
        // What the fused pass did not clean (all of it when there was none), and the
        // barriers and instruction-cache invalidation every clean ends with.
        clean_inval_to_poc(cleaned_to, end - cleaned_to);
    }
}
