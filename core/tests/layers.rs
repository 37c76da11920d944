//! The module layers of hiedge-core are one-way: a module may use only modules of its own layer
//! or below. Reads the sources and fails naming the file and the import that goes upwards.

use std::path::Path;

/// Top-level modules by layer, bottom first (as listed in the crate docs).
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["prob"],
    &["manifest", "protocol"],
    &["policy", "monitor"],
    &["runtime"],
    &["session", "stream", "server"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `crate::x` paths in code (comments and doc comments skipped), as top-level module names.
fn imports(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    // Statements, not lines: a `use crate::{ ... };` may span lines.
    let code: Vec<&str> = source.lines().map(str::trim_start).filter(|l| !l.starts_with("//")).collect();
    let code = code.join(" ");
    for line in code.split(';').map(str::trim_start) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        // A grouped import anywhere in the statement (after attributes, or a block's closing brace).
        if let Some(list) = line.split_once("use crate::{").map(|(_, list)| list) {
            // The first name of each top-level item of the brace list.
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        let name: String =
                            list[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        found.push(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        }
    }
    found
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel.iter().next().and_then(|s| s.to_str()).unwrap_or_default().trim_end_matches(".rs").to_string();
        if top == "lib" {
            continue; // the crate root re-exports every layer
        }
        let own = layer(&top).unwrap_or_else(|| panic!("{} is not in a layer: add it to LAYERS", rel.display()));
        let source = std::fs::read_to_string(&file).expect("source is readable");
        for import in imports(&source) {
            let Some(theirs) = layer(&import) else {
                panic!(
                    "{} uses `crate::{import}`, which is not a layered module (import from the module itself)",
                    rel.display()
                )
            };
            assert!(
                theirs <= own,
                "{} (layer {own}) imports `{import}` (layer {theirs}): layers must be one-way",
                rel.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} imports found: the scan is broken");
}

#[test]
fn the_scan_sees_imports_and_skips_comments() {
    let found = imports("use crate::prob::top2;\n/// see [`crate::session`]\nuse crate::{error::{Error, Result}, manifest::Manifest};\nlet x = crate::policy::sigmoid(1.0);");
    assert_eq!(found, ["prob", "error", "manifest", "policy"]);
}
