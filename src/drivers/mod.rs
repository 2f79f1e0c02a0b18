//! The register logic of drivers for the host's own devices, written against a small
//! register-access trait so it runs on the host in tests (against a fake device that records
//! every access) and on the board against MMIO (`board/` supplies that side, with the
//! `unsafe` it needs).

pub mod mini_uart;
