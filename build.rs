//! Passes the linker script only when building the bare-metal image, and exports the build
//! time (`BULKHEAD_BUILD_EPOCH`, Unix seconds): the guests' RTCs start from it on a board
//! without an RTC of its own. `SOURCE_DATE_EPOCH` (reproducible builds) overrides it; otherwise
//! it is when this script last ran (cargo reruns it when the files below change).
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=boot");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
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
