//! The system registers Bulkhead traps (or will trap), each named once with its encoding.
//!
//! One table, one macro: it generates [`SysReg`], [`SysReg::id`], [`SysReg::from_id`] and
//! [`SysReg::name`], so a name and its encoding cannot drift apart. `from_id` is a `match`
//! generated from the same rows, so two rows with one encoding are an unreachable pattern.
//!
//! Encodings are the Arm ARM's (DDI 0487, chapter D24 register descriptions, "Accessing ...":
//! `MRS <Xt>, <reg>` op0/op1/CRn/CRm/op2), checked against Linux
//! `arch/arm64/include/asm/sysreg.h` and `arch/arm64/tools/sysreg`.

use super::SysRegId;

macro_rules! sysregs {
    ($(
        $(#[$doc:meta])*
        $name:ident = ($op0:literal, $op1:literal, $crn:literal, $crm:literal, $op2:literal),
    )+) => {
        /// A system register Bulkhead names, spelled as in the Arm ARM.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SysReg {
            $( $(#[$doc])* $name, )+
        }

        impl SysReg {
            /// Every named register, in table order.
            pub const ALL: &[SysReg] = &[$(SysReg::$name),+];

            /// The register's op0/op1/CRn/CRm/op2 encoding.
            pub const fn id(self) -> SysRegId {
                match self {
                    $( SysReg::$name => SysRegId::new($op0, $op1, $crn, $crm, $op2), )+
                }
            }

            /// The named register with this encoding, if there is one.
            pub const fn from_id(id: SysRegId) -> Option<SysReg> {
                match (id.op0, id.op1, id.crn, id.crm, id.op2) {
                    $( ($op0, $op1, $crn, $crm, $op2) => Some(SysReg::$name), )+
                    _ => None,
                }
            }

            /// The Arm ARM name, e.g. `"ICC_SGI1R_EL1"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( SysReg::$name => stringify!($name), )+
                }
            }
        }
    };
}

sysregs! {
    // GICv3 SGI generation (ICH_HCR_EL2.TC traps them): the vGIC turns writes into IPIs.
    /// Interrupt Controller Software Generated Interrupt Group 1 Register.
    ICC_SGI1R_EL1 = (3, 0, 12, 11, 5),
    /// Interrupt Controller Alias Software Generated Interrupt Group 1 Register.
    ICC_ASGI1R_EL1 = (3, 0, 12, 11, 6),
    /// Interrupt Controller Software Generated Interrupt Group 0 Register.
    ICC_SGI0R_EL1 = (3, 0, 12, 11, 7),

    // The EL1 physical timer (CNTHCTL_EL2.EL1PCEN = 0 traps it): emulated on the EL2 timer.
    /// Counter-timer Physical Timer TimerValue register.
    CNTP_TVAL_EL0 = (3, 3, 14, 2, 0),
    /// Counter-timer Physical Timer Control register.
    CNTP_CTL_EL0 = (3, 3, 14, 2, 1),
    /// Counter-timer Physical Timer CompareValue register.
    CNTP_CVAL_EL0 = (3, 3, 14, 2, 2),

    // AArch64 ID registers (HCR_EL2.TID3 traps them): the guest's view of the CPU's features.
    /// AArch64 Processor Feature Register 0.
    ID_AA64PFR0_EL1 = (3, 0, 0, 4, 0),
    /// AArch64 Processor Feature Register 1.
    ID_AA64PFR1_EL1 = (3, 0, 0, 4, 1),
    /// SVE Feature ID Register 0.
    ID_AA64ZFR0_EL1 = (3, 0, 0, 4, 4),
    /// AArch64 Debug Feature Register 0.
    ID_AA64DFR0_EL1 = (3, 0, 0, 5, 0),
    /// AArch64 Debug Feature Register 1.
    ID_AA64DFR1_EL1 = (3, 0, 0, 5, 1),
    /// AArch64 Instruction Set Attribute Register 0.
    ID_AA64ISAR0_EL1 = (3, 0, 0, 6, 0),
    /// AArch64 Instruction Set Attribute Register 1.
    ID_AA64ISAR1_EL1 = (3, 0, 0, 6, 1),
    /// AArch64 Instruction Set Attribute Register 2.
    ID_AA64ISAR2_EL1 = (3, 0, 0, 6, 2),
    /// AArch64 Memory Model Feature Register 0.
    ID_AA64MMFR0_EL1 = (3, 0, 0, 7, 0),
    /// AArch64 Memory Model Feature Register 1.
    ID_AA64MMFR1_EL1 = (3, 0, 0, 7, 1),
    /// AArch64 Memory Model Feature Register 2.
    ID_AA64MMFR2_EL1 = (3, 0, 0, 7, 2),

    // PMU (MDCR_EL2.TPM / TPMCR trap it).
    /// Performance Monitors Control Register.
    PMCR_EL0 = (3, 3, 9, 12, 0),

    // Debug (MDCR_EL2.TDA traps MDSCR_EL1; MDCR_EL2.TDOSA traps the OS lock registers).
    /// Monitor Debug System Control Register.
    MDSCR_EL1 = (2, 0, 0, 2, 2),
    /// OS Lock Access Register.
    OSLAR_EL1 = (2, 0, 1, 0, 4),
    /// OS Lock Status Register.
    OSLSR_EL1 = (2, 0, 1, 1, 4),
    /// OS Double Lock Register.
    OSDLR_EL1 = (2, 0, 1, 3, 4),
    /// Debug Power Control Register (MDCR_EL2.TDOSA).
    DBGPRCR_EL1 = (2, 0, 1, 4, 4),
    /// OS Lock Exception Catch Control Register (MDCR_EL2.TDOSA).
    OSECCR_EL1 = (2, 0, 0, 6, 2),
    /// Monitor Debug ROM Address Register (MDCR_EL2.TDRA).
    MDRAR_EL1 = (2, 0, 1, 0, 0),

    // The debug communications channel (MDCR_EL2.TDCC, FEAT_FGT).
    /// Monitor DCC Status Register.
    MDCCSR_EL0 = (2, 3, 0, 1, 0),
    /// Debug Data Transfer Register, half-duplex.
    DBGDTR_EL0 = (2, 3, 0, 4, 0),
    /// Debug Data Transfer Register, receive (MRS) / transmit (MSR).
    DBGDTRRX_EL0 = (2, 3, 0, 5, 0),
    /// Monitor DCC Interrupt Enable Register.
    MDCCINT_EL1 = (2, 0, 0, 2, 0),
    /// OS Lock Data Transfer Register, receive.
    OSDTRRX_EL1 = (2, 0, 0, 0, 2),
    /// OS Lock Data Transfer Register, transmit.
    OSDTRTX_EL1 = (2, 0, 0, 3, 2),

    // HCR_EL2.TACR.
    /// Auxiliary Control Register (IMPLEMENTATION DEFINED content).
    ACTLR_EL1 = (3, 0, 1, 0, 1),

    // Set/way cache maintenance (HCR_EL2.TSW): SYS instructions, op0 = 1.
    /// Data cache invalidate by set/way.
    DC_ISW = (1, 0, 7, 6, 2),
    /// Data cache clean by set/way.
    DC_CSW = (1, 0, 7, 10, 2),
    /// Data cache clean and invalidate by set/way.
    DC_CISW = (1, 0, 7, 14, 2),
}

