//! Guest image placement, following QEMU's `-kernel` rules (`hw/arm/boot.c`).
//!
//! - A file carrying the arm64 Linux `Image` magic (`ARM\x64` at 0x38) is placed at the RAM
//!   base (2 MiB aligned) + its header's `text_offset` and entered at its first byte; an old
//!   header with `image_size == 0` means `text_offset` 0x80000 (Documentation/arch/arm64/booting.rst).
//! - Any other file is a raw binary, copied to RAM base + 0x80000 and entered at its first byte.
//! - The initrd goes at `max(RAM base + min(RAM size / 2, 128 MiB), kernel end)`, page aligned
//!   (QEMU keeps the low 128 MiB free so a compressed kernel can decompress itself there).
//! - The DTB goes after the initrd (or where the initrd would be), aligned to 2 MiB, because
//!   arm64 Linux wants the DTB not to cross a 2 MiB boundary.
//!
//! This module only computes addresses; the caller copies the bytes and writes the DTB (the DTB
//! needs the initrd addresses, so it is written after planning, into a slot of
//! [`GUEST_DTB_MAX_SIZE`] bytes).

use core::fmt;
use core::ops::Range;

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

/// Why a guest cannot be loaded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LoadError {
    /// The file is shorter than the 64-byte arm64 Image header.
    Truncated {
        /// Length of the file.
        len: usize,
    },
    /// An Image header was required but the magic is not `ARM\x64`.
    BadMagic,
    /// The Image header says the kernel is big-endian; guests run little-endian.
    BigEndianKernel,
    /// The kernel is empty: nothing to enter.
    EmptyKernel,
    /// The kernel, initrd or DTB slot does not fit in guest RAM.
    DoesNotFit {
        /// What did not fit.
        what: &'static str,
        /// First IPA after the part that did not fit.
        end: u64,
        /// First IPA after guest RAM.
        ram_end: u64,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "Image truncated: {len} bytes, header needs 64"),
            Self::BadMagic => write!(f, "not an arm64 Image (no ARM\\x64 magic)"),
            Self::BigEndianKernel => write!(f, "big-endian kernels are not supported"),
            Self::EmptyKernel => write!(f, "kernel file is empty"),
            Self::DoesNotFit { what, end, ram_end } => {
                write!(
                    f,
                    "{what} ends at {end:#x}, beyond guest RAM end {ram_end:#x}"
                )
            }
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

/// Parses an arm64 Image header; fails if `kernel` is not an Image.
pub fn parse_image_header(kernel: &[u8]) -> Result<ImageHeader, LoadError> {
    if kernel.len() < HEADER_SIZE {
        return Err(LoadError::Truncated { len: kernel.len() });
    }
    if kernel.get(MAGIC_OFFSET..MAGIC_OFFSET + 4) != Some(&IMAGE_MAGIC[..]) {
        return Err(LoadError::BadMagic);
    }
    let text_offset =
        read_u64_le(kernel, 0x08).ok_or(LoadError::Truncated { len: kernel.len() })?;
    let image_size = read_u64_le(kernel, 0x10).ok_or(LoadError::Truncated { len: kernel.len() })?;
    let flags = read_u64_le(kernel, 0x18).ok_or(LoadError::Truncated { len: kernel.len() })?;
    if image_size == 0 {
        // Pre-3.17 header: text_offset and flags are not meaningful; booting.rst says to
        // assume 0x80000 and little-endian.
        return Ok(ImageHeader {
            text_offset: DEFAULT_TEXT_OFFSET,
            image_size: 0,
            flags: 0,
        });
    }
    if flags & 1 != 0 {
        return Err(LoadError::BigEndianKernel);
    }
    Ok(ImageHeader {
        text_offset,
        image_size,
        flags,
    })
}

/// What kind of kernel file the guest was given.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum KernelKind {
    /// An arm64 Linux Image (or anything carrying its header, e.g. U-Boot, our own image).
    Image(ImageHeader),
    /// Anything else: raw code entered at its first byte.
    Raw,
}

/// Classifies a kernel file the way QEMU `-kernel` does: Image if it carries the magic,
/// otherwise raw. Only an Image with a bad header is an error.
pub fn classify_kernel(kernel: &[u8]) -> Result<KernelKind, LoadError> {
    if kernel.is_empty() {
        return Err(LoadError::EmptyKernel);
    }
    match parse_image_header(kernel) {
        Ok(header) => Ok(KernelKind::Image(header)),
        Err(LoadError::Truncated { .. } | LoadError::BadMagic) => Ok(KernelKind::Raw),
        Err(other) => Err(other),
    }
}

