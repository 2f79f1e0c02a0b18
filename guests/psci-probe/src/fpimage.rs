//! The register image `probe.fpcheck=` (fpcheck.rs) loads into and stores from the FP/SIMD
//! or SVE registers: its layout, the pattern byte at each offset, and the register an offset
//! belongs to.
//!
//! Without SVE: V0-V31, 16 bytes each. With SVE at vector length VL bytes: Z0-Z31 (VL bytes
//! each), then P0-P15 and the FFR (VL / 8 bytes each: one bit per vector byte), as
//! `LDR/STR Zn|Pn, [x, #n, MUL VL]` lay them out.

use core::fmt;

use crate::memplan::mix;

/// V0-V31 without SVE.
pub const V_BYTES: usize = 32 * 16;
/// The largest SVE vector length (2048 bits).
pub const MAX_VL_BYTES: usize = 256;
/// The largest image: Z0-Z31, P0-P15 and the FFR at the largest vector length.
pub const MAX_IMAGE_BYTES: usize = 32 * MAX_VL_BYTES + 17 * MAX_VL_BYTES / 8;

/// The layout for vector length `vl` bytes (0: no SVE, V0-V31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub vl: usize,
}

/// The register an image offset belongs to, and the byte in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    V(usize, usize),
    Z(usize, usize),
    P(usize, usize),
    Ffr(usize),
}

impl Layout {
    /// Bytes of the image.
    pub fn bytes(self) -> usize {
        if self.vl == 0 {
            V_BYTES
        } else {
            32 * self.vl + 17 * self.predicate_bytes()
        }
    }

    fn predicate_bytes(self) -> usize {
        self.vl / 8
    }

    /// Where the FFR starts (SVE only).
    fn ffr(self) -> usize {
        32 * self.vl + 16 * self.predicate_bytes()
    }

    /// The pattern byte at `offset` for `key`. The FFR gets a prefix of ones whose length
    /// depends on `key` (a monotonic predicate: WRFFR of any other value is CONSTRAINED
    /// UNPREDICTABLE, Arm ARM).
    pub fn byte(self, key: u64, offset: usize) -> u8 {
        if self.vl != 0 && offset >= self.ffr() {
            let ones = (mix(key ^ 0xFF) % (self.vl as u64 + 1)) as usize;
            let first_bit = (offset - self.ffr()) * 8;
            let set = ones.saturating_sub(first_bit).min(8);
            return ((1u16 << set) - 1) as u8;
        }
        (mix(key ^ (offset as u64 / 8)) >> (8 * (offset % 8))) as u8
    }

    /// The register `offset` is in.
    pub fn place(self, offset: usize) -> Place {
        if self.vl == 0 {
            return Place::V(offset / 16, offset % 16);
        }
        let p = self.predicate_bytes();
        if offset < 32 * self.vl {
            Place::Z(offset / self.vl, offset % self.vl)
        } else if offset < self.ffr() {
            let rest = offset - 32 * self.vl;
            Place::P(rest / p, rest % p)
        } else {
            Place::Ffr(offset - self.ffr())
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Place::V(n, byte) => write!(f, "v{n}+{byte}"),
            Place::Z(n, byte) => write!(f, "z{n}+{byte}"),
            Place::P(n, byte) => write!(f, "p{n}+{byte}"),
            Place::Ffr(byte) => write!(f, "ffr+{byte}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_vector_length() {
        assert_eq!(Layout { vl: 0 }.bytes(), 512);
        assert_eq!(Layout { vl: 16 }.bytes(), 512 + 17 * 2);
        assert_eq!(Layout { vl: 256 }.bytes(), MAX_IMAGE_BYTES);
    }

    #[test]
    fn every_offset_names_its_register() {
        let sve = Layout { vl: 32 };
        assert_eq!(sve.place(0), Place::Z(0, 0));
        assert_eq!(sve.place(32 * 32 - 1), Place::Z(31, 31));
        assert_eq!(sve.place(32 * 32), Place::P(0, 0));
        assert_eq!(sve.place(32 * 32 + 16 * 4 - 1), Place::P(15, 3));
        assert_eq!(sve.place(32 * 32 + 16 * 4), Place::Ffr(0));
        assert_eq!(sve.place(sve.bytes() - 1), Place::Ffr(3));
        assert_eq!(Layout { vl: 0 }.place(37), Place::V(2, 5));
        assert_eq!(Place::P(3, 1).to_string(), "p3+1");
    }

    #[test]
    fn the_ffr_is_a_prefix_of_ones_and_images_differ_per_key() {
        for vl in [16, 32, 256] {
            let layout = Layout { vl };
            let mut lengths = std::collections::BTreeSet::new();
            for key in 0..200u64 {
                let bits: Vec<bool> = (layout.ffr()..layout.bytes())
                    .map(|offset| layout.byte(key, offset))
                    .flat_map(|byte| (0..8).map(move |bit| byte >> bit & 1 == 1))
                    .collect();
                assert_eq!(bits.len(), vl);
                let ones = bits.iter().take_while(|b| **b).count();
                assert!(
                    bits[ones..].iter().all(|b| !b),
                    "vl {vl} key {key}: {bits:?}"
                );
                lengths.insert(ones);
            }
            assert!(
                lengths.len() > vl.min(100) / 2,
                "FFR lengths vary: {lengths:?}"
            );
            let image = |key| {
                (0..layout.ffr())
                    .map(|o| layout.byte(key, o))
                    .collect::<Vec<_>>()
            };
            assert_ne!(image(1), image(2));
        }
    }
}