impl core::fmt::Display for SysReg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn every_name_round_trips_through_its_encoding() {
        for &reg in SysReg::ALL {
            assert_eq!(SysReg::from_id(reg.id()), Some(reg), "{reg}");
        }
    }

    #[test]
    fn no_two_names_share_an_encoding() {
        let ids: Vec<SysRegId> = SysReg::ALL.iter().map(|r| r.id()).collect();
        for (i, a) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(a), "{a} is named twice");
        }
    }

    #[test]
    fn name_is_the_variant_spelling() {
        for &reg in SysReg::ALL {
            assert_eq!(reg.name(), alloc::format!("{reg:?}"));
            assert_eq!(reg.to_string(), reg.name());
        }
    }

    /// A second, independent transcription of a few rows in the `S<op0>_<op1>_C<n>_C<m>_<op2>`
    /// form assemblers accept, as written in Linux, TF-A and the GIC architecture
    /// specification (note: ASGI1R and SGI0R have op1 = 0; op1 = 1/2 is their AArch32 MCRR
    /// encoding).
    #[test]
    fn encodings_match_the_generic_register_names() {
        let expected = [
            (SysReg::ICC_SGI1R_EL1, "S3_0_C12_C11_5"),
            (SysReg::ICC_ASGI1R_EL1, "S3_0_C12_C11_6"),
            (SysReg::ICC_SGI0R_EL1, "S3_0_C12_C11_7"),
            (SysReg::CNTP_TVAL_EL0, "S3_3_C14_C2_0"),
            (SysReg::CNTP_CTL_EL0, "S3_3_C14_C2_1"),
            (SysReg::CNTP_CVAL_EL0, "S3_3_C14_C2_2"),
            (SysReg::ID_AA64PFR0_EL1, "S3_0_C0_C4_0"),
            (SysReg::ID_AA64ZFR0_EL1, "S3_0_C0_C4_4"),
            (SysReg::ID_AA64ISAR2_EL1, "S3_0_C0_C6_2"),
            (SysReg::ID_AA64MMFR2_EL1, "S3_0_C0_C7_2"),
            (SysReg::PMCR_EL0, "S3_3_C9_C12_0"),
            (SysReg::MDSCR_EL1, "S2_0_C0_C2_2"),
            (SysReg::OSLAR_EL1, "S2_0_C1_C0_4"),
            (SysReg::OSDLR_EL1, "S2_0_C1_C3_4"),
        ];
        for (reg, generic) in expected {
            assert_eq!(reg.id().to_string(), generic, "{reg}");
        }
    }

    #[test]
    fn unnamed_encodings_have_no_name() {
        // ICC_DIR_EL1 and an IMPLEMENTATION DEFINED register.
        assert_eq!(SysReg::from_id(SysRegId::new(3, 0, 12, 11, 1)), None);
        assert_eq!(SysReg::from_id(SysRegId::new(3, 7, 15, 15, 7)), None);
        // The AArch32-style op1 values for the SGI registers are not them.
        assert_eq!(SysReg::from_id(SysRegId::new(3, 1, 12, 11, 6)), None);
        assert_eq!(SysReg::from_id(SysRegId::new(3, 2, 12, 11, 7)), None);
    }
}
