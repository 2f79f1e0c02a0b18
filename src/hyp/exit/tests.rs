//! Decoding tests. Every ESR here is built by hand from the Arm ARM encodings (the arithmetic
//! is in the comments); the ones also seen in the wild say where. All tests live under
//! `hyp::exit`, so `cargo test exit` runs them.

use proptest::prelude::*;

use super::*;
use crate::devices::mmio::AccessSize;

/// A syndrome with only ESR_EL2 set.
fn esr_only(esr: u64) -> Syndrome {
    Syndrome {
        esr,
        far: 0,
        hpfar: 0,
    }
}

fn class(esr: u64) -> ExitClass {
    GuestExit::decode(esr_only(esr)).class
}

fn abort(s: Syndrome) -> Abort {
    match GuestExit::decode(s).class {
        ExitClass::DataAbort(a) | ExitClass::InstructionAbort(a) => a,
        other => panic!("not an abort: {other:?}"),
    }
}

fn sysreg(esr: u64) -> SysRegAccess {
    match class(esr) {
        ExitClass::SysReg(access) => access,
        other => panic!("not a sysreg trap: {other:?}"),
    }
}

// ---- HVC / SMC ---------------------------------------------------------------------------

#[test]
fn hvc_0_from_aarch64_is_0x5a000000() {
    // EC 0x16 << 26 = 0x5800_0000, IL = 0x0200_0000, imm16 = 0. The value every KVM/Xen
    // trace shows for a guest's `hvc #0` (PSCI, SMCCC).
    let exit = GuestExit::decode(esr_only(0x5a00_0000));
    assert_eq!(exit.class, ExitClass::Hvc { imm: 0 });
    assert!(exit.il32);
    assert_eq!(exit.esr, 0x5a00_0000);
}

#[test]
fn hvc_immediate_is_iss_15_0() {
    assert_eq!(class(0x5a00_1234), ExitClass::Hvc { imm: 0x1234 });
    assert_eq!(class(0x5a00_ffff), ExitClass::Hvc { imm: 0xffff });
}

#[test]
fn smc_0_from_aarch64_is_0x5e000000() {
    // EC 0x17 << 26 = 0x5c00_0000, IL.
    assert_eq!(class(0x5e00_0000), ExitClass::Smc { imm: 0 });
    assert_eq!(class(0x5e00_0001), ExitClass::Smc { imm: 1 });
}

#[test]
fn exit_ignores_iss2_and_res0_bits_above_the_syndrome() {
    let esr = 0x00ff_ffff_0000_0000 | 0x5a00_0000;
    let exit = GuestExit::decode(esr_only(esr));
    assert_eq!(exit.class, ExitClass::Hvc { imm: 0 });
    assert_eq!(exit.esr, esr, "the raw value is kept for logs");
}

// ---- WFx -----------------------------------------------------------------------------------

#[test]
fn wfi_from_aarch64_as_qemu_reports_it() {
    // EC 0x01 << 26 = 0x0400_0000, IL = 0x0200_0000, CV = 0x0100_0000, COND 0b1110 << 20 =
    // 0x00e0_0000, TI 0b00: 0x07e0_0000 (QEMU's `syn_wfx(1, 0xe, 0, false)`).
    let exit = GuestExit::decode(esr_only(0x07e0_0000));
    assert_eq!(
        exit.class,
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfi,
            timeout_reg: None
        })
    );
    assert!(exit.il32);
}

#[test]
fn wfi_without_condition_fields_still_decodes() {
    // CV = 0, COND = 0: 0x0600_0000. (0x0600_0001 is a WFE, not a WFI.)
    assert_eq!(
        class(0x0600_0000),
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfi,
            timeout_reg: None
        })
    );
}

#[test]
fn wfe_is_ti_01() {
    assert_eq!(
        class(0x07e0_0001),
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfe,
            timeout_reg: None
        })
    );
}

#[test]
fn wfit_names_its_timeout_register_when_rv_is_set() {
    // `wfit x3`: Rn 3 << 5 = 0x60, RV = 0x4, TI 0b10: 0x07e0_0066.
    assert_eq!(
        class(0x07e0_0066),
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfit,
            timeout_reg: Some(3)
        })
    );
}

