//! A minimal writer for EL2 stage-1 translation tables (4 KiB granule, 48-bit VA, levels 0-3).
//!
//! Why not `aarch64-paging` here: these tables are built by the boot CPU with the MMU off,
//! running at the image's physical address before relocation. At that point there is no heap,
//! and any code that reaches a trait object or a static holding an absolute address (both of
//! which `aarch64-paging` uses) would jump to the not-yet-mapped runtime VA. This writer only
//! does arithmetic on a fixed pool of tables, with aligned 64-bit stores, so it is safe to run
//! that early. Stage-2 tables, built at runtime, use `aarch64-paging`.
//!
//! The pool is addressed by physical address so that the same code works before the MMU is on
//! (pointer == PA) and after (pointer == VA, PA kept in `pa_base`).

/// One translation table: 512 descriptors.
pub type Table = [u64; 512];

const DESC_VALID: u64 = 1 << 0;
/// Bit 1: "table" at levels 0-2, "page" at level 3.
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDX_SHIFT: u64 = 2;
/// AP[1]: RES1 in a translation regime with one privilege level (EL2).
const AP_RES1: u64 = 1 << 6;
/// AP[2]: read-only.
const AP_RO: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
/// XN: execute never (EL2 has one XN bit).
const XN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// MAIR_EL2 index of Device-nGnRE.
pub const MAIR_IDX_DEVICE: u64 = 0;
/// MAIR_EL2 index of Normal, inner/outer write-back read/write-allocate.
pub const MAIR_IDX_NORMAL: u64 = 1;
/// The MAIR_EL2 value matching the indices above.
pub const MAIR_EL2_VALUE: u64 = 0x04 | (0xff << 8);

/// What a mapping is for; each kind has exactly one permission set, never writable+executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// Code: read + execute.
    Text,
    /// Constants: read only.
    ReadOnly,
    /// Data, stacks, heap: read + write.
    ReadWrite,
    /// MMIO: read + write, Device-nGnRE, never executable.
    Device,
}

impl MapKind {
    fn attr_bits(self) -> u64 {
        let normal = (MAIR_IDX_NORMAL << ATTR_INDX_SHIFT) | SH_INNER;
        let common = AF | AP_RES1;
        match self {
            Self::Text => common | normal | AP_RO,
            Self::ReadOnly => common | normal | AP_RO | XN,
            Self::ReadWrite => common | normal | XN,
            Self::Device => common | (MAIR_IDX_DEVICE << ATTR_INDX_SHIFT) | XN,
        }
    }

    /// Decodes the attribute bits of a leaf descriptor back into a kind.
    pub fn from_desc(desc: u64) -> Option<Self> {
        [Self::Text, Self::ReadOnly, Self::ReadWrite, Self::Device]
            .into_iter()
            .find(|k| desc & (k.attr_bits() | AP_RO | XN | SH_INNER | (7 << 2)) == k.attr_bits())
    }
}

/// Errors while building a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The pool has no free table left.
    PoolExhausted,
    /// Addresses or size are not 4 KiB aligned.
    Misaligned { va: u64, pa: u64, size: u64 },
    /// The VA range leaves the 48-bit space.
    OutOfRange { va: u64 },
    /// A different mapping already covers this VA.
    Conflict { va: u64 },
    /// A table descriptor points outside the pool (corrupt table).
    ForeignTable { pa: u64 },
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PoolExhausted => write!(f, "page-table pool exhausted"),
            Self::Misaligned { va, pa, size } => {
                write!(f, "misaligned mapping va={va:#x} pa={pa:#x} size={size:#x}")
            }
            Self::OutOfRange { va } => write!(f, "va {va:#x} outside the 48-bit space"),
            Self::Conflict { va } => write!(f, "va {va:#x} is already mapped differently"),
            Self::ForeignTable { pa } => write!(f, "table at {pa:#x} is not in the pool"),
        }
    }
}

/// A fixed set of tables, identified by physical address.
pub struct TablePool<'a> {
    tables: &'a mut [Table],
    pa_base: u64,
    used: usize,
}

impl<'a> TablePool<'a> {
    /// `tables` must be zeroed beyond `used`; `pa_base` is the physical address of `tables[0]`.
    pub fn new(tables: &'a mut [Table], pa_base: u64, used: usize) -> Self {
        Self {
            tables,
            pa_base,
            used,
        }
    }

