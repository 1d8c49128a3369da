//! `guest-status`: a read-only procedure of the `cmk:procedure/rotation` world. It
//! lists the pods, reads every pod's `GET /cluster/v1/key` in one `http.batch`, and
//! reports each pod's key version, fetched proposal hash and readiness, flagging the
//! pods that disagree with the others.
//!
//! Read-only by construction: the procedure is written against
//! [`guest_kit::host::Read`], which has no POST and no restart, so no code path here
//! can change the cluster.
//!
//! The run succeeds (exit 0) only when every pod is Ready, answered, and reports the
//! same version and the same proposal hash. Otherwise it returns a failure at the
//! step `verdict` (exit 1) whose reason names the pods at fault; it is always safe
//! to resume, since nothing was changed.
//!
//! Each pod is reported as a step named after it, whose detail is `key=value` pairs
//! (`version=1 hash=none ready=true phase=Running note=-`): the host shows those as a
//! table and `--json` carries them as `fields`.
//!
//! Rooms:
//! - [`params`]: the site's parameters (the rotation's names, so one site serves both);
//! - [`survey`]: the pure judgement (who disagrees with whom) and the rows' text;
//! - [`procedure`]: the steps, against [`guest_kit::host::Read`];
//! - `component` (wasm32 only): the export, on the bindings of [`guest_kit::wasm`].
//!
//! The glue it shares with `guest-rotate` (the world's bindings and types, the common
//! parameters, the status reader with retries, the step ledger) is [`guest_kit`].

pub mod params;
pub mod procedure;
pub mod survey;

#[cfg(test)]
mod fake;

#[cfg(target_arch = "wasm32")]
mod component;
