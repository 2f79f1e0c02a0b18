//! Passes the linker script only when building the bare-metal image (debug images are also
//! linked position-independent, see below), and exports the build time
//! (`BULKHEAD_BUILD_EPOCH`, Unix seconds): the guests' RTCs start from it on a board without
//! an RTC of its own. `SOURCE_DATE_EPOCH` (reproducible builds) overrides it; otherwise it is
//! when this script last ran (cargo reruns it when the files below change).
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=boot");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
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
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=BULKHEAD_BUILD_EPOCH={epoch}");
}
