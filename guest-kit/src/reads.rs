//! The one status reader: GETs, retried by [`crate::retry`] while a pod warms up or
//! is briefly unreachable, and every pod's key status read in one `http.batch`. The
//! pauses ([`Backoff`]) are the caller's: a rotation waits out restarts, a status
//! check answers quickly. Mutating calls never come through here: a retried propose
//! or activate is not idempotent.

use std::fmt;
use std::time::Duration;

use crate::host::Read;
use crate::params::Common;
use crate::retry::{self, Backoff};
use crate::status::{self, KeyStatus, STATUS_PATH};
use crate::types::{HttpError, Level, Response};

/// `<ip>:<port>`, bracketing an IPv6 address.
pub fn endpoint(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `https://<ip>:<port><path>`.
pub fn url(ip: &str, port: u16, path: &str) -> String {
    format!("https://{}{path}", endpoint(ip, port))
}

/// GETs `url`, retrying within `budget`.
pub fn get(
    host: &mut impl Read,
    url: &str,
    budget: Duration,
    backoff: Backoff,
) -> Result<Response, HttpError> {
    let urls = [url.to_string()];
    retrying(host, &urls, budget, backoff, |host, _| vec![host.get(url)])
        .pop()
        .expect("one result per url")
}

/// GETs every url in one `http.batch`, then re-batches only the entries that failed
/// retryably, until all are answered or `budget` is spent. Results keep the order
/// of `urls`.
pub fn get_all(
    host: &mut impl Read,
    urls: &[String],
    budget: Duration,
    backoff: Backoff,
) -> Vec<Result<Response, HttpError>> {
    retrying(host, urls, budget, backoff, |host, pending| {
        let batch: Vec<String> = pending.iter().map(|&i| urls[i].clone()).collect();
        host.get_all(&batch)
    })
}

/// Why a pod's key status is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The read failed (after its retries).
    Http(HttpError),
    /// The pod answered a body without the site's fields.
    Body(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Http(e) => e.fmt(f),
            ReadError::Body(m) => f.write_str(m),
        }
    }
}

/// Every pod's key status, `pods` given as (name, IP): one batch of
/// `GET /cluster/v1/key` under `common`'s port, fields and read timeout.
pub fn statuses(
    host: &mut impl Read,
    pods: &[(&str, &str)],
    common: &Common,
    backoff: Backoff,
) -> Vec<Result<KeyStatus, ReadError>> {
    let urls: Vec<String> = pods
        .iter()
        .map(|(_, ip)| url(ip, common.port, STATUS_PATH))
        .collect();
    let answers = get_all(host, &urls, common.read_timeout, backoff);
    pods.iter()
        .zip(answers)
        .map(|((name, ip), answer)| {
            let parsed = answer
                .map_err(ReadError::Http)
                .and_then(|r| status::parse(&r.body, common.fields()).map_err(ReadError::Body));
            if let Ok(s) = &parsed {
                let hash = s.hash.as_deref().unwrap_or("none");
                let version = s.version.to_string();
                let fields = [
                    ("pod", *name),
                    ("ip", *ip),
                    ("version", &version),
                    ("hash", hash),
                ];
                host.log(Level::Debug, "key status", &fields);
            }
            parsed
        })
        .collect()
}

/// How often the operator is told, while pods do not answer, that the read goes on
/// and how long it may still take.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// [`retry::retrying`] over `urls`, logging each url still pending before a pause,
/// and at most every [`PROGRESS_EVERY`] a warning with the time left.
fn retrying<H: Read>(
    host: &mut H,
    urls: &[String],
    budget: Duration,
    backoff: Backoff,
    attempt: impl FnMut(&mut H, &[usize]) -> Vec<Result<Response, HttpError>>,
) -> Vec<Result<Response, HttpError>> {
    let mut warned: Option<Duration> = None;
    retry::retrying(
        host,
        urls.len(),
        budget,
        backoff,
        attempt,
        |host, i, error, pause, left| {
            host.log(
                Level::Debug,
                "read not answered yet; retrying",
                &[
                    ("url", &urls[i]),
                    ("error", &error.to_string()),
                    ("retry_in_ms", &pause.as_millis().to_string()),
                ],
            );
            let now = host.now();
            if warned.is_none_or(|at| now >= at + PROGRESS_EVERY) {
                warned = Some(now);
                host.log(
                    Level::Warn,
                    &format!(
                        "{} does not answer yet ({error}); retrying, giving up in {}s \
                         (read_timeout_secs)",
                        urls[i],
                        left.as_secs().max(1)
                    ),
                    &[],
                );
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_bracket_ipv6() {
        assert_eq!(endpoint("10.0.0.1", 4444), "10.0.0.1:4444");
        assert_eq!(url("fd00::1", 8443, "/x"), "https://[fd00::1]:8443/x");
    }

    #[test]
    fn read_errors_read_as_their_cause() {
        assert_eq!(ReadError::Http(HttpError::Timeout).to_string(), "timeout");
        assert_eq!(
            ReadError::Body("no `version`".into()).to_string(),
            "no `version`"
        );
    }
}