    /// How many tables are allocated (persist this to reopen the pool later).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Allocates a zeroed table and returns its physical address.
    pub fn alloc(&mut self) -> Result<u64, MapError> {
        let table = self
            .tables
            .get_mut(self.used)
            .ok_or(MapError::PoolExhausted)?;
        table.fill(0);
        self.used += 1;
        Ok(self.pa_base + (self.used as u64 - 1) * 4096)
    }

    fn table(&mut self, pa: u64) -> Result<&mut Table, MapError> {
        let index = pa
            .checked_sub(self.pa_base)
            .map(|off| (off / 4096) as usize);
        match index {
            Some(i) if i < self.used => Ok(&mut self.tables[i]),
            _ => Err(MapError::ForeignTable { pa }),
        }
    }

    /// Maps `[va, va+size)` to `[pa, pa+size)` with the largest blocks alignment allows.
    /// Mapping exactly what is already there is a no-op, so overlapping requests for the same
    /// memory are fine; anything else already present is a `Conflict`.
    pub fn map_range(
        &mut self,
        root: u64,
        va: u64,
        pa: u64,
        size: u64,
        kind: MapKind,
    ) -> Result<(), MapError> {
        if !(va | pa | size).is_multiple_of(4096) {
            return Err(MapError::Misaligned { va, pa, size });
        }
        if va.checked_add(size).is_none_or(|end| end > 1 << 48) || pa & !ADDR_MASK != 0 {
            return Err(MapError::OutOfRange { va });
        }
        let mut done = 0;
        while done < size {
            done += self.map_one(root, va + done, pa + done, size - done, kind)?;
        }
        Ok(())
    }

    /// Maps one block or page at `va`; returns how many bytes it covered.
    fn map_one(
        &mut self,
        root: u64,
        va: u64,
        pa: u64,
        remaining: u64,
        kind: MapKind,
    ) -> Result<u64, MapError> {
        let mut table_pa = root;
        for level in 0..=3u32 {
            let shift = 39 - 9 * level;
            let block = 1u64 << shift;
            let index = ((va >> shift) & 511) as usize;
            let entry = self.table(table_pa)?[index];
            let is_table = level < 3 && entry & 0b11 == 0b11;
            let fits_block = level >= 1
                && va.is_multiple_of(block)
                && pa.is_multiple_of(block)
                && remaining >= block;
            if level == 3 || (fits_block && !is_table) {
                let type_bits = if level == 3 {
                    DESC_VALID | DESC_TABLE_OR_PAGE
                } else {
                    DESC_VALID
                };
                let desc = pa | kind.attr_bits() | type_bits;
                if entry == 0 {
                    self.table(table_pa)?[index] = desc;
                } else if entry != desc {
                    return Err(MapError::Conflict { va });
                }
                return Ok(block);
            }
            table_pa = if entry == 0 {
                let new = self.alloc()?;
                self.table(table_pa)?[index] = new | DESC_VALID | DESC_TABLE_OR_PAGE;
                new
            } else if is_table {
                entry & ADDR_MASK
            } else {
                return Err(MapError::Conflict { va });
            };
        }
        unreachable!("level 3 always returns")
    }

    /// Walks the table like the MMU would: the PA and kind `va` maps to, if any.
    pub fn translate(&mut self, root: u64, va: u64) -> Option<(u64, MapKind)> {
        let mut table_pa = root;
        for level in 0..=3u32 {
            let shift = 39 - 9 * level;
            let entry = self.table(table_pa).ok()?[((va >> shift) & 511) as usize];
            if entry & DESC_VALID == 0 {
                return None;
            }
            if level < 3 && entry & DESC_TABLE_OR_PAGE != 0 {
                table_pa = entry & ADDR_MASK;
                continue;
            }
            let offset_mask = (1u64 << shift) - 1;
            let pa = (entry & ADDR_MASK & !offset_mask) | (va & offset_mask);
            return MapKind::from_desc(entry).map(|kind| (pa, kind));
        }
        None
    }

    /// Every leaf mapping reachable from `root` as (va, pa, size, kind), in VA order.
    pub fn leaves(&mut self, root: u64) -> alloc::vec::Vec<(u64, u64, u64, MapKind)> {
        let mut out = alloc::vec::Vec::new();
        self.collect(root, 0, 0, &mut out);
        out
    }

