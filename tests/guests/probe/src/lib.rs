//! Test fixture: a component that makes exactly the calls its parameters name, so
//! end-to-end tests can probe the host's policy enforcement from inside the sandbox.
//!
//! Parameters (`ctx.params`, later entries override earlier ones):
//! - `list_pods = "true"`: call `pods.list` first (it becomes the http allow-list);
//! - `requests = "METHOD URL|METHOD URL|..."`: the http calls, in order;
//! - `batch = "true"`: make them all in one `http.batch` instead of one by one;
//! - `restart = "true"`: call `restart.rolling-restart()` last;
//! - `body_bytes = "N"`: every POST carries a JSON body of exactly N bytes;
//! - `grants = "true"`: first, a step `grants` whose detail is the run's grants as
//!   the context told them (`capabilities=... methods=... paths=... answerable=...`).
//!
//! The report holds one step per call, named after it, whose detail renders the
//! result stably (`ok 204`, `denied: ...`, `status 503: ...`) for tests to match.

/// A parsed `METHOD URL` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The entry as written (the step's name).
    pub entry: String,
    pub post: bool,
    pub url: String,
}

/// Splits `requests` on `|` into calls; an entry that is not `GET|POST URL` is an error
/// naming it.
pub fn parse_requests(requests: &str) -> Result<Vec<Call>, String> {
    requests
        .split('|')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (method, url) = entry
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("request `{entry}` is not `METHOD URL`"))?;
            let post = match method.to_ascii_uppercase().as_str() {
                "GET" => false,
                "POST" => true,
                _ => return Err(format!("request `{entry}`: method must be GET or POST")),
            };
            Ok(Call {
                entry: entry.to_string(),
                post,
                url: url.trim().to_string(),
            })
        })
        .collect()
}

/// A JSON object of exactly `n` bytes (at least 12): `{"pad":"xxx…"}`.
pub fn padded_body(n: usize) -> String {
    let pad = n.saturating_sub(10).max(1);
    format!("{{\"pad\":\"{}\"}}", "x".repeat(pad))
}

/// The value of the last `key` in `params`.
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether the flag `key` is set to `true`.
pub fn flag(params: &[(String, String)], key: &str) -> bool {
    param(params, key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "rotation" });

    use self::cmk::procedure::http::{self, HttpError, Method, Request, Response};
    use self::cmk::procedure::types::Outcome;
    use self::cmk::procedure::{pods, restart};
    use self::exports::cmk::procedure::procedure::{Context, Failure, Guest, Report, Step};

    struct Probe;

    fn step(name: &str, ok: bool, detail: String) -> Step {
        Step {
            name: name.to_string(),
            outcome: if ok { Outcome::Done } else { Outcome::Failed },
            detail,
        }
    }

    fn http_step(name: &str, result: Result<Response, HttpError>) -> Step {
        match result {
            Ok(r) => step(name, true, format!("ok {}", r.status)),
            Err(e) => step(name, false, render_http_error(e)),
        }
    }

    fn render_http_error(e: HttpError) -> String {
        match e {
            HttpError::Denied(m) => format!("denied: {m}"),
            HttpError::Timeout => "timeout".to_string(),
            HttpError::Connect(m) => format!("connect: {m}"),
            HttpError::Tls(m) => format!("tls: {m}"),
            HttpError::Status(r) => format!("status {}: {}", r.status, r.body),
            HttpError::Protocol(m) => format!("protocol: {m}"),
        }
    }

    impl Guest for Probe {
        fn run(ctx: Context) -> Result<Report, Failure> {
            let mut steps = Vec::new();
            let calls = super::parse_requests(super::param(&ctx.params, "requests").unwrap_or(""))
                .map_err(|reason| Failure {
                    step: "params".to_string(),
                    reason,
                    safe_to_resume: true,
                    steps: Vec::new(),
                })?;

            if super::flag(&ctx.params, "grants") {
                let g = &ctx.grants;
                let detail = format!(
                    "capabilities={} methods={} paths={} answerable={}",
                    g.capabilities.join(","),
                    g.http_methods.join(","),
                    g.http_paths.join(","),
                    g.confirm_answerable
                );
                steps.push(step("grants", true, detail));
            }

            if super::flag(&ctx.params, "list_pods") {
                steps.push(match pods::list() {
                    Ok(list) => step("pods.list", true, format!("ok {} pods", list.len())),
                    Err(pods::PodsError::Denied(m)) => {
                        step("pods.list", false, format!("denied: {m}"))
                    }
                    Err(pods::PodsError::Unavailable(m)) => {
                        step("pods.list", false, format!("unavailable: {m}"))
                    }
                });
            }

            let body = super::param(&ctx.params, "body_bytes")
                .and_then(|n| n.trim().parse::<usize>().ok())
                .map(super::padded_body);

            if super::flag(&ctx.params, "batch") {
                let requests: Vec<Request> = calls
                    .iter()
                    .map(|c| Request {
                        method: if c.post { Method::Post } else { Method::Get },
                        url: c.url.clone(),
                        body: if c.post { body.clone() } else { None },
                    })
                    .collect();
                let results = http::batch(&requests);
                for (i, call) in calls.iter().enumerate() {
                    let result = results.get(i).cloned().unwrap_or_else(|| {
                        Err(HttpError::Protocol("batch returned no result".into()))
                    });
                    steps.push(http_step(&call.entry, result));
                }
            } else {
                for call in &calls {
                    let result = if call.post {
                        http::post(&call.url, body.as_deref())
                    } else {
                        http::get(&call.url)
                    };
                    steps.push(http_step(&call.entry, result));
                }
            }

            if super::flag(&ctx.params, "restart") {
                steps.push(match restart::rolling_restart() {
                    Ok(()) => step("restart", true, "ok".to_string()),
                    Err(restart::RestartError::Denied(m)) => {
                        step("restart", false, format!("denied: {m}"))
                    }
                    Err(restart::RestartError::Failed(m)) => {
                        step("restart", false, format!("failed: {m}"))
                    }
                    Err(restart::RestartError::Timeout(m)) => {
                        step("restart", false, format!("timeout: {m}"))
                    }
                });
            }

            Ok(Report {
                steps,
                version_before: None,
                version_after: None,
                pods: 0,
            })
        }
    }

    export!(Probe);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let calls =
            parse_requests("GET https://127.0.0.1:9/x| POST https://10.0.0.1:4444/p |").unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].entry, "GET https://127.0.0.1:9/x");
        assert!(!calls[0].post);
        assert!(calls[1].post);
        assert_eq!(calls[1].url, "https://10.0.0.1:4444/p");
        assert!(parse_requests("PUT https://x").is_err());
        assert!(parse_requests("").unwrap().is_empty());
    }

    #[test]
    fn padded_body_has_the_size_asked() {
        assert_eq!(padded_body(100).len(), 100);
        assert_eq!(padded_body(5000).len(), 5000);
    }

    #[test]
    fn later_params_override() {
        let params = vec![
            ("batch".to_string(), "true".to_string()),
            ("batch".to_string(), "false".to_string()),
        ];
        assert!(!flag(&params, "batch"));
    }
}
