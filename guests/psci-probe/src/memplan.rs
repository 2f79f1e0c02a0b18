//! The memcheck's decisions, without touching memory: which guest pages it uses and which
//! word goes at each address. memcheck.rs applies them.
//!
//! Pages: one 4 KiB page in every 2 MiB block of RAM (so every boot makes stage 2 map many
//! blocks), and what is left of the budget as whole blocks from the top of RAM down (so a
//! block is also checked end to end). A budget smaller than the block count takes every
//! k-th block instead. Pages that overlap an excluded range are never used.
//!
//! Words: a bijective mix of the address under a per-boot key, so a page that reads back
//! another address's data, another boot's data, or another VM's data (another seed) shows up.

/// The page the check uses as a unit.
pub const PAGE_BYTES: u64 = 0x1000;
/// A stage-2 level-2 block: the unit Bulkhead maps guest RAM in.
pub const BLOCK_BYTES: u64 = 0x20_0000;
const PAGES_PER_BLOCK: u64 = BLOCK_BYTES / PAGE_BYTES;
/// Pages per MiB of budget.
const PAGES_PER_MIB: u64 = (1 << 20) / PAGE_BYTES;
/// Most ranges a plan can exclude (image, DTB, initrd, boot record).
pub const MAX_EXCLUDED: usize = 4;
/// Step between the single pages of consecutive blocks (odd, so offsets cycle through all
/// 512 pages of a block): different blocks are checked at different offsets.
const OFFSET_STRIDE: u64 = 167;

/// A half-open IPA range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub const fn new(start: u64, end: u64) -> Self {
        Span { start, end }
    }

    fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Why no plan could be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The budget is more than the usable RAM holds.
    DoesNotFit {
        /// Pages asked for.
        want_pages: u64,
        /// Pages of RAM outside the excluded ranges, in whole 2 MiB blocks.
        usable_pages: u64,
    },
    /// More excluded ranges than `MAX_EXCLUDED`.
    TooManyExclusions,
}

/// The pages of one memcheck: the same inputs give the same pages in the same order, so the
/// next boot verifies exactly what this boot wrote.
#[derive(Clone, Debug)]
pub struct Plan {
    /// IPA of the lowest whole 2 MiB block in RAM.
    first_block: u64,
    block_count: u64,
    excluded: [Span; MAX_EXCLUDED],
    page_count: u64,
    /// Blocks with at least one usable page.
    usable_blocks: u64,
}

impl Plan {
    /// Plans `mib` MiB of pages in the whole 2 MiB blocks of `ram`, outside `excluded`.
    pub fn new(ram: Span, excluded: &[Span], mib: u64) -> Result<Plan, PlanError> {
        let first_block = ram.start.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let last_end = ram.end / BLOCK_BYTES * BLOCK_BYTES;
        let mut plan = Plan {
            first_block,
            block_count: last_end.saturating_sub(first_block) / BLOCK_BYTES,
            excluded: [Span::default(); MAX_EXCLUDED],
            page_count: 0,
            usable_blocks: 0,
        };
        plan.excluded
            .get_mut(..excluded.len())
            .ok_or(PlanError::TooManyExclusions)?
            .copy_from_slice(excluded);
        let mut usable_pages = 0;
        for block in 0..plan.block_count {
            let usable = plan.usable_pages_in(block);
            usable_pages += usable;
            plan.usable_blocks += u64::from(usable > 0);
        }
        let want_pages = mib.saturating_mul(PAGES_PER_MIB);
        if want_pages > usable_pages {
            return Err(PlanError::DoesNotFit {
                want_pages,
                usable_pages,
            });
        }
        plan.page_count = want_pages;
        Ok(plan)
    }

    /// How many pages `pages()` yields.
    pub fn page_count(&self) -> u64 {
        self.page_count
    }

    /// The page IPAs, top block first.
    pub fn pages(&self) -> Pages<'_> {
        Pages {
            plan: self,
            next_block: self.block_count,
            usable_index: 0,
            extra_left: self.page_count.saturating_sub(self.usable_blocks),
            block: 0,
            offset: 0,
            scanned: PAGES_PER_BLOCK,
            take_left: 0,
        }
    }

    fn block_base(&self, block: u64) -> u64 {
        self.first_block + block * BLOCK_BYTES
    }

    fn is_usable(&self, page: u64) -> bool {
        let span = Span::new(page, page + PAGE_BYTES);
        !self.excluded.iter().any(|e| e.overlaps(span))
    }

    fn usable_pages_in(&self, block: u64) -> u64 {
        let base = self.block_base(block);
        let span = Span::new(base, base + BLOCK_BYTES);
        if !self.excluded.iter().any(|e| e.overlaps(span)) {
            return PAGES_PER_BLOCK;
        }
        (0..PAGES_PER_BLOCK)
            .filter(|page| self.is_usable(base + page * PAGE_BYTES))
            .count() as u64
    }

    /// Pages to take from `block`, the `usable_index`-th usable block from the top with
    /// `usable` usable pages; `extra_left` is the budget beyond one page per usable block.
    fn pages_to_take(&self, usable_index: u64, usable: u64, extra_left: u64) -> u64 {
        if self.page_count >= self.usable_blocks {
            return usable.min(1 + extra_left);
        }
        // Fewer pages than blocks: every block where floor(i * pages / blocks) steps up.
        let steps = |i: u64| i * self.page_count / self.usable_blocks;
        u64::from(steps(usable_index + 1) > steps(usable_index))
    }
}