#[test]
fn wfet_names_its_timeout_register_when_rv_is_set() {
    // `wfet x30`: Rn 30 << 5 = 0x3c0, RV = 0x4, TI 0b11: 0x07e0_03c7.
    assert_eq!(
        class(0x07e0_03c7),
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfet,
            timeout_reg: Some(30)
        })
    );
}

#[test]
fn wfit_without_rv_has_no_timeout_register() {
    // Rn = 5 but RV = 0: 0x07e0_00a2.
    assert_eq!(
        class(0x07e0_00a2),
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfit,
            timeout_reg: None
        })
    );
}

#[test]
fn wfi_ignores_rv_and_rn_which_are_res0_for_it() {
    // RV = 1, Rn = 7 on a plain WFI: 0x07e0_00e4.
    assert_eq!(
        class(0x07e0_00e4),
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfi,
            timeout_reg: None
        })
    );
}

#[test]
fn exit_il_clear_means_a_16_bit_instruction() {
    // A T32 WFI at AArch32 EL0: IL = 0. EC 0x01, CV | COND(AL): 0x05e0_0000.
    let exit = GuestExit::decode(esr_only(0x05e0_0000));
    assert!(!exit.il32);
    assert!(matches!(exit.class, ExitClass::Wfx(_)));
}

// ---- MSR / MRS -----------------------------------------------------------------------------

#[test]
fn msr_icc_sgi1r_el1_x1() {
    // EC 0x18 << 26 | IL = 0x6200_0000. ISS: Op0 3 << 20 = 0x30_0000, Op2 5 << 17 = 0x0a_0000,
    // Op1 0, CRn 12 << 10 = 0x3000, Rt 1 << 5 = 0x20, CRm 11 << 1 = 0x16, write: 0x3a_3036.
    let access = sysreg(0x623a_3036);
    assert_eq!(access.id, SysRegId::new(3, 0, 12, 11, 5));
    assert_eq!(access.rt, 1);
    assert!(!access.read);
    assert_eq!(access.name(), Some(SysReg::ICC_SGI1R_EL1));
}

#[test]
fn msr_icc_asgi1r_el1_has_op1_0() {
    // Op2 6 << 17 = 0x0c_0000, Rt 2 << 5 = 0x40: 0x623c_3056.
    let access = sysreg(0x623c_3056);
    assert_eq!(access.id, SysRegId::new(3, 0, 12, 11, 6));
    assert_eq!(access.name(), Some(SysReg::ICC_ASGI1R_EL1));
}

#[test]
fn mrs_x0_cntp_ctl_el0() {
    // Op0 3 = 0x30_0000, Op2 1 << 17 = 0x2_0000, Op1 3 << 14 = 0xc000, CRn 14 << 10 = 0x3800,
    // Rt 0, CRm 2 << 1 = 0x4, read = 1: 0x32_f805.
    let access = sysreg(0x6232_f805);
    assert_eq!(access.id, SysRegId::new(3, 3, 14, 2, 1));
    assert_eq!(access.rt, 0);
    assert!(access.read);
    assert_eq!(access.name(), Some(SysReg::CNTP_CTL_EL0));
}

#[test]
fn msr_cntp_cval_el0_from_xzr() {
    // Op2 2 << 17 = 0x4_0000, Rt 31 << 5 = 0x3e0, write: 0x34_fbe4.
    let access = sysreg(0x6234_fbe4);
    assert_eq!(access.name(), Some(SysReg::CNTP_CVAL_EL0));
    assert_eq!(access.rt, 31);
    assert!(!access.read);
}

#[test]
fn mrs_x5_id_aa64mmfr0_el1() {
    // Op0 3, CRm 7 << 1 = 0xe, Rt 5 << 5 = 0xa0, read: 0x30_00af.
    let access = sysreg(0x6230_00af);
    assert_eq!(access.name(), Some(SysReg::ID_AA64MMFR0_EL1));
    assert_eq!(access.rt, 5);
    assert!(access.read);
}

