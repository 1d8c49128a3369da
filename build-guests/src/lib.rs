//! Compiles guest crates of this workspace to `wasm32-wasip2` components, for use
//! from a build script (the way wasmtime's `test-programs/artifacts` does).
//!
//! The guests get their own target directory beside the workspace's, so the outer
//! cargo's lock is never contended and guests are built once for every crate that
//! needs them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are built for. `rustup target add wasm32-wasip2` installs it.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` (workspace members) for [`TARGET`] in release mode and returns
/// the path of each component, in the order given. Emits the `rerun-if-changed`
/// lines for `sources` (directories relative to the workspace root).
///
/// Panics with an explanation when the build fails: a build script has no better way
/// to report, and the message names the missing target when that is the cause.
pub fn build(packages: &[&str], sources: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root();
    for source in sources.iter().chain(["wit", "Cargo.lock"].iter()) {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }
    let target_dir = guest_target_dir();
    // Build scripts of several crates (the host's, the tests') build guests at once:
    // one at a time, so that one's check of the WIT stamps cannot clean what another
    // is building, or has just built and not yet stamped.
    let _lock = lock(&target_dir);

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let wit = wit_digest(&root.join("wit"));
    forget_guests_built_against_another_wit(&cargo, &root, &target_dir, packages, &wit);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        cmd.args(["--package", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host target.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the guest components: {e}"));
    if !status.success() {
        panic!(
            "building the guest components {packages:?} for {TARGET} failed ({status}).\n\
             If the target is missing, install it with: rustup target add {TARGET}"
        );
    }
    for package in packages {
        let _ = std::fs::create_dir_all(target_dir.join("wit-stamps"));
        let _ = std::fs::write(stamp(&target_dir, package), &wit);
    }
    packages
        .iter()
        .map(|p| {
            let path = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", p.replace('-', "_")));
            assert!(
                path.exists(),
                "the build did not produce {}",
                path.display()
            );
            path
        })
        .collect()
}

/// wit-bindgen reads `wit/` while a guest compiles, but cargo does not track those
/// files: after a WIT change, a guest built against the old one would look fresh
/// (and fail to link at run time). A stamp per package records the WIT it was built
/// against; a package whose stamp differs is cleaned, so it is rebuilt.
fn forget_guests_built_against_another_wit(
    cargo: &str,
    root: &Path,
    target_dir: &Path,
    packages: &[&str],
    wit: &str,
) {
    let stale: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(stamp(target_dir, p))
                .ok()
                .as_deref()
                != Some(wit)
        })
        .collect();
    if stale.is_empty() || !target_dir.join(TARGET).exists() {
        return;
    }
    let mut clean = Command::new(cargo);
    clean
        .current_dir(root)
        .args(["clean", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    for package in &stale {
        clean.args(["--package", package]);
    }
    clean.env_remove("CARGO_TARGET_DIR");
    // A failed clean leaves a build that may be stale, never a broken one.
    let _ = clean.status();
}

/// Holds `<guest target dir>/build.lock` (an exclusive `flock`) until dropped.
fn lock(target_dir: &Path) -> std::fs::File {
    std::fs::create_dir_all(target_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", target_dir.display()));
    let path = target_dir.join("build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    file
}

fn stamp(target_dir: &Path, package: &str) -> PathBuf {
    target_dir.join("wit-stamps").join(package)
}

/// A digest of every file under `wit/` (names and contents), to tell WITs apart.
fn wit_digest(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

fn workspace_root() -> PathBuf {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    manifest
        .ancestors()
        .find(|dir| is_workspace_root(dir))
        .map(Path::to_path_buf)
        .expect("no workspace Cargo.toml above CARGO_MANIFEST_DIR")
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .map(|text| text.lines().any(|l| l.trim() == "[workspace]"))
        .unwrap_or(false)
}

/// `<target>/wasm-guests`, where `<target>` is the outer build's target directory,
/// found from `OUT_DIR` (`<target>/<profile>/build/<crate>-<hash>/out`).
fn guest_target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("run from a build script"));
    let build = out
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|n| n == "build"))
        .expect("OUT_DIR is not under <target>/<profile>/build");
    // `build` sits in `<target>/<profile>` or `<target>/<triple>/<profile>`.
    let mut target = build
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    if target.join("CACHEDIR.TAG").exists() || target.ends_with("target") {
        return target.join("wasm-guests");
    }
    target = target.parent().map(Path::to_path_buf).unwrap_or(target);
    target.join("wasm-guests")
}
