//! The component (wasm32 only): the world's export, handed to [`crate::procedure`]
//! on the imports that [`guest_kit::wasm`] binds. The procedure's bound is
//! [`guest_kit::host::Read`]: it never POSTs and never restarts, whatever its grants.

use guest_kit::wasm::{self, Guest, WitContext, WitResult};

struct Status;

impl Guest for Status {
    fn run(ctx: WitContext) -> WitResult {
        wasm::run(ctx, crate::procedure::run)
    }
}

wasm::export!(Status);