#[test]
fn msr_oslar_el1_has_op0_2() {
    // Op0 2 << 20 = 0x20_0000, Op2 4 << 17 = 0x8_0000, CRn 1 << 10 = 0x400: 0x28_0400.
    let access = sysreg(0x6228_0400);
    assert_eq!(access.id, SysRegId::new(2, 0, 1, 0, 4));
    assert_eq!(access.name(), Some(SysReg::OSLAR_EL1));
}

#[test]
fn unnamed_sysreg_decodes_with_no_name_and_prints_generically() {
    // S3_7_C15_C15_7 (IMPLEMENTATION DEFINED space), MRS x9: Op0 0x30_0000 | Op2 7 << 17 =
    // 0xe_0000 | Op1 7 << 14 = 0x1_c000 | CRn 15 << 10 = 0x3c00 | Rt 9 << 5 = 0x120 |
    // CRm 15 << 1 = 0x1e | 1 = 0x3f_fd3f.
    let access = sysreg(0x623f_fd3f);
    assert_eq!(access.id, SysRegId::new(3, 7, 15, 15, 7));
    assert_eq!(access.rt, 9);
    assert_eq!(access.name(), None);
    assert_eq!(alloc::format!("{}", access.id), "S3_7_C15_C15_7");
}

#[test]
fn exit_sysreg_id_display_is_the_generic_assembler_name() {
    use alloc::string::ToString;
    assert_eq!(SysRegId::new(3, 0, 12, 11, 5).to_string(), "S3_0_C12_C11_5");
    assert_eq!(SysRegId::new(2, 0, 1, 3, 4).to_string(), "S2_0_C1_C3_4");
}

// ---- Data aborts ---------------------------------------------------------------------------

/// HPFAR_EL2 for an IPA: FIPA (IPA[51:12]) in bits [43:4].
fn hpfar(ipa: u64) -> u64 {
    (ipa >> 12) << 4
}

#[test]
fn str_w1_to_an_unmapped_device_page_is_an_mmio_write() {
    // `str w1, [x0]` to the PL011 data register at IPA 0x0900_0000, stage-2 translation fault
    // at level 3. EC 0x24 << 26 | IL = 0x9200_0000, ISV 0x0100_0000, SAS 0b10 << 22 =
    // 0x0080_0000, SRT 1 << 16 = 0x1_0000, WnR 0x40, DFSC 0b000111: 0x9381_0047.
    let s = Syndrome {
        esr: 0x9381_0047,
        far: 0xffff_8000_0800_0000,
        hpfar: hpfar(0x0900_0000),
    };
    let a = abort(s);
    assert!(matches!(
        GuestExit::decode(s).class,
        ExitClass::DataAbort(_)
    ));
    assert_eq!(a.ipa, 0x0900_0000);
    assert_eq!(a.far, 0xffff_8000_0800_0000);
    assert_eq!(a.fault(), FaultKind::Translation { level: 3 });
    assert_eq!(a.fsc(), 0x07);
    assert!(a.fault().is_missing_mapping());
    assert!(a.write() && !a.s1ptw() && !a.cache_maintenance());
    let mmio = a.mmio().expect("ISV=1: the access is described");
    assert_eq!(mmio.size, AccessSize::Word);
    assert_eq!(mmio.reg, 1);
    assert!(mmio.write);
}

#[test]
fn ldrb_from_a_device_register_is_an_mmio_byte_read_at_the_far_offset() {
    // `ldrb w2, [x0, #0x18]`: SAS 0, SRT 2 << 16 = 0x2_0000, read, DFSC 0b000111: 0x9302_0007.
    // The IPA's page offset comes from FAR.
    let a = abort(Syndrome {
        esr: 0x9302_0007,
        far: 0xffff_8000_0800_0018,
        hpfar: hpfar(0x0900_0000),
    });
    assert_eq!(a.ipa, 0x0900_0018);
    assert!(!a.write());
    let mmio = a.mmio().expect("ISV=1");
    assert_eq!(mmio.size, AccessSize::Byte);
    assert_eq!(mmio.reg, 2);
    assert!(!mmio.write);
}

