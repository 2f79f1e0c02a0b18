//! Guest kernel loading, following QEMU's `-kernel` rules (`hw/arm/boot.c`) for the formats it
//! knows, and refusing everything else.
//!
//! - An arm64 Linux `Image` (`ARM\x64` at 0x38) is placed at the RAM base (2 MiB aligned) + its
//!   header's `text_offset` and entered at its first byte; an old header with `image_size == 0`
//!   means `text_offset` 0x80000 (Documentation/arch/arm64/booting.rst).
//! - A gzip-compressed Image (what distributions ship as `vmlinuz`) is inflated straight into
//!   guest RAM and then placed as an Image ([`gzip`]).
//! - An ELF64 AArch64 executable has its `PT_LOAD` segments copied to their physical addresses
//!   (their BSS zeroed) and is entered at `e_entry` ([`elf`]).
//! - A raw binary is copied to RAM base + 0x80000 and entered at its first byte, but only when
//!   asked for ([`GuestFormat::Raw`]): a file with no known header is far more often a mistake
//!   (a random file, a kernel for another machine) than raw code, and run as code it faults on
//!   its own vector forever.
//! - The initrd goes at `max(RAM base + min(RAM size / 2, 128 MiB), kernel end)`, page aligned
//!   (QEMU keeps the low 128 MiB free so a compressed kernel can decompress itself there).
//! - The DTB goes after the initrd (or where the initrd would be), aligned to 2 MiB, because
//!   arm64 Linux wants the DTB not to cross a 2 MiB boundary.
//!
//! [`load_kernel`] writes the kernel into a guest RAM slice and says which bytes it wrote (the
//! caller cleans them to PoC: the guest starts with its MMU off); [`plan_in_place`] only places
//! a kernel taken as it is (Image, raw), for a caller that copies it later (`hyp::lazy_image`:
//! block by block on the guest's first touch); [`place_initrd_and_dtb`]
//! only computes addresses (the DTB needs the initrd addresses, so it is written after
//! planning, into a slot of [`GUEST_DTB_MAX_SIZE`] bytes).

mod elf;
mod format;
mod gzip;
#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

pub use format::{GuestFormat, Seen};

use crate::units::ApproxSize;

/// Offset of the `ARM\x64` magic in an arm64 Image header.
const MAGIC_OFFSET: usize = 0x38;
/// The arm64 Image magic number, little-endian "ARM\x64".
const IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
/// Size of the arm64 Image header.
const HEADER_SIZE: usize = 0x40;
/// Where a raw binary or an old (image_size == 0) Image goes, relative to the RAM base.
pub const DEFAULT_TEXT_OFFSET: u64 = 0x8_0000;
/// Bytes reserved for the guest DTB. Linux accepts up to 2 MiB; ours is a few KiB.
pub const GUEST_DTB_MAX_SIZE: u64 = 0x1_0000;

const SZ_4K: u64 = 0x1000;
const SZ_2M: u64 = 0x20_0000;
const SZ_128M: u64 = 0x800_0000;

/// Why a guest cannot be loaded. Each displays as one line for a person: sizes in KiB/MiB/GiB,
/// addresses in hex, the limit named.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum LoadError {
    /// The kernel file is none of the formats Bulkhead boots.
    NotBootable(Seen),
    /// The Image header says the kernel is big-endian; guests run little-endian.
    BigEndianKernel,
    /// The kernel needs more than all of guest RAM.
    RamTooSmall {
        /// Guest RAM size.
        ram: u64,
        /// What the kernel needs (its image_size, file or segments).
        need: u64,
        /// Where that figure comes from, e.g. "the kernel's image_size".
        what: &'static str,
    },
    /// The kernel, initrd or DTB slot does not fit in guest RAM.
    DoesNotFit {
        /// What did not fit.
        what: &'static str,
        /// Its first IPA.
        start: u64,
        /// First IPA after it.
        end: u64,
        /// First IPA after guest RAM.
        ram_end: u64,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBootable(seen) => write!(f, "kernel is not a bootable image: saw {seen}"),
            Self::BigEndianKernel => write!(
                f,
                "kernel is a big-endian arm64 Image; guests run little-endian"
            ),
            Self::RamTooSmall { ram, need, what } => write!(
                f,
                "guest RAM {} is smaller than {what} {}",
                ApproxSize(*ram),
                ApproxSize(*need)
            ),
            Self::DoesNotFit {
                what,
                start,
                end,
                ram_end,
            } => write!(
                f,
                "{what} at {start:#x}..{end:#x} ({}) runs past the end of guest RAM at {ram_end:#x}",
                ApproxSize(end.saturating_sub(*start))
            ),
        }
    }
}

