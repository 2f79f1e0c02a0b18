/*
 * Bulkhead entry: the Linux arm64 Image header, the boot CPU's entry and the secondary entry.
 *
 * Runs with the MMU off at whatever physical address the loader chose, so everything here is
 * PC-relative (adr/adrp). Contract with the loader (Linux arm64 boot protocol): x0 = DTB PA,
 * MMU off, at EL2 (EL1/EL3 are detected and reported). Constants in braces come from Rust
 * (src/arch/aarch64/entry.rs) via global_asm! const operands.
 */
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size: text + data + bss
    .quad   0xa                     // flags: little endian, 4K pages, 2 MiB-aligned base anywhere
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

.section .text.boot, "ax"

/*
 * Boot CPU. x0 = DTB PA. Zeroes BSS once, builds both EL2 tables (boot_primary_early, Rust,
 * MMU off) and joins the common path as CPU 0.
 */
primary_entry:
    mov     x19, x0
    adrp    x1, early_vectors
    add     x1, x1, :lo12:early_vectors
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2
    cmp     x20, #2
    b.ne    1f
    msr     vbar_el2, x1
    b       2f
1:  cmp     x20, #1
    b.ne    2f
    msr     vbar_el1, x1
2:  isb
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b
4:  adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    mov     x2, #{STACK_SIZE}
    add     sp, x1, x2
    adrp    x0, __image_start       // pointers in data: to their physical addresses
    add     x0, x0, :lo12:__image_start
    bl      apply_relocations
    mov     x0, x19
    mov     x1, x20
    cmp     x20, #2
    b.ne    wrong_el
    bl      boot_primary_early      // Rust, MMU off: x0 = 0 on success
    cbnz    x0, park
    ldr     x0, ={IMAGE_VA}         // pointers in data: back to their link-time VAs
    bl      apply_relocations
    mov     x0, #0
    b       enable_mmu_and_switch

/*
 * Debug images only (linked -pie, see build.rs; release images have no entries): sets every
 * R_AARCH64_RELATIVE pointer (ELF for the Arm 64-bit Architecture, 5.7.10: Delta(S) + A) as if
 * the image were linked at x0. The pointers sit in the image at its physical address (MMU off,
 * written straight to memory); the I-cache is invalidated as some may be in .text.
 * Clobbers x1-x7.
 */
apply_relocations:
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
    adrp    x3, __image_start
    add     x3, x3, :lo12:__image_start
    ldr     x4, ={IMAGE_VA}
    sub     x3, x3, x4              // physical address - link-time VA of every image byte
    sub     x4, x0, x4              // new base - link-time base
6:  cmp     x1, x2
    b.hs    7f
    ldp     x5, x6, [x1], #16       // r_offset, r_info
    ldr     x7, [x1], #8            // r_addend
    cmp     w6, #1027               // R_AARCH64_RELATIVE; lld emits nothing else here
    b.ne    6b
    add     x7, x7, x4
    str     x7, [x5, x3]
    b       6b
7:  dsb     sy
    ic      iallu
    dsb     sy
    isb
    ret

wrong_el:
    bl      boot_wrong_el           // prints the error, never returns
    b       park

/*
 * Secondary CPUs (PSCI CPU_ON or spin-table release), also CPUs returning from hotplug.
 * Finds its index by MPIDR in BOOT_PARAMS (cleaned to PoC by CPU 0), then the common path.
 */
.global secondary_entry
secondary_entry:
    adrp    x1, early_vectors
    add     x1, x1, :lo12:early_vectors
    msr     vbar_el2, x1
    isb
    mrs     x1, mpidr_el1
    mov     x2, #0xffffff
    movk    x2, #0xff, lsl #32
    and     x1, x1, x2
    adrp    x9, BOOT_PARAMS
    add     x9, x9, :lo12:BOOT_PARAMS
    ldr     x3, [x9, #{BP_CPU_COUNT}]
    add     x4, x9, #{BP_MPIDR}
    mov     x0, #0
5:  cmp     x0, x3
    b.hs    park
    ldr     x5, [x4, x0, lsl #3]
    cmp     x5, x1
    b.eq    enable_mmu_and_switch
    add     x0, x0, #1
    b       5b

/*
 * Common path. x0 = CPU index. MMU off. Clobbers x1-x14.
 * Enables the MMU on the boot table, then jumps to the trampoline page at TRAMPOLINE_VA with:
 * x0 = CPU index, x2 = runtime TTBR, x3 = runtime offset (VA - PA), x10 = stack top (PA),
 * x11 = runtime vectors (VA), x12 = runtime entry (VA).
 */
enable_mmu_and_switch:
    adrp    x9, BOOT_PARAMS
    add     x9, x9, :lo12:BOOT_PARAMS
    ldr     x1, [x9, #{BP_BOOT_TTBR}]
    ldr     x2, [x9, #{BP_RUNTIME_TTBR}]
    ldr     x3, [x9, #{BP_RUNTIME_OFFSET}]
    ldr     x4, [x9, #{BP_MAIR}]
    msr     mair_el2, x4
    ldr     x4, [x9, #{BP_TCR}]
    msr     tcr_el2, x4
    msr     ttbr0_el2, x1
    isb
    tlbi    alle2                   // no stale entries from firmware or a previous life
    dsb     nsh
    isb
    adrp    x10, __stacks_start
    add     x10, x10, :lo12:__stacks_start
    mov     x4, #{STACK_SIZE}
    madd    x10, x0, x4, x10
    add     x10, x10, x4
    adrp    x11, runtime_vectors
    add     x11, x11, :lo12:runtime_vectors
    add     x11, x11, x3
    adrp    x12, rust_runtime_entry
    add     x12, x12, :lo12:rust_runtime_entry
    add     x12, x12, x3
    adrp    x13, trampoline_switch
    add     x13, x13, :lo12:trampoline_switch
    and     x13, x13, #0xfff        // offset within the trampoline page
    ldr     x14, ={TRAMPOLINE_VA}
    add     x13, x13, x14
    ldr     x4, ={SCTLR_EL2_MMU_ON}
    msr     sctlr_el2, x4
    isb
    br      x13

.global park
park:
    wfe
    b       park

.section .bss.stacks, "aw", @nobits
.balign 4096
.global __stacks_start
__stacks_start:
    .space  {STACK_SIZE} * {MAX_CPUS}
