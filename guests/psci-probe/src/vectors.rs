//! The EL1 exception vectors and `capture`, which runs one probe step and reports the
//! synchronous exception it raised, if any.
//!
//! Only the exception classes a probe step (or a hostile chaos operation, chaos.rs) can raise
//! at EL1 are survivable, and only inside `capture`: a data abort (the probe touched an IPA
//! with nothing behind it, or made an unaligned Device access), an "unknown reason" exception
//! (an UNDEFINED instruction: an unimplemented or trapped system register, an HVC/SMC the
//! machine treats as UNDEFINED), an FP/SIMD access trap, an SP alignment fault and, for
//! the chaos jumps, an instruction abort or a PC alignment fault. The handler records
//! ESR_EL1/FAR_EL1 and resumes at the next instruction, or, for the two jump faults (ELR is
//! the bad target then), at the jump's return address in x30. Anything else, or a second
//! fault in one step, prints the registers and powers the machine off, so the probe can never
//! loop on a fault.
//!
//! State is kept in atomics with plain loads and stores only: read-modify-write atomics need
//! exclusives, which are not guaranteed on the Device memory the probe runs on (MMU off).

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{println, psci};

/// ESR_ELx.EC: exception for an unknown reason (UNDEFINED instruction).
pub const EC_UNKNOWN: u64 = 0x00;
/// ESR_ELx.EC: access to FP/SIMD trapped (CPACR_EL1.FPEN).
pub const EC_FP_ACCESS: u64 = 0x07;
/// ESR_ELx.EC: MSR/MRS/SYS trapped to EL1.
pub const EC_SYSREG: u64 = 0x18;
/// ESR_ELx.EC: instruction abort taken without a change of exception level.
pub const EC_INSTRUCTION_ABORT_SAME_EL: u64 = 0x21;
/// ESR_ELx.EC: PC alignment fault.
pub const EC_PC_ALIGNMENT: u64 = 0x22;
/// ESR_ELx.EC: data abort taken without a change of exception level.
pub const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
/// ESR_ELx.EC: software step exception taken without a change of exception level.
pub const EC_SOFTWARE_STEP_SAME_EL: u64 = 0x33;
/// ESR_ELx.EC: SP alignment fault.
pub const EC_SP_ALIGNMENT: u64 = 0x26;
/// ESR_ELx ISS.DFSC for a data abort: synchronous external abort, not on a table walk.
pub const DFSC_SYNC_EXTERNAL: u64 = 0x10;

/// A synchronous exception taken while a `capture` was running.
#[derive(Clone, Copy)]
pub struct Fault {
    pub esr: u64,
    pub far: u64,
}

impl Fault {
    /// ESR_EL1.EC, bits 31:26.
    pub fn class(self) -> u64 {
        (self.esr >> 26) & 0x3f
    }

    /// ISS.DFSC, bits 5:0 (meaningful for data aborts).
    pub fn status_code(self) -> u64 {
        self.esr & 0x3f
    }

    /// ISS.WnR, bit 6: the abort was caused by a write.
    pub fn is_write(self) -> bool {
        self.esr & (1 << 6) != 0
    }

    /// ISS.FnV, bit 10: FAR_EL1 does not hold the faulting address.
    pub fn far_not_valid(self) -> bool {
        self.esr & (1 << 10) != 0
    }
}

/// Set only on a CPU with FEAT_PAN: the handler records PSTATE.PAN as the exception entry
/// left it (`pan_at_last_exception`).
pub static RECORD_PAN: AtomicBool = AtomicBool::new(false);
static TAKEN_PAN: AtomicU64 = AtomicU64::new(u64::MAX);
static TAKEN_ELR: AtomicU64 = AtomicU64::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);
static TAKEN: AtomicBool = AtomicBool::new(false);
static TAKEN_ESR: AtomicU64 = AtomicU64::new(0);
static TAKEN_FAR: AtomicU64 = AtomicU64::new(0);