/// Page size a kernel declares in its Image header flags (bits 1-2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum KernelPageSize {
    /// 0: not specified (old kernels).
    Unspecified,
    /// 1: 4 KiB.
    Size4K,
    /// 2: 16 KiB.
    Size16K,
    /// 3: 64 KiB.
    Size64K,
}

/// The fields of an arm64 Image header the loader uses.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB aligned RAM base where the Image must be placed.
    pub text_offset: u64,
    /// Bytes the kernel occupies once running (includes BSS); 0 on old kernels.
    pub image_size: u64,
    /// Raw header flags (bit 0 big-endian, bits 1-2 page size, bit 3 placement).
    pub flags: u64,
}

impl ImageHeader {
    /// The page size the kernel was built for.
    pub fn page_size(&self) -> KernelPageSize {
        match (self.flags >> 1) & 0b11 {
            1 => KernelPageSize::Size4K,
            2 => KernelPageSize::Size16K,
            3 => KernelPageSize::Size64K,
            _ => KernelPageSize::Unspecified,
        }
    }
}

fn read_u64_le(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// Whether `bytes` starts with an arm64 Image header (64 bytes, `ARM\x64` at 0x38).
fn has_image_magic(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_SIZE
        && bytes.get(MAGIC_OFFSET..MAGIC_OFFSET + 4) == Some(&IMAGE_MAGIC[..])
}

/// Parses an arm64 Image header; `None` if `kernel` does not carry one.
pub fn parse_image_header(kernel: &[u8]) -> Option<Result<ImageHeader, LoadError>> {
    if !has_image_magic(kernel) {
        return None;
    }
    let field = |offset| read_u64_le(kernel, offset).unwrap_or(0);
    let (text_offset, image_size, flags) = (field(0x08), field(0x10), field(0x18));
    if image_size == 0 {
        // Pre-3.17 header: text_offset and flags are not meaningful; booting.rst says to
        // assume 0x80000 and little-endian.
        return Some(Ok(ImageHeader {
            text_offset: DEFAULT_TEXT_OFFSET,
            image_size: 0,
            flags: 0,
        }));
    }
    if flags & 1 != 0 {
        return Some(Err(LoadError::BigEndianKernel));
    }
    Some(Ok(ImageHeader {
        text_offset,
        image_size,
        flags,
    }))
}

/// What kind of kernel was loaded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum KernelKind {
    /// An arm64 Linux Image (or anything carrying its header, e.g. U-Boot, the probe guest).
    Image(ImageHeader),
    /// A gzip stream holding an arm64 Image.
    GzipImage(ImageHeader),
    /// An ELF64 AArch64 executable.
    Elf,
    /// Raw code entered at its first byte (only on request).
    Raw,
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image(_) => "arm64 Image",
            Self::GzipImage(_) => "gzip-compressed arm64 Image",
            Self::Elf => "ELF64 AArch64 executable",
            Self::Raw => "raw binary",
        })
    }
}

/// The kernel, once in guest RAM.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoadedKernel {
    /// What the kernel file was taken for.
    pub kind: KernelKind,
    /// Where the boot vCPU starts.
    pub entry: u64,
    /// First IPA after everything the kernel may use (its BSS included).
    pub end: u64,
    /// The IPA ranges written (what the guest reads with its MMU off, to clean to PoC).
    pub written: Vec<Range<u64>>,
}

/// Guest RAM as an IPA range.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct GuestRam {
    /// First IPA of RAM.
    pub base: u64,
    /// Bytes of RAM.
    pub size: u64,
}

