//! The two EL2 stage-1 tables (the trampoline scheme of the KVM/ARM HYP-init rework, 2013).
//!
//! - **boot table**: the image identity-mapped (VA == PA) plus the trampoline page at
//!   `TRAMPOLINE_VA`. Used only between "MMU on" and the jump into the trampoline.
//! - **runtime table**: the image at `IMAGE_VA`, the trampoline page at the same
//!   `TRAMPOLINE_VA`, the DTB read-only at `DTB_VA`, and (added later) RAM and device windows in
//!   the linear window. The identity map is absent, so the two can never collide.
//!
//! Every CPU — the boot CPU, each secondary, each CPU coming back from hotplug — enables the
//! MMU on the boot table, jumps to the trampoline VA, switches TTBR0_EL2 to the runtime table
//! and invalidates the EL2 TLB there, inside EL2 (boot/trampoline.S).

use super::el2_pagetable::{MapError, MapKind, TablePool};
use super::layout::{
    DTB_VA, HOST_DTB_MAX_SIZE, IMAGE_VA, PAGE_SIZE, TRAMPOLINE_VA, phys_to_linear,
};

/// Where the image's sections are, as byte offsets from the image start (from linker.ld).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLayout {
    /// Physical address the loader put the image at.
    pub pa: u64,
    pub text: (u64, u64),
    pub rodata: (u64, u64),
    /// .data and .bss (including stacks and the page-table pool).
    pub data: (u64, u64),
    /// The trampoline page (one page, inside .text).
    pub trampoline: u64,
}

impl ImageLayout {
    /// The sections with the permissions each gets.
    fn sections(&self) -> [((u64, u64), MapKind); 3] {
        [
            (self.text, MapKind::Text),
            (self.rodata, MapKind::ReadOnly),
            (self.data, MapKind::ReadWrite),
        ]
    }

    /// Offset between the runtime VA and the physical address of every image byte.
    pub fn runtime_offset(&self) -> u64 {
        IMAGE_VA.wrapping_sub(self.pa)
    }
}

/// The host DTB's physical placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtbPlacement {
    pub pa: u64,
    pub size: u64,
}

impl DtbPlacement {
    /// VA of the DTB's first byte in the runtime table.
    pub fn va(&self) -> u64 {
        DTB_VA + self.pa % PAGE_SIZE
    }
}

fn align_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

fn align_up(x: u64) -> u64 {
    align_down(x + PAGE_SIZE - 1)
}

/// Builds the boot table; returns the physical address of its root.
pub fn build_boot_table(pool: &mut TablePool<'_>, image: &ImageLayout) -> Result<u64, MapError> {
    let root = pool.alloc()?;
    for ((start, end), kind) in image.sections() {
        pool.map_range(root, image.pa + start, image.pa + start, end - start, kind)?;
    }
    let trampoline_pa = image.pa + image.trampoline;
    pool.map_range(root, TRAMPOLINE_VA, trampoline_pa, PAGE_SIZE, MapKind::Text)?;
    Ok(root)
}

/// Builds the runtime table with the image, trampoline, DTB and the console UART; RAM and the
/// other devices are added at runtime with [`map_linear`].
pub fn build_runtime_table(
    pool: &mut TablePool<'_>,
    image: &ImageLayout,
    dtb: Option<DtbPlacement>,
    uart_pa: Option<u64>,
) -> Result<u64, MapError> {
    let root = pool.alloc()?;
    for ((start, end), kind) in image.sections() {
        pool.map_range(root, IMAGE_VA + start, image.pa + start, end - start, kind)?;
    }
    let trampoline_pa = image.pa + image.trampoline;
    pool.map_range(root, TRAMPOLINE_VA, trampoline_pa, PAGE_SIZE, MapKind::Text)?;
    if let Some(dtb) = dtb {
        let start = align_down(dtb.pa);
        let size = align_up(dtb.pa + dtb.size.min(HOST_DTB_MAX_SIZE)) - start;
        pool.map_range(root, DTB_VA, start, size, MapKind::ReadOnly)?;
    }
    if let Some(uart) = uart_pa {
        map_linear(pool, root, align_down(uart), PAGE_SIZE, MapKind::Device)?;
    }
    Ok(root)
}

/// Maps `[pa, pa+size)` (rounded out to pages) into the linear window.
pub fn map_linear(
    pool: &mut TablePool<'_>,
    root: u64,
    pa: u64,
    size: u64,
    kind: MapKind,
) -> Result<u64, MapError> {
    let start = align_down(pa);
    let end = align_up(pa + size);
    pool.map_range(root, phys_to_linear(start), start, end - start, kind)?;
    Ok(phys_to_linear(pa))
}

