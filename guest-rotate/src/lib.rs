//! `guest-rotate`: the Cluster Master Key rotation of a Fortanix DSM cluster, as a
//! WebAssembly component of the `cmk:procedure/rotation` world.
//!
//! The procedure is a small reconciler: it observes every pod, derives where the
//! rotation stands (nothing proposed, or a proposal partly or fully distributed),
//! takes the next documented step, verifies it, and only then goes on. Run again after
//! a failure before activation, it continues from what the pods report.
//!
//! Rooms:
//! - [`params`]: the site's parameters, validated once;
//! - [`status`]: reading a pod's `GET /cluster/v1/key` body;
//! - [`journal`]: what the host's journal records, and the phase it completes;
//! - [`logic`]: the pure decisions (preflight, verifications) and their messages;
//! - [`reads`]: bounded retry of reads (never of mutating calls);
//! - [`procedure`]: the steps, in order, against the [`host::Host`] capabilities;
//! - `component` (wasm32 only): the WIT bindings, a thin adapter onto [`host::Host`].
//!
//! What this procedure shares with `guest-status` (the world's types, the common
//! parameters, the status body, the read-retry loop) lives in [`guest_kit`].
//!
//! Everything but `component` is plain Rust and unit-tested natively.

pub mod host;
pub mod journal;
pub mod logic;
pub mod params;
pub mod procedure;
pub mod reads;
pub mod status;

#[cfg(test)]
mod fake;

#[cfg(target_arch = "wasm32")]
mod component;
