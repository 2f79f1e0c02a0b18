//! The Rust side of boot: `boot_primary_early` (MMU off, builds both EL2 tables),
//! `boot_wrong_el` (entered at EL1/EL3), and `rust_runtime_entry` (every CPU, runtime VA).
//!
//! Code reached before the trampoline runs at the image's *physical* address with the MMU off:
//! no trait objects, no formatting, no atomics read-modify-write, no heap (see
//! `early_console` and `mm::el2_pagetable` for why).

use core::mem::offset_of;
use core::ptr::addr_of;

use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, Readable};

use super::early_console;
use crate::dtb;
use crate::mm::el2_pagetable::{MAIR_EL2_VALUE, Table, TablePool};
use crate::mm::el2_tables::{DtbPlacement, ImageLayout, build_boot_table, build_runtime_table};
use crate::mm::layout::{HOST_DTB_MAX_SIZE, TRAMPOLINE_VA, check_image_pa};

/// Most physical CPUs Bulkhead drives.
pub const MAX_CPUS: usize = 8;
/// Per-CPU EL2 stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Tables in the static EL2 page-table pool (boot + runtime + linear windows).
pub const TABLE_POOL_SIZE: usize = 64;

/// SCTLR_EL2: MMU, D- and I-cache, SP alignment check, WXN, plus the RES1 bits.
const SCTLR_EL2_MMU_ON: u64 = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19) | 0x30c5_0830;

core::arch::global_asm!(
            include_str!("../../../boot/entry.S"),
            include_str!("../../../boot/trampoline.S"),
            include_str!("../../../boot/vectors.S"),
            STACK_SIZE = const STACK_SIZE,
            MAX_CPUS = const MAX_CPUS,
            BP_BOOT_TTBR = const offset_of!(BootParams, boot_ttbr),
            BP_RUNTIME_TTBR = const offset_of!(BootParams, runtime_ttbr),
            BP_RUNTIME_OFFSET = const offset_of!(BootParams, runtime_offset),
            BP_MAIR = const offset_of!(BootParams, mair),
            BP_TCR = const offset_of!(BootParams, tcr),
            BP_CPU_COUNT = const offset_of!(BootParams, cpu_count),
            BP_MPIDR = const offset_of!(BootParams, mpidr),
            TRAMPOLINE_VA = const TRAMPOLINE_VA,
            IMAGE_VA = const crate::mm::layout::IMAGE_VA,
            SCTLR_EL2_MMU_ON = const SCTLR_EL2_MMU_ON,
    FRAME_SIZE = const core::mem::size_of::<super::exceptions::ExceptionFrame>(),
    EXIT_SYNC = const super::switch::EXIT_SYNC,
    EXIT_IRQ = const super::switch::EXIT_IRQ,
    EXIT_SERROR = const super::switch::EXIT_SERROR,
);

/// What every CPU's entry path reads (with its MMU off) to get onto the runtime table.
/// Written by CPU 0; cleaned to the point of coherency before any secondary starts.
#[repr(C)]
pub struct BootParams {
    pub boot_ttbr: u64,
    pub runtime_ttbr: u64,
    /// Runtime VA minus physical address of every image byte.
    pub runtime_offset: u64,
    pub tcr: u64,
    pub mair: u64,
    pub dtb_pa: u64,
    pub dtb_size: u64,
    pub cpu_count: u64,
    pub mpidr: [u64; MAX_CPUS],
}

#[unsafe(no_mangle)]
pub static mut BOOT_PARAMS: BootParams = BootParams {
    boot_ttbr: 0,
    runtime_ttbr: 0,
    runtime_offset: 0,
    tcr: 0,
    mair: 0,
    dtb_pa: 0,
    dtb_size: 0,
    cpu_count: 0,
    mpidr: [0; MAX_CPUS],
};

#[repr(C, align(4096))]
pub struct TablePoolStorage(pub [Table; TABLE_POOL_SIZE]);

/// The EL2 page-table pool (in .bss: zeroed by the boot CPU before use).
pub static mut TABLE_POOL: TablePoolStorage = TablePoolStorage([[0; 512]; TABLE_POOL_SIZE]);
/// Tables of the pool in use (persisted so the runtime can add mappings).
pub static mut TABLE_POOL_USED: usize = 0;
/// The image layout computed at boot.
pub static mut IMAGE_LAYOUT: ImageLayout = ImageLayout {
    pa: 0,
    text: (0, 0),
    rodata: (0, 0),
    data: (0, 0),
    trampoline: 0,
};

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __trampoline_start: u8;
    fn secondary_entry();
}

