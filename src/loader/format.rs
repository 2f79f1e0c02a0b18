//! What the user asked the kernel to be taken for, and what the loader saw when it is none of
//! the formats Bulkhead boots (the words of the refusal).

use core::fmt;

use crate::units::ApproxSize;

/// How to take the kernel file: `bulkhead.guest_format=` for the single VM, the kernel
/// module's `bulkhead,format` property for a dom0less VM.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum GuestFormat {
    /// By its header: arm64 Image, gzip-compressed Image or ELF64 AArch64 (the default).
    #[default]
    Detect,
    /// Raw code, copied to RAM base + 0x80000 and entered at its first byte, whatever it holds.
    Raw,
}

impl GuestFormat {
    /// The value of a format setting: `auto` (detect) or `raw`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Detect),
            "raw" => Some(Self::Raw),
            _ => None,
        }
    }
}

/// The first bytes of a file, shown in a refusal (up to 8, in hex).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FirstBytes {
    bytes: [u8; 8],
    len: usize,
}

impl FirstBytes {
    pub fn of(data: &[u8]) -> Self {
        let len = data.len().min(8);
        let mut bytes = [0; 8];
        bytes[..len].copy_from_slice(&data[..len]);
        Self { bytes, len }
    }
}

impl fmt::Display for FirstBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.bytes[..self.len].iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a kernel file that cannot be booted turned out to be.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Seen {
    /// Zero bytes.
    Empty,
    /// No header Bulkhead knows.
    Unknown { first: FirstBytes, len: u64 },
    /// An ELF file for another machine (`e_machine`).
    ElfForMachine(u16),
    /// A 32-bit ELF file.
    Elf32,
    /// A big-endian ELF file.
    ElfBigEndian,
    /// An ELF file that is not an executable (`e_type`).
    ElfNotExecutable(u16),
    /// An ELF64 AArch64 file whose structure is broken (what is wrong).
    ElfMalformed(&'static str),
    /// An ELF64 AArch64 executable with a segment outside guest RAM.
    ElfSegmentOutsideRam { start: u64, end: u64 },
    /// An ELF64 AArch64 executable whose entry point is in none of its segments.
    ElfEntryOutside(u64),
    /// A gzip stream that inflates to more than guest RAM can hold (`limit` bytes).
    GzipTooLarge { limit: u64 },
    /// A gzip stream that ends before its last block.
    GzipTruncated,
    /// A gzip stream that cannot be inflated (what is wrong).
    GzipCorrupt(&'static str),
    /// A gzip stream holding something other than an arm64 Image.
    GzipNotImage(FirstBytes),
}

impl Seen {
    /// A file with no known header.
    pub fn unknown(data: &[u8]) -> Self {
        Self::Unknown {
            first: FirstBytes::of(data),
            len: data.len() as u64,
        }
    }
}

/// The name of an ELF `e_machine` value a person would recognise (the ELF ABI registry).
fn machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        0x03 => "x86 (i386)",
        0x08 => "MIPS",
        0x14 => "PowerPC",
        0x15 => "PowerPC64",
        0x16 => "s390",
        0x28 => "32-bit Arm",
        0x2b => "SPARC V9",
        0x3e => "x86-64",
        0xf3 => "RISC-V",
        0x102 => "LoongArch",
        _ => return None,
    })
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an empty file"),
            Self::Unknown { first, len } => write!(
                f,
                "unknown header {first} in {} (not an arm64 Image, gzip or ELF64; a raw binary \
                 must be asked for: bulkhead.guest_format=raw, or bulkhead,format = \"raw\" \
                 on a dom0less kernel module)",
                ApproxSize(*len)
            ),
            Self::ElfForMachine(machine) => match machine_name(*machine) {
                Some(name) => write!(f, "ELF for {name}, not AArch64"),
                None => write!(f, "ELF for machine {machine:#x}, not AArch64"),
            },
            Self::Elf32 => f.write_str("a 32-bit ELF file; guests need ELF64 AArch64"),
            Self::ElfBigEndian => f.write_str("a big-endian ELF file; guests run little-endian"),
            Self::ElfNotExecutable(kind) => {
                let what = match kind {
                    1 => "a relocatable object (ET_REL)",
                    3 => "a shared object (ET_DYN)",
                    4 => "a core dump (ET_CORE)",
                    _ => "of another type",
                };
                write!(f, "an ELF file that is {what}, not an executable (ET_EXEC)")
            }
            Self::ElfMalformed(what) => write!(f, "a malformed ELF64 AArch64 file: {what}"),
            Self::ElfSegmentOutsideRam { start, end } => write!(
                f,
                "an ELF executable with a segment at {start:#x}..{end:#x}, outside guest RAM"
            ),
            Self::ElfEntryOutside(entry) => write!(
                f,
                "an ELF executable whose entry point {entry:#x} is in none of its segments"
            ),
            Self::GzipTooLarge { limit } => write!(
                f,
                "a gzip stream that inflates beyond guest RAM (more than {})",
                ApproxSize(*limit)
            ),
            Self::GzipTruncated => f.write_str("a truncated gzip stream (it ends mid-block)"),
            Self::GzipCorrupt(what) => write!(f, "a corrupt gzip stream: {what}"),
            Self::GzipNotImage(first) => write!(
                f,
                "a gzip stream holding no arm64 Image (it inflates to {first} ...)"
            ),
        }
    }
}