/// Where each guest image goes, as IPAs. The caller copies the kernel bytes to `kernel.start`,
/// the initrd bytes to `initrd.start`, writes the DTB at `dtb.start` and enters the guest at
/// `entry` with x0 = `dtb.start`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoadPlan {
    /// What the kernel file was taken for.
    pub kind: KernelKind,
    /// IPA range the kernel file's bytes are copied to.
    pub kernel: Range<u64>,
    /// First IPA after everything the kernel may use (its BSS included).
    pub kernel_end: u64,
    /// The entry point (the first byte of the kernel).
    pub entry: u64,
    /// IPA range of the initrd, if there is one.
    pub initrd: Option<Range<u64>>,
    /// The slot the DTB must be written into.
    pub dtb: Range<u64>,
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
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

fn check_fits(what: &'static str, end: Option<u64>, ram: GuestRam) -> Result<u64, LoadError> {
    let ram_end = ram.end();
    match end {
        Some(end) if end <= ram_end => Ok(end),
        Some(end) => Err(LoadError::DoesNotFit { what, end, ram_end }),
        None => Err(LoadError::DoesNotFit {
            what,
            end: u64::MAX,
            ram_end,
        }),
    }
}

/// Plans where the kernel, the initrd (`initrd_len` bytes, if any) and the DTB go in `ram`.
pub fn plan_load(
    ram: GuestRam,
    kernel: &[u8],
    initrd_len: Option<usize>,
) -> Result<LoadPlan, LoadError> {
    let kind = classify_kernel(kernel)?;
    let kernel_len = kernel.len() as u64;
    // The kernel must go at a 2 MiB aligned base + text_offset (booting.rst).
    let base = align_up(ram.base, SZ_2M).ok_or(LoadError::DoesNotFit {
        what: "kernel",
        end: u64::MAX,
        ram_end: ram.end(),
    })?;
    let (load, footprint) = match kind {
        KernelKind::Image(header) => (
            base.checked_add(header.text_offset),
            // image_size covers BSS; an old header (0) only tells us the file size.
            header.image_size.max(kernel_len),
        ),
        KernelKind::Raw => (base.checked_add(DEFAULT_TEXT_OFFSET), kernel_len),
    };
    let load = check_fits("kernel", load, ram)?;
    let kernel_end = check_fits("kernel", load.checked_add(footprint), ram)?;

    let low_gap = (ram.size / 2).min(SZ_128M);
    let initrd_start = ram
        .base
        .checked_add(low_gap)
        .map(|above_gap| above_gap.max(kernel_end))
        .and_then(|start| align_up(start, SZ_4K));
    let initrd_start = check_fits("initrd", initrd_start, ram)?;
    let initrd_len = initrd_len.map_or(0, |len| len as u64);
    let initrd_end = check_fits("initrd", initrd_start.checked_add(initrd_len), ram)?;

    let dtb_start = check_fits("dtb", align_up(initrd_end, SZ_2M), ram)?;
    let dtb_end = check_fits("dtb", dtb_start.checked_add(GUEST_DTB_MAX_SIZE), ram)?;

    Ok(LoadPlan {
        kind,
        kernel: load..load + kernel_len,
        kernel_end,
        entry: load,
        // An empty initrd is no initrd: Linux would reject a zero-length one.
        initrd: (initrd_len > 0).then_some(initrd_start..initrd_end),
        dtb: dtb_start..dtb_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;
    const RAM: GuestRam = GuestRam {
        base: 0x4000_0000,
        size: 512 * MIB,
    };

    /// An Image header the way Linux's `head.S` lays it out.
    fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len.max(HEADER_SIZE)];
        bytes[0..4].copy_from_slice(&[0x4d, 0x5a, 0x00, 0x91]); // "MZ" + add x13, x18, #0x16
        bytes[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        bytes[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        bytes[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
        bytes.truncate(len);
        bytes
    }

    #[test]
    fn good_image_header_parses() {
        // Debian 6.1: text_offset 0, ~32 MiB, flags = 4K pages | anywhere (0b1010).
        let header = parse_image_header(&image(0, 32 * MIB, 0b1010, 4096)).unwrap();
        assert_eq!(header.text_offset, 0);
        assert_eq!(header.image_size, 32 * MIB);
        assert_eq!(header.page_size(), KernelPageSize::Size4K);
    }

    #[test]
    fn truncated_header_is_an_error() {
        let bytes = image(0, MIB, 0b10, 0x3f);
        assert_eq!(
            parse_image_header(&bytes),
            Err(LoadError::Truncated { len: 0x3f })
        );
    }

    #[test]
    fn wrong_magic_is_an_error_when_an_image_is_required() {
        let mut bytes = image(0, MIB, 0b10, 4096);
        bytes[0x3b] = 0x65;
        assert_eq!(parse_image_header(&bytes), Err(LoadError::BadMagic));
        // ... but QEMU's -kernel rule then treats it as raw.
        assert_eq!(classify_kernel(&bytes), Ok(KernelKind::Raw));
    }

    #[test]
    fn big_endian_kernel_is_refused() {
        let bytes = image(0, MIB, 0b1011, 4096);
        assert_eq!(parse_image_header(&bytes), Err(LoadError::BigEndianKernel));
        assert_eq!(classify_kernel(&bytes), Err(LoadError::BigEndianKernel));
    }

    #[test]
    fn old_header_means_text_offset_0x80000() {
        let header = parse_image_header(&image(0x1234, 0, 1, 4096)).unwrap();
        assert_eq!(header.text_offset, DEFAULT_TEXT_OFFSET);
    }

    #[test]
    fn image_is_placed_at_text_offset_and_dtb_after_initrd() {
        let kernel = image(0, 32 * MIB, 0b1010, 20 * MIB as usize);
        let plan = plan_load(RAM, &kernel, Some(5 * MIB as usize + 3)).unwrap();
        assert_eq!(plan.entry, 0x4000_0000);
        assert_eq!(plan.kernel, 0x4000_0000..0x4000_0000 + 20 * MIB);
        assert_eq!(plan.kernel_end, 0x4000_0000 + 32 * MIB);
        // min(512M / 2, 128M) = 128M above RAM base.
        let initrd = plan.initrd.clone().unwrap();
        assert_eq!(initrd.start, 0x4800_0000);
        assert_eq!(initrd.end, 0x4800_0000 + 5 * MIB + 3);
        assert_eq!(plan.dtb.start, 0x4860_0000);
        assert_eq!(plan.dtb.end - plan.dtb.start, GUEST_DTB_MAX_SIZE);
    }

    #[test]
    fn image_with_text_offset_is_placed_above_base() {
        let plan = plan_load(RAM, &image(0x8_0000, MIB, 0b10, 8192), None).unwrap();
        assert_eq!(plan.entry, 0x4008_0000);
        assert_eq!(plan.initrd, None);
        // No initrd: the DTB goes where the initrd would be, 2 MiB aligned.
        assert_eq!(plan.dtb.start, 0x4800_0000);
    }

    #[test]
    fn raw_binary_is_entered_at_base_plus_0x80000() {
        let raw = [0x1f, 0x20, 0x03, 0xd5]; // nop
        let plan = plan_load(RAM, &raw, None).unwrap();
        assert_eq!(plan.kind, KernelKind::Raw);
        assert_eq!(plan.entry, 0x4008_0000);
        assert_eq!(plan.kernel, 0x4008_0000..0x4008_0004);
    }

    #[test]
    fn small_ram_puts_initrd_after_kernel() {
        let ram = GuestRam {
            base: 0x4000_0000,
            size: 64 * MIB,
        };
        let kernel = image(0, 40 * MIB, 0b1010, 4096);
        let plan = plan_load(ram, &kernel, Some(4096)).unwrap();
        // RAM/2 = 32 MiB is inside the kernel: the initrd goes right after it.
        assert_eq!(plan.initrd.unwrap().start, 0x4000_0000 + 40 * MIB);
        assert_eq!(plan.dtb.start, 0x4000_0000 + 42 * MIB);
    }

    #[test]
    fn oversized_parts_do_not_fit() {
        let ram = GuestRam {
            base: 0x4000_0000,
            size: 64 * MIB,
        };
        let kernel = image(0, 65 * MIB, 0b1010, 4096);
        assert!(matches!(
            plan_load(ram, &kernel, None),
            Err(LoadError::DoesNotFit { what: "kernel", .. })
        ));
        let kernel = image(0, 8 * MIB, 0b1010, 4096);
        assert!(matches!(
            plan_load(ram, &kernel, Some(40 * MIB as usize)),
            Err(LoadError::DoesNotFit { what: "initrd", .. })
        ));
        // The initrd fits exactly but leaves no room for the DTB.
        assert!(matches!(
            plan_load(ram, &kernel, Some(32 * MIB as usize)),
            Err(LoadError::DoesNotFit { what: "dtb", .. })
        ));
    }

    #[test]
    fn hostile_header_values_do_not_overflow() {
        let kernel = image(u64::MAX - 10, u64::MAX, 0b10, 4096);
        assert!(matches!(
            plan_load(RAM, &kernel, None),
            Err(LoadError::DoesNotFit { .. })
        ));
        assert_eq!(plan_load(RAM, &[], None), Err(LoadError::EmptyKernel));
    }
}
