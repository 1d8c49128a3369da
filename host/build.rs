//! Builds the bundled components for `wasm32-wasip2`, so the binary carries them
//! and needs no extra build step: the rotation (`guest-rotate`, what `demo` and
//! `sim` run) and the read-only check (`guest-status`, what `status` runs).

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
}
