//! Builds the components the end-to-end tests run: the rotation, the status
//! procedure, the guide's example (`examples/hello-procedure`) and the test fixtures
//! under `guests/`, as real `wasm32-wasip2` components.

/// Each component and the variable its path is exported in (read by `src/lib.rs`).
const COMPONENTS: &[(&str, &str)] = &[
    ("guest-rotate", "CMK_GUEST_ROTATE_WASM"),
    ("guest-probe", "CMK_GUEST_PROBE_WASM"),
    ("guest-hostile", "CMK_GUEST_HOSTILE_WASM"),
    ("guest-outside", "CMK_GUEST_OUTSIDE_WASM"),
    ("guest-status", "CMK_GUEST_STATUS_WASM"),
    ("hello-procedure", "CMK_HELLO_PROCEDURE_WASM"),
    ("hook-quorum", "CMK_HOOK_QUORUM_WASM"),
    ("hook-dr-rejoin", "CMK_HOOK_DR_REJOIN_WASM"),
    ("guest-hook-hostile", "CMK_GUEST_HOOK_HOSTILE_WASM"),
];

fn main() {
    let packages: Vec<&str> = COMPONENTS.iter().map(|(p, _)| *p).collect();
    let built = cmk_build_guests::build(
        &packages,
        &[
            "guest-rotate",
            "guest-kit",
            "tests/guests",
            "guest-status",
            "examples",
        ],
    );
    for ((_, var), path) in COMPONENTS.iter().zip(&built) {
        println!("cargo:rustc-env={var}={}", path.display());
    }
    // The precompile cache of the binary under test: inside the target directory,
    // never the user's ~/.cache.
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    println!("cargo:rustc-env=CMK_TEST_CACHE_DIR={out}/cmk-host-cache");
}