/// Iterator over a plan's page IPAs.
pub struct Pages<'a> {
    plan: &'a Plan,
    /// Blocks not yet started are `0..next_block`.
    next_block: u64,
    /// Usable blocks started so far.
    usable_index: u64,
    extra_left: u64,
    /// The block being scanned, its first page offset and how many offsets were scanned.
    block: u64,
    offset: u64,
    scanned: u64,
    /// Pages still to take from this block.
    take_left: u64,
}

impl Iterator for Pages<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            if self.take_left > 0 && self.scanned < PAGES_PER_BLOCK {
                let index = (self.offset + self.scanned) % PAGES_PER_BLOCK;
                self.scanned += 1;
                let page = self.plan.block_base(self.block) + index * PAGE_BYTES;
                if self.plan.is_usable(page) {
                    self.take_left -= 1;
                    return Some(page);
                }
                continue;
            }
            self.next_block = self.next_block.checked_sub(1)?;
            let block = self.next_block;
            let usable = self.plan.usable_pages_in(block);
            if usable == 0 {
                continue;
            }
            let take = self
                .plan
                .pages_to_take(self.usable_index, usable, self.extra_left);
            self.usable_index += 1;
            self.extra_left -= take.saturating_sub(1);
            self.block = block;
            // A single page moves around the block; a whole block starts at its first page.
            self.offset = if take == 1 {
                block * OFFSET_STRIDE % PAGES_PER_BLOCK
            } else {
                0
            };
            self.scanned = 0;
            self.take_left = take;
        }
    }
}

/// The words one boot writes: `word(addr)` for every 8-byte word of every planned page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    key: u64,
}

