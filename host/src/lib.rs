//! cmk-host: runs key-management procedures as sandboxed WebAssembly components.
//!
//! The modules form layers, each importing only the ones below it; the table, and a
//! test that holds the code to it, are in `docs/ARCHITECTURE.md`. Outside in:
//! [`cli`] turns arguments into a validated [`site::Site`] and options; [`launch`]
//! admits, compiles, links and runs a component and maps every error to its exit
//! code; [`runtime`] runs it with the capabilities in [`caps`] (one module per WIT
//! interface, each enforcing its own policy); [`report`] and [`ui`] say what happened.

#[cfg(test)]
mod architecture;
pub mod audit;
pub mod blocking;
pub mod cache;
pub mod caps;
pub mod chain;
pub mod cli;
pub mod demo;
pub mod digest;
pub mod events;
pub mod exit;
pub mod fleet;
pub mod fleet_demo;
pub mod frame;
pub mod grants;
pub mod inspect;
pub mod launch;
pub mod lease;
pub mod limits;
pub mod paths;
pub mod report;
pub mod runtime;
pub mod signing;
pub mod site;
pub mod stop;
pub mod text;
pub mod trust;
pub mod ui;
pub mod wasi;
pub mod wit;

/// The bundled rotation component (`guest-rotate`), built by `build.rs`.
pub const ROTATE_COMPONENT: &[u8] = include_bytes!(env!("CMK_GUEST_ROTATE_WASM"));

/// The bundled read-only check (`guest-status`), built by `build.rs`; `cmk-host
/// status` runs it with read-only grants, without a signature.
pub const STATUS_COMPONENT: &[u8] = include_bytes!(env!("CMK_GUEST_STATUS_WASM"));