impl GuestRam {
    fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// The offset in a RAM slice of `ipas`, if the whole range is RAM.
    fn offsets(&self, ipas: &Range<u64>) -> Option<Range<usize>> {
        (ipas.start >= self.base && ipas.end <= self.end() && ipas.start <= ipas.end)
            .then(|| (ipas.start - self.base) as usize..(ipas.end - self.base) as usize)
    }
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Checks that `start..start + len` lies in `ram`, naming `what` otherwise.
fn check_fits(
    what: &'static str,
    start: Option<u64>,
    len: u64,
    ram: GuestRam,
) -> Result<Range<u64>, LoadError> {
    let ram_end = ram.end();
    let start = start.unwrap_or(u64::MAX);
    match start.checked_add(len) {
        Some(end) if end <= ram_end && start >= ram.base => Ok(start..end),
        end => Err(LoadError::DoesNotFit {
            what,
            start,
            end: end.unwrap_or(u64::MAX),
            ram_end,
        }),
    }
}

/// Checks that a kernel needing `need` bytes at `start` fits: more than all of RAM is said as
/// such (the message a too-small `--mem` deserves), anything else as an overrun.
fn check_kernel_fits(
    start: Option<u64>,
    need: u64,
    what: &'static str,
    ram: GuestRam,
) -> Result<Range<u64>, LoadError> {
    if need > ram.size {
        return Err(LoadError::RamTooSmall {
            ram: ram.size,
            need,
            what,
        });
    }
    check_fits("kernel", start, need, ram)
}

/// Where an Image goes: the 2 MiB aligned RAM base + `text_offset`.
fn image_load_address(ram: GuestRam, header: &ImageHeader) -> Option<u64> {
    align_up(ram.base, SZ_2M)?.checked_add(header.text_offset)
}

/// Loads `kernel` into guest RAM (`ram_bytes` is all of it, `ram` its IPAs) as `format` asks,
/// copying with `copy` (the widest copy the machine has; `copy_from_slice` on the host).
pub fn load_kernel(
    ram_bytes: &mut [u8],
    ram: GuestRam,
    kernel: &[u8],
    format: GuestFormat,
    copy: &dyn Fn(&mut [u8], &[u8]),
) -> Result<LoadedKernel, LoadError> {
    if kernel.is_empty() {
        return Err(LoadError::NotBootable(Seen::Empty));
    }
    if let Some(plan) = plan_in_place(ram, kernel, format) {
        let loaded = plan?;
        for at in &loaded.written {
            if let Some(dst) = ram.offsets(at).and_then(|o| ram_bytes.get_mut(o)) {
                copy(dst, kernel);
            }
        }
        return Ok(loaded);
    }
    if gzip::is_gzip(kernel) {
        return gzip::load(ram_bytes, ram, kernel);
    }
    if elf::is_elf(kernel) {
        return elf::load(ram_bytes, ram, kernel, copy);
    }
    Err(LoadError::NotBootable(Seen::unknown(kernel)))
}

/// Where `kernel` goes when it is taken as it is (a raw binary on request, or an arm64
/// Image): one range, `written`, holding the whole file. `None` for a kernel that must be
/// decoded (gzip, ELF) or is not bootable: only [`load_kernel`] takes those. Loading lazily
/// (the file copied block by block on the guest's first touch) starts here.
pub fn plan_in_place(
    ram: GuestRam,
    kernel: &[u8],
    format: GuestFormat,
) -> Option<Result<LoadedKernel, LoadError>> {
    if kernel.is_empty() {
        return None;
    }
    let kernel_len = kernel.len() as u64;
    if format == GuestFormat::Raw {
        let start = align_up(ram.base, SZ_2M).and_then(|b| b.checked_add(DEFAULT_TEXT_OFFSET));
        return Some(
            check_kernel_fits(start, kernel_len, "the raw kernel's size", ram).map(|at| {
                LoadedKernel {
                    kind: KernelKind::Raw,
                    entry: at.start,
                    end: at.end,
                    written: vec![at],
                }
            }),
        );
    }
    let header = match parse_image_header(kernel)? {
        Ok(header) => header,
        Err(e) => return Some(Err(e)),
    };
    let start = image_load_address(ram, &header);
    // image_size covers BSS; an old header (0) only tells us the file size.
    let need = header.image_size.max(kernel_len);
    Some(
        check_kernel_fits(start, need, "the kernel's image_size", ram).map(|footprint| {
            let at = footprint.start..footprint.start + kernel_len;
            LoadedKernel {
                kind: KernelKind::Image(header),
                entry: at.start,
                end: footprint.end,
                written: vec![at],
            }
        }),
    )
}

/// Where the initrd (`initrd_len` bytes, if any) and the DTB slot go, given the first IPA
/// after the kernel: `(initrd, dtb)`.
pub fn place_initrd_and_dtb(
    ram: GuestRam,
    kernel_end: u64,
    initrd_len: Option<usize>,
) -> Result<(Option<Range<u64>>, Range<u64>), LoadError> {
    let low_gap = (ram.size / 2).min(SZ_128M);
    let initrd_start = ram
        .base
        .checked_add(low_gap)
        .map(|above_gap| above_gap.max(kernel_end))
        .and_then(|start| align_up(start, SZ_4K));
    let initrd_len = initrd_len.map_or(0, |len| len as u64);
    let initrd = check_fits("initrd", initrd_start, initrd_len, ram)?;
    let dtb = check_fits("DTB", align_up(initrd.end, SZ_2M), GUEST_DTB_MAX_SIZE, ram)?;
    // An empty initrd is no initrd: Linux would reject a zero-length one.
    Ok(((initrd_len > 0).then_some(initrd), dtb))
}
