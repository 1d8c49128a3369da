//! `guest-kit`: the glue every procedure of this workspace shares, so that a
//! procedure's own crate holds only its decisions. It compiles natively, where it is
//! tested, and for `wasm32-wasip2` inside each component.
//!
//! Rooms:
//! - [`types`]: the `wit/procedure.wit` records, as plain Rust;
//! - [`grants`]: what the run is granted, and why a step's need would be refused;
//! - [`host`]: the world's imports as two traits, [`host::Read`] and [`host::Act`];
//! - [`params`]: parsing of the parameters every procedure reading pods accepts;
//! - [`status`]: a pod's `GET /cluster/v1/key` body, under the site's field names;
//! - [`retry`]: which failed reads are worth retrying, and the bounded backoff loop;
//! - [`reads`]: the one status reader (GETs with retries, every pod in one batch);
//! - [`ledger`]: the steps of a run, as the host shows them and the report lists them;
//! - `wasm` (wasm32 only): the world's bindings, generated once, and their
//!   conversions onto the traits above.

pub mod grants;
pub mod host;
pub mod ledger;
pub mod params;
pub mod reads;
pub mod retry;
pub mod status;
pub mod types;

#[cfg(target_arch = "wasm32")]
pub mod wasm;
