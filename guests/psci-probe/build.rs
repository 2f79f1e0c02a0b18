//! Links the probe at RAM base + 0x80000, where its Image header says it goes (see link.ld).
fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
}
