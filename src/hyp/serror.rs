//! An SError (asynchronous abort) taken to EL2 while a guest ran: what becomes of it. The
//! guest's own accesses caused it (nothing at EL2 runs between entry and exit), so it is
//! reflected to that guest as a virtual SError (HCR_EL2.VSE, with the syndrome in VSESR_EL2
//! where the CPU has RAS), the way KVM's `kvm_handle_guest_serror` / `kvm_inject_vabt` do —
//! except an error the RAS extension calls uncontainable or unrecoverable, which may have
//! corrupted state no one can attribute: that VM is stopped with a line (KVM panics the host
//! there; Bulkhead's other VMs keep running). Never ignored.

/// What to do with a guest's SError.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SErrorAction {
    /// Pend a virtual SError with this syndrome (the ISS of ESR_EL1 the guest will read, for
    /// VSESR_EL2).
    Reflect { vsesr: u64 },
    /// Stop the VM.
    StopVm,
}

/// ESR_ELx.ISS.IDS for an SError: the syndrome is IMPLEMENTATION DEFINED.
const IDS: u64 = 1 << 24;
/// ISS.DFSC 0b010001: an asynchronous SError interrupt (RAS-classified syndrome).
const DFSC_ASYNC_SERROR: u64 = 0x11;
/// ISS.AET, bits [12:10]: uncontainable and unrecoverable (Arm ARM, ESR_ELx, "ISS encoding
/// for an SError exception").
const AET_UC: u64 = 0b000;
const AET_UEU: u64 = 0b001;

/// Decides for an SError with syndrome `esr` (ESR_EL2).
pub fn guest_serror(esr: u64) -> SErrorAction {
    let iss = esr & 0x1ff_ffff;
    let ras_classified = iss & IDS == 0 && iss & 0x3f == DFSC_ASYNC_SERROR;
    if !ras_classified {
        // No architected syndrome: an IMPLEMENTATION DEFINED SError, as KVM injects.
        return SErrorAction::Reflect { vsesr: IDS };
    }
    match (iss >> 10) & 0b111 {
        AET_UC | AET_UEU => SErrorAction::StopVm,
        // Restartable, recoverable or corrected: the guest's RAS handling gets the syndrome.
        _ => SErrorAction::Reflect { vsesr: iss },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_SERROR: u64 = 0x2f << 26;

    #[test]
    fn serror_without_ras_syndrome_is_reflected_implementation_defined() {
        assert_eq!(
            guest_serror(EC_SERROR | IDS | 0x1234),
            SErrorAction::Reflect { vsesr: IDS }
        );
        assert_eq!(
            guest_serror(EC_SERROR),
            SErrorAction::Reflect { vsesr: IDS },
            "DFSC 0 is not an architected SError syndrome"
        );
    }

    #[test]
    fn serror_ras_uncontainable_stops_the_vm_recoverable_is_reflected() {
        let ras = |aet: u64| EC_SERROR | (aet << 10) | DFSC_ASYNC_SERROR;
        assert_eq!(guest_serror(ras(AET_UC)), SErrorAction::StopVm);
        assert_eq!(guest_serror(ras(AET_UEU)), SErrorAction::StopVm);
        for aet in [0b010, 0b011, 0b110] {
            assert_eq!(
                guest_serror(ras(aet)),
                SErrorAction::Reflect {
                    vsesr: (aet << 10) | DFSC_ASYNC_SERROR
                }
            );
        }
    }
}
