//! Exception-entry tests. Named `exit_inject_tests` so that `cargo test exit` runs them with
//! the exit decoder's tests: injection is how an exit the hypervisor refuses reaches the guest.

use proptest::prelude::*;

use super::*;
use crate::hyp::exit::{ExitClass, FaultKind, GuestExit, Syndrome};

/// Bulkhead's SCTLR_EL1 at vCPU reset: RES1 bits 29, 28, 23 (SPAN), 22, 20, 11.
const SCTLR_RESET: u64 = 0x30d0_0800;
const VBAR: u64 = 0xffff_8000_1001_0800;

const EL0T: u64 = 0b0_0000;
const EL1T: u64 = 0b0_0100;
const EL1H: u64 = 0b0_0101;
/// AArch32 User mode (M[4] = nRW = 1).
const AARCH32_USR: u64 = 0b1_0000;
const DAIF: u64 = 0xf << 6;
const NZCV: u64 = 0xf << 28;
const PAN: u64 = 1 << 22;
const DIT: u64 = 1 << 24;
const SSBS: u64 = 1 << 12;
const SPAN: u64 = 1 << 23;
const DSSBS: u64 = 1 << 44;

fn at(pstate: u64) -> GuestState {
    GuestState {
        pc: 0xffff_8000_1234_5678,
        pstate,
        vbar_el1: VBAR,
        sctlr_el1: SCTLR_RESET,
    }
}

fn data_abort(write: bool) -> Exception {
    Exception::DataAbort {
        fsc: FSC_EXTERNAL,
        far: 0xdead_b000,
        write,
    }
}

#[test]
fn undef_from_el1h_at_reset_sctlr_matches_the_old_constant_entry() {
    let state = at(EL1H | DAIF);
    let e = exception_entry(Exception::Undef, state);
    assert_eq!(e.pc, VBAR + 0x200);
    assert_eq!(e.pstate, 0x3c5);
    // EC 0x00, IL 1.
    assert_eq!(e.esr_el1, 0x0200_0000);
    assert_eq!(e.far_el1, None);
    assert_eq!(e.elr_el1, state.pc);
    assert_eq!(e.spsr_el1, state.pstate);
}

#[test]
fn exit_inject_pstate_is_0x3c5_for_every_source_without_flags_pan_or_dit() {
    for pstate in [
        EL0T,
        EL1T,
        EL1H,
        EL1H | DAIF,
        AARCH32_USR,
        EL0T | (0b11 << 10) | (1 << 21),
    ] {
        let e = exception_entry(Exception::Undef, at(pstate));
        assert_eq!(e.pstate, 0x3c5, "from {pstate:#x}");
    }
}

#[test]
fn exit_inject_vector_from_el1t_is_the_current_el_sp0_table() {
    assert_eq!(exception_entry(Exception::Undef, at(EL1T)).pc, VBAR);
}

#[test]
fn exit_inject_vector_from_el1h_is_the_current_el_spx_table() {
    assert_eq!(exception_entry(Exception::Undef, at(EL1H)).pc, VBAR + 0x200);
}

#[test]
fn exit_inject_vector_from_el0_aarch64_is_the_lower_el_aarch64_table() {
    assert_eq!(exception_entry(Exception::Undef, at(EL0T)).pc, VBAR + 0x400);
}

#[test]
fn exit_inject_vector_from_aarch32_el0_is_the_lower_el_aarch32_table() {
    assert_eq!(
        exception_entry(Exception::Undef, at(AARCH32_USR)).pc,
        VBAR + 0x600
    );
    // Any AArch32 mode bits: nRW decides.
    assert_eq!(
        exception_entry(Exception::Undef, at(0b1_0011)).pc,
        VBAR + 0x600
    );
}

