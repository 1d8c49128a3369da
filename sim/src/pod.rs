//! One pod instance's HTTPS API: the documented DSM cluster-key endpoints.
//!
//! - `GET  /cluster/v1/key`           -> 200 status JSON
//! - `POST /cluster/v1/key/propose`   -> 204
//! - `POST /cluster/v1/key/fetch`     -> 204, body `{"target":"<ip>:<port>"}`
//! - `POST /cluster/v1/key/activate`  -> 204
//!
//! One fallback handler serves every request, so that every request (unknown paths
//! and wrong methods included) is answered and recorded in the oracle in one place.
//! The rules themselves live in `cmk-dsm` (`sim/dsm`); this file maps them to HTTP and applies the
//! injected faults.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::db::DbError;
use crate::oracle::{ACTIVATE, Call, FETCH, PROPOSE, STATUS};
use crate::{Phase, Shared, State};

/// Who is answering: the pod, and which instance of it (a replaced instance must not
/// act on the database if a request races with its shutdown).
pub(crate) struct PodCtx {
    pub shared: Arc<Shared>,
    pub name: String,
    pub ip: Ipv4Addr,
    pub instance: u64,
}

pub(crate) fn router(ctx: PodCtx) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(ctx))
}

/// An answer before it becomes an HTTP response.
struct Answer {
    status: StatusCode,
    body: Option<Value>,
    allow: Option<&'static str>,
}

impl Answer {
    fn empty(status: StatusCode) -> Self {
        Answer {
            status,
            body: None,
            allow: None,
        }
    }

    fn json(status: StatusCode, body: Value) -> Self {
        Answer {
            status,
            body: Some(body),
            allow: None,
        }
    }

    fn error(status: StatusCode, msg: impl Into<String>) -> Self {
        Answer::json(status, json!({ "error": msg.into() }))
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Answer {
            allow: Some(allow),
            ..Answer::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
    }
}

async fn handle(
    AxState(ctx): AxState<Arc<PodCtx>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let recorded_body = parse_body(&body);
    let (answer, pad_to, delay) = {
        let mut st = ctx.shared.state();
        let answer = respond(&mut st, &ctx, &method, &path, &body);
        st.recorder.call(Call {
            seq: 0,
            pod: ctx.name.clone(),
            ip: ctx.ip.to_string(),
            method: method.to_string(),
            path: path.clone(),
            body: recorded_body,
            status: answer.status.as_u16(),
        });
        let pad = (method == Method::GET && path == STATUS && answer.status == StatusCode::OK)
            .then(|| st.faults.oversized_status(&ctx.name))
            .flatten();
        let slow = (method == Method::GET && path == STATUS)
            .then(|| st.faults.slow_status(&ctx.name))
            .flatten();
        (answer, pad, slow.or_else(|| st.faults.answer_delay(&path)))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    tracing::debug!(pod = %ctx.name, %method, %path, status = answer.status.as_u16(), "pod request");
    into_response(answer, pad_to)
}

fn parse_body(body: &Bytes) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    )
}

