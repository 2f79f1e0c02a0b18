/*
 * EL2 exception vectors.
 *
 * early_vectors: installed at the first instruction, used with the MMU off or on the boot
 * table. Each entry reports (boot_early_exception, MMU-off safe) and parks the CPU.
 *
 * runtime_vectors: installed by the trampoline. Exceptions from EL2 itself save a full frame
 * and call Rust (el2_exception: prints and stops the machine). Exceptions from a guest (lower
 * EL, AArch64) go to the world-switch exit path (guest_exit_common, src/arch/aarch64/switch.rs)
 * with the exit kind in x1.
 */
.macro early_entry kind
    .balign 0x80
    mov     x0, #\kind
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    bl      boot_early_exception
    b       park
.endm

.section .text.vectors, "ax"
.balign 0x800
.global early_vectors
early_vectors:
    .irp kind, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    early_entry \kind
    .endr

/* Frame layout: x0..x30, elr, spsr, esr, far (see ExceptionFrame in exceptions.rs).
 * x0/x1 were saved by the vector entry; x1 holds the kind. */
.macro save_frame
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x0, elr_el2
    stp     x30, x0, [sp, #16 * 15]
    mrs     x0, spsr_el2
    mrs     x2, esr_el2
    stp     x0, x2, [sp, #16 * 16]
    mrs     x0, far_el2
    str     x0, [sp, #16 * 17]
.endm

.macro restore_frame_eret
    ldp     x0, x1, [sp, #16 * 16]
    msr     spsr_el2, x0
    ldp     x30, x0, [sp, #16 * 15]
    msr     elr_el2, x0
    ldp     x0, x1, [sp, #16 * 0]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
    add     sp, sp, #{FRAME_SIZE}
    eret
.endm

/* An exception taken from EL2 itself: a vector entry must fit in 0x80 bytes, so it only
 * saves x0/x1 and branches to the common path with the kind in x1. */
.macro current_entry kind
    .balign 0x80
    sub     sp, sp, #{FRAME_SIZE}
    stp     x0, x1, [sp, #16 * 0]
    mov     x1, #\kind
    b       current_common
.endm

/* An exception from a guest: x0/x1 pushed (guest_exit_common takes them back), x1 = the
 * exit kind (switch.rs EXIT_*), in the vector itself: one branch less on every exit. */
.macro guest_entry kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       guest_exit_common
.endm

.balign 0x800
.global runtime_vectors
runtime_vectors:
    current_entry 0     // current EL, SP_EL0: sync
    current_entry 1     // irq
    current_entry 2     // fiq
    current_entry 3     // serror
    current_entry 4     // current EL, SP_ELx: sync
    current_entry 5     // irq
    current_entry 6     // fiq
    current_entry 7     // serror
    guest_entry {EXIT_SYNC}     // lower EL, AArch64: sync
    guest_entry {EXIT_IRQ}      // irq
    guest_entry {EXIT_IRQ}      // fiq
    guest_entry {EXIT_SERROR}   // serror
    current_entry 12    // lower EL, AArch32: never enabled (HCR_EL2.RW = 1)
    current_entry 13
    current_entry 14
    current_entry 15

/* Saves the frame, calls el2_exception(frame, kind), restores and returns. */
current_common:
    save_frame
    mov     x0, sp
    bl      el2_exception
    restore_frame_eret