    fn collect(
        &mut self,
        table_pa: u64,
        level: u32,
        va_base: u64,
        out: &mut alloc::vec::Vec<(u64, u64, u64, MapKind)>,
    ) {
        let shift = 39 - 9 * level;
        let Ok(table) = self.table(table_pa) else {
            return;
        };
        let entries: alloc::vec::Vec<(usize, u64)> = table
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, e)| e & DESC_VALID != 0)
            .collect();
        for (i, entry) in entries {
            let va = va_base | ((i as u64) << shift);
            if level < 3 && entry & DESC_TABLE_OR_PAGE != 0 {
                self.collect(entry & ADDR_MASK, level + 1, va, out);
            } else if let Some(kind) = MapKind::from_desc(entry) {
                out.push((va, entry & ADDR_MASK, 1 << shift, kind));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(tables: &mut [Table]) -> TablePool<'_> {
        TablePool::new(tables, 0x4000_0000, 0)
    }

    #[test]
    fn maps_pages_and_translates() {
        let mut t = vec![[0u64; 512]; 8];
        let mut p = pool(&mut t);
        let root = p.alloc().unwrap();
        p.map_range(root, 0x1000, 0x8000_1000, 0x2000, MapKind::Text)
            .unwrap();
        assert_eq!(
            p.translate(root, 0x1234),
            Some((0x8000_1234, MapKind::Text))
        );
        assert_eq!(
            p.translate(root, 0x2fff),
            Some((0x8000_2fff, MapKind::Text))
        );
        assert_eq!(p.translate(root, 0x3000), None);
        assert_eq!(p.translate(root, 0x0), None);
    }

    #[test]
    fn uses_blocks_when_aligned() {
        let mut t = vec![[0u64; 512]; 8];
        let mut p = pool(&mut t);
        let root = p.alloc().unwrap();
        p.map_range(
            root,
            0x4000_0000,
            0x4000_0000,
            0x4020_0000,
            MapKind::ReadWrite,
        )
        .unwrap();
        let leaves = p.leaves(root);
        // One 1 GiB block plus one 2 MiB block.
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0].2, 1 << 30);
        assert_eq!(leaves[1].2, 2 << 20);
        assert_eq!(p.used(), 3, "root + L1 + L2");
    }

    #[test]
    fn same_mapping_twice_is_ok_different_is_conflict() {
        let mut t = vec![[0u64; 512]; 8];
        let mut p = pool(&mut t);
        let root = p.alloc().unwrap();
        p.map_range(root, 0x1000, 0x1000, 0x1000, MapKind::Device)
            .unwrap();
        p.map_range(root, 0x1000, 0x1000, 0x1000, MapKind::Device)
            .unwrap();
        assert_eq!(
            p.map_range(root, 0x1000, 0x2000, 0x1000, MapKind::Device),
            Err(MapError::Conflict { va: 0x1000 })
        );
        assert_eq!(
            p.map_range(root, 0x1000, 0x1000, 0x1000, MapKind::ReadWrite),
            Err(MapError::Conflict { va: 0x1000 })
        );
    }

    #[test]
    fn block_over_existing_pages_descends() {
        let mut t = vec![[0u64; 512]; 8];
        let mut p = pool(&mut t);
        let root = p.alloc().unwrap();
        p.map_range(root, 0x20_0000, 0x20_0000, 0x1000, MapKind::Device)
            .unwrap();
        p.map_range(root, 0x20_0000, 0x20_0000, 0x20_0000, MapKind::Device)
            .unwrap();
        assert_eq!(
            p.translate(root, 0x3f_f000),
            Some((0x3f_f000, MapKind::Device))
        );
    }

    #[test]
    fn rejects_misaligned_out_of_range_and_exhaustion() {
        let mut t = vec![[0u64; 512]; 2];
        let mut p = pool(&mut t);
        let root = p.alloc().unwrap();
        assert!(matches!(
            p.map_range(root, 0x10, 0, 0x1000, MapKind::Text),
            Err(MapError::Misaligned { .. })
        ));
        assert!(matches!(
            p.map_range(root, (1 << 48) - 0x1000, 0, 0x2000, MapKind::Text),
            Err(MapError::OutOfRange { .. })
        ));
        assert_eq!(
            p.map_range(root, 0, 0, 0x1000, MapKind::Text),
            Err(MapError::PoolExhausted)
        );
    }

    #[test]
    fn kinds_round_trip_and_never_write_exec() {
        for kind in [
            MapKind::Text,
            MapKind::ReadOnly,
            MapKind::ReadWrite,
            MapKind::Device,
        ] {
            let bits = kind.attr_bits();
            assert_eq!(MapKind::from_desc(bits | 0b11), Some(kind));
            let writable = bits & AP_RO == 0;
            let executable = bits & XN == 0;
            assert!(!(writable && executable), "{kind:?} is W+X");
            assert_ne!(bits & AF, 0);
        }
    }
}
