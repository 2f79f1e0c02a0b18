//! Decoding a guest data abort into an MMIO access the emulated devices can serve.
//!
//! When a guest load/store hits an IPA with no stage-2 mapping, ESR_EL2's ISS describes the
//! access if the instruction was a simple one (ISV = 1): size, register, sign extension,
//! direction. Everything here works on plain `u64` register values the arch code has read, so
//! it is tested on the host. (aarch64-cpu's `ESR_EL2` field definitions are target-only, so the
//! few ISS fields we need are spelled out here.)
//!
//! The flow for the exit handler: `decode_data_abort(esr)` → give `access.write_value(x[srt])`
//! to the device for a write, or store `access.read_result(v)` in x[srt] for a read (unless
//! `srt` is 31 = XZR) → complete the instruction (ESR_EL2.IL says how long it was).

use core::fmt;

/// Exception class of a data abort from a lower exception level.
pub const EC_DATA_ABORT_LOWER: u64 = 0x24;

const ESR_EC_SHIFT: u64 = 26;
const ISS_ISV: u64 = 1 << 24;
const ISS_SAS_SHIFT: u64 = 22;
const ISS_SSE: u64 = 1 << 21;
const ISS_SRT_SHIFT: u64 = 16;
const ISS_SF: u64 = 1 << 15;
const ISS_AR: u64 = 1 << 14;
const ISS_FNV: u64 = 1 << 10;
const ISS_EA: u64 = 1 << 9;
const ISS_CM: u64 = 1 << 8;
const ISS_S1PTW: u64 = 1 << 7;
const ISS_WNR: u64 = 1 << 6;

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

/// Why a data abort cannot be emulated; the caller injects an abort into the guest.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MmioDecodeError {
    /// ESR's exception class is not a lower-EL data abort.
    NotDataAbort,
    /// ISV = 0: the instruction (e.g. LDP, post-index, SIMD) gives no syndrome to emulate.
    NoSyndrome,
    /// The abort came from a stage-1 page-table walk that touched a device IPA.
    PageTableWalk,
    /// A cache maintenance instruction hit the device; the caller may simply skip it.
    CacheMaintenance,
    /// An external abort was reported rather than a translation fault.
    ExternalAbort,
}

impl fmt::Display for MmioDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::NotDataAbort => "not a data abort from a lower EL",
            Self::NoSyndrome => "no instruction syndrome (ISV=0)",
            Self::PageTableWalk => "stage-1 table walk to a device address",
            Self::CacheMaintenance => "cache maintenance on a device address",
            Self::ExternalAbort => "external abort",
        };
        f.write_str(what)
    }
}

/// The faulting IPA from HPFAR_EL2 (FIPA, IPA[51:12] in bits [43:4]) and FAR_EL2 (page offset).
///
/// HPFAR_EL2 is only valid for translation/access-flag faults and when FnV is 0; the caller
/// checks those before relying on it.
pub const fn fault_ipa(hpfar_el2: u64, far_el2: u64) -> u64 {
    let fipa = (hpfar_el2 >> 4) & ((1 << 40) - 1);
    (fipa << 12) | (far_el2 & 0xfff)
}

/// True when ESR_EL2's ISS says FAR_EL2 is not valid (FnV).
pub const fn far_not_valid(esr_el2: u64) -> bool {
    esr_el2 & ISS_FNV != 0
}

