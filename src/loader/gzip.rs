//! A gzip-compressed arm64 Image (what Debian, Ubuntu and Fedora ship as `vmlinuz`, and what
//! QEMU's `-kernel` and the Raspberry Pi firmware accept): inflated straight into guest RAM
//! with `miniz_oxide`, then placed by its Image header like an uncompressed Image.
//!
//! The gzip wrapper (RFC 1952: a 10-byte header with optional fields, the deflate stream, then
//! CRC-32 and the length mod 2^32) is read here: `miniz_oxide` inflates raw deflate and zlib
//! streams but has no gzip framing. The length is checked; the CRC is not (no CRC-32 in the kept
//! crates, and a damaged stream almost always fails to inflate or to carry an Image header).

use alloc::boxed::Box;
use alloc::vec;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use super::format::{FirstBytes, Seen};
use super::{
    GuestRam, KernelKind, LoadError, LoadedKernel, SZ_2M, align_up, check_kernel_fits,
    image_load_address, parse_image_header,
};

/// RFC 1952 member header: ID1 ID2 CM (8 = deflate).
const MAGIC: [u8; 2] = [0x1f, 0x8b];
const CM_DEFLATE: u8 = 8;
const HEADER_LEN: usize = 10;
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const FRESERVED: u8 = 0b1110_0000;
/// CRC-32 and ISIZE after the deflate stream.
const TRAILER_LEN: usize = 8;

/// Whether `data` starts like a gzip stream.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

fn corrupt(what: &'static str) -> LoadError {
    LoadError::NotBootable(Seen::GzipCorrupt(what))
}

/// The deflate stream inside a gzip member (everything after its header).
fn deflate_stream(data: &[u8]) -> Result<&[u8], LoadError> {
    let header = data
        .get(..HEADER_LEN)
        .ok_or(LoadError::NotBootable(Seen::GzipTruncated))?;
    if header[2] != CM_DEFLATE {
        return Err(corrupt("compression method is not deflate"));
    }
    let flags = header[3];
    if flags & FRESERVED != 0 {
        return Err(corrupt("reserved header flags set"));
    }
    let truncated = LoadError::NotBootable(Seen::GzipTruncated);
    let mut at = HEADER_LEN;
    if flags & FEXTRA != 0 {
        let xlen = data.get(at..at + 2).ok_or(truncated.clone())?;
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = data.get(at..).ok_or(truncated.clone())?;
            let nul = rest.iter().position(|&b| b == 0).ok_or(truncated.clone())?;
            at += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    data.get(at..).ok_or(truncated)
}

/// Inflates the gzip stream `data` into `out`; returns the inflated length.
pub fn inflate(data: &[u8], out: &mut [u8]) -> Result<usize, LoadError> {
    let stream = deflate_stream(data)?;
    // On the heap: the decompressor's tables are ~11 KiB.
    let mut state: Box<DecompressorOxide> = Box::default();
    let (status, used, written) = decompress(
        &mut state,
        stream,
        out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    match status {
        TINFLStatus::Done => {}
        TINFLStatus::HasMoreOutput => {
            return Err(LoadError::NotBootable(Seen::GzipTooLarge {
                limit: out.len() as u64,
            }));
        }
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
            return Err(LoadError::NotBootable(Seen::GzipTruncated));
        }
        _ => {
            return Err(corrupt("invalid deflate data"));
        }
    }
    let trailer = stream
        .get(used..)
        .and_then(|rest| rest.get(..TRAILER_LEN))
        .ok_or(LoadError::NotBootable(Seen::GzipTruncated))?;
    let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if isize != written as u32 {
        return Err(corrupt("inflated length differs from the trailer's"));
    }
    Ok(written)
}

/// Inflates a gzip-compressed Image at the 2 MiB aligned RAM base, then moves it to its
/// `text_offset` (0 for every kernel since Linux 5.8, so usually it stays).
pub fn load(ram_bytes: &mut [u8], ram: GuestRam, data: &[u8]) -> Result<LoadedKernel, LoadError> {
    let base = align_up(ram.base, SZ_2M).unwrap_or(u64::MAX);
    let from = usize::try_from(base.saturating_sub(ram.base)).unwrap_or(usize::MAX);
    let mut none = vec![];
    let out = ram_bytes.get_mut(from..).unwrap_or(&mut none);
    let len = inflate(data, out)?;
    let inflated = &out[..len];
    let header = parse_image_header(inflated).ok_or(LoadError::NotBootable(
        Seen::GzipNotImage(FirstBytes::of(inflated)),
    ))??;
    let need = header.image_size.max(len as u64);
    let footprint = check_kernel_fits(
        image_load_address(ram, &header),
        need,
        "the kernel's image_size",
        ram,
    )?;
    let at = footprint.start..footprint.start + len as u64;
    let to = (at.start - ram.base) as usize;
    if to != from {
        ram_bytes.copy_within(from..from + len, to);
    }
    Ok(LoadedKernel {
        kind: KernelKind::GzipImage(header),
        entry: at.start,
        end: footprint.end,
        written: vec![at],
    })
}
