//! The component (wasm32 only): the world's export, handed to [`crate::driver`] on
//! the imports that [`guest_kit::wasm`] binds. No decisions here.

use guest_kit::wasm::{self, Guest, WitContext, WitResult};

struct Rotate;

impl Guest for Rotate {
    fn run(ctx: WitContext) -> WitResult {
        wasm::run(ctx, crate::driver::run)
    }
}

wasm::export!(Rotate);
