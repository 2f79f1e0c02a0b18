//! An ELF64 AArch64 executable, loaded as QEMU's `-kernel` loads one: each `PT_LOAD` segment's
//! file bytes copied to its physical address (`p_paddr`), the rest of its memory size zeroed,
//! entry at `e_entry` (translated from the segment's virtual to its physical address when the
//! two differ, so an image linked to run with the MMU on still starts).
//!
//! The few fields are read here with checked arithmetic rather than through `xmas-elf`: that
//! crate asserts alignment and slices without bounds checks (`zero::read`,
//! `ProgramHeader::raw_data`), so a hostile file would panic EL2.

use alloc::vec::Vec;
use core::ops::Range;

use super::format::Seen;
use super::{GuestRam, KernelKind, LoadError, LoadedKernel};

const MAGIC: [u8; 4] = *b"\x7fELF";
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const DATA_LE: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_AARCH64: u16 = 0xb7;
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const PT_LOAD: u32 = 1;

/// Whether `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

fn malformed(what: &'static str) -> LoadError {
    LoadError::NotBootable(Seen::ElfMalformed(what))
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// One `PT_LOAD` segment, checked against the file and guest RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The file bytes to copy.
    pub file: Range<usize>,
    /// Where the segment goes (IPAs, `p_paddr` .. + `p_memsz`).
    pub at: Range<u64>,
    /// Its link address (`p_vaddr`).
    pub vaddr: u64,
}

/// The segments and entry point of an ELF64 AArch64 executable that fits in `ram`.
pub fn parse(data: &[u8], ram: GuestRam) -> Result<(Vec<Segment>, u64), LoadError> {
    let ident = data
        .get(..20)
        .ok_or(malformed("shorter than an ELF header"))?;
    match ident[4] {
        CLASS_64 => {}
        CLASS_32 => return Err(LoadError::NotBootable(Seen::Elf32)),
        _ => return Err(malformed("unknown ELF class")),
    }
    if ident[5] != DATA_LE {
        return Err(LoadError::NotBootable(Seen::ElfBigEndian));
    }
    let machine = u16_at(data, 18).unwrap_or(0);
    if machine != EM_AARCH64 {
        return Err(LoadError::NotBootable(Seen::ElfForMachine(machine)));
    }
    let kind = u16_at(data, 16).unwrap_or(0);
    if kind != ET_EXEC {
        return Err(LoadError::NotBootable(Seen::ElfNotExecutable(kind)));
    }
    if data.len() < EHDR_LEN {
        return Err(malformed("ELF header truncated"));
    }
    let field = |at| u64_at(data, at).unwrap_or(0);
    let (entry, phoff) = (field(24), field(32));
    let phentsize = usize::from(u16_at(data, 54).unwrap_or(0));
    let phnum = usize::from(u16_at(data, 56).unwrap_or(0));
    if phentsize != PHDR_LEN {
        return Err(malformed("program header size is not 56"));
    }
    let table = usize::try_from(phoff)
        .ok()
        .and_then(|start| Some(start..start.checked_add(phnum * PHDR_LEN)?))
        .and_then(|range| data.get(range))
        .ok_or(malformed("program headers run past the end of the file"))?;
    let mut segments = Vec::new();
    for phdr in table.chunks_exact(PHDR_LEN) {
        let field = |at| u64_at(phdr, at).unwrap_or(0);
        let (offset, vaddr, paddr, filesz, memsz) =
            (field(8), field(16), field(24), field(32), field(40));
        if u32_at(phdr, 0) != Some(PT_LOAD) || memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(malformed("a segment's file size exceeds its memory size"));
        }
        let file = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|range| range.end <= data.len())
            .ok_or(malformed("a segment runs past the end of the file"))?;
        let end = paddr.checked_add(memsz);
        let at = match end {
            Some(end) if ram.offsets(&(paddr..end)).is_some() => paddr..end,
            _ => {
                return Err(LoadError::NotBootable(Seen::ElfSegmentOutsideRam {
                    start: paddr,
                    end: end.unwrap_or(u64::MAX),
                }));
            }
        };
        segments.push(Segment { file, at, vaddr });
    }
    if segments.is_empty() {
        return Err(malformed("no PT_LOAD segment"));
    }
    // Segments may not overlap (QEMU's loader refuses overlapping regions too): so what the
    // file makes EL2 copy, zero and clean is at most guest RAM once, however many headers it
    // has.
    let mut by_start: Vec<&Range<u64>> = segments.iter().map(|s| &s.at).collect();
    by_start.sort_unstable_by_key(|at| at.start);
    if by_start.windows(2).any(|pair| pair[1].start < pair[0].end) {
        return Err(malformed("two segments overlap in memory"));
    }
    let physical = segments.iter().any(|s| s.at.contains(&entry));
    let entry = if physical {
        entry
    } else {
        segments
            .iter()
            .find(|s| entry >= s.vaddr && entry - s.vaddr < s.at.end - s.at.start)
            .map(|s| s.at.start + (entry - s.vaddr))
            .ok_or(LoadError::NotBootable(Seen::ElfEntryOutside(entry)))?
    };
    Ok((segments, entry))
}

/// Loads an ELF64 AArch64 executable into guest RAM.
pub fn load(
    ram_bytes: &mut [u8],
    ram: GuestRam,
    data: &[u8],
    copy: &dyn Fn(&mut [u8], &[u8]),
) -> Result<LoadedKernel, LoadError> {
    let (segments, entry) = parse(data, ram)?;
    for segment in &segments {
        let Some(dst) = ram.offsets(&segment.at).and_then(|o| ram_bytes.get_mut(o)) else {
            continue; // checked by `parse`
        };
        let (file_part, zero_part) = dst.split_at_mut(segment.file.len());
        copy(file_part, &data[segment.file.clone()]);
        zero_part.fill(0);
    }
    Ok(LoadedKernel {
        kind: KernelKind::Elf,
        entry,
        end: segments.iter().map(|s| s.at.end).max().unwrap_or(ram.base),
        written: segments.into_iter().map(|s| s.at).collect(),
    })
}