#[test]
fn exit_inject_data_abort_from_el1_is_ec_0x25() {
    // EC 0x25 << 26 = 0x9400_0000, IL 0x0200_0000, WnR 0x40, DFSC 0x10: 0x9600_0050, the
    // value Linux prints for a synchronous external abort on a kernel store.
    let e = exception_entry(data_abort(true), at(EL1H));
    assert_eq!(e.esr_el1, 0x9600_0050);
    assert_eq!(e.far_el1, Some(0xdead_b000));
    assert_eq!(
        exception_entry(data_abort(true), at(EL1T)).esr_el1,
        0x9600_0050
    );
}

#[test]
fn exit_inject_data_abort_from_el0_is_ec_0x24() {
    // EC 0x24 << 26 = 0x9000_0000 | IL | DFSC 0x10 (a read): 0x9200_0010.
    assert_eq!(
        exception_entry(data_abort(false), at(EL0T)).esr_el1,
        0x9200_0010
    );
    assert_eq!(
        exception_entry(data_abort(false), at(AARCH32_USR)).esr_el1,
        0x9200_0010
    );
}

#[test]
fn exit_inject_instruction_abort_ecs_and_far() {
    let exc = Exception::InstructionAbort {
        fsc: FSC_TRANSLATION_L3,
        far: 0x4008_0000,
    };
    // EC 0x20 / 0x21 << 26 | IL | IFSC 0x07.
    let from_el0 = exception_entry(exc, at(EL0T));
    assert_eq!(from_el0.esr_el1, 0x8200_0007);
    assert_eq!(from_el0.far_el1, Some(0x4008_0000));
    assert_eq!(exception_entry(exc, at(EL1H)).esr_el1, 0x8600_0007);
}

#[test]
fn exit_inject_fsc_is_confined_to_bits_5_0() {
    let e = exception_entry(
        Exception::DataAbort {
            fsc: 0xff,
            far: 0,
            write: false,
        },
        at(EL1H),
    );
    assert_eq!(e.esr_el1, 0x9600_003f);
}

#[test]
fn exit_inject_keeps_nzcv_and_dit_like_kvm() {
    let e = exception_entry(Exception::Undef, at(EL1H | NZCV | DIT));
    assert_eq!(e.pstate, NZCV | DIT | 0x3c5);
    assert_eq!(e.spsr_el1, EL1H | NZCV | DIT);
}

#[test]
fn exit_inject_clears_tco_uao_ss_il_btype_and_old_ssbs() {
    let noise = (1 << 25) | (1 << 23) | (1 << 21) | (1 << 20) | (0b11 << 10) | SSBS;
    let e = exception_entry(Exception::Undef, at(EL0T | noise));
    assert_eq!(e.pstate, 0x3c5);
    assert_eq!(
        e.spsr_el1,
        EL0T | noise,
        "SPSR_EL1 keeps them for the return"
    );
}

#[test]
fn exit_inject_pan_is_set_when_span_is_clear() {
    let mut state = at(EL0T);
    state.sctlr_el1 &= !SPAN;
    assert_eq!(exception_entry(Exception::Undef, state).pstate, 0x3c5 | PAN);
}

#[test]
fn exit_inject_pan_is_unchanged_when_span_is_set() {
    assert_eq!(
        exception_entry(Exception::Undef, at(EL1H | PAN)).pstate,
        0x3c5 | PAN
    );
    assert_eq!(exception_entry(Exception::Undef, at(EL1H)).pstate, 0x3c5);
}

#[test]
fn exit_inject_ssbs_follows_sctlr_dssbs() {
    let mut state = at(EL1H);
    state.sctlr_el1 |= DSSBS;
    assert_eq!(
        exception_entry(Exception::Undef, state).pstate,
        0x3c5 | SSBS
    );
}

