//! `guest-kit`: the plain-Rust pieces the bundled procedures (`guest-rotate`,
//! `guest-status`) share. No bindings: it compiles natively, where it is tested, and
//! for `wasm32-wasip2` inside each component. Each procedure keeps its own decisions
//! (its parameters and defaults, its capabilities, its messages); what lives here is
//! the same in both.
//!
//! Rooms:
//! - [`types`]: the `wit/procedure.wit` records both procedures use, as plain Rust;
//! - [`params`]: parsing of the parameters both procedures accept;
//! - [`status`]: a pod's `GET /cluster/v1/key` body, under the site's field names;
//! - [`retry`]: which failed reads are worth retrying, and the bounded backoff loop.

pub mod params;
pub mod retry;
pub mod status;
pub mod types;
