//! An MMIO access as the emulated devices see it: width, direction, transfer register and
//! how a load fills it. The exit core decodes it from a data abort's syndrome
//! (`hyp::exit::Abort::mmio`); the exit handler then gives `access.write_value(x[srt])` to the
//! device for a store, or puts `access.read_result(v)` in x[srt] for a load (nothing for XZR).

/// Width of an MMIO access.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AccessSize {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl AccessSize {
    /// Width in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Byte => 1,
            Self::Half => 2,
            Self::Word => 4,
            Self::Double => 8,
        }
    }

    /// Mask of the bits an access of this width carries.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            _ => (1u64 << (self.bytes() * 8)) - 1,
        }
    }
}

/// One decoded guest MMIO access.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MmioAccess {
    /// Access width.
    pub size: AccessSize,
    /// True for a store.
    pub write: bool,
    /// Transfer register number; 31 means XZR (reads discard, writes store 0).
    pub reg: u8,
    /// A load sign-extends the value to the register width.
    pub sign_extend: bool,
    /// The register is 64-bit (X) rather than 32-bit (W).
    pub reg_is_64bit: bool,
    /// Acquire/release semantics (no effect on emulation, reported for completeness).
    pub acquire_release: bool,
}

impl MmioAccess {
    /// The value a store writes, given the transfer register's content (pass 0 for XZR).
    pub fn write_value(&self, reg_value: u64) -> u64 {
        if self.reg == 31 {
            0
        } else {
            reg_value & self.size.mask()
        }
    }

    /// The register value a load produces from the device's `value`.
    pub fn read_result(&self, value: u64) -> u64 {
        let value = value & self.size.mask();
        let bits = self.size.bytes() * 8;
        let value = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        if self.reg_is_64bit {
            value
        } else {
            value & 0xffff_ffff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(size: AccessSize, reg: u8, sign_extend: bool, reg_is_64bit: bool) -> MmioAccess {
        MmioAccess {
            size,
            write: false,
            reg,
            sign_extend,
            reg_is_64bit,
            acquire_release: false,
        }
    }

    #[test]
    fn store_value_is_cut_to_the_access_width() {
        let a = access(AccessSize::Word, 3, false, false);
        assert_eq!(a.write_value(0xdead_beef_1234_5678), 0x1234_5678);
    }

    #[test]
    fn ldrsb_x_sign_extends_to_64_bits() {
        let a = access(AccessSize::Byte, 5, true, true);
        assert_eq!(a.read_result(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(a.read_result(0x17f), 0x7f);
    }

    #[test]
    fn ldrsh_w_sign_extends_to_32_bits_only() {
        let a = access(AccessSize::Half, 1, true, false);
        assert_eq!(a.read_result(0x8001), 0xffff_8001);
    }

    #[test]
    fn ldr_x_is_zero_extended_and_full_width() {
        assert_eq!(
            access(AccessSize::Double, 30, false, true).read_result(u64::MAX),
            u64::MAX
        );
        assert_eq!(
            access(AccessSize::Word, 30, false, true).read_result(u64::MAX),
            0xffff_ffff
        );
    }

    #[test]
    fn xzr_store_writes_zero() {
        let a = access(AccessSize::Word, 31, false, false);
        assert_eq!(a.write_value(0x1234), 0);
    }
}
