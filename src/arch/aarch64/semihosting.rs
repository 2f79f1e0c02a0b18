//! Arm semihosting's exit call, the one way a program on QEMU's `virt` machine (which has no
//! exit-code device) ends QEMU with a status of its choosing. Used only when the boot
//! arguments say the host enabled semihosting (`bulkhead.semihosting=1`, which `run.sh` passes
//! with `-semihosting-config enable=on`): without it `HLT #0xF000` is an undefined instruction.
//! Arm "Semihosting for AArch32 and AArch64" v2, SYS_EXIT_EXTENDED (0x20).

const SYS_EXIT_EXTENDED: u64 = 0x20;
/// ADP_Stopped_ApplicationExit: the program ended; the second word is its exit code.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// Asks the semihosting host to exit with `code`. Returns only if the host ignored the call.
pub fn exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // SAFETY: the semihosting trap: the host reads the two-word block x1 points to (live on
    // this stack) and ends the program; the caller checked that semihosting is enabled.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT_EXTENDED => _,
            in("x1") block.as_ptr(),
            options(nostack),
        )
    };
}