/// Maps RAM into the linear window read-write, leaving out the image (so no byte of the
/// hypervisor is both writable and executable through an alias).
pub fn map_ram_linear(
    pool: &mut TablePool<'_>,
    root: u64,
    ram: (u64, u64),
    image: &ImageLayout,
) -> Result<(), MapError> {
    let (base, end) = (align_up(ram.0), align_down(ram.1));
    let image_start = image.pa;
    let image_end = image.pa + align_up(image.data.1);
    let mut pieces = [(base, end.min(image_start)), (base.max(image_end), end)];
    if image_end <= base || image_start >= end {
        pieces = [(base, end), (0, 0)];
    }
    for (s, e) in pieces {
        if e > s {
            pool.map_range(root, phys_to_linear(s), s, e - s, MapKind::ReadWrite)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::el2_pagetable::Table;
    use super::super::layout::{IDENTITY_LIMIT, LINEAR_BASE, check_image_pa};
    use super::*;

    /// A layout like the real image's, loaded where QEMU virt puts it.
    fn image() -> ImageLayout {
        ImageLayout {
            pa: 0x4008_0000,
            text: (0, 0x1_0000),
            rodata: (0x1_0000, 0x1_4000),
            data: (0x1_4000, 0xa_0000),
            trampoline: 0x1000,
        }
    }

    fn dtb() -> DtbPlacement {
        DtbPlacement {
            pa: 0x4000_0000,
            size: 0x10_0000,
        }
    }

    struct Built {
        tables: Vec<Table>,
        boot: u64,
        runtime: u64,
        used: usize,
    }

    fn build() -> Built {
        let mut tables = vec![[0u64; 512]; 32];
        let (boot, runtime, used) = {
            let mut pool = TablePool::new(&mut tables, 0x4010_0000, 0);
            let boot = build_boot_table(&mut pool, &image()).unwrap();
            let runtime =
                build_runtime_table(&mut pool, &image(), Some(dtb()), Some(0x0900_0000)).unwrap();
            map_ram_linear(&mut pool, runtime, (0x4000_0000, 0x8000_0000), &image()).unwrap();
            (boot, runtime, pool.used())
        };
        Built {
            tables,
            boot,
            runtime,
            used,
        }
    }

    #[test]
    fn trampoline_page_is_at_one_va_in_both_tables() {
        let mut b = build();
        let mut pool = TablePool::new(&mut b.tables, 0x4010_0000, b.used);
        let want = image().pa + image().trampoline;
        assert_eq!(
            pool.translate(b.boot, TRAMPOLINE_VA),
            Some((want, MapKind::Text))
        );
        assert_eq!(
            pool.translate(b.runtime, TRAMPOLINE_VA),
            Some((want, MapKind::Text))
        );
    }

    #[test]
    fn identity_only_in_boot_table_and_disjoint_from_runtime_vas() {
        let mut b = build();
        let mut pool = TablePool::new(&mut b.tables, 0x4010_0000, b.used);
        let img = image();
        assert!(pool.translate(b.boot, img.pa).is_some());
        assert_eq!(
            pool.translate(b.runtime, img.pa),
            None,
            "identity map leaked into runtime"
        );
        let boot_leaves = pool.leaves(b.boot);
        let runtime_leaves = pool.leaves(b.runtime);
        for (va, _, size, _) in &boot_leaves {
            if *va == TRAMPOLINE_VA {
                continue;
            }
            assert!(va + size <= IDENTITY_LIMIT);
            for (rva, _, rsize, _) in &runtime_leaves {
                assert!(
                    va + size <= *rva || rva + rsize <= *va,
                    "identity {va:#x} overlaps {rva:#x}"
                );
            }
        }
    }

    #[test]
    fn sections_have_their_permissions_and_nothing_is_write_exec() {
        let mut b = build();
        let mut pool = TablePool::new(&mut b.tables, 0x4010_0000, b.used);
        let img = image();
        for (root, base) in [(b.boot, img.pa), (b.runtime, IMAGE_VA)] {
            assert_eq!(pool.translate(root, base).unwrap().1, MapKind::Text);
            assert_eq!(
                pool.translate(root, base + 0xfff0).unwrap().1,
                MapKind::Text
            );
            assert_eq!(
                pool.translate(root, base + 0x1_0000).unwrap().1,
                MapKind::ReadOnly
            );
            assert_eq!(
                pool.translate(root, base + 0x1_4000).unwrap().1,
                MapKind::ReadWrite
            );
            assert_eq!(
                pool.translate(root, base + 0x9_f000).unwrap().1,
                MapKind::ReadWrite
            );
            assert_eq!(pool.translate(root, base + 0xa_0000), None);
        }
        // Executable mappings are exactly the image text (and the trampoline inside it): the
        // linear RAM window excludes the image.
        for (va, pa, size, kind) in pool.leaves(b.runtime) {
            if kind == MapKind::Text {
                assert!(
                    pa >= img.pa && pa + size <= img.pa + img.text.1,
                    "exec at {va:#x}"
                );
            }
        }
        assert_eq!(pool.translate(b.runtime, LINEAR_BASE + img.pa), None);
        assert_eq!(
            pool.translate(b.runtime, LINEAR_BASE + 0x4020_0000),
            Some((0x4020_0000, MapKind::ReadWrite))
        );
    }

    #[test]
    fn devices_are_device_memory_and_dtb_is_read_only() {
        let mut b = build();
        let mut pool = TablePool::new(&mut b.tables, 0x4010_0000, b.used);
        assert_eq!(
            pool.translate(b.runtime, LINEAR_BASE + 0x0900_0000),
            Some((0x0900_0000, MapKind::Device))
        );
        assert_eq!(
            pool.translate(b.runtime, dtb().va()),
            Some((dtb().pa, MapKind::ReadOnly))
        );
        map_linear(&mut pool, b.runtime, 0x0800_0000, 0x1_0000, MapKind::Device).unwrap();
        assert_eq!(
            pool.translate(b.runtime, LINEAR_BASE + 0x0800_f000)
                .unwrap()
                .1,
            MapKind::Device
        );
    }

    #[test]
    fn image_placement_checks() {
        assert!(check_image_pa(0x4008_0000, 0x10_0000).is_ok());
        assert!(check_image_pa(0x80000, 0x10_0000).is_ok());
        assert!(check_image_pa(0x4008_0100, 0x1000).is_err());
        assert!(check_image_pa(IDENTITY_LIMIT, 0x1000).is_err());
    }
}
