//! Sizes for people: every message that shows a size uses these, so it reads in KiB/MiB/GiB.

use core::fmt;

const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];

/// A size in bytes printed in the largest binary unit that divides it exactly ("512 MiB",
/// "1536 KiB", "100 bytes"), so an error message shows the number the user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes != 0 {
            for (unit, shift) in UNITS {
                if bytes.trailing_zeros() >= shift {
                    return write!(f, "{} {unit}", bytes >> shift);
                }
            }
        }
        write!(f, "{bytes} bytes")
    }
}

/// A size in bytes in the largest unit it reaches, with one decimal rounded up when it is not
/// a whole number of that unit ("32 MiB", "32.1 MiB", "900 bytes"): for sizes a file or a
/// header dictates, which rarely divide evenly. Rounded up, so a size shown as a limit's
/// neighbour never looks smaller than it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApproxSize(pub u64);

impl fmt::Display for ApproxSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, shift) in UNITS {
            let one = 1u64 << shift;
            if bytes >= one {
                let whole = bytes >> shift;
                let rest = bytes & (one - 1);
                if rest == 0 {
                    return write!(f, "{whole} {unit}");
                }
                // Tenths, rounded up (u128: no overflow for any u64).
                let tenths = ((rest as u128) * 10).div_ceil(one as u128) as u64;
                let (whole, tenths) = if tenths == 10 {
                    (whole + 1, 0)
                } else {
                    (whole, tenths)
                };
                return write!(f, "{whole}.{tenths} {unit}");
            }
        }
        write!(f, "{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn exact_sizes_use_the_unit_that_divides_them() {
        assert_eq!(ByteSize(512 << 20).to_string(), "512 MiB");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536 KiB");
        assert_eq!(ByteSize(100).to_string(), "100 bytes");
        assert_eq!(ByteSize(0).to_string(), "0 bytes");
    }

    #[test]
    fn approximate_sizes_round_up_to_a_tenth() {
        assert_eq!(ApproxSize(32 << 20).to_string(), "32 MiB");
        // Debian 6.1's image_size: 32 MiB + 64 KiB.
        assert_eq!(ApproxSize(0x201_0000).to_string(), "32.1 MiB");
        assert_eq!(ApproxSize((1 << 30) - 1).to_string(), "1024.0 MiB");
        assert_eq!(ApproxSize(4 << 20).to_string(), "4 MiB");
        assert_eq!(ApproxSize(1500).to_string(), "1.5 KiB");
        assert_eq!(ApproxSize(900).to_string(), "900 bytes");
        assert_eq!(ApproxSize(u64::MAX).to_string(), "16777216.0 TiB");
    }
}