#[test]
fn exit_inject_fsc_constants_decode_to_their_names() {
    let cases = [
        (FSC_TRANSLATION_L0, FaultKind::Translation { level: 0 }),
        (FSC_TRANSLATION_L1, FaultKind::Translation { level: 1 }),
        (FSC_TRANSLATION_L2, FaultKind::Translation { level: 2 }),
        (FSC_TRANSLATION_L3, FaultKind::Translation { level: 3 }),
        (FSC_ACCESS_FLAG_L1, FaultKind::AccessFlag { level: 1 }),
        (FSC_ACCESS_FLAG_L2, FaultKind::AccessFlag { level: 2 }),
        (FSC_ACCESS_FLAG_L3, FaultKind::AccessFlag { level: 3 }),
        (FSC_PERMISSION_L1, FaultKind::Permission { level: 1 }),
        (FSC_PERMISSION_L2, FaultKind::Permission { level: 2 }),
        (FSC_PERMISSION_L3, FaultKind::Permission { level: 3 }),
        (FSC_EXTERNAL, FaultKind::External),
        (FSC_ALIGNMENT, FaultKind::Alignment),
    ];
    for (fsc, kind) in cases {
        assert_eq!(FaultKind::from_fsc(fsc), kind, "{fsc:#x}");
    }
}

#[test]
fn exit_inject_syndrome_reads_back_through_the_exit_decoder() {
    // ESR_EL1 and ESR_EL2 share their layout: an abort injected from EL0 (EC 0x24 / 0x20)
    // decodes as the abort it describes.
    let e = exception_entry(
        Exception::DataAbort {
            fsc: FSC_ALIGNMENT,
            far: 0x1001,
            write: true,
        },
        at(EL0T),
    );
    let exit = GuestExit::decode(Syndrome {
        esr: e.esr_el1,
        far: 0x1001,
        hpfar: 0,
    });
    let ExitClass::DataAbort(abort) = exit.class else {
        panic!("{exit:?}");
    };
    assert!(exit.il32);
    assert_eq!(abort.fault(), FaultKind::Alignment);
    assert!(abort.write());
    assert_eq!(abort.mmio(), None, "ISV = 0");

    let e = exception_entry(
        Exception::InstructionAbort {
            fsc: FSC_PERMISSION_L2,
            far: 0,
        },
        at(EL0T),
    );
    let ExitClass::InstructionAbort(abort) = GuestExit::decode(Syndrome {
        esr: e.esr_el1,
        far: 0,
        hpfar: 0,
    })
    .class
    else {
        panic!("not an instruction abort");
    };
    assert_eq!(abort.fault(), FaultKind::Permission { level: 2 });
}

proptest! {
    #[test]
    fn exit_inject_entry_invariants_hold_for_any_state(
        pc in any::<u64>(),
        pstate in any::<u64>(),
        vbar_el1 in any::<u64>(),
        sctlr_el1 in any::<u64>(),
        fsc in any::<u8>(),
        far in any::<u64>(),
        write in any::<bool>(),
        kind in 0u8..3,
    ) {
        let exc = match kind {
            0 => Exception::Undef,
            1 => Exception::DataAbort { fsc, far, write },
            _ => Exception::InstructionAbort { fsc, far },
        };
        let e = exception_entry(exc, GuestState { pc, pstate, vbar_el1, sctlr_el1 });
        prop_assert_eq!(e.elr_el1, pc);
        prop_assert_eq!(e.spsr_el1, pstate);
        // EL1h with D, A, I, F masked; only NZCV, DIT, PAN, SSBS may join them.
        prop_assert_eq!(e.pstate & 0x3ff, 0x3c5);
        prop_assert_eq!(e.pstate & !(NZCV | DIT | PAN | SSBS | 0x3ff), 0);
        prop_assert_eq!(e.pstate & NZCV, pstate & NZCV);
        prop_assert_eq!(e.pc.wrapping_sub(vbar_el1) & !0x600, 0);
        // IL set, nothing above bit 31, ISS only FSC and WnR.
        prop_assert_eq!(e.esr_el1 & !(0xffff_ffff), 0);
        prop_assert_ne!(e.esr_el1 & (1 << 25), 0);
        prop_assert_eq!(e.esr_el1 & 0x01ff_ff80, 0);
        prop_assert_eq!(e.far_el1.is_some(), kind != 0);
    }
}
