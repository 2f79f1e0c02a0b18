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

    /// `value` (the low `bytes()` bytes) with its bytes reversed: the same access made by a
    /// big-endian guest (KVM's `vcpu_data_host_to_guest` / `vcpu_data_guest_to_host`).
    pub const fn byte_swap(self, value: u64) -> u64 {
        match self {
            Self::Byte => value & 0xff,
            Self::Half => (value as u16).swap_bytes() as u64,
            Self::Word => (value as u32).swap_bytes() as u64,
            Self::Double => value.swap_bytes(),
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

/// Whether the guest's data accesses at its current EL are big-endian: SCTLR_EL1.E0E at EL0,
/// SCTLR_EL1.EE at EL1 (Arm ARM D8.2 "Mixed-endian support"), from PSTATE.M[3:2].
pub fn guest_big_endian(pstate: u64, sctlr_el1: u64) -> bool {
    const SCTLR_E0E: u64 = 1 << 24;
    const SCTLR_EE: u64 = 1 << 25;
    let el0 = (pstate >> 2) & 0b11 == 0;
    sctlr_el1 & if el0 { SCTLR_E0E } else { SCTLR_EE } != 0
}

impl MmioAccess {
    /// The value a store writes, given the transfer register's content (pass 0 for XZR).
    /// A big-endian guest's store puts the register's bytes on the bus in reverse order, so
    /// the (little-endian) device sees them swapped.
    pub fn write_value_endian(&self, reg_value: u64, big_endian: bool) -> u64 {
        let value = self.write_value(reg_value);
        if big_endian {
            self.size.byte_swap(value)
        } else {
            value
        }
    }

    /// The low byte of [`write_value_endian`](Self::write_value_endian), without building the
    /// whole value: the register's lowest byte, or for a big-endian guest the highest of the
    /// access's (its store reverses the bytes). `reg_value` is 0 for XZR, as `Vcpu::reg(31)`
    /// reads. A data register that takes one character (a
    /// UART's) needs only this, on every character a guest prints.
    #[inline]
    pub fn write_low_byte_endian(&self, reg_value: u64, big_endian: bool) -> u8 {
        let shift = if big_endian {
            8 * (self.size.bytes() - 1)
        } else {
            0
        };
        // Shifted by less than the access is wide: no mask needed.
        (reg_value >> shift) as u8
    }

    /// The register value a load produces from the device's `value`, for a big-endian or
    /// little-endian guest: the bytes are reversed first, then sign- or zero-extended, as the
    /// CPU does.
    pub fn read_result_endian(&self, value: u64, big_endian: bool) -> u64 {
        let value = value & self.size.mask();
        self.read_result(if big_endian {
            self.size.byte_swap(value)
        } else {
            value
        })
    }

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
    fn low_byte_is_the_low_byte_of_the_whole_store_value() {
        let sizes = [
            AccessSize::Byte,
            AccessSize::Half,
            AccessSize::Word,
            AccessSize::Double,
        ];
        for size in sizes {
            for reg in [1, 31] {
                for big_endian in [false, true] {
                    let a = access(size, reg, false, true);
                    let value = 0x8877_6655_4433_2211;
                    let reg_value = if reg == 31 { 0 } else { value };
                    assert_eq!(
                        a.write_low_byte_endian(reg_value, big_endian),
                        a.write_value_endian(value, big_endian) as u8,
                        "{size:?} x{reg} big-endian {big_endian}"
                    );
                }
            }
        }
    }

    #[test]
    fn big_endian_guest_sees_device_bytes_reversed() {
        let w = access(AccessSize::Word, 1, false, false);
        assert_eq!(w.read_result_endian(0x11, true), 0x1100_0000);
        assert_eq!(w.read_result_endian(0x11, false), 0x11);
        // Reversed first, then sign-extended (LDRSH of bytes 0x80 0x01 big-endian).
        let sh = access(AccessSize::Half, 1, true, true);
        assert_eq!(sh.read_result_endian(0x0180, true), 0xffff_ffff_ffff_8001);
        assert_eq!(
            access(AccessSize::Double, 1, false, true)
                .read_result_endian(0x0102_0304_0506_0708, true),
            0x0807_0605_0403_0201
        );
        let mut st = access(AccessSize::Half, 1, false, false);
        st.write = true;
        assert_eq!(st.write_value_endian(0xdead_a0b0, true), 0xb0a0);
        assert_eq!(
            access(AccessSize::Byte, 1, false, false).read_result_endian(0x7f, true),
            0x7f
        );
    }

    #[test]
    fn endianness_follows_ee_at_el1_and_e0e_at_el0() {
        const EE: u64 = 1 << 25;
        const E0E: u64 = 1 << 24;
        assert!(guest_big_endian(0x3c5, EE), "EL1h");
        assert!(!guest_big_endian(0x3c5, E0E));
        assert!(guest_big_endian(0x0, E0E), "EL0t");
        assert!(!guest_big_endian(0x0, EE));
    }

    #[test]
    fn xzr_store_writes_zero() {
        let a = access(AccessSize::Word, 31, false, false);
        assert_eq!(a.write_value(0x1234), 0);
    }
}