/// Runs `step`; returns its value, or the fault it raised. Only the primary CPU uses this.
pub fn capture<T>(step: impl FnOnce() -> T) -> Result<T, Fault> {
    TAKEN.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let value = step();
    ARMED.store(false, Ordering::SeqCst);
    if TAKEN.load(Ordering::SeqCst) {
        Err(Fault {
            esr: TAKEN_ESR.load(Ordering::SeqCst),
            far: TAKEN_FAR.load(Ordering::SeqCst),
        })
    } else {
        Ok(value)
    }
}

/// PSTATE.PAN on entry to the last synchronous exception handler, while `RECORD_PAN` was set
/// (`u64::MAX` if none was taken since).
pub fn pan_at_last_exception() -> u64 {
    TAKEN_PAN.swap(u64::MAX, Ordering::SeqCst)
}

/// ELR_EL1 of the last exception `capture` recorded.
pub fn elr_at_last_exception() -> u64 {
    TAKEN_ELR.load(Ordering::SeqCst)
}

/// Loads 32 bits from `addr` with a single LDR, so a fault skips exactly that instruction.
pub fn load_u32(addr: u64) -> u32 {
    let value: u32;
    // SAFETY: the probe only calls this on addresses outside its own image, inside `capture`;
    // a fault is resumed after the LDR and `value` then keeps the marker below.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) addr,
            v = inout(reg) 0xBAD0_BAD0u32 => value, options(nostack))
    };
    value
}

/// Stores 32 bits to `addr` with a single STR.
pub fn store_u32(addr: u64, value: u32) {
    // SAFETY: as for `load_u32`; the target is never memory the probe uses.
    unsafe {
        core::arch::asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value,
            options(nostack))
    };
}

/// Called by the vector for a synchronous exception from the current EL (SP_EL1), with x30
/// as it was when the exception was taken. Returns the address to resume at.
#[unsafe(no_mangle)]
extern "C" fn probe_sync_exception(esr: u64, far: u64, elr: u64, lr: u64) -> u64 {
    if RECORD_PAN.load(Ordering::SeqCst) {
        let pan: u64;
        // SAFETY: reading PAN (S3_0_C4_C2_3), set only where FEAT_PAN exists.
        unsafe { core::arch::asm!("mrs {}, S3_0_C4_C2_3", out(reg) pan, options(nomem, nostack)) };
        TAKEN_PAN.store(pan >> 22 & 1, Ordering::SeqCst);
    }
    let fault = Fault { esr, far };
    let class = fault.class();
    let survivable = matches!(
        class,
        EC_UNKNOWN
            | EC_FP_ACCESS
            | EC_SYSREG
            | EC_INSTRUCTION_ABORT_SAME_EL
            | EC_PC_ALIGNMENT
            | EC_DATA_ABORT_SAME_EL
            | EC_SP_ALIGNMENT
            | EC_SOFTWARE_STEP_SAME_EL
    );
    if ARMED.load(Ordering::SeqCst) && survivable && !TAKEN.load(Ordering::SeqCst) {
        TAKEN_ESR.store(esr, Ordering::SeqCst);
        TAKEN_FAR.store(far, Ordering::SeqCst);
        TAKEN_ELR.store(elr, Ordering::SeqCst);
        TAKEN.store(true, Ordering::SeqCst);
        // A software step completed the instruction before ELR: stop stepping (else the
        // return, with PSTATE.SS = 0 and MDSCR_EL1.SS = 1, steps again at once) and go on.
        if class == EC_SOFTWARE_STEP_SAME_EL {
            // SAFETY: MDSCR_EL1 = 0 only disables debug events the probe enabled.
            unsafe { core::arch::asm!("msr mdscr_el1, xzr", "isb", options(nomem, nostack)) };
            return elr;
        }
        // A jump to a bad target faults at the target: go back to the `blr` that made it.
        if matches!(class, EC_INSTRUCTION_ABORT_SAME_EL | EC_PC_ALIGNMENT) {
            return lr;
        }
        // Every A64 instruction is 4 bytes; resume after the faulting one.
        return elr + 4;
    }
    println!("PROBE: FATAL unexpected sync exception esr={esr:#x} far={far:#x} elr={elr:#x}");
    psci::system_off()
}

