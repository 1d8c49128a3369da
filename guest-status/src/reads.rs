//! Reading every pod's key status: one `http.batch` of `GET /cluster/v1/key`, then
//! re-batches of only the pods that failed in a way waiting can cure (503 while
//! warming up, a refused connection, a timeout), until all answered or the budget
//! is spent ([`guest_kit::retry`]). Then the body's two fields, under the site's
//! names ([`guest_kit::status`]).

use std::time::Duration;

use guest_kit::retry::{self, Backoff};
use guest_kit::status;

pub use guest_kit::status::{KeyStatus, STATUS_PATH};

use crate::host::{Host, HttpError, Level, Response};
use crate::params::Params;

/// The first pause between attempts; it doubles after each, up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
pub const MAX_DELAY: Duration = Duration::from_secs(2);

const BACKOFF: Backoff = Backoff {
    first: FIRST_DELAY,
    max: MAX_DELAY,
};

/// GETs every url, retrying within `budget`; results keep the order of `urls`.
pub fn get_all(
    host: &mut impl Host,
    urls: &[String],
    budget: Duration,
) -> Vec<Result<Response, HttpError>> {
    retry::retrying(
        host,
        urls.len(),
        budget,
        BACKOFF,
        |host, pending| {
            let batch: Vec<String> = pending.iter().map(|&i| urls[i].clone()).collect();
            host.get_all(&batch)
        },
        |host, i, error, _| {
            host.log(
                Level::Debug,
                "status not answered yet; retrying",
                &[("url", &urls[i]), ("error", &error.to_string())],
            );
        },
    )
}

/// Parses a status body; errors name the field (the caller names the pod).
pub fn parse(body: &str, params: &Params) -> Result<KeyStatus, String> {
    status::parse(body, params.common.fields())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_under_the_site_field_names() {
        let mut renamed = Params::default();
        renamed.common.version_field = "kv".into();
        renamed.common.hash_field = "ph".into();
        let s = parse(r#"{"kv":7,"ph":null,"version":"x"}"#, &renamed).unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 7,
                hash: None
            }
        );
        let e = parse(r#"{"version":1,"fetched_proposal_hash":null}"#, &renamed).unwrap_err();
        assert!(e.contains("no `kv`"), "{e}");
    }
}
