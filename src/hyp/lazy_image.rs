//! Guest images loaded on first touch. A kernel Image (or raw binary) and an initrd are taken
//! as they are, so instead of copying tens of MiB before the guest's first instruction, a
//! (re)load only plans where they go; the guest's first stage-2 fault in a RAM block that
//! overlaps an image copies that block's part from the module (which stays pristine for the
//! next reset). Only what the guest touches is ever copied — KVM's lazy faulting-in of guest
//! memory, applied to the images QEMU's `-kernel` would copy up front.
//!
//! Plain Rust: it holds the plan and which blocks still wait for their part; `Vm` does the
//! copying through `Platform` under the stage-2 lock.

use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::SpinLock;

/// A part of a guest image still in its module: copied to `ipas` on first touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePiece {
    /// Where it goes in guest RAM.
    pub ipas: Range<u64>,
    /// Host PA of its first byte in the module.
    pub src_pa: u64,
    /// Whether it must be cleaned to PoC once copied: the kernel (its first instructions and
    /// data run with the MMU off, non-cacheable), not the initrd (read with caches on).
    pub clean: bool,
}

/// The images waiting in their modules, and which RAM blocks still wait for their part.
pub struct LazyImages {
    /// RAM IPAs and block size the bitmap is about.
    ram: Range<u64>,
    block: u64,
    pieces: SpinLock<Vec<ImagePiece>>,
    /// One bit per block: set while a block overlapping a piece has not been filled since
    /// the last plan.
    pending: Vec<AtomicU64>,
}

impl LazyImages {
    /// Nothing planned, for guest RAM `ram` filled in `block`-sized blocks.
    pub fn new(ram: Range<u64>, block: u64) -> Self {
        let blocks = (ram.end - ram.start).div_ceil(block);
        LazyImages {
            ram,
            block,
            pieces: SpinLock::new(Vec::new()),
            pending: (0..blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Replaces the plan (at a (re)load, while no vCPU runs): every block a piece overlaps
    /// waits for its part again, whatever it held; the others wait for nothing. Pieces must
    /// lie in RAM (the loader checked); empty ones are dropped.
    pub fn plan(&self, pieces: Vec<ImagePiece>) {
        for word in &self.pending {
            word.store(0, Ordering::Relaxed);
        }
        let pieces: Vec<ImagePiece> = pieces
            .into_iter()
            .filter(|p| p.ipas.start < p.ipas.end)
            .collect();
        for piece in &pieces {
            for block in self.blocks(&piece.ipas) {
                if let Some(word) = self.pending.get((block / 64) as usize) {
                    word.fetch_or(1 << (block % 64), Ordering::Relaxed);
                }
            }
        }
        *self.pieces.lock() = pieces;
    }

    /// Indices of the blocks overlapping `ipas` (clipped to RAM).
    pub fn blocks(&self, ipas: &Range<u64>) -> Range<u64> {
        let start = ipas.start.max(self.ram.start);
        let end = ipas.end.min(self.ram.end);
        if start >= end {
            return 0..0;
        }
        (start - self.ram.start) / self.block..(end - 1 - self.ram.start) / self.block + 1
    }

    /// The IPAs of block `block`.
    pub fn block_ipas(&self, block: u64) -> Range<u64> {
        let start = self.ram.start + block * self.block;
        start..(start + self.block).min(self.ram.end)
    }

    /// Whether block `block` still waits for its part of an image.
    pub fn is_pending(&self, block: u64) -> bool {
        self.pending
            .get((block / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (block % 64)) != 0)
    }

    /// Block `block`'s parts of the images, clipped to the block (source adjusted); empty if
    /// it waits for nothing. The caller (holding the stage-2 lock) copies them, then calls
    /// [`Self::mark_filled`], before mapping the block.
    pub fn pieces(&self, block: u64) -> Vec<ImagePiece> {
        if !self.is_pending(block) {
            return Vec::new();
        }
        let range = self.block_ipas(block);
        self.pieces
            .lock()
            .iter()
            .filter_map(|p| {
                let start = p.ipas.start.max(range.start);
                let end = p.ipas.end.min(range.end);
                (start < end).then(|| ImagePiece {
                    ipas: start..end,
                    src_pa: p.src_pa + (start - p.ipas.start),
                    clean: p.clean,
                })
            })
            .collect()
    }

    /// Block `block` holds its parts now: it waits for nothing until the next plan.
    pub fn mark_filled(&self, block: u64) {
        if let Some(word) = self.pending.get((block / 64) as usize) {
            word.fetch_and(!(1 << (block % 64)), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const MB: u64 = 1 << 20;

    fn images() -> LazyImages {
        LazyImages::new(0x4000_0000..0x4000_0000 + 64 * MB, 2 * MB)
    }

    #[test]
    fn a_block_gives_its_clipped_parts_until_filled() {
        let l = images();
        let base = 0x4000_0000;
        l.plan(vec![
            ImagePiece {
                ipas: base..base + 3 * MB,
                src_pa: 0x9000_0000,
                clean: true,
            },
            ImagePiece {
                ipas: base + 3 * MB + 0x1000..base + 5 * MB,
                src_pa: 0xa000_0000,
                clean: false,
            },
        ]);
        assert!(l.is_pending(0) && l.is_pending(1) && l.is_pending(2));
        assert!(!l.is_pending(3));
        assert_eq!(
            l.pieces(1),
            vec![
                ImagePiece {
                    ipas: base + 2 * MB..base + 3 * MB,
                    src_pa: 0x9000_0000 + 2 * MB,
                    clean: true,
                },
                ImagePiece {
                    ipas: base + 3 * MB + 0x1000..base + 4 * MB,
                    src_pa: 0xa000_0000,
                    clean: false,
                },
            ]
        );
        assert!(l.is_pending(1), "until it is marked filled");
        l.mark_filled(1);
        assert!(!l.is_pending(1));
        assert_eq!(l.pieces(1), vec![], "a block is filled once per plan");
        assert_eq!(l.pieces(3), vec![]);
    }

    #[test]
    fn a_new_plan_makes_filled_blocks_wait_again_and_forgets_the_old_ones() {
        let l = images();
        let base = 0x4000_0000;
        let piece = |start: u64, end: u64| ImagePiece {
            ipas: base + start..base + end,
            src_pa: 0x9000_0000,
            clean: true,
        };
        l.plan(vec![piece(0, 5 * MB)]);
        assert_eq!(l.pieces(0).len(), 1);
        l.mark_filled(0);
        l.plan(vec![piece(0, MB)]);
        assert!(l.is_pending(0), "reset: reloaded on next touch");
        assert!(!l.is_pending(2), "no longer part of an image");
        assert_eq!(l.pieces(2), vec![]);
        l.plan(vec![piece(MB, MB)]);
        assert!(!l.is_pending(0), "an empty piece waits for nothing");
    }

    #[test]
    fn blocks_are_clipped_to_ram() {
        let l = images();
        let base = 0x4000_0000;
        assert_eq!(l.blocks(&(base - MB..base + MB)), 0..1);
        assert_eq!(l.blocks(&(base + 63 * MB..base + 70 * MB)), 31..32);
        assert_eq!(l.blocks(&(0..base)), 0..0);
        assert_eq!(l.block_ipas(31), base + 62 * MB..base + 64 * MB);
    }
}
