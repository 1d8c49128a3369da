//! Reads (GET) retry with exponential backoff while a pod is briefly unreachable or
//! warming up (503 after a restart), within a total time per read, by
//! [`guest_kit::retry`]. Mutating calls never come through here: a retried propose or
//! activate is not idempotent.

use std::time::Duration;

use guest_kit::retry::{self, Backoff};

use crate::host::{Host, HttpError, Level, Method, Request, Response};

/// The first pause between attempts; it doubles after each, up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
pub const MAX_DELAY: Duration = Duration::from_secs(5);

const BACKOFF: Backoff = Backoff {
    first: FIRST_DELAY,
    max: MAX_DELAY,
};

/// GETs `url`, retrying within `budget`.
pub fn get(host: &mut impl Host, url: &str, budget: Duration) -> Result<Response, HttpError> {
    let urls = [url.to_string()];
    retrying(host, &urls, budget, |host, _| vec![host.get(url)])
        .pop()
        .expect("one result per url")
}

/// GETs every url in one `http.batch`, then re-batches only the entries that failed
/// retryably, until all are answered or `budget` is spent. Results keep the order
/// of `urls`.
pub fn get_all(
    host: &mut impl Host,
    urls: &[String],
    budget: Duration,
) -> Vec<Result<Response, HttpError>> {
    retrying(host, urls, budget, |host, pending| {
        let requests: Vec<Request> = pending
            .iter()
            .map(|&i| Request {
                method: Method::Get,
                url: urls[i].clone(),
                body: None,
            })
            .collect();
        host.batch(&requests)
    })
}

/// [`retry::retrying`] over `urls`, logging each url still pending before a pause.
fn retrying<H: Host>(
    host: &mut H,
    urls: &[String],
    budget: Duration,
    attempt: impl FnMut(&mut H, &[usize]) -> Vec<Result<Response, HttpError>>,
) -> Vec<Result<Response, HttpError>> {
    retry::retrying(
        host,
        urls.len(),
        budget,
        BACKOFF,
        attempt,
        |host, i, error, pause| {
            host.log(
                Level::Debug,
                "read not answered yet; retrying",
                &[
                    ("url", &urls[i]),
                    ("error", &error.to_string()),
                    ("retry_in_ms", &pause.as_millis().to_string()),
                ],
            );
        },
    )
}