impl Pattern {
    /// The pattern of boot `boot` (1 = first) of a VM whose boot drew `seed`.
    pub fn new(seed: u64, boot: u64) -> Self {
        // Odd multiplier: distinct boots give distinct keys for one seed.
        Pattern {
            key: mix(seed ^ boot.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// The word at `addr`. `mix` is a bijection, so under one key no two addresses share a
    /// word, and at one address no two keys do.
    pub fn word(self, addr: u64) -> u64 {
        mix(addr ^ self.key)
    }
}

/// SplitMix64's finaliser (Steele, Lea, Flood: "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): a bijection on u64 with good avalanche.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const MIB: u64 = 1 << 20;
    const RAM_BASE: u64 = 0x4000_0000;

    /// The probe's layout in a 256 MiB guest: image at RAM + 512 KiB, DTB at RAM + 128 MiB,
    /// boot record in the last page.
    fn probe_layout(ram_size: u64) -> (Span, [Span; 3]) {
        let ram = Span::new(RAM_BASE, RAM_BASE + ram_size);
        let dtb = RAM_BASE + (ram_size / 2).min(128 * MIB);
        let excluded = [
            Span::new(0x4008_0000, 0x4009_3000),
            Span::new(dtb, dtb + 0x1234),
            Span::new(ram.end - PAGE_BYTES, ram.end),
        ];
        (ram, excluded)
    }

    fn pages(plan: &Plan) -> Vec<u64> {
        plan.pages().collect()
    }

    #[test]
    fn four_mib_covers_every_block_once_plus_whole_blocks_outside_the_probe() {
        let (ram, excluded) = probe_layout(256 * MIB);
        let plan = Plan::new(ram, &excluded, 4).unwrap();
        let pages = pages(&plan);
        assert_eq!(pages.len() as u64, 4 * 256);
        assert_eq!(plan.page_count(), 4 * 256);
        let distinct: BTreeSet<u64> = pages.iter().copied().collect();
        assert_eq!(distinct.len(), pages.len(), "a page twice");
        for &page in &pages {
            assert_eq!(page % PAGE_BYTES, 0);
            assert!(page >= ram.start && page + PAGE_BYTES <= ram.end);
            for e in excluded {
                assert!(!e.overlaps(Span::new(page, page + PAGE_BYTES)), "{page:#x}");
            }
        }
        let blocks: BTreeSet<u64> = pages.iter().map(|p| p / BLOCK_BYTES).collect();
        assert_eq!(blocks.len(), 128, "every 2 MiB block has a page");
        // The top block is whole but for the boot record's page.
        let top = ram.end / BLOCK_BYTES - 1;
        assert_eq!(
            pages.iter().filter(|p| *p / BLOCK_BYTES == top).count(),
            511
        );
    }

    #[test]
    fn same_inputs_give_the_same_pages_in_the_same_order() {
        let (ram, excluded) = probe_layout(128 * MIB);
        let a = pages(&Plan::new(ram, &excluded, 3).unwrap());
        let b = pages(&Plan::new(ram, &excluded, 3).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn single_pages_sit_at_different_offsets_in_their_blocks() {
        let (ram, excluded) = probe_layout(256 * MIB);
        let plan = Plan::new(ram, &excluded, 1).unwrap();
        let offsets: BTreeSet<u64> = plan.pages().map(|p| p % BLOCK_BYTES).collect();
        assert!(offsets.len() > 64, "{} offsets", offsets.len());
    }

    #[test]
    fn a_budget_below_the_block_count_spreads_over_all_of_ram() {
        let (ram, excluded) = probe_layout(1024 * MIB);
        let plan = Plan::new(ram, &excluded, 1).unwrap();
        let pages = pages(&plan);
        assert_eq!(pages.len(), 256);
        let blocks: BTreeSet<u64> = pages.iter().map(|p| p / BLOCK_BYTES).collect();
        assert_eq!(blocks.len(), 256, "one page per picked block");
        let span = blocks.last().unwrap() - blocks.first().unwrap();
        assert!(span >= 500, "picked blocks span {span} of 512");
    }

    #[test]
    fn more_than_the_usable_ram_does_not_fit() {
        let (ram, excluded) = probe_layout(64 * MIB);
        assert_eq!(
            Plan::new(ram, &excluded, 64).unwrap_err(),
            PlanError::DoesNotFit {
                want_pages: 64 * 256,
                usable_pages: 64 * 256 - 0x13 - 2 - 1,
            }
        );
        assert!(Plan::new(ram, &excluded, 63).is_ok());
        assert!(matches!(
            Plan::new(ram, &excluded, u64::MAX),
            Err(PlanError::DoesNotFit { .. })
        ));
    }

    #[test]
    fn nearly_all_usable_ram_is_planned_without_touching_exclusions() {
        let (ram, excluded) = probe_layout(16 * MIB);
        let plan = Plan::new(ram, &excluded, 15).unwrap();
        let pages = pages(&plan);
        assert_eq!(pages.len(), 15 * 256);
        let distinct: BTreeSet<u64> = pages.iter().copied().collect();
        assert_eq!(distinct.len(), pages.len());
        for &page in &pages {
            for e in excluded {
                assert!(!e.overlaps(Span::new(page, page + PAGE_BYTES)), "{page:#x}");
            }
        }
    }

    #[test]
    fn a_wholly_excluded_block_gets_no_page() {
        let ram = Span::new(RAM_BASE, RAM_BASE + 8 * MIB);
        let initrd = Span::new(RAM_BASE + 2 * MIB, RAM_BASE + 4 * MIB);
        let plan = Plan::new(ram, &[initrd], 1).unwrap();
        assert!(
            plan.pages()
                .all(|p| !initrd.overlaps(Span::new(p, p + PAGE_BYTES)))
        );
        assert_eq!(plan.pages().count(), 256);
    }

    #[test]
    fn only_whole_blocks_inside_ram_are_used() {
        let ram = Span::new(RAM_BASE + 0x1000, RAM_BASE + 6 * MIB + 0x1000);
        let plan = Plan::new(ram, &[], 2).unwrap();
        assert!(
            plan.pages()
                .all(|p| (RAM_BASE + 2 * MIB..RAM_BASE + 6 * MIB).contains(&p))
        );
        assert!(Plan::new(ram, &[], 5).is_err());
    }

    #[test]
    fn too_many_exclusions_is_an_error() {
        let ram = Span::new(RAM_BASE, RAM_BASE + 8 * MIB);
        let e = [Span::default(); MAX_EXCLUDED + 1];
        assert_eq!(
            Plan::new(ram, &e, 1).unwrap_err(),
            PlanError::TooManyExclusions
        );
    }

    #[test]
    fn words_depend_on_boot_seed_and_address() {
        let addr = 0x4123_4568;
        let boot3 = Pattern::new(7, 3);
        assert_eq!(boot3.word(addr), Pattern::new(7, 3).word(addr));
        assert_ne!(
            boot3.word(addr),
            Pattern::new(7, 2).word(addr),
            "older boot"
        );
        assert_ne!(boot3.word(addr), Pattern::new(8, 3).word(addr), "other VM");
        assert_ne!(boot3.word(addr), boot3.word(addr + 8), "neighbour word");
        assert_ne!(
            boot3.word(addr),
            boot3.word(addr + BLOCK_BYTES),
            "other block"
        );
    }

    #[test]
    fn one_seed_never_repeats_a_page_across_boots() {
        // A page of boot n must differ from the same page of boot n-1 in every word.
        let page = 0x4460_0000;
        for boot in 2..=101 {
            let (now, before) = (Pattern::new(42, boot), Pattern::new(42, boot - 1));
            for word in (0..PAGE_BYTES).step_by(8) {
                assert_ne!(now.word(page + word), before.word(page + word));
            }
        }
    }

    #[test]
    fn mix_is_a_bijection_on_a_sample() {
        let outputs: BTreeSet<u64> = (0..100_000u64).map(|z| mix(z * 8)).collect();
        assert_eq!(outputs.len(), 100_000);
    }
}
