//! Builds the bundled components for `wasm32-wasip2`, so the binary carries them
//! and needs no extra build step: the rotation (`guest-rotate`, what `demo` and
//! `sim` run) and the read-only check (`guest-status`, what `status` runs).
//! Also records, for `--version`, the wasmtime the host is built with (from the
//! lock file) and the WIT package of the world (from `wit/`).

fn main() {
    let built = cmk_build_guests::build(
        &["guest-rotate", "guest-status"],
        &["guest-rotate", "guest-status", "guest-kit"],
    );
    println!(
        "cargo:rustc-env=CMK_GUEST_ROTATE_WASM={}",
        built[0].display()
    );
    println!(
        "cargo:rustc-env=CMK_GUEST_STATUS_WASM={}",
        built[1].display()
    );
    println!(
        "cargo:rustc-env=CMK_WASMTIME_VERSION={}",
        wasmtime_version()
    );
    println!("cargo:rustc-env=CMK_WIT_PACKAGE={}", wit_package());
}

/// The locked version of the `wasmtime` crate.
fn wasmtime_version() -> String {
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    println!("cargo:rerun-if-changed={lock}");
    let text = std::fs::read_to_string(lock).expect("read Cargo.lock");
    text.split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .expect("wasmtime in Cargo.lock")
}

/// `package cmk:procedure@X;` of the world's WIT.
fn wit_package() -> String {
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/procedure.wit");
    println!("cargo:rerun-if-changed={wit}");
    let text = std::fs::read_to_string(wit).expect("read wit/procedure.wit");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim_end_matches(';').trim().to_string())
        .expect("a package line in wit/procedure.wit")
}