#[test]
fn exit_ipa_joins_the_hpfar_page_and_the_far_offset() {
    // A 48-bit IPA: HPFAR holds IPA[47:12] in bits [39:4].
    let a = abort(Syndrome {
        esr: 0x9200_0007,
        far: 0x1234_5abc,
        hpfar: 0x0812_3450,
    });
    assert_eq!(a.ipa, 0x8_1234_5abc);
}

#[test]
fn ldp_without_syndrome_is_a_missing_mapping_but_not_mmio() {
    // ISV = 0 (LDP gives no syndrome), translation fault level 1: 0x9200_0005.
    let a = abort(Syndrome {
        esr: 0x9200_0005,
        far: 0x4000_0000,
        hpfar: hpfar(0x4000_0000),
    });
    assert_eq!(a.fault(), FaultKind::Translation { level: 1 });
    assert!(a.fault().is_missing_mapping());
    assert_eq!(a.mmio(), None);
}

#[test]
fn access_flag_fault_is_a_missing_mapping() {
    // WnR | DFSC 0b001011 (access flag, level 3): 0x9200_004b.
    let a = abort(esr_only(0x9200_004b));
    assert_eq!(a.fault(), FaultKind::AccessFlag { level: 3 });
    assert!(a.fault().is_missing_mapping());
    assert!(a.write());
}

#[test]
fn permission_fault_is_not_a_missing_mapping() {
    // WnR | DFSC 0b001111 (permission, level 3): 0x9200_004f.
    let a = abort(esr_only(0x9200_004f));
    assert_eq!(a.fault(), FaultKind::Permission { level: 3 });
    assert!(!a.fault().is_missing_mapping());
}

#[test]
fn stage_2_fault_on_a_stage_1_walk_sets_s1ptw_and_is_not_mmio() {
    // S1PTW 0x80 | DFSC 0b000111: 0x9200_0087. Even a (bogus) ISV is not trusted then.
    let a = abort(esr_only(0x9200_0087));
    assert!(a.s1ptw());
    assert_eq!(a.mmio(), None);
    let a = abort(esr_only(0x9200_0087 | 0x0100_0000));
    assert!(a.s1ptw());
    assert_eq!(a.mmio(), None);
}

#[test]
fn cache_maintenance_on_an_unmapped_page_sets_cm_and_is_not_mmio() {
    // `dc civac`: CM 0x100, WnR 0x40 (cache maintenance reports a write), DFSC 0b000111:
    // 0x9200_0147.
    let a = abort(esr_only(0x9200_0147));
    assert!(a.cache_maintenance());
    assert!(a.write());
    assert_eq!(a.mmio(), None);
}

#[test]
fn external_abort_is_external_and_not_mmio() {
    // ISV, EA 0x200, DFSC 0b010000: 0x9300_0210.
    let a = abort(esr_only(0x9300_0210));
    assert_eq!(a.fault(), FaultKind::External);
    assert!(!a.fault().is_missing_mapping());
    assert_eq!(a.mmio(), None);
}

#[test]
fn alignment_fault_decodes() {
    // DFSC 0b100001: 0x9200_0021.
    assert_eq!(abort(esr_only(0x9200_0021)).fault(), FaultKind::Alignment);
}

#[test]
fn data_abort_from_the_current_el_is_not_a_guest_exit() {
    // 0x9600_0050 (the aarch64-esr-decoder README example): EC 0x25, a data abort taken
    // without a change of EL, i.e. EL2's own. Not one of ours.
    assert_eq!(class(0x9600_0050), ExitClass::Unknown { ec: 0x25 });
}

// ---- Instruction aborts --------------------------------------------------------------------

#[test]
fn instruction_abort_from_the_guest_decodes_without_data_fields() {
    // EC 0x20 << 26 | IL = 0x8200_0000, IFSC 0b000111: 0x8200_0007.
    let s = Syndrome {
        esr: 0x8200_0007,
        far: 0x4008_0000,
        hpfar: hpfar(0x4008_0000),
    };
    assert!(matches!(
        GuestExit::decode(s).class,
        ExitClass::InstructionAbort(_)
    ));
    let a = abort(s);
    assert_eq!(a.ipa, 0x4008_0000);
    assert_eq!(a.fault(), FaultKind::Translation { level: 3 });
    assert!(!a.write() && !a.cache_maintenance() && a.mmio().is_none());
}

