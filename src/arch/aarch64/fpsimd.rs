//! Saving and loading a vCPU's FP/SIMD or SVE registers (`hyp::context::FpState`).
//!
//! The image is built for `aarch64-unknown-none-softfloat`: the compiler never emits FP/SIMD
//! code, so the register file belongs to the guests alone and the few instructions that move
//! it are written here, with `.arch_extension` enabling them for the assembler only inside
//! this block (and disabled again after it).
//!
//! Sequence (Arm ARM, CPTR_EL2 with HCR_EL2.E2H = 0): CPTR_EL2.TFP traps FP/SIMD and SVE
//! instructions and FPCR/FPSR accesses at EL2 as well as below, and TZ SVE instructions and
//! ZCR_ELx accesses; a trapped EL2 access would land in EL2's own synchronous vector. So
//! [`save`] and [`load`] first make sure both are clear (`ensure_untrapped`: one MRS when they
//! already are, else MSR + ISB), then move the registers, and leave them clear: the lazy
//! switch keeps FP untrapped while this CPU's registers hold the running vCPU's state.
//! EL2 uses the largest vector length (ZCR_EL2.LEN = 0xf, written by `activate_traps`), so
//! the whole of every Z and P register moves whatever length the guest chose in ZCR_EL1.

use core::arch::global_asm;

use crate::hyp::context::FpState;
use crate::hyp::cpu_features::{CPTR_TFP, CPTR_TZ};

