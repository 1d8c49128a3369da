//! `guest-rotate`: the Cluster Master Key rotation of a Fortanix DSM cluster, as a
//! WebAssembly component of the `cmk:procedure/rotation` world.
//!
//! The procedure is a small reconciler: it observes every pod and its journal,
//! derives where the rotation stands (the phase), and walks that phase's row of the
//! table of phases, taking each remaining step and verifying it before the next. Run
//! again after any interruption, it continues from what the pods and the journal show.
//!
//! Rooms:
//! - [`table`]: for each phase, the remaining steps, the check after each, and what
//!   each needs of the run's grants;
//! - [`driver`]: the one loop (observe, decide the phase, take the next step, verify,
//!   record), in apply and in plan;
//! - [`steps`]: what each step does and checks;
//! - [`resume`]: preflight, and why steps are behind the cluster;
//! - [`ledger`]: the steps as the host shows them, with the site's hooks around them;
//! - [`journal`]: what the host's journal records, and the phase it completes;
//! - [`logic`]: the pure judgements (pods ready, versions, hashes) and their messages;
//! - [`params`]: the site's parameters, validated once;
//! - `component` (wasm32 only): the export, on the bindings of [`guest_kit::wasm`].
//!
//! The glue every procedure shares (the world's bindings and types, grants, the
//! status reader with retries, the step ledger) is [`guest_kit`]. Everything but
//! `component` is plain Rust and unit-tested natively, on an in-memory cluster that
//! follows the simulator's rules (`cmk-dsm`).

pub mod driver;
pub mod journal;
pub mod ledger;
pub mod logic;
pub mod params;
pub mod resume;
pub mod steps;
pub mod table;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

#[cfg(target_arch = "wasm32")]
mod component;