/// TCR_EL2 for 48-bit VAs, 4 KiB granule, write-back inner-shareable walks, and the physical
/// address size the CPU reports.
fn tcr_el2() -> u64 {
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b101);
    let t0sz = 16;
    let irgn_orgn_wb = (0b01 << 8) | (0b01 << 10);
    let sh_inner = 0b11 << 12;
    let res1 = (1 << 31) | (1 << 23);
    t0sz | irgn_orgn_wb | sh_inner | (pa_range << 16) | res1
}

/// Computes the image layout from linker symbols. `addr_of!` is PC-relative, so this gives
/// physical addresses with the MMU off and VAs after: only differences are used.
fn image_layout() -> ImageLayout {
    let start = addr_of!(__image_start) as u64;
    let off = |p: *const u8| p as u64 - start;
    ImageLayout {
        pa: start,
        text: (0, off(addr_of!(__text_end))),
        rodata: (off(addr_of!(__text_end)), off(addr_of!(__rodata_end))),
        data: (off(addr_of!(__rodata_end)), off(addr_of!(__image_end))),
        trampoline: off(addr_of!(__trampoline_start)),
    }
}

/// Reads the DTB at `pa` (MMU off: identity) and returns it if the header is sane.
fn early_dtb(pa: u64) -> Option<&'static mut [u8]> {
    if pa == 0 || !pa.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the boot protocol gives a DTB at `pa`; reading its 8-byte header is in bounds of
    // any valid DTB, and the total size it reports bounds the slice.
    let header = unsafe { core::slice::from_raw_parts(pa as *const u8, 8) };
    let size = dtb::header_total_size(header)?;
    if size as u64 > HOST_DTB_MAX_SIZE {
        return None;
    }
    // SAFETY: as above; the blob is `size` bytes long and, during early boot, owned by us.
    let blob = unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, size) };
    dtb::strip_nops(blob).ok()?;
    Some(blob)
}

/// Boot CPU, MMU off, at the physical address. Builds the boot and runtime tables and fills
/// `BOOT_PARAMS`. Returns 0 on success (anything else parks the CPU).
#[unsafe(no_mangle)]
extern "C" fn boot_primary_early(dtb_pa: u64) -> u64 {
    let blob: Option<&'static [u8]> = early_dtb(dtb_pa).map(|b| &*b);
    let fdt = blob.and_then(|b| dtb::parse(b).ok());
    let console = fdt.as_ref().and_then(dtb::console_uart);
    if let Some(console) = console {
        early_console::set_uart(console);
    }
    let uart = console.map(|c| c.regs.base);
    let image = image_layout();
    if check_image_pa(image.pa, image.data.1).is_err() {
        early_console::puts("bulkhead: fatal: image loaded at an unusable address\n");
        return 1;
    }
    let dtb = blob.map(|b| DtbPlacement {
        pa: dtb_pa,
        size: b.len() as u64,
    });

    // SAFETY: single CPU, MMU off, nothing else references the pool yet; its address is its PA.
    let pool_storage = unsafe { &mut *core::ptr::addr_of_mut!(TABLE_POOL) };
    let pool_pa = pool_storage.0.as_ptr() as u64;
    let mut pool = TablePool::new(&mut pool_storage.0, pool_pa, 0);
    let (Ok(boot), Ok(runtime)) = (
        build_boot_table(&mut pool, &image),
        build_runtime_table(&mut pool, &image, dtb, uart),
    ) else {
        early_console::puts("bulkhead: fatal: cannot build the EL2 page tables\n");
        return 2;
    };
    // SAFETY: single CPU, MMU off; these statics are read by the entry asm after this returns.
    unsafe {
        TABLE_POOL_USED = pool.used();
        IMAGE_LAYOUT = image;
        let params = &mut *core::ptr::addr_of_mut!(BOOT_PARAMS);
        params.boot_ttbr = boot;
        params.runtime_ttbr = runtime;
        params.runtime_offset = image.runtime_offset();
        params.tcr = tcr_el2();
        params.mair = MAIR_EL2_VALUE;
        params.dtb_pa = dtb_pa;
        params.dtb_size = dtb.map_or(0, |d| d.size);
        params.cpu_count = 1;
    }
    0
}

