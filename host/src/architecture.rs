//! Holds the code to the layer table of `docs/ARCHITECTURE.md`: every module of
//! `host/src/` is in the table, and imports only modules of lower layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer of each module, from the table's rows (`| N | `a`, `b` | ... |`).
fn layers(doc: &str) -> BTreeMap<String, u32> {
    let mut layers = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", layer, modules, what, ""
        let [_, layer, modules, ..] = cells.as_slice() else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for module in modules.split(',') {
            let name = module.trim().trim_matches('`');
            if !name.is_empty() {
                layers.insert(name.to_string(), layer);
            }
        }
    }
    layers
}

/// The top-level module a source file belongs to (`caps/http/tls.rs` -> `caps`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "architecture")).then(|| name.to_string())
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read host/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `text` names as `crate::NAME`, outside comments.
fn imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` is not used in this crate; upper case is a root item.
            if !name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase()) {
                found.push(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn every_module_imports_only_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc_path = root.join("../docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/ARCHITECTURE.md");
    let layers = layers(&doc);
    assert!(
        layers.len() > 10,
        "no layer table found in {}",
        doc_path.display()
    );

    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut faults = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(&own) = layers.get(&module) else {
            faults.push(format!(
                "{}: module `{module}` is not in the layer table",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for used in imports(&text) {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                None => faults.push(format!(
                    "{}: uses `crate::{used}`, which is not in the layer table",
                    file.display()
                )),
                Some(&theirs) if theirs >= own => faults.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {theirs}): \
                     a module may use only lower layers",
                    file.display()
                )),
                Some(_) => {}
            }
        }
    }
    faults.sort();
    faults.dedup();
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let layers = layers("| 2 | `high` | x |\n| 1 | `low`, `leaf` | y |\n");
    assert_eq!(layers["high"], 2);
    assert_eq!(layers["leaf"], 1);
    let used = imports("use crate::high::Thing; // crate::ignored\nlet x = crate::ROOT;");
    assert_eq!(used, ["high"]);
}