/// Called by every other vector; `kind` is the vector's index (0..16).
#[unsafe(no_mangle)]
extern "C" fn probe_unexpected_exception(kind: u64, esr: u64, elr: u64) -> ! {
    println!("PROBE: FATAL unexpected exception vector={kind} esr={esr:#x} elr={elr:#x}");
    psci::system_off()
}

// The table: 16 entries of 0x80 bytes, 2 KiB aligned. Only "current EL with SP_ELx,
// synchronous" (offset 0x200) returns; it saves the caller-saved registers (x0-x18, x30)
// since the probe step's own registers must survive, calls `probe_sync_exception`, writes the
// returned address to ELR_EL1 and ERETs. SPSR_EL1 is untouched because nothing nests.
global_asm!(
    r#"
.macro unexpected_vector index
    .balign 0x80
    mov x0, #\index
    mrs x1, esr_el1
    mrs x2, elr_el1
    b probe_unexpected_exception
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global probe_vectors
probe_vectors:
    unexpected_vector 0
    unexpected_vector 1
    unexpected_vector 2
    unexpected_vector 3

    .balign 0x80
    b probe_sync_current_spx
    unexpected_vector 5
    unexpected_vector 6
    unexpected_vector 7

    unexpected_vector 8
    unexpected_vector 9
    unexpected_vector 10
    unexpected_vector 11
    .balign 0x80
    b probe_sync_lower_aarch32
    unexpected_vector 13
    unexpected_vector 14
    unexpected_vector 15

// Lower EL, AArch32, synchronous (offset 0x600): only `probe_run_aarch32_el0` goes there. A
// data abort is recorded (ESR, FAR, ELR) and the EL0 code resumes after the 4-byte A32 load;
// the SVC that ends the EL0 code returns to that function's caller with its saved registers.
probe_sync_lower_aarch32:
    mrs x9, esr_el1
    lsr x10, x9, #26
    cmp x10, #0x11                  // SVC from AArch32
    b.eq 1f
    adr x11, probe_el0_esr
    str x9, [x11]
    mrs x10, far_el1
    str x10, [x11, #8]
    mrs x10, elr_el1
    str x10, [x11, #16]
    add x10, x10, #4
    msr elr_el1, x10
    eret
1:  adr x11, probe_el0_esr
    str x9, [x11, #24]              // the SVC's syndrome (its immediate)
    adr x11, probe_el0_saved
    ldp x19, x20, [x11, #0]
    ldp x21, x22, [x11, #16]
    ldp x23, x24, [x11, #32]
    ldp x25, x26, [x11, #48]
    ldp x27, x28, [x11, #64]
    ldp x29, x30, [x11, #80]
    ldr x10, [x11, #96]
    mov sp, x10
    ret

// probe_run_aarch32_el0(code, x1, spsr): runs AArch32 code at EL0 with r1 = x1 and SPSR
// `spsr` (User mode; T selects T32) until its SVC.
    .global probe_run_aarch32_el0
probe_run_aarch32_el0:
    adr x11, probe_el0_saved
    stp x19, x20, [x11, #0]
    stp x21, x22, [x11, #16]
    stp x23, x24, [x11, #32]
    stp x25, x26, [x11, #48]
    stp x27, x28, [x11, #64]
    stp x29, x30, [x11, #80]
    mov x10, sp
    str x10, [x11, #96]
    msr elr_el1, x0
    msr spsr_el1, x2
    eret

    .data
    .balign 16
    .global probe_el0_esr
probe_el0_esr:
    .quad 0, 0, 0, 0
probe_el0_saved:
    .space 104
    .text

probe_sync_current_spx:
    sub sp, sp, #160
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x30, [sp, #144]
    mrs x0, esr_el1
    mrs x1, far_el1
    mrs x2, elr_el1
    mov x3, x30
    bl probe_sync_exception
    msr elr_el1, x0
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x30, [sp, #144]
    add sp, sp, #160
    eret
"#
);