#[test]
fn instruction_abort_ignores_the_res0_wnr_cm_and_isv_bits() {
    // Bits 24, 8 and 6 are RES0 for instruction aborts: 0x8300_0147.
    let a = abort(esr_only(0x8300_0147));
    assert!(!a.write());
    assert!(!a.cache_maintenance());
    assert_eq!(a.mmio(), None);
}

#[test]
fn instruction_abort_from_the_current_el_is_unknown() {
    // EC 0x21 << 26 | IL = 0x8600_0000.
    assert_eq!(class(0x8600_0007), ExitClass::Unknown { ec: 0x21 });
}

// ---- Other classes -------------------------------------------------------------------------

#[test]
fn exit_unhandled_classes_report_their_raw_ec() {
    assert_eq!(class(0x0200_0000), ExitClass::Unknown { ec: 0x00 });
    // SVC64 (0x15), BRK (0x3c), SError (0x2f).
    for ec in [0x15u8, 0x3c, 0x2f] {
        let esr = (u64::from(ec) << 26) | 0x0200_0000;
        assert_eq!(class(esr), ExitClass::Unknown { ec });
    }
}

#[test]
fn exit_fp_and_sve_access_traps_are_one_class() {
    // EC 0x07: FP/SIMD trapped by CPTR_EL2.TFP (ISS 0 from AArch64); EC 0x19: SVE by TZ.
    assert_eq!(class(0x1e00_0000), ExitClass::FpAccess);
    assert_eq!(class(0x6600_0000), ExitClass::FpAccess);
    assert_eq!(
        class((0x07 << 26) | 0x01e0_0000),
        ExitClass::FpAccess,
        "ISS ignored"
    );
}

#[test]
fn exit_classes_are_decoded_for_exactly_the_eight_handled_ecs() {
    for ec in 0u64..64 {
        let handled = !matches!(class(ec << 26), ExitClass::Unknown { .. });
        assert_eq!(
            handled,
            matches!(ec, 0x01 | 0x07 | 0x16 | 0x17 | 0x18 | 0x19 | 0x20 | 0x24),
            "EC {ec:#x}"
        );
    }
}

// ---- Fault status codes --------------------------------------------------------------------

#[test]
fn exit_fsc_levels_0_to_3() {
    for level in 0..4u8 {
        let l = level as i8;
        assert_eq!(
            FaultKind::from_fsc(level),
            FaultKind::AddressSize { level: l }
        );
        assert_eq!(
            FaultKind::from_fsc(0x04 + level),
            FaultKind::Translation { level: l }
        );
        assert_eq!(
            FaultKind::from_fsc(0x08 + level),
            FaultKind::AccessFlag { level: l }
        );
        assert_eq!(
            FaultKind::from_fsc(0x0c + level),
            FaultKind::Permission { level: l }
        );
        assert_eq!(
            FaultKind::from_fsc(0x14 + level),
            FaultKind::ExternalOnWalk { level: l }
        );
    }
}

#[test]
fn exit_fsc_negative_levels_of_lpa2_and_d128() {
    // FEAT_LPA2, level -1.
    assert_eq!(
        FaultKind::from_fsc(0b101001),
        FaultKind::AddressSize { level: -1 }
    );
    assert_eq!(
        FaultKind::from_fsc(0b101011),
        FaultKind::Translation { level: -1 }
    );
    assert_eq!(
        FaultKind::from_fsc(0b010011),
        FaultKind::ExternalOnWalk { level: -1 }
    );
    // FEAT_D128, level -2.
    assert_eq!(
        FaultKind::from_fsc(0b101100),
        FaultKind::AddressSize { level: -2 }
    );
    assert_eq!(
        FaultKind::from_fsc(0b101010),
        FaultKind::Translation { level: -2 }
    );
    assert_eq!(
        FaultKind::from_fsc(0b010010),
        FaultKind::ExternalOnWalk { level: -2 }
    );
}

