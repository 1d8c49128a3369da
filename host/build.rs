//! Builds the bundled rotation component (`guest-rotate`) for `wasm32-wasip2`, so
//! `cmk-host demo` carries it and needs no extra build step.

fn main() {
    let built = cmk_build_guests::build(&["guest-rotate"], &["guest-rotate", "guest-kit"]);
    println!(
        "cargo:rustc-env=CMK_GUEST_ROTATE_WASM={}",
        built[0].display()
    );
}
