//! Reading every pod's key status: one `http.batch` of `GET /cluster/v1/key`, then
//! re-batches of only the pods that failed in a way waiting can cure (503 while
//! warming up, a refused connection, a timeout), until all answered or the budget
//! is spent. Then the body's two fields, under the site's names.

use std::time::Duration;

use crate::host::{Host, HttpError, Level, Response};
use crate::params::Params;

/// The first pause between attempts; it doubles after each, up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// The documented status endpoint.
pub const STATUS_PATH: &str = "/cluster/v1/key";

/// A pod's key status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub version: i64,
    /// The fetched proposal's hash; `None` for null or an empty string.
    pub hash: Option<String>,
}

/// Whether a failed read may succeed if tried again.
pub fn is_retryable(error: &HttpError) -> bool {
    match error {
        HttpError::Timeout | HttpError::Connect(_) => true,
        HttpError::Status(response) => response.status == 503,
        HttpError::Denied(_) | HttpError::Tls(_) | HttpError::Protocol(_) => false,
    }
}

/// GETs every url, retrying within `budget`; results keep the order of `urls`.
pub fn get_all(
    host: &mut impl Host,
    urls: &[String],
    budget: Duration,
) -> Vec<Result<Response, HttpError>> {
    let deadline = host.now() + budget;
    let mut results: Vec<Option<Result<Response, HttpError>>> = vec![None; urls.len()];
    let mut pending: Vec<usize> = (0..urls.len()).collect();
    let mut delay = FIRST_DELAY;
    while !pending.is_empty() {
        let batch: Vec<String> = pending.iter().map(|&i| urls[i].clone()).collect();
        let answers = host.get_all(&batch);
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
            if let Some(Err(e)) = &results[i] {
                host.log(
                    Level::Debug,
                    "status not answered yet; retrying",
                    &[("url", &urls[i]), ("error", &e.to_string())],
                );
            }
        }
        host.sleep(pause);
        delay = (delay * 2).min(MAX_DELAY);
    }
    results
        .into_iter()
        .map(|r| r.expect("every url was tried"))
        .collect()
}

/// Parses a status body; errors name the field (the caller names the pod).
pub fn parse(body: &str, params: &Params) -> Result<KeyStatus, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the key status is not JSON ({e})"))?;
    let object = value
        .as_object()
        .ok_or("the key status is not a JSON object")?;
    let vf = &params.version_field;
    let version = match object.get(vf) {
        None => return Err(format!("the key status has no `{vf}` field")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("`{vf}` is {v}, not an integer"))?,
    };
    let hf = &params.hash_field;
    let hash = match object.get(hf) {
        None => return Err(format!("the key status has no `{hf}` field")),
        Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(format!("`{hf}` is {v}, not a string or null")),
    };
    Ok(KeyStatus { version, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        let status = |code| {
            HttpError::Status(Response {
                status: code,
                body: String::new(),
            })
        };
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&HttpError::Timeout));
        assert!(is_retryable(&HttpError::Connect("refused".into())));
        assert!(!is_retryable(&status(500)));
        assert!(!is_retryable(&HttpError::Denied("GET not granted".into())));
        assert!(!is_retryable(&HttpError::Tls("unknown issuer".into())));
    }

    #[test]
    fn parses_documented_and_renamed_fields() {
        let p = Params::default();
        let s = parse(r#"{"version":1,"fetched_proposal_hash":"abc","x":[1]}"#, &p).unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 1,
                hash: Some("abc".into())
            }
        );
        assert_eq!(
            parse(r#"{"version":2,"fetched_proposal_hash":""}"#, &p)
                .unwrap()
                .hash,
            None
        );
        let renamed = Params {
            version_field: "kv".into(),
            hash_field: "ph".into(),
            ..Params::default()
        };
        let s = parse(r#"{"kv":7,"ph":null,"version":"x"}"#, &renamed).unwrap();
        assert_eq!(
            s,
            KeyStatus {
                version: 7,
                hash: None
            }
        );
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let p = Params::default();
        for (body, expected) in [
            ("<html>", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"fetched_proposal_hash":null}"#, "no `version`"),
            (
                r#"{"version":"1","fetched_proposal_hash":null}"#,
                "not an integer",
            ),
            (r#"{"version":1}"#, "no `fetched_proposal_hash`"),
            (
                r#"{"version":1,"fetched_proposal_hash":3}"#,
                "not a string or null",
            ),
        ] {
            let e = parse(body, &p).unwrap_err();
            assert!(e.contains(expected), "{body}: {e}");
        }
    }
}