/// Entered at EL1 or EL3: say so on the console and stop (PSCI SYSTEM_OFF at EL1).
#[unsafe(no_mangle)]
extern "C" fn boot_wrong_el(dtb_pa: u64, el: u64) -> ! {
    let fdt = early_dtb(dtb_pa).and_then(|b| dtb::parse(b).ok());
    if let Some(uart) = fdt.as_ref().and_then(dtb::console_uart) {
        early_console::set_uart(uart);
    }
    early_console::puts("bulkhead: error: entered at EL");
    early_console::puts(if el == 1 {
        "1"
    } else if el == 3 {
        "3"
    } else {
        "0"
    });
    early_console::puts(
        "; Bulkhead must be started at EL2 (QEMU: -machine virt,virtualization=on)\n",
    );
    if el == 1 {
        let conduit = fdt.as_ref().and_then(dtb::psci_conduit);
        match conduit {
            Some(dtb::PsciConduit::Hvc) => {
                let _ = smccc::psci::system_off::<smccc::Hvc>();
            }
            Some(dtb::PsciConduit::Smc) => {
                let _ = smccc::psci::system_off::<smccc::Smc>();
            }
            None => {}
        }
    }
    super::cpu::halt()
}

/// Physical address of the secondary entry point (for PSCI CPU_ON / spin-table).
pub fn secondary_entry_pa() -> u64 {
    secondary_entry as *const () as u64 - boot_params().runtime_offset
}

/// The boot parameters (runtime, read-only view).
pub fn boot_params() -> &'static BootParams {
    // SAFETY: written only by the boot CPU before the runtime starts, and by
    // `set_secondary_mpidrs` before any secondary is started.
    unsafe { &*core::ptr::addr_of!(BOOT_PARAMS) }
}

/// Records the MPIDRs secondaries use to find their index, and cleans the parameters to the
/// point of coherency so CPUs entering with the MMU off read them.
pub fn set_cpu_mpidrs(mpidrs: &[u64]) {
    let count = mpidrs.len().min(MAX_CPUS);
    // SAFETY: called on the boot CPU before any secondary starts; nobody else accesses them.
    unsafe {
        let params = &mut *core::ptr::addr_of_mut!(BOOT_PARAMS);
        params.mpidr[..count].copy_from_slice(&mpidrs[..count]);
        params.cpu_count = count as u64;
    }
    let va = core::ptr::addr_of!(BOOT_PARAMS) as u64;
    super::cpu::clean_dcache_to_poc(va, core::mem::size_of::<BootParams>() as u64);
}

/// The image layout computed at boot.
pub fn image() -> ImageLayout {
    // SAFETY: written once by the boot CPU before the runtime starts.
    unsafe { *core::ptr::addr_of!(IMAGE_LAYOUT) }
}

/// Every CPU arrives here from the trampoline: runtime table, runtime stack and vectors.
#[unsafe(no_mangle)]
extern "C" fn rust_runtime_entry(cpu: usize) -> ! {
    if cpu == 0 {
        crate::hypervisor::primary_main()
    } else {
        crate::hypervisor::secondary_main(cpu)
    }
}

/// The host DTB, as `boot_primary_early` mapped it (read-only) in the runtime table.
pub fn host_dtb() -> Option<&'static [u8]> {
    let params = boot_params();
    let placement = DtbPlacement {
        pa: params.dtb_pa,
        size: params.dtb_size,
    };
    if placement.size == 0 || placement.size > HOST_DTB_MAX_SIZE {
        return None;
    }
    // SAFETY: `boot_primary_early` mapped `size` bytes of DTB read-only at this VA for the life
    // of the hypervisor (the size was checked against the same limit there); nothing writes
    // them.
    Some(unsafe {
        core::slice::from_raw_parts(placement.va() as *const u8, placement.size as usize)
    })
}

/// Bytes of host RAM in the linear window.
///
/// # Safety
/// `[va, va + len)` must be RAM mapped in the linear window that nothing writes while the
/// slice lives (the guest images the firmware loaded, which Bulkhead reserves and never hands
/// to a guest).
pub unsafe fn linear_slice(va: u64, len: usize) -> &'static [u8] {
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(va as *const u8, len) }
}

/// Copies `bytes` into host RAM at linear-window address `va`.
///
/// # Safety
/// `[va, va + bytes.len())` must be RAM mapped in the linear window that Bulkhead owns and
/// nothing else accesses during the copy (guest RAM while no vCPU of its VM runs).
pub unsafe fn copy_to_linear(va: u64, bytes: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), va as *mut u8, bytes.len()) };
}
