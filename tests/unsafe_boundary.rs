//! The crate root denies `unsafe_code` and allows it only for `arch/` and `board/` (and the
//! assembly in `boot/`). This keeps anyone from opening another door with a local `allow`.

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source tree") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_code_is_allowed_only_for_arch_and_board() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let deny = lib
        .split("#![deny(")
        .nth(1)
        .and_then(|rest| rest.split(')').next());
    assert!(
        deny.is_some_and(|lints| lints.split(',').any(|l| l.trim() == "unsafe_code")),
        "the crate root denies unsafe code"
    );
    let allows: Vec<&str> = lib
        .lines()
        .zip(lib.lines().skip(1))
        .filter(|(line, _)| line.contains("allow(unsafe_code)"))
        .map(|(_, next)| next.trim())
        .collect();
    assert_eq!(allows, ["pub mod arch;", "pub mod board;"]);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in files {
        if file.ends_with("src/lib.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("allow(unsafe_code)"),
            "{} re-allows unsafe code",
            file.display()
        );
    }
}
