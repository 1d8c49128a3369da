//! The procedure's tests, on the in-memory cluster of [`crate::fake`] (the
//! simulator's DSM rules): each asserts on what the cluster received.

mod apply;
mod plan;
mod resume;

pub use std::time::Duration;

pub use guest_kit::grants::Grants;
pub use guest_kit::types::owned_pairs as kv;
pub use guest_kit::types::{
    Context, Failure, HttpError, Method, Mode, Outcome, Report, Response, RestartError, Step,
};

pub use crate::fake::Fake;
pub use crate::journal;
pub use crate::params;
pub use crate::steps::BACKOFF;
pub use crate::table::{ACTIVATE_PATH, FETCH_PATH, PROPOSE_PATH};

pub const KEY: &str = guest_kit::status::STATUS_PATH;
pub const PREFLIGHT: &str = crate::table::Preflight.name();
pub const PROPOSE: &str = crate::table::Propose.name();
pub const DISTRIBUTE: &str = crate::table::Distribute.name();
pub const VERIFY_DISTRIBUTED: &str = crate::table::VerifyDistributed.name();
pub const RESTART_LOAD: &str = crate::table::RestartLoad.name();
pub const ACTIVATE: &str = crate::table::Activate.name();
pub const RESTART_ACTIVATE: &str = crate::table::RestartActivate.name();
pub const VERIFY_ACTIVATED: &str = crate::table::VerifyActivated.name();

/// Every step, in order.
pub const STEPS: [&str; 9] = {
    let order = crate::table::ORDER;
    let mut names = [""; 9];
    let mut i = 0;
    while i < 9 {
        names[i] = order[i].name();
        i += 1;
    }
    names
};

/// A run with every grant.
pub fn run(
    fake: &mut Fake,
    mode: Mode,
    params: &[(String, String)],
    cluster: &str,
) -> Result<Report, Failure> {
    run_granted(fake, mode, params, cluster, Grants::all())
}

/// A run with `grants`.
pub fn run_granted(
    fake: &mut Fake,
    mode: Mode,
    params: &[(String, String)],
    cluster: &str,
    grants: Grants,
) -> Result<Report, Failure> {
    let ctx = Context {
        mode,
        params: params.to_vec(),
        cluster: cluster.into(),
        grants,
    };
    crate::driver::run(fake, &ctx)
}

pub fn apply(fake: &mut Fake) -> Result<Report, Failure> {
    run(fake, Mode::Apply, &[], "test")
}

pub fn status(code: u16) -> HttpError {
    HttpError::Status(Response {
        status: code,
        body: "unavailable".into(),
    })
}

pub fn names(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.name.as_str()).collect()
}
