//! Which level of the guest's stage-1 translation table walk read a given IPA: for a stage-1
//! walk that ran into an IPA with nothing behind it (a stage-2 fault with ESR.S1PTW), the
//! guest must see what a machine without EL2 would report — a synchronous external abort on
//! a translation table walk *at that level* (DFSC 0b0101LL, Arm ARM ESR_ELx "ISS encoding for
//! an exception from a Data Abort"). The hardware does not say the level; this repeats the
//! guest's walk (Arm ARM D8.2 "Translation table walk") until it reaches the faulting table.
//! Plain Rust: guest memory comes through a read callback.

/// The guest's stage-1 controls for one walk.
#[derive(Debug, Clone, Copy)]
pub struct Stage1Regs {
    pub tcr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
}

/// The level (0..=3) at which the walk for `va` reads a descriptor in the 4 KiB..64 KiB page
/// holding `fault_ipa`; `None` if it does not (the walk ends earlier, or a translation
/// regime this does not model: LPA2's level -1, 52-bit table addresses). `read(ipa)` gives a
/// descriptor from guest RAM (`None` outside RAM: the walk stops there).
pub fn walk_level(
    regs: Stage1Regs,
    va: u64,
    fault_ipa: u64,
    read: impl Fn(u64) -> Option<u64>,
) -> Option<u8> {
    let upper = va >> 63 != 0;
    let (tsz, tg, ttbr) = if upper {
        // T1SZ [21:16], TG1 [31:30] (0b01 16K, 0b10 4K, 0b11 64K).
        let granule = match (regs.tcr_el1 >> 30) & 0b11 {
            0b01 => 14,
            0b11 => 16,
            _ => 12,
        };
        ((regs.tcr_el1 >> 16) & 0x3f, granule, regs.ttbr1_el1)
    } else {
        // T0SZ [5:0], TG0 [15:14] (0b00 4K, 0b01 64K, 0b10 16K).
        let granule = match (regs.tcr_el1 >> 14) & 0b11 {
            0b01 => 16,
            0b10 => 14,
            _ => 12,
        };
        ((regs.tcr_el1) & 0x3f, granule, regs.ttbr0_el1)
    };
    let va_bits = 64u32.checked_sub(tsz as u32)?;
    let granule: u32 = tg;
    let stride = granule - 3;
    // Levels needed to resolve va_bits - granule bits, stride bits each; the walk ends at 3.
    let levels = (va_bits.checked_sub(granule)?).div_ceil(stride);
    if !(1..=4).contains(&levels) {
        return None;
    }
    let start = 4 - levels;
    let page_mask = !((1u64 << granule) - 1);
    // Table addresses: bits [47:granule] (no 52-bit output addresses).
    let address_mask = ((1u64 << 48) - 1) & page_mask;
    let mut table = ttbr & ((1u64 << 48) - 1) & !1; // BADDR (CnP, bit 0, aside)
    for level in start..=3 {
        let shift = granule + stride * (3 - level);
        let index_bits = if level == start {
            va_bits - shift
        } else {
            stride
        };
        let index = (va >> shift) & ((1u64 << index_bits) - 1);
        let descriptor_ipa = table + index * 8;
        if descriptor_ipa & page_mask == fault_ipa & page_mask {
            return Some(level as u8);
        }
        let descriptor = read(descriptor_ipa)?;
        // A table descriptor (0b11 above level 3) continues the walk; anything else ends it.
        if level == 3 || descriptor & 0b11 != 0b11 {
            return None;
        }
        table = descriptor & address_mask;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 KiB granule, 39-bit VA (T0SZ 25): the walk starts at level 1.
    const TCR_4K_39: u64 = 25;

    #[test]
    fn walk_level_finds_the_level_whose_table_is_in_a_hole() {
        let regs = Stage1Regs {
            tcr_el1: TCR_4K_39,
            ttbr0_el1: 0x4010_0000,
            ttbr1_el1: 0,
        };
        // Level 1 entry 0 points to a level-2 table at 0x2000_0000 (nothing there).
        let read = |ipa: u64| match ipa {
            0x4010_0000 => Some(0x2000_0000 | 0b11),
            _ => None,
        };
        let va = 0x0900_0fe0;
        assert_eq!(walk_level(regs, va, 0x2000_0000 + 8 * 0x48, read), Some(2));
        // The root itself in the hole: level 1.
        let hole_root = Stage1Regs {
            ttbr0_el1: 0x2000_0000,
            ..regs
        };
        assert_eq!(walk_level(hole_root, va, 0x2000_0000, read), Some(1));
        // An IPA the walk never reads.
        assert_eq!(walk_level(regs, va, 0x3000_0000, read), None);
    }

    #[test]
    fn walk_level_follows_48_bit_4k_walks_from_level_0_and_ttbr1() {
        // T0SZ = T1SZ = 16 (48-bit), TG0 4K (0), TG1 4K (0b10 << 30).
        let regs = Stage1Regs {
            tcr_el1: 16 | (16 << 16) | (0b10 << 30),
            ttbr0_el1: 0x4000_0000,
            ttbr1_el1: 0x4100_0000,
        };
        let read = |ipa: u64| match ipa & !0xfff {
            0x4000_0000 => Some(0x4000_1000 | 0b11),
            0x4100_0000 => Some(0x4100_1000 | 0b11),
            0x4100_1000 => Some(0x4100_2000 | 0b11),
            0x4100_2000 => Some(0x0900_0000 | 0b01), // a block: the walk ends
            _ => None,
        };
        assert_eq!(walk_level(regs, 0x1000, 0x4000_0000, read), Some(0));
        assert_eq!(walk_level(regs, 0x1000, 0x4000_1000, read), Some(1));
        let kernel_va = 0xffff_0000_0000_0000;
        assert_eq!(walk_level(regs, kernel_va, 0x4100_2000, read), Some(2));
        assert_eq!(walk_level(regs, kernel_va, 0x4100_3000, read), None);
    }

    #[test]
    fn walk_level_refuses_nonsense_sizes() {
        let regs = Stage1Regs {
            tcr_el1: 60, // 4-bit VA: less than a page
            ttbr0_el1: 0,
            ttbr1_el1: 0,
        };
        assert_eq!(walk_level(regs, 0, 0, |_| Some(0)), None);
    }
}
