//! Reads (GET) retry with exponential backoff while a pod is briefly unreachable or
//! warming up (503 after a restart), within a total time per read. Mutating calls
//! never come through here: a retried propose or activate is not idempotent.

use std::time::Duration;

use crate::host::{Host, HttpError, Level, Method, Request, Response};

/// The first pause between attempts; it doubles after each, up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Whether a failed read may succeed if tried again: the pod is warming up (503),
/// unreachable for a moment (restarting), or slow. Anything else (denied, TLS, other
/// statuses, malformed answers) will not change by waiting.
pub fn is_retryable(error: &HttpError) -> bool {
    match error {
        HttpError::Timeout | HttpError::Connect(_) => true,
        HttpError::Status(response) => response.status == 503,
        HttpError::Denied(_) | HttpError::Tls(_) | HttpError::Protocol(_) => false,
    }
}

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

/// Calls `attempt` with the indices of the urls still to read, until every answer is
/// final or `budget` is spent.
fn retrying<H: Host>(
    host: &mut H,
    urls: &[String],
    budget: Duration,
    mut attempt: impl FnMut(&mut H, &[usize]) -> Vec<Result<Response, HttpError>>,
) -> Vec<Result<Response, HttpError>> {
    let deadline = host.now() + budget;
    let mut results: Vec<Option<Result<Response, HttpError>>> = vec![None; urls.len()];
    let mut pending: Vec<usize> = (0..urls.len()).collect();
    let mut delay = FIRST_DELAY;
    while !pending.is_empty() {
        let answers = attempt(host, &pending);
        let mut retry = Vec::new();
        for (k, &i) in pending.iter().enumerate() {
            let answer = answers
                .get(k)
                .cloned()
                .unwrap_or_else(|| Err(HttpError::Protocol("the batch returned no result".into())));
            if matches!(&answer, Err(e) if is_retryable(e)) {
                retry.push(i);
            }
            results[i] = Some(answer);
        }
        pending = retry;
        let now = host.now();
        if pending.is_empty() || now >= deadline {
            break;
        }
        let pause = delay.min(deadline - now);
        for &i in &pending {
            let error = match &results[i] {
                Some(Err(e)) => e.to_string(),
                _ => String::new(),
            };
            host.log(
                Level::Debug,
                "read not answered yet; retrying",
                &[
                    ("url", &urls[i]),
                    ("error", &error),
                    ("retry_in_ms", &pause.as_millis().to_string()),
                ],
            );
        }
        host.sleep(pause);
        delay = (delay * 2).min(MAX_DELAY);
    }
    results
        .into_iter()
        .map(|r| r.expect("every url was tried"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> HttpError {
        HttpError::Status(Response {
            status: code,
            body: String::new(),
        })
    }

    #[test]
    fn retry_classification() {
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&HttpError::Timeout));
        assert!(is_retryable(&HttpError::Connect("refused".into())));
        assert!(!is_retryable(&status(500)));
        assert!(!is_retryable(&status(404)));
        assert!(!is_retryable(&status(502)));
        assert!(!is_retryable(&HttpError::Denied("not listed".into())));
        assert!(!is_retryable(&HttpError::Tls("unknown issuer".into())));
        assert!(!is_retryable(&HttpError::Protocol("too large".into())));
    }
}