#[test]
fn exit_fsc_single_codes_and_others() {
    assert_eq!(FaultKind::from_fsc(0x10), FaultKind::External);
    assert_eq!(FaultKind::from_fsc(0x21), FaultKind::Alignment);
    assert_eq!(FaultKind::from_fsc(0x30), FaultKind::TlbConflict);
    // Tag check, parity/ECC, granule protection, atomic update, IMPLEMENTATION DEFINED,
    // reserved.
    for fsc in [0x11, 0x18, 0x1c, 0x22, 0x28, 0x31, 0x34, 0x35, 0x3f] {
        assert_eq!(FaultKind::from_fsc(fsc), FaultKind::Other { fsc });
    }
}

#[test]
fn exit_fsc_ignores_bits_above_5() {
    assert_eq!(
        FaultKind::from_fsc(0xc7),
        FaultKind::Translation { level: 3 }
    );
    assert_eq!(FaultKind::from_fsc(0x7f), FaultKind::Other { fsc: 0x3f });
}

#[test]
fn exit_missing_mapping_is_exactly_translation_and_access_flag() {
    for fsc in 0u8..64 {
        let expected = matches!(fsc, 0x04..=0x0b | 0x2a | 0x2b);
        assert_eq!(
            FaultKind::from_fsc(fsc).is_missing_mapping(),
            expected,
            "FSC {fsc:#x}"
        );
    }
}

// ---- Robustness ----------------------------------------------------------------------------

proptest! {
    #[test]
    fn exit_decode_never_panics_and_keeps_the_raw_syndrome(
        esr in any::<u64>(),
        far in any::<u64>(),
        hpfar in any::<u64>(),
    ) {
        let exit = GuestExit::decode(Syndrome { esr, far, hpfar });
        prop_assert_eq!(exit.esr, esr);
        prop_assert_eq!(exit.il32, esr & (1 << 25) != 0);
    }

    #[test]
    fn exit_abort_fields_agree_with_the_iss(
        ec in prop::sample::select(vec![0x20u64, 0x24]),
        iss in 0u64..(1 << 25),
        far in any::<u64>(),
        hpfar in any::<u64>(),
    ) {
        let esr = (ec << 26) | (1 << 25) | iss;
        let a = abort(Syndrome { esr, far, hpfar });
        let data = ec == 0x24;
        prop_assert_eq!(u64::from(a.fsc()), iss & 0x3f);
        prop_assert_eq!(a.fault(), FaultKind::from_fsc(a.fsc()));
        prop_assert_eq!(a.s1ptw(), iss & (1 << 7) != 0);
        prop_assert_eq!(a.write(), data && iss & (1 << 6) != 0);
        prop_assert_eq!(a.cache_maintenance(), data && iss & (1 << 8) != 0);
        prop_assert_eq!(a.far, far);
        prop_assert_eq!(a.ipa, crate::hyp::exit::mmio::fault_ipa(hpfar, far));
        prop_assert_eq!(a.mmio(), if data { crate::hyp::exit::mmio::decode_data_abort(esr).ok() } else { None });
    }
}

// ---- From a real boot ----------------------------------------------------------------------
//
// Syndromes logged by Bulkhead (`loglevel=trace`) booting Debian's arm64 kernel on QEMU 10
// `virt` (cortex-a72, GICv3, 2 vCPUs): PL011 at IPA 0x0900_0000, GICD at 0x0800_0000, GICR at
// 0x080a_0000.

fn logged(esr: u64, far: u64, hpfar: u64) -> GuestExit {
    GuestExit::decode(Syndrome { esr, far, hpfar })
}

fn logged_mmio(esr: u64, far: u64, hpfar: u64) -> MmioAccess {
    match logged(esr, far, hpfar).class {
        ExitClass::DataAbort(abort) => {
            assert!(abort.fault().is_missing_mapping());
            abort.mmio().expect("an MMIO access")
        }
        other => panic!("not an MMIO access: {other:?}"),
    }
}

