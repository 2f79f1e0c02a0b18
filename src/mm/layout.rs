//! The EL2 virtual address layout (48-bit VAs, one TTBR0_EL2, 4 KiB granule).
//!
//! ```text
//! 0x0000_0000_0000_0000 ..  identity range: the image's physical address (boot table only)
//! 0x0000_7f00_0000_0000     IMAGE_VA: the hypervisor image (runtime table; linker.ld links here)
//! 0x0000_7f80_0000_0000     DTB_VA: the host device tree, read-only
//! 0x0000_7fff_ffff_0000     TRAMPOLINE_VA: the trampoline page, in BOTH tables (the KVM/ARM HYP-init rework, Zyngier 2013)
//! 0x0000_8000_0000_0000 ..  LINEAR_BASE + PA: RAM (normal) and device windows (Device-nGnRE)
//! ```
//! The identity range must stay below `IDENTITY_LIMIT` so it can never collide with a runtime
//! VA: checked at boot (`check_image_pa`) and by the host tests.

/// Where the image is linked and mapped in the runtime table (must match linker.ld).
pub const IMAGE_VA: u64 = 0x0000_7f00_0000_0000;
/// Where the host DTB is mapped read-only.
pub const DTB_VA: u64 = 0x0000_7f80_0000_0000;
/// Largest host DTB we map.
pub const HOST_DTB_MAX_SIZE: u64 = 2 << 20;
/// The one VA at which the trampoline page is mapped in both the boot and the runtime table.
pub const TRAMPOLINE_VA: u64 = 0x0000_7fff_ffff_0000;
/// Start of the linear window: VA = LINEAR_BASE + PA for RAM and MMIO.
pub const LINEAR_BASE: u64 = 0x0000_8000_0000_0000;
/// Physical addresses handled by the linear window (and allowed for the identity map).
pub const IDENTITY_LIMIT: u64 = 0x0000_7000_0000_0000;

pub const PAGE_SIZE: u64 = 4096;

/// VA of a physical address in the linear window.
pub const fn phys_to_linear(pa: u64) -> u64 {
    LINEAR_BASE + pa
}

/// Why a physical placement cannot work with this layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The image lies where its identity map would overlap a runtime VA.
    ImageTooHigh { pa: u64 },
    /// The image is not 4 KiB aligned.
    ImageMisaligned { pa: u64 },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ImageTooHigh { pa } => write!(f, "image at {pa:#x} is above the identity limit"),
            Self::ImageMisaligned { pa } => write!(f, "image at {pa:#x} is not page aligned"),
        }
    }
}

/// Checks that an image loaded at `pa` with `size` bytes can be identity-mapped without
/// touching any runtime VA.
pub const fn check_image_pa(pa: u64, size: u64) -> Result<(), LayoutError> {
    if !pa.is_multiple_of(PAGE_SIZE) {
        return Err(LayoutError::ImageMisaligned { pa });
    }
    if pa.saturating_add(size) > IDENTITY_LIMIT {
        return Err(LayoutError::ImageTooHigh { pa });
    }
    Ok(())
}
