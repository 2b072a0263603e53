//! The maps stay true: `src/lib.rs` names every module it declares, and ARCHITECTURE.md's
//! code map names every source file.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn lib_rs_describes_every_module_it_declares() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("lib.rs");
    let declared: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';'))).collect();
    assert!(declared.len() >= 10, "lib.rs declares its modules: {declared:?}");
    let missing: Vec<&&str> = declared.iter().filter(|m| !lib.contains(&format!("//! - [`{m}`]"))).collect();
    assert!(missing.is_empty(), "lib.rs has no line for {missing:?}");
}

#[test]
fn the_code_map_names_every_source_file() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let map = doc.split("## Code map").nth(1).and_then(|rest| rest.split("\n## ").next()).expect("a code map section");
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "mod.rs"))
        .filter_map(|f| {
            let name = f.file_name()?.to_string_lossy().into_owned();
            let rel = f.strip_prefix(root()).ok()?.to_string_lossy().into_owned();
            // Named by itself (`worker.rs`) or by its path (`src/state.rs`).
            (!map.contains(&format!("`{name}`")) && !map.contains(&rel)).then_some(rel)
        })
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map does not name {missing:?}");
}