#[test]
fn exit_real_log_wfi() {
    let exit = logged(0x07e0_0000, 0xffff_8000_0a03_1038, 0x9_0000);
    assert_eq!(
        exit.class,
        ExitClass::Wfx(WfxTrap {
            kind: WfxKind::Wfi,
            timeout_reg: None
        })
    );
}

#[test]
fn exit_real_log_hvc_0() {
    let exit = logged(0x5a00_0000, 0xffff_8000_089f_7350, 0x40_9f70);
    assert_eq!(exit.class, ExitClass::Hvc { imm: 0 });
}

#[test]
fn exit_real_log_msr_icc_sgi1r_el1_x0() {
    // As `msr_icc_sgi1r_el1_x1` with Rt = 0: 0x623a_3016.
    let access = sysreg(0x623a_3016);
    assert_eq!(access.name(), Some(SysReg::ICC_SGI1R_EL1));
    assert_eq!(access.rt, 0);
    assert!(!access.read);
}

#[test]
fn exit_real_log_pl011_ldrh_w0_from_uartcr() {
    // ISV, SAS 0b01 (16 bits), SRT 0, read, translation fault level 1 (nothing mapped).
    let access = logged_mmio(0x9340_0005, 0xffff_8000_0a03_1030, 0x9_0000);
    assert_eq!(access.size, AccessSize::Half);
    assert_eq!(access.reg, 0);
    assert!(!access.write);
}

#[test]
fn exit_real_log_pl011_strh_w20_to_uartdr() {
    // ISV, SAS 0b01, SRT 20, WnR, translation fault level 1.
    let access = logged_mmio(0x9354_0045, 0xffff_8000_0a03_1000, 0x9_0000);
    assert_eq!(access.size, AccessSize::Half);
    assert_eq!(access.reg, 20);
    assert!(access.write);
}

#[test]
fn exit_real_log_gicd_irouter_str_x0() {
    // ISV, SAS 0b11, SF, SRT 0, WnR, level 1: GICD_IROUTER<32> at GICD + 0x6100.
    let access = logged_mmio(0x93c0_8045, 0xffff_8000_0a02_6100, 0x8_0060);
    assert_eq!(access.size, AccessSize::Double);
    assert!(access.reg_is_64bit && access.write);
    assert_eq!(access.reg, 0);
}

#[test]
fn exit_real_log_gicr_typer_ldr_x20() {
    // ISV, SAS 0b11, SF, SRT 20, read, level 1: GICR_TYPER at GICR + 0x8.
    let access = logged_mmio(0x93d4_8005, 0xffff_8000_0a04_0008, 0x8_0a00);
    assert_eq!(access.size, AccessSize::Double);
    assert_eq!(access.reg, 20);
    assert!(!access.write);
}

#[test]
fn exit_real_log_ram_first_touch_by_a_store_pair() {
    // ISV = 0, WnR, translation fault level 2; the guest's MMU is off, so FAR is the IPA.
    let ExitClass::DataAbort(a) = logged(0x9200_0046, 0x41cb_6000, 0x41_cb60).class else {
        panic!("not a data abort");
    };
    assert_eq!(a.ipa, 0x41cb_6000);
    assert_eq!(a.fault(), FaultKind::Translation { level: 2 });
    assert!(a.write() && a.fault().is_missing_mapping());
    assert_eq!(a.mmio(), None);
}

#[test]
fn exit_real_log_first_instruction_fetches() {
    // The very first fetch (stage 2 empty: level 0), then a later one at level 2.
    let ExitClass::InstructionAbort(first) = logged(0x8200_0004, 0x4000_0000, 0x40_0000).class
    else {
        panic!("not an instruction abort");
    };
    assert_eq!(first.ipa, 0x4000_0000);
    assert_eq!(first.fault(), FaultKind::Translation { level: 0 });
    let ExitClass::InstructionAbort(later) = logged(0x8200_0006, 0x4166_8d5c, 0x41_6680).class
    else {
        panic!("not an instruction abort");
    };
    assert_eq!(later.ipa, 0x4166_8d5c);
    assert_eq!(later.fault(), FaultKind::Translation { level: 2 });
}