// fpsimd_save(x0 = 512-byte area): V0-31. fpsimd_load: the reverse. Clobber nothing but the
// vector registers (load) and use no stack.
// sve_save(x0 = Z area, 32 vector lengths; x1 = P area, 17 predicate lengths): Z0-31,
// P0-15, then FFR through P0 (RDFFR writes a P register; P0 is reloaded after, so the
// hardware still holds the whole state). sve_load: FFR first through P0 (WRFFR reads one),
// then P0-15 and Z0-31 — the order of Linux's `sve_load`.
global_asm!(
    ".arch_extension fp",
    ".arch_extension simd",
    ".arch_extension sve",
    ".section .text.bulkhead_fpsimd, \"ax\"",
    ".global bulkhead_fpsimd_save",
    "bulkhead_fpsimd_save:",
    "    stp q0, q1, [x0, #0]",
    "    stp q2, q3, [x0, #32]",
    "    stp q4, q5, [x0, #64]",
    "    stp q6, q7, [x0, #96]",
    "    stp q8, q9, [x0, #128]",
    "    stp q10, q11, [x0, #160]",
    "    stp q12, q13, [x0, #192]",
    "    stp q14, q15, [x0, #224]",
    "    stp q16, q17, [x0, #256]",
    "    stp q18, q19, [x0, #288]",
    "    stp q20, q21, [x0, #320]",
    "    stp q22, q23, [x0, #352]",
    "    stp q24, q25, [x0, #384]",
    "    stp q26, q27, [x0, #416]",
    "    stp q28, q29, [x0, #448]",
    "    stp q30, q31, [x0, #480]",
    "    ret",
    ".global bulkhead_fpsimd_load",
    "bulkhead_fpsimd_load:",
    "    ldp q0, q1, [x0, #0]",
    "    ldp q2, q3, [x0, #32]",
    "    ldp q4, q5, [x0, #64]",
    "    ldp q6, q7, [x0, #96]",
    "    ldp q8, q9, [x0, #128]",
    "    ldp q10, q11, [x0, #160]",
    "    ldp q12, q13, [x0, #192]",
    "    ldp q14, q15, [x0, #224]",
    "    ldp q16, q17, [x0, #256]",
    "    ldp q18, q19, [x0, #288]",
    "    ldp q20, q21, [x0, #320]",
    "    ldp q22, q23, [x0, #352]",
    "    ldp q24, q25, [x0, #384]",
    "    ldp q26, q27, [x0, #416]",
    "    ldp q28, q29, [x0, #448]",
    "    ldp q30, q31, [x0, #480]",
    "    ret",
    ".global bulkhead_sve_save",
    "bulkhead_sve_save:",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    str z\\n, [x0, #\\n, mul vl]",
    "    .endr",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
    "    str p\\n, [x1, #\\n, mul vl]",
    "    .endr",
    "    rdffr p0.b",
    "    str p0, [x1, #16, mul vl]",
    "    ldr p0, [x1, #0, mul vl]",
    "    ret",
    ".global bulkhead_sve_load",
    "bulkhead_sve_load:",
    "    ldr p0, [x1, #16, mul vl]",
    "    wrffr p0.b",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
    "    ldr p\\n, [x1, #\\n, mul vl]",
    "    .endr",
    "    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    ldr z\\n, [x0, #\\n, mul vl]",
    "    .endr",
    "    ret",
    ".text",
    ".arch_extension nosve",
    ".arch_extension nosimd",
    ".arch_extension nofp",
);

unsafe extern "C" {
    fn bulkhead_fpsimd_save(v: *mut u128);
    fn bulkhead_fpsimd_load(v: *const u128);
    fn bulkhead_sve_save(z: *mut u128, p: *mut u128);
    fn bulkhead_sve_load(z: *const u128, p: *const u128);
}

/// Clears CPTR_EL2.TFP and TZ if set (the rest of CPTR_EL2 is kept).
fn ensure_untrapped(sve: bool) {
    let cptr: u64;
    // SAFETY: reading CPTR_EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cptr_el2", out(reg) cptr, options(nomem, nostack)) };
    let trapped = if sve { CPTR_TFP | CPTR_TZ } else { CPTR_TFP };
    if cptr & trapped != 0 {
        let value = cptr & !trapped;
        // SAFETY: only lifts the FP/SVE traps, which guard registers that hold guest data
        // only (EL2 is softfloat).
        unsafe {
            core::arch::asm!("msr cptr_el2, {}", "isb", in(reg) value, options(nomem, nostack))
        };
    }
}

/// `fp` must be laid out for this CPU's vector length `cpu_vl`: the asm stores whole
/// registers at that length, and the layout (where P0 starts) depends on it. A mismatch is
/// Bulkhead's bug (every `FpState` is made by `FpState::new(sve_vl_bytes())`), never a
/// guest's: stop rather than write past the area.
fn check_layout(fp: &FpState, cpu_vl: Option<usize>) {
    assert_eq!(
        fp.sve_vl(),
        cpu_vl,
        "FP state sized for another vector length than this CPU's"
    );
}

/// Stores this CPU's FP/SIMD (or SVE) registers, FPSR, FPCR (and ZCR_EL1) into `fp`, whose
/// vector length must be this CPU's, `cpu_vl`. Leaves the FP trap off and the registers as
/// they were.
pub fn save(fp: &mut FpState, cpu_vl: Option<usize>) {
    check_layout(fp, cpu_vl);
    let sve = fp.sve_vl().is_some();
    ensure_untrapped(sve);
    let p_offset = fp.p_offset() / 16;
    let area = fp.area_mut();
    let base = area.as_mut_ptr();
    // SAFETY: the area is 512 bytes (FP/SIMD), or 32 vector lengths of Z registers followed
    // by 17 predicate lengths (`FpState::new`) at this CPU's length (`check_layout`); the FP
    // trap is off.
    unsafe {
        if sve {
            bulkhead_sve_save(base, base.add(p_offset));
        } else {
            bulkhead_fpsimd_save(base);
        }
    }
    let (fpsr, fpcr): (u64, u64);
    // SAFETY: reading FPSR (S3_3_C4_C4_1) and FPCR (S3_3_C4_C4_0) with the trap off.
    unsafe {
        core::arch::asm!(
            "mrs {}, S3_3_C4_C4_1",
            "mrs {}, S3_3_C4_C4_0",
            out(reg) fpsr,
            out(reg) fpcr,
            options(nomem, nostack, preserves_flags)
        )
    };
    fp.fpsr = fpsr;
    fp.fpcr = fpcr;
    if sve {
        let zcr: u64;
        // SAFETY: reading ZCR_EL1 (S3_0_C1_C2_0) with TZ off, on a CPU with SVE.
        unsafe { core::arch::asm!("mrs {}, S3_0_C1_C2_0", out(reg) zcr, options(nomem, nostack)) };
        fp.zcr_el1 = zcr;
    }
}

/// Loads `fp` into this CPU's FP/SIMD (or SVE) registers; the reverse of [`save`].
pub fn load(fp: &FpState, cpu_vl: Option<usize>) {
    check_layout(fp, cpu_vl);
    let sve = fp.sve_vl().is_some();
    ensure_untrapped(sve);
    let area = fp.area();
    let base = area.as_ptr();
    // SAFETY: as in `save`, reading the area.
    unsafe {
        if sve {
            bulkhead_sve_load(base, base.add(fp.p_offset() / 16));
        } else {
            bulkhead_fpsimd_load(base);
        }
    }
    // SAFETY: FPSR, FPCR (and ZCR_EL1) hold guest state only; the trap is off.
    unsafe {
        core::arch::asm!(
            "msr S3_3_C4_C4_1, {}",
            "msr S3_3_C4_C4_0, {}",
            in(reg) fp.fpsr,
            in(reg) fp.fpcr,
            options(nomem, nostack)
        );
        if sve {
            core::arch::asm!("msr S3_0_C1_C2_0, {}", in(reg) fp.zcr_el1, options(nomem, nostack));
        }
    }
}

/// The vector length in bytes at EL2 with ZCR_EL2.LEN = 0xf: the largest EL1 may use (the
/// implemented maximum, capped by EL3's ZCR_EL3). Writes ZCR_EL2 (as `activate_traps` does)
/// and lifts the SVE trap for the RDVL, restoring CPTR_EL2 after. Call only on a CPU with SVE.
pub fn max_vl_bytes() -> usize {
    let cptr: u64;
    let vl: u64;
    // SAFETY: CPTR_EL2 is restored as read; ZCR_EL2 = 0xf is the value EL2 keeps anyway;
    // RDVL only reads the vector length. The caller checked the CPU has SVE.
    unsafe {
        core::arch::asm!(
            "mrs {cptr}, cptr_el2",
            "mov {tmp}, #{traps}",
            "bic {tmp}, {cptr}, {tmp}",
            "msr cptr_el2, {tmp}",
            "isb",
            "mov {tmp}, #0xf",
            "msr S3_4_C1_C2_0, {tmp}",
            "isb",
            ".arch_extension sve",
            "rdvl {vl}, #1",
            ".arch_extension nosve",
            "msr cptr_el2, {cptr}",
            "isb",
            cptr = out(reg) cptr,
            tmp = out(reg) _,
            vl = out(reg) vl,
            traps = const CPTR_TFP | CPTR_TZ,
            options(nomem, nostack)
        )
    };
    let _ = cptr;
    vl as usize
}
