//! Hands wit-bindgen a copy of the workspace's `wit/` in which WIT keywords used as
//! names (`pods.list`) are escaped (`%list`).
//!
//! Why: `wit/procedure.wit` declares `list: func()`, and `list` is a WIT keyword, so
//! wit-parser rejects the file. The escape changes nothing in the component's
//! interface (the import is still named `list`). Once the file itself writes `%list`,
//! this copy is byte-for-byte the original.

use std::path::PathBuf;

const KEYWORDS: &[&str] = &[
    "as",
    "async",
    "bool",
    "borrow",
    "char",
    "constructor",
    "enum",
    "export",
    "f32",
    "f64",
    "flags",
    "from",
    "func",
    "future",
    "import",
    "include",
    "interface",
    "list",
    "option",
    "own",
    "package",
    "record",
    "resource",
    "result",
    "s16",
    "s32",
    "s64",
    "s8",
    "static",
    "stream",
    "string",
    "tuple",
    "type",
    "u16",
    "u32",
    "u64",
    "u8",
    "use",
    "variant",
    "with",
    "world",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest
        .ancestors()
        .map(|dir| dir.join("wit"))
        .find(|dir| dir.join("procedure.wit").exists())
        .expect("no wit/procedure.wit above this crate");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("wit");
    std::fs::create_dir_all(&out).unwrap();
    println!("cargo:rerun-if-changed={}", src.display());
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wit") {
            println!("cargo:rerun-if-changed={}", path.display());
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(out.join(path.file_name().unwrap()), escape_keywords(&text)).unwrap();
        }
    }
}

/// Escapes a keyword that starts a line as a declared name (`list: func`).
fn escape_keywords(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        match body.split_once(':') {
            Some((name, _)) if KEYWORDS.contains(&name.trim_end()) => {
                escaped.push_str(indent);
                escaped.push('%');
                escaped.push_str(body);
            }
            _ => escaped.push_str(line),
        }
    }
    escaped
}
