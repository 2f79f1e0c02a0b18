//! The MMIO access a data abort describes (Arm ARM, ESR_ELx "ISS encoding for an exception
//! from a Data Abort": ISV, SAS, SSE, SRT, SF, AR, WnR), and the faulting IPA (HPFAR_EL2.FIPA
//! plus FAR_EL2's page offset).

use core::fmt;

use super::esr::{ABORT_ISS, AbortIss, ESR_ELx, Esr, HPFAR, Hpfar};
use crate::devices::mmio::{AccessSize, MmioAccess};

/// Why a data abort cannot be emulated; the handler injects an abort into the guest.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MmioDecodeError {
    /// ESR's exception class is not a lower-EL data abort.
    NotDataAbort,
    /// ISV = 0: the instruction (e.g. LDP, post-index, SIMD) gives no syndrome to emulate.
    NoSyndrome,
    /// The abort came from a stage-1 page-table walk that touched a device IPA.
    PageTableWalk,
    /// A cache maintenance instruction hit the device.
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

/// The faulting IPA: HPFAR_EL2.FIPA (IPA[51:12]) and FAR_EL2's page offset. HPFAR_EL2 is valid
/// for translation, access-flag and address-size faults and faults on a stage-1 walk; FAR's
/// offset when ISS.FnV is 0 — the handler checks the fault kind before trusting this.
pub fn fault_ipa(hpfar_el2: u64, far_el2: u64) -> u64 {
    (Hpfar::new(hpfar_el2).read(HPFAR::FIPA) << 12) | (far_el2 & 0xfff)
}

/// Decodes a lower-EL data abort (an ESR_EL2 value) into an MMIO access. Inline: on the exit
/// fast path, where only the fields used are computed.
#[inline]
pub fn decode_data_abort(esr_el2: u64) -> Result<MmioAccess, MmioDecodeError> {
    if Esr::new(esr_el2).read_as_enum(ESR_ELx::EC) != Some(ESR_ELx::EC::Value::DataAbortLowerEl) {
        return Err(MmioDecodeError::NotDataAbort);
    }
    let iss = AbortIss::new(esr_el2);
    if iss.is_set(ABORT_ISS::EA) {
        return Err(MmioDecodeError::ExternalAbort);
    }
    if iss.is_set(ABORT_ISS::S1PTW) {
        return Err(MmioDecodeError::PageTableWalk);
    }
    if iss.is_set(ABORT_ISS::CM) {
        return Err(MmioDecodeError::CacheMaintenance);
    }
    if !iss.is_set(ABORT_ISS::ISV) {
        return Err(MmioDecodeError::NoSyndrome);
    }
    let size = match iss.read(ABORT_ISS::SAS) {
        0 => AccessSize::Byte,
        1 => AccessSize::Half,
        2 => AccessSize::Word,
        _ => AccessSize::Double,
    };
    Ok(MmioAccess {
        size,
        write: iss.is_set(ABORT_ISS::WNR),
        // A 5-bit field.
        reg: iss.read(ABORT_ISS::SRT) as u8,
        sign_extend: iss.is_set(ABORT_ISS::SSE),
        reg_is_64bit: iss.is_set(ABORT_ISS::SF),
        acquire_release: iss.is_set(ABORT_ISS::AR),
    })
}

#[cfg(test)]
mod exit_mmio_tests {
    use super::*;

    const EC_DATA_ABORT_LOWER: u64 = 0x24;
    const ESR_IL: u64 = 1 << 25;
    const ISS_ISV: u64 = 1 << 24;
    const ISS_EA: u64 = 1 << 9;
    const ISS_CM: u64 = 1 << 8;
    const ISS_S1PTW: u64 = 1 << 7;

    /// An ESR_EL2 for a data abort with a valid syndrome, spelled out from the Arm ARM's bit
    /// positions (so the tock-registers layouts are checked against them).
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
    fn exit_mmio_decodes_str_w() {
        // str w3, [x0]
        let access = decode_data_abort(esr(2, false, 3, false, true)).unwrap();
        assert_eq!(access.size, AccessSize::Word);
        assert!(access.write);
        assert_eq!(access.reg, 3);
        assert!(!access.reg_is_64bit);
        assert_eq!(access.write_value(0xdead_beef_1234_5678), 0x1234_5678);
    }

    #[test]
    fn exit_mmio_decodes_ldrsb_x_with_sign_extension() {
        // ldrsb x5, [x1]
        let access = decode_data_abort(esr(0, true, 5, true, false)).unwrap();
        assert_eq!(access.size, AccessSize::Byte);
        assert!(!access.write);
        assert_eq!(access.read_result(0x80), 0xffff_ffff_ffff_ff80);
    }

    #[test]
    fn exit_mmio_decodes_ldr_x_and_xzr_store() {
        let access = decode_data_abort(esr(3, false, 30, true, false)).unwrap();
        assert_eq!(access.size, AccessSize::Double);
        assert_eq!(access.reg, 30);
        let zr = decode_data_abort(esr(2, false, 31, false, true)).unwrap();
        assert_eq!(zr.write_value(0x1234), 0);
    }

    #[test]
    fn exit_mmio_undecodable_aborts_are_errors() {
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
    fn exit_mmio_fault_ipa_combines_hpfar_and_far() {
        // IPA 0x0900_0018: HPFAR.FIPA = 0x09000 in bits [43:4].
        assert_eq!(fault_ipa(0x9000 << 4, 0xffff_0000_1234_5018), 0x0900_0018);
        // Bits above FIPA (HPFAR.NS, RES0) are not part of the IPA.
        assert_eq!(fault_ipa((1 << 63) | (0x9000 << 4), 0x18), 0x0900_0018);
    }
}
