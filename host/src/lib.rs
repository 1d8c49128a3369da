//! cmk-host: runs key-management procedures as sandboxed WebAssembly components.
//!
//! The layers, outside in: [`cli`] turns arguments into a validated [`site::Site`]
//! and options; [`runtime`] compiles a component and runs it with the
//! capabilities in [`caps`] (one module per WIT interface, each enforcing its own
//! policy); [`report`] and [`ui`] say what happened.

pub mod audit;
pub mod cache;
pub mod caps;
pub mod cli;
pub mod demo;
pub mod grants;
pub mod inspect;
pub mod lease;
pub mod report;
pub mod runtime;
pub mod signing;
pub mod site;
pub mod text;
pub mod trust;
pub mod ui;

/// The bundled rotation component (`guest-rotate`), built by `build.rs`.
pub const ROTATE_COMPONENT: &[u8] = include_bytes!(env!("CMK_GUEST_ROTATE_WASM"));