/// Decodes a lower-EL data abort (ESR_EL2 value) into an MMIO access.
pub fn decode_data_abort(esr_el2: u64) -> Result<MmioAccess, MmioDecodeError> {
    if (esr_el2 >> ESR_EC_SHIFT) & 0x3f != EC_DATA_ABORT_LOWER {
        return Err(MmioDecodeError::NotDataAbort);
    }
    if esr_el2 & ISS_EA != 0 {
        return Err(MmioDecodeError::ExternalAbort);
    }
    if esr_el2 & ISS_S1PTW != 0 {
        return Err(MmioDecodeError::PageTableWalk);
    }
    if esr_el2 & ISS_CM != 0 {
        return Err(MmioDecodeError::CacheMaintenance);
    }
    if esr_el2 & ISS_ISV == 0 {
        return Err(MmioDecodeError::NoSyndrome);
    }
    let size = match (esr_el2 >> ISS_SAS_SHIFT) & 0b11 {
        0 => AccessSize::Byte,
        1 => AccessSize::Half,
        2 => AccessSize::Word,
        _ => AccessSize::Double,
    };
    Ok(MmioAccess {
        size,
        write: esr_el2 & ISS_WNR != 0,
        reg: ((esr_el2 >> ISS_SRT_SHIFT) & 0x1f) as u8,
        sign_extend: esr_el2 & ISS_SSE != 0,
        reg_is_64bit: esr_el2 & ISS_SF != 0,
        acquire_release: esr_el2 & ISS_AR != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESR_IL: u64 = 1 << 25;

    /// Builds an ESR_EL2 for a data abort with a valid syndrome.
    fn esr(sas: u64, sse: bool, srt: u64, sf: bool, write: bool) -> u64 {
        (EC_DATA_ABORT_LOWER << 26)
            | ESR_IL
            | ISS_ISV
            | (sas << 22)
            | (u64::from(sse) << 21)
            | (srt << 16)
            | (u64::from(sf) << 15)
            | (u64::from(write) << 6)
            | 0b000111 // DFSC: translation fault, level 3
    }

    #[test]
    fn decodes_str_w() {
        // str w3, [x0]
        let access = decode_data_abort(esr(2, false, 3, false, true)).unwrap();
        assert_eq!(access.size, AccessSize::Word);
        assert!(access.write);
        assert_eq!(access.reg, 3);
        assert!(!access.reg_is_64bit);
        assert_eq!(access.write_value(0xdead_beef_1234_5678), 0x1234_5678);
    }

    #[test]
    fn decodes_ldrsb_x_with_sign_extension() {
        // ldrsb x5, [x1]
        let access = decode_data_abort(esr(0, true, 5, true, false)).unwrap();
        assert_eq!(access.size, AccessSize::Byte);
        assert!(!access.write);
        assert_eq!(access.read_result(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(access.read_result(0x17f), 0x7f);
    }

    #[test]
    fn ldrsh_w_sign_extends_to_32_bits_only() {
        let access = decode_data_abort(esr(1, true, 1, false, false)).unwrap();
        assert_eq!(access.read_result(0x8001), 0xffff_8001);
    }

    #[test]
    fn ldr_x_is_zero_extended_and_full_width() {
        let access = decode_data_abort(esr(3, false, 30, true, false)).unwrap();
        assert_eq!(access.size, AccessSize::Double);
        assert_eq!(access.read_result(u64::MAX), u64::MAX);
        let word = decode_data_abort(esr(2, false, 30, true, false)).unwrap();
        assert_eq!(word.read_result(u64::MAX), 0xffff_ffff);
    }

    #[test]
    fn xzr_store_writes_zero() {
        let access = decode_data_abort(esr(2, false, 31, false, true)).unwrap();
        assert_eq!(access.write_value(0x1234), 0);
    }

    #[test]
    fn undecodable_aborts_are_errors() {
        let no_isv = esr(2, false, 3, false, true) & !ISS_ISV;
        assert_eq!(decode_data_abort(no_isv), Err(MmioDecodeError::NoSyndrome));
        let svc = 0x15 << 26;
        assert_eq!(decode_data_abort(svc), Err(MmioDecodeError::NotDataAbort));
        let walk = esr(3, false, 0, true, false) | ISS_S1PTW;
        assert_eq!(decode_data_abort(walk), Err(MmioDecodeError::PageTableWalk));
        let cm = esr(3, false, 0, true, true) | ISS_CM;
        assert_eq!(
            decode_data_abort(cm),
            Err(MmioDecodeError::CacheMaintenance)
        );
        let ea = esr(3, false, 0, true, true) | ISS_EA;
        assert_eq!(decode_data_abort(ea), Err(MmioDecodeError::ExternalAbort));
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        // IPA 0x0900_0018: HPFAR.FIPA = 0x09000 in bits [43:4].
        assert_eq!(fault_ipa(0x9000 << 4, 0xffff_0000_1234_5018), 0x0900_0018);
        assert!(far_not_valid(ISS_FNV));
        assert!(!far_not_valid(0));
    }
}
