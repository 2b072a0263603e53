//! The maps stay true: `src/lib.rs` names every module it declares, and ARCHITECTURE.md's
//! code map names every source file, and the top-level modules import each other without a
//! loop.

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

/// The top-level module (`src/NAME.rs` or `src/NAME/…`) a source file belongs to.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root().join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    Some(first.trim_end_matches(".rs").to_string())
}

/// `crate::NAME` references in a file's code: comments and `#[cfg(test)]` items (which sit
/// at the end of each file) left out, since tests may reach anywhere.
fn crate_references(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Data flows one way: no top-level module imports another that (through any chain)
/// imports it back. A failure names one loop of modules and the files making its edges.
#[test]
fn the_module_graph_has_no_cycle() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let (Some(from), Ok(text)) = (top_module(f), std::fs::read_to_string(f)) else { continue };
        let rel = f.strip_prefix(root()).map(|p| p.display().to_string()).unwrap_or_default();
        for to in crate_references(&text) {
            let is_module =
                root().join("src").join(format!("{to}.rs")).exists() || root().join("src").join(&to).is_dir();
            if to != from && is_module {
                edges.entry(from.clone()).or_default().entry(to).or_default().insert(rel.clone());
            }
        }
    }
    assert!(edges.len() >= 10, "the graph was read: {edges:?}");
    // Depth-first search; a grey node reached again closes a loop.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in edges.get(node).map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            match state.get(&next).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(&next, edges, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new())
        {
            let why: Vec<String> =
                cycle.windows(2).map(|w| format!("{} -> {} ({:?})", w[0], w[1], edges[&w[0]][&w[1]])).collect();
            panic!("modules import each other in a loop: {}\n{}", cycle.join(" -> "), why.join("\n"));
        }
    }
}
