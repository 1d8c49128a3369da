//! Builds the components the end-to-end tests run: the rotation, the status
//! procedure, the guide's example (`examples/hello-procedure`) and the test fixtures
//! under `guests/`, as real `wasm32-wasip2` components.

fn main() {
    let built = cmk_build_guests::build(
        &[
            "guest-rotate",
            "guest-probe",
            "guest-status",
            "hello-procedure",
        ],
        &["guest-rotate", "tests/guests", "guest-status", "examples"],
    );
    println!(
        "cargo:rustc-env=CMK_GUEST_ROTATE_WASM={}",
        built[0].display()
    );
    println!(
        "cargo:rustc-env=CMK_GUEST_PROBE_WASM={}",
        built[1].display()
    );
    println!(
        "cargo:rustc-env=CMK_GUEST_STATUS_WASM={}",
        built[2].display()
    );
    println!(
        "cargo:rustc-env=CMK_HELLO_PROCEDURE_WASM={}",
        built[3].display()
    );
    // The precompile cache of the binary under test: inside the target directory,
    // never the user's ~/.cache.
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    println!("cargo:rustc-env=CMK_TEST_CACHE_DIR={out}/cmk-host-cache");
}