fn into_response(answer: Answer, pad_to: Option<usize>) -> Response {
    let mut resp = match answer.body {
        None => answer.status.into_response(),
        Some(mut body) => {
            if let Some(size) = pad_to {
                pad(&mut body, size);
            }
            let mut r = (answer.status, body.to_string()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    if let Some(allow) = answer.allow {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// Pad a JSON object with a `padding` field so that it serializes to at least
/// `size` bytes, and stays valid JSON.
fn pad(body: &mut Value, size: usize) {
    let len = body.to_string().len();
    if let Value::Object(map) = body
        && len < size
    {
        map.insert("padding".into(), Value::String(String::new()));
        // Measure the overhead of the field instead of guessing it.
        let overhead = Value::Object(map.clone()).to_string().len() - len;
        let filler = size.saturating_sub(len + overhead);
        map.insert("padding".into(), Value::String("x".repeat(filler)));
    }
}

fn respond(st: &mut State, ctx: &PodCtx, method: &Method, path: &str, body: &[u8]) -> Answer {
    let name = ctx.name.as_str();
    if !st.db.is_current(name, ctx.instance) {
        return Answer::error(StatusCode::SERVICE_UNAVAILABLE, "pod is shutting down");
    }
    if let Err(e @ DbError::Broken(_)) = st.db.check_usable(name) {
        return Answer::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    if let Some(slot) = st.slots.get_mut(name)
        && slot.warmup_left > 0
    {
        slot.warmup_left -= 1;
        return Answer::error(StatusCode::SERVICE_UNAVAILABLE, "warming up");
    }
    match path {
        STATUS => {
            if method != Method::GET {
                return Answer::method_not_allowed("GET");
            }
            status(st, name)
        }
        PROPOSE | FETCH | ACTIVATE if method != Method::POST => Answer::method_not_allowed("POST"),
        PROPOSE => {
            let hash = crate::random_hex(32);
            match st.db.propose(name, hash.clone()) {
                Ok(()) => {
                    tracing::info!(pod = name, %hash, "proposal created");
                    Answer::empty(StatusCode::NO_CONTENT)
                }
                Err(e) => db_error(e),
            }
        }
        FETCH => fetch(st, ctx, body),
        ACTIVATE => match st.db.activate(name) {
            Ok(bumped) => {
                tracing::info!(
                    pod = name,
                    version = st.db.version(),
                    bumped,
                    "proposal activated"
                );
                Answer::empty(StatusCode::NO_CONTENT)
            }
            // Activating nothing is a conflict with the cluster's state, not a 404.
            Err(DbError::NoProposal) => {
                Answer::error(StatusCode::CONFLICT, DbError::NoProposal.to_string())
            }
            Err(e) => db_error(e),
        },
        _ => Answer::error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

fn status(st: &State, name: &str) -> Answer {
    let Ok(key) = st.db.status(name) else {
        return Answer::error(StatusCode::SERVICE_UNAVAILABLE, "pod is not running");
    };
    let key_id = st
        .db
        .key_of(key.version)
        .map(|k| k.chars().take(16).collect::<String>())
        .unwrap_or_default();
    Answer::json(
        StatusCode::OK,
        json!({
            "version": key.version,
            "fetched_proposal_hash": key.fetched_hash,
            "node": name,
            "key_id": key_id,
            "cluster_state": "healthy",
        }),
    )
}

fn fetch(st: &mut State, ctx: &PodCtx, body: &[u8]) -> Answer {
    let name = ctx.name.as_str();
    let target = match serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("target").and_then(Value::as_str).map(str::to_string))
    {
        Some(t) => t,
        None => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                r#"expected a JSON body {"target":"<ip>:<port>"}"#,
            );
        }
    };
    if st.faults.fails_fetch(name) {
        return Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fetch failed: injected fault fail_fetch_on",
        );
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return Answer::error(StatusCode::BAD_REQUEST, "target must be <ip>:<port>");
    };
    if port.parse::<u16>().is_err() || host.is_empty() {
        return Answer::error(StatusCode::BAD_REQUEST, "target must be <ip>:<port>");
    }
    // The target must be a live pod at its current address and the configured port.
    let target_pod = target.parse::<SocketAddr>().ok().and_then(|addr| {
        (addr.port() == ctx.shared.config.port)
            .then(|| {
                st.slots.iter().find(|(_, s)| {
                    s.phase != Phase::Absent && s.ip.map(std::net::IpAddr::V4) == Some(addr.ip())
                })
            })
            .flatten()
            .map(|(n, _)| n.clone())
    });
    let diverge = st.faults.diverges_hash(name).then(|| crate::random_hex(32));
    match st.db.fetch(name, target_pod.as_deref(), &target, diverge) {
        Ok(()) => Answer::empty(StatusCode::NO_CONTENT),
        Err(e) => db_error(e),
    }
}

fn db_error(e: DbError) -> Answer {
    let status = match e {
        DbError::NoProposal => StatusCode::NOT_FOUND,
        DbError::BadTarget(_) => StatusCode::BAD_GATEWAY,
        DbError::UnknownPod(_) => StatusCode::SERVICE_UNAVAILABLE,
        DbError::Broken(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Answer::error(status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_the_size_and_stays_json() {
        for size in [0, 10, 100, 1000, 100_000] {
            let mut v = json!({"version": 1, "fetched_proposal_hash": null});
            pad(&mut v, size);
            let s = v.to_string();
            assert!(s.len() >= size, "{} < {size}", s.len());
            assert!(s.len() <= size.max(60) + 2);
            let back: Value = serde_json::from_str(&s).unwrap();
            assert_eq!(back["version"], 1);
        }
    }

    #[test]
    fn non_json_bodies_are_recorded_as_strings() {
        assert_eq!(parse_body(&Bytes::new()), None);
        assert_eq!(
            parse_body(&Bytes::from_static(b"{\"a\":1}")),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            parse_body(&Bytes::from_static(b"nope")),
            Some(json!("nope"))
        );
    }
}
