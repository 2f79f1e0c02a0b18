//! Links the probe at the guest's raw-binary load address (see link.ld).
fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
}
