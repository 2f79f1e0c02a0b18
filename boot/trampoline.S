/*
 * The trampoline page (seed 001): mapped at TRAMPOLINE_VA in both the boot and the runtime
 * table, so this code keeps running while TTBR0_EL2 changes under it.
 * In: x0 = CPU index, x2 = runtime TTBR, x3 = runtime offset, x10 = stack top (PA),
 *     x11 = runtime vectors (VA), x12 = runtime entry (VA). MMU on, boot table.
 * Out: runtime table live, EL2 TLB invalidated (inside EL2), sp/VBAR at runtime VAs,
 *      branch to rust_runtime_entry(x0).
 */
.section .text.trampoline, "ax"
.global trampoline_switch
trampoline_switch:
    msr     ttbr0_el2, x2
    isb
    tlbi    alle2                   // drop every boot-table translation
    dsb     nsh
    isb
    add     sp, x10, x3
    msr     vbar_el2, x11
    isb
    mov     x29, #0
    mov     x30, #0
    br      x12
