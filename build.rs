//! Passes the linker script only when building the bare-metal image; debug images are also
//! linked position-independent (see below).
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=boot");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        // The boot CPU runs Rust at the image's physical address, with the MMU off, before it
        // switches to the linked VA. Unoptimised code loads the addresses of promoted constants,
        // vtables and panic locations from data, as link-time (VA) values: wrong there. Linked
        // `-pie`, every such pointer gets an R_AARCH64_RELATIVE entry, which boot/entry.S
        // applies for the physical address and restores before the switch. Release builds fold
        // those loads into PC-relative code and carry no relocations (checked in entry.S's
        // comment and by the debug-image boot test).
        if std::env::var("PROFILE").as_deref() == Ok("debug") {
            for arg in ["-pie", "--no-dynamic-linker", "-znotext"] {
                println!("cargo:rustc-link-arg-bins={arg}");
            }
        }
    }
}
