//! Host tests of kernel detection, loading (Image, gzip, ELF, raw on request) and placement.

use super::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

const MIB: u64 = 1 << 20;
const RAM: GuestRam = GuestRam {
    base: 0x4000_0000,
    size: 64 * MIB,
};

/// An Image header the way Linux's `head.S` lays it out.
fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len.max(HEADER_SIZE)];
    bytes[0..4].copy_from_slice(&[0x4d, 0x5a, 0x00, 0x91]); // "MZ" + add x13, x18, #0x16
    bytes[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
    bytes[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
    bytes[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
    bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
    // Recognisable contents after the header.
    for (i, b) in bytes.iter_mut().enumerate().skip(HEADER_SIZE) {
        *b = (i % 251) as u8;
    }
    bytes.truncate(len);
    bytes
}

/// A gzip member as `gzip -n` writes it (or, with `name`, as plain `gzip` does: FNAME set).
fn gzip(data: &[u8], name: Option<&str>) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    if let Some(name) = name {
        out[3] = 1 << 3;
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&[0; 4]); // CRC-32: not checked
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// An ELF64 executable for `machine` with `(paddr, vaddr, file bytes, memsz)` segments.
fn elf(machine: u16, entry: u64, segments: &[(u64, u64, &[u8], u64)]) -> Vec<u8> {
    let phoff = 64usize;
    let data_start = phoff + 56 * segments.len();
    let mut out = vec![0u8; data_start];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&machine.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    for (i, (paddr, vaddr, bytes, memsz)) in segments.iter().enumerate() {
        let offset = out.len() as u64;
        let ph = &mut out[phoff + 56 * i..phoff + 56 * (i + 1)];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn copy(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

/// Loads `kernel` into a fresh `ram` (filled with 0xee, so zeroing shows).
fn load_in(
    ram: GuestRam,
    kernel: &[u8],
    format: GuestFormat,
) -> (Result<LoadedKernel, LoadError>, Vec<u8>) {
    let mut bytes = vec![0xee; ram.size as usize];
    let loaded = load_kernel(&mut bytes, ram, kernel, format, &copy);
    (loaded, bytes)
}

fn load(kernel: &[u8]) -> Result<LoadedKernel, LoadError> {
    load_in(RAM, kernel, GuestFormat::Detect).0
}

fn refusal(kernel: &[u8]) -> alloc::string::String {
    load(kernel).unwrap_err().to_string()
}

fn at(ram: &[u8], ipa: u64, len: usize) -> &[u8] {
    let start = (ipa - RAM.base) as usize;
    &ram[start..start + len]
}

#[test]
fn good_image_header_parses() {
    // Debian 6.1: text_offset 0, ~32 MiB, flags = 4K pages | anywhere (0b1010).
    let header = parse_image_header(&image(0, 32 * MIB, 0b1010, 4096))
        .unwrap()
        .unwrap();
    assert_eq!(header.text_offset, 0);
    assert_eq!(header.image_size, 32 * MIB);
    assert_eq!(header.page_size(), KernelPageSize::Size4K);
}

#[test]
fn big_endian_kernel_is_refused() {
    let bytes = image(0, MIB, 0b1011, 4096);
    assert_eq!(load(&bytes), Err(LoadError::BigEndianKernel));
}

#[test]
fn old_header_means_text_offset_0x80000() {
    let header = parse_image_header(&image(0x1234, 0, 1, 4096))
        .unwrap()
        .unwrap();
    assert_eq!(header.text_offset, DEFAULT_TEXT_OFFSET);
}

#[test]
fn image_is_copied_to_text_offset_and_entered_there() {
    let kernel = image(0x8_0000, 2 * MIB, 0b10, 8192);
    let (loaded, ram) = load_in(RAM, &kernel, GuestFormat::Detect);
    let loaded = loaded.unwrap();
    assert_eq!(
        loaded.kind,
        KernelKind::Image(parse_image_header(&kernel).unwrap().unwrap())
    );
    assert_eq!(loaded.entry, 0x4008_0000);
    assert_eq!(loaded.end, 0x4008_0000 + 2 * MIB);
    assert_eq!(loaded.written, vec![0x4008_0000..0x4008_2000]);
    assert_eq!(at(&ram, 0x4008_0000, 8192), &kernel[..]);
    // Nothing outside the file was touched.
    assert_eq!(at(&ram, 0x4008_2000, 1), [0xee]);
}

#[test]
fn image_whose_image_size_exceeds_ram_says_both_sizes() {
    // Debian 6.1's image_size (32 MiB + 64 KiB) in 4 MiB of RAM, as `--mem 4M` gives.
    let kernel = image(0, 0x201_0000, 0b1010, 4096);
    let ram = GuestRam {
        base: 0x4000_0000,
        size: 4 * MIB,
    };
    let err = load_in(ram, &kernel, GuestFormat::Detect).0.unwrap_err();
    assert_eq!(
        err.to_string(),
        "guest RAM 4 MiB is smaller than the kernel's image_size 32.1 MiB"
    );
}

#[test]
fn image_that_fits_in_size_but_not_at_its_offset_names_the_addresses() {
    let kernel = image(60 * MIB, 8 * MIB, 0b1010, 4096);
    assert_eq!(
        refusal(&kernel),
        "kernel at 0x43c00000..0x44400000 (8 MiB) runs past the end of guest RAM at 0x44000000"
    );
}

#[test]
fn hostile_header_values_do_not_overflow() {
    let kernel = image(u64::MAX - 10, 8, 0b10, 4096);
    assert!(matches!(load(&kernel), Err(LoadError::DoesNotFit { .. })));
    let kernel = image(0, u64::MAX, 0b10, 4096);
    assert!(matches!(load(&kernel), Err(LoadError::RamTooSmall { .. })));
}

#[test]
fn empty_and_unknown_files_are_refused_naming_what_was_seen() {
    assert_eq!(
        refusal(&[]),
        "kernel is not a bootable image: saw an empty file"
    );
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let text = refusal(&random);
    assert!(
        text.starts_with("kernel is not a bootable image: saw unknown header 00 bb 77 33 ef ab 66 22 in 4 KiB (not an arm64 Image, gzip or ELF64; a raw binary must be asked for"),
        "{text}"
    );
    // A short file is unknown too, showing what it has.
    assert!(refusal(b"hi\n").contains("saw unknown header 68 69 0a in 3 bytes"));
    // The Image magic in the wrong place is no Image.
    let mut bytes = image(0, MIB, 0b10, 4096);
    bytes[0x3b] = 0x65;
    assert!(refusal(&bytes).contains("unknown header 4d 5a 00 91"));
}

#[test]
fn raw_on_request_goes_to_base_plus_0x80000_whatever_it_holds() {
    let raw = [0x1f, 0x20, 0x03, 0xd5]; // nop
    let (loaded, ram) = load_in(RAM, &raw, GuestFormat::Raw);
    let loaded = loaded.unwrap();
    assert_eq!(loaded.kind, KernelKind::Raw);
    assert_eq!(loaded.entry, 0x4008_0000);
    assert_eq!(loaded.written, vec![0x4008_0000..0x4008_0004]);
    assert_eq!(at(&ram, 0x4008_0000, 4), raw);
    // Without the request the same bytes are refused.
    assert!(refusal(&raw).contains("unknown header 1f 20 03 d5"));
    // Raw wins over a header: an Image taken raw goes to 0x80000 even with text_offset 0.
    let kernel = image(0, MIB, 0b1010, 4096);
    assert_eq!(
        load_in(RAM, &kernel, GuestFormat::Raw).0.unwrap().entry,
        0x4008_0000
    );
    assert_eq!(GuestFormat::parse("raw"), Some(GuestFormat::Raw));
    assert_eq!(GuestFormat::parse("auto"), Some(GuestFormat::Detect));
    assert_eq!(GuestFormat::parse("Image"), None);
}

#[test]
fn gzip_image_is_inflated_in_place_and_placed_by_its_header() {
    let kernel = image(0, 3 * MIB, 0b1010, 300_000);
    for name in [None, Some("vmlinuz-6.1.0-arm64")] {
        let (loaded, ram) = load_in(RAM, &gzip(&kernel, name), GuestFormat::Detect);
        let loaded = loaded.unwrap();
        assert!(matches!(loaded.kind, KernelKind::GzipImage(h) if h.image_size == 3 * MIB));
        assert_eq!(loaded.entry, 0x4000_0000);
        assert_eq!(loaded.end, 0x4000_0000 + 3 * MIB);
        assert_eq!(loaded.written, vec![0x4000_0000..0x4000_0000 + 300_000]);
        assert_eq!(at(&ram, 0x4000_0000, kernel.len()), &kernel[..]);
    }
}

#[test]
fn gzip_image_with_a_text_offset_is_moved_there() {
    let kernel = image(0x8_0000, MIB, 0b10, 100_000);
    let (loaded, ram) = load_in(RAM, &gzip(&kernel, None), GuestFormat::Detect);
    assert_eq!(loaded.unwrap().entry, 0x4008_0000);
    assert_eq!(at(&ram, 0x4008_0000, kernel.len()), &kernel[..]);
}

#[test]
fn gzip_refusals_name_the_problem() {
    let kernel = image(0, 3 * MIB, 0b1010, 3 * MIB as usize);
    let small = GuestRam {
        base: 0x4000_0000,
        size: 2 * MIB,
    };
    let err = load_in(small, &gzip(&kernel, None), GuestFormat::Detect)
        .0
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel is not a bootable image: saw a gzip stream that inflates beyond guest RAM (more than 2 MiB)"
    );
    let whole = gzip(&kernel, None);
    let cut = &whole[..whole.len() / 2];
    assert_eq!(
        refusal(cut),
        "kernel is not a bootable image: saw a truncated gzip stream (it ends mid-block)"
    );
    // Only the trailer missing: truncated too.
    assert!(refusal(&whole[..whole.len() - 3]).contains("truncated gzip"));
    assert!(refusal(&whole[..5]).contains("truncated gzip"));
    let mut wrong_len = whole.clone();
    let n = wrong_len.len();
    wrong_len[n - 4] ^= 1;
    assert!(refusal(&wrong_len).contains("corrupt gzip stream: inflated length differs"));
    let mut bad = whole.clone();
    bad[10] = 0xff; // block type 3: reserved
    assert!(
        refusal(&bad).contains("corrupt gzip stream"),
        "{}",
        refusal(&bad)
    );
    assert_eq!(
        refusal(&gzip(b"#!/bin/sh\necho hello\n", None)),
        "kernel is not a bootable image: saw a gzip stream holding no arm64 Image (it inflates to 23 21 2f 62 69 6e 2f 73 ...)"
    );
    // The Image inside still has to fit.
    let kernel = image(0, 8 * MIB, 0b1010, 4096);
    let err = load_in(small, &gzip(&kernel, None), GuestFormat::Detect)
        .0
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "guest RAM 2 MiB is smaller than the kernel's image_size 8 MiB"
    );
}

#[test]
fn elf_segments_go_to_their_physical_addresses_with_bss_zeroed() {
    let text = [0x11u8; 100];
    let data = [0x22u8; 10];
    let file = elf(
        0xb7,
        0x4008_0000,
        &[
            (0x4008_0000, 0x4008_0000, &text, 100),
            (0x4009_0000, 0x4009_0000, &data, 64),
        ],
    );
    let (loaded, ram) = load_in(RAM, &file, GuestFormat::Detect);
    let loaded = loaded.unwrap();
    assert_eq!(loaded.kind, KernelKind::Elf);
    assert_eq!(loaded.entry, 0x4008_0000);
    assert_eq!(loaded.end, 0x4009_0040);
    assert_eq!(
        loaded.written,
        vec![0x4008_0000..0x4008_0064, 0x4009_0000..0x4009_0040]
    );
    assert_eq!(at(&ram, 0x4008_0000, 100), text);
    assert_eq!(at(&ram, 0x4009_0000, 10), data);
    assert_eq!(at(&ram, 0x4009_000a, 54), [0u8; 54]);
    assert_eq!(at(&ram, 0x4009_0040, 1), [0xee]);
}

#[test]
fn elf_linked_high_is_entered_at_the_physical_address() {
    let text = [0x33u8; 64];
    let file = elf(
        0xb7,
        0xffff_8000_0000_0010,
        &[(0x4020_0000, 0xffff_8000_0000_0000, &text, 64)],
    );
    assert_eq!(load(&file).unwrap().entry, 0x4020_0010);
}

#[test]
fn elf_with_overlapping_segments_is_refused() {
    let seg: &[u8] = &[0u8; 16];
    // Many headers over the same RAM would make EL2 copy and zero it once per header.
    let overlapping = [(0x4008_0000, 0x4008_0000, seg, 0x1000); 3];
    assert_eq!(
        refusal(&elf(0xb7, 0x4008_0000, &overlapping)),
        "kernel is not a bootable image: saw a malformed ELF64 AArch64 file: two segments \
         overlap in memory"
    );
    let adjacent = [
        (0x4008_0000, 0x4008_0000, seg, 0x1000),
        (0x4008_1000, 0x4008_1000, seg, 0x1000),
    ];
    assert!(load(&elf(0xb7, 0x4008_0000, &adjacent)).is_ok());
}

#[test]
fn elf_refusals_name_the_problem() {
    let seg: &[u8] = &[0u8; 16];
    let refused = |file: &[u8]| refusal(file).replace("kernel is not a bootable image: saw ", "");
    assert_eq!(
        refused(&elf(
            0x3e,
            0x4008_0000,
            &[(0x4008_0000, 0x4008_0000, seg, 16)]
        )),
        "ELF for x86-64, not AArch64"
    );
    assert_eq!(
        refused(&elf(0x1234, 0, &[])),
        "ELF for machine 0x1234, not AArch64"
    );
    let mut rel = elf(0xb7, 0x4008_0000, &[(0x4008_0000, 0x4008_0000, seg, 16)]);
    rel[16] = 1;
    assert_eq!(
        refused(&rel),
        "an ELF file that is a relocatable object (ET_REL), not an executable (ET_EXEC)"
    );
    let mut elf32 = rel.clone();
    elf32[4] = 1;
    assert_eq!(
        refused(&elf32),
        "a 32-bit ELF file; guests need ELF64 AArch64"
    );
    assert_eq!(
        refused(&elf(0xb7, 0x1000, &[(0x1000, 0x1000, seg, 16)])),
        "an ELF executable with a segment at 0x1000..0x1010, outside guest RAM"
    );
    assert_eq!(
        refused(&elf(
            0xb7,
            0x5000_0000,
            &[(0x4008_0000, 0x4008_0000, seg, 16)]
        )),
        "an ELF executable whose entry point 0x50000000 is in none of its segments"
    );
    assert_eq!(
        refused(&elf(0xb7, 0, &[])),
        "a malformed ELF64 AArch64 file: no PT_LOAD segment"
    );
    let good = elf(0xb7, 0x4008_0000, &[(0x4008_0000, 0x4008_0000, seg, 16)]);
    assert!(refused(&good[..good.len() - 1]).contains("a segment runs past the end of the file"));
    assert!(refused(&good[..100]).contains("program headers run past the end"));
    assert!(refused(&good[..30]).contains("ELF header truncated"));
    assert!(refused(&good[..6]).contains("shorter than an ELF header"));
    let mut huge = good.clone();
    huge[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes()); // filesz
    huge[64 + 40..64 + 48].copy_from_slice(&u64::MAX.to_le_bytes()); // memsz
    assert!(refused(&huge).contains("past the end of the file"));
    let mut wrap = good;
    wrap[64 + 24..64 + 32].copy_from_slice(&(u64::MAX - 4).to_le_bytes()); // paddr
    assert!(refused(&wrap).contains("outside guest RAM"));
}

#[test]
fn initrd_goes_above_the_low_gap_and_dtb_after_it() {
    let ram = GuestRam {
        base: 0x4000_0000,
        size: 512 * MIB,
    };
    let (initrd, dtb) =
        place_initrd_and_dtb(ram, 0x4000_0000 + 32 * MIB, Some(5 * MIB as usize + 3)).unwrap();
    // min(512M / 2, 128M) = 128M above RAM base.
    assert_eq!(initrd, Some(0x4800_0000..0x4800_0000 + 5 * MIB + 3));
    assert_eq!(dtb, 0x4860_0000..0x4860_0000 + GUEST_DTB_MAX_SIZE);
    // No initrd: the DTB goes where the initrd would be, 2 MiB aligned.
    let (initrd, dtb) = place_initrd_and_dtb(ram, 0x4010_0000, None).unwrap();
    assert_eq!(initrd, None);
    assert_eq!(dtb.start, 0x4800_0000);
}

#[test]
fn small_ram_puts_initrd_after_kernel() {
    // RAM/2 = 32 MiB is inside the kernel: the initrd goes right after it.
    let (initrd, dtb) = place_initrd_and_dtb(RAM, 0x4000_0000 + 40 * MIB, Some(4096)).unwrap();
    assert_eq!(initrd.unwrap().start, 0x4000_0000 + 40 * MIB);
    assert_eq!(dtb.start, 0x4000_0000 + 42 * MIB);
}

#[test]
fn oversized_initrd_or_dtb_do_not_fit() {
    let kernel_end = 0x4000_0000 + 8 * MIB;
    assert_eq!(
        place_initrd_and_dtb(RAM, kernel_end, Some(40 * MIB as usize))
            .unwrap_err()
            .to_string(),
        "initrd at 0x42000000..0x44800000 (40 MiB) runs past the end of guest RAM at 0x44000000"
    );
    // The initrd fits exactly but leaves no room for the DTB.
    assert!(matches!(
        place_initrd_and_dtb(RAM, kernel_end, Some(32 * MIB as usize)),
        Err(LoadError::DoesNotFit { what: "DTB", .. })
    ));
}

#[test]
fn plan_in_place_places_an_image_or_raw_binary_as_loading_would_and_nothing_else() {
    let kernel = image(0x8_0000, 4 * MIB, 0b1010, 1000);
    let planned = plan_in_place(RAM, &kernel, GuestFormat::Detect)
        .unwrap()
        .unwrap();
    assert_eq!(planned, load(&kernel).unwrap());
    assert_eq!(
        planned.written,
        vec![RAM.base + 0x8_0000..RAM.base + 0x8_0000 + 1000]
    );
    let raw = plan_in_place(RAM, b"raw code", GuestFormat::Raw)
        .unwrap()
        .unwrap();
    assert_eq!(raw.kind, KernelKind::Raw);
    assert_eq!(raw.entry, RAM.base + DEFAULT_TEXT_OFFSET);
    // Decoded formats, garbage and nothing are load_kernel's to take (or refuse).
    assert_eq!(
        plan_in_place(RAM, &gzip(&kernel, None), GuestFormat::Detect),
        None
    );
    assert_eq!(
        plan_in_place(RAM, b"garbage garbage", GuestFormat::Detect),
        None
    );
    assert_eq!(plan_in_place(RAM, b"", GuestFormat::Raw), None);
    // A refusal is the same refusal.
    let too_big = image(0, 2 * RAM.size, 0b1010, 1000);
    assert_eq!(
        plan_in_place(RAM, &too_big, GuestFormat::Detect).unwrap(),
        load(&too_big)
    );
}
