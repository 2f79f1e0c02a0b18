//! Where an SPI's fields sit in the GIC distributor (GICv2 and GICv3 share these offsets; Arm
//! IHI 0069 "GIC architecture specification", 12.9 "The GIC Distributor register
//! descriptions"). Every field is reached through an aligned 32-bit word, the one access
//! width every distributor register allows.

pub const GICD_IGROUPR: u64 = 0x0080;
pub const GICD_ISENABLER: u64 = 0x0100;
pub const GICD_ISPENDR: u64 = 0x0200;
pub const GICD_ICPENDR: u64 = 0x0280;
pub const GICD_IPRIORITYR: u64 = 0x0400;
/// GICv2 only.
pub const GICD_ITARGETSR: u64 = 0x0800;
pub const GICD_ICFGR: u64 = 0x0C00;
/// GICv3 only: one 64-bit register per INTID.
pub const GICD_IROUTER: u64 = 0x6000;

/// A field inside one 32-bit distributor word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset of the word from the distributor base.
    pub offset: u64,
    pub shift: u32,
    /// The field's mask, before shifting.
    pub mask: u32,
}

impl Field {
    /// `word` with the field set to `value`.
    pub fn set(self, word: u32, value: u32) -> u32 {
        (word & !(self.mask << self.shift)) | ((value & self.mask) << self.shift)
    }

    /// The field's value in `word`.
    pub fn get(self, word: u32) -> u32 {
        (word >> self.shift) & self.mask
    }

    /// The word with only this field set to `value` (for write-1-to-set/clear rows).
    pub fn alone(self, value: u32) -> u32 {
        self.set(0, value)
    }
}

/// `intid`'s field in a row of `bits`-bit fields (1, 2 or 8) starting at `base`.
fn field(base: u64, intid: u32, bits: u32) -> Field {
    let per_word = 32 / bits;
    Field {
        offset: base + u64::from(intid / per_word) * 4,
        shift: (intid % per_word) * bits,
        mask: (1 << bits) - 1,
    }
}

/// 1 bit per interrupt: IGROUPR, ISENABLER, ISPENDR, ICPENDR, ...
pub fn bit(base: u64, intid: u32) -> Field {
    field(base, intid, 1)
}

/// 8 bits per interrupt: IPRIORITYR, ITARGETSR.
pub fn byte(base: u64, intid: u32) -> Field {
    field(base, intid, 8)
}

/// ICFGR's 2 bits per interrupt; value [`ICFGR_EDGE`] makes it edge-triggered.
pub fn config(intid: u32) -> Field {
    field(GICD_ICFGR, intid, 2)
}

/// ICFGR value for edge-triggered (Int_config bit 1).
pub const ICFGR_EDGE: u32 = 0b10;

/// The two 32-bit halves (low, high) of GICD_IROUTER<intid>.
pub fn irouter_words(intid: u32) -> (u64, u64) {
    let offset = GICD_IROUTER + u64::from(intid) * 8;
    (offset, offset + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_40_fields_sit_where_the_spec_puts_them() {
        let intid = 72; // SPI 40
        assert_eq!(
            bit(GICD_ISENABLER, intid),
            Field {
                offset: 0x108,
                shift: 8,
                mask: 1
            }
        );
        assert_eq!(bit(GICD_ICPENDR, intid).offset, 0x288);
        assert_eq!(
            byte(GICD_IPRIORITYR, intid),
            Field {
                offset: 0x448,
                shift: 0,
                mask: 0xFF
            }
        );
        assert_eq!(
            byte(GICD_ITARGETSR, 75),
            Field {
                offset: 0x848,
                shift: 24,
                mask: 0xFF
            }
        );
        assert_eq!(
            config(intid),
            Field {
                offset: 0xC10,
                shift: 16,
                mask: 3
            }
        );
        assert_eq!(irouter_words(intid), (0x6240, 0x6244));
    }

    #[test]
    fn set_changes_only_the_field() {
        let f = byte(GICD_IPRIORITYR, 33);
        assert_eq!(f.set(0xAABB_CCDD, 0x12), 0xAABB_12DD);
        assert_eq!(f.get(0xAABB_12DD), 0x12);
        assert_eq!(config(47).set(0, ICFGR_EDGE), 0b10 << 30);
        assert_eq!(bit(GICD_ISPENDR, 63).alone(1), 1 << 31);
    }
}
