//! `http`: HTTPS to the pods, and nowhere else.
//!
//! [`policy`] decides which URLs are allowed; everything else is denied before a
//! socket is opened. [`tls`] builds the run's one `reqwest` client (rustls), which
//! verifies certificates against the site's CA unless the site says `insecure = true`.

pub mod policy;
pub mod tls;

use futures::StreamExt;

use super::{Denials, PodAddresses};
use crate::chain::error_chain;
use crate::grants::{Grants, HttpMethod};
use crate::wit::cmk::procedure::http::{Host, HttpError, Method, Request, Response};
pub use policy::HttpPolicy;
pub use tls::client;

/// The `http` capability of one run.
pub struct HttpCap {
    client: reqwest::Client,
    policy: HttpPolicy,
    grants: Grants,
    pods: PodAddresses,
    denials: Denials,
    /// Plan mode and stop requests: POSTs pass it before they leave.
    gate: super::gate::Gate,
    audit: crate::audit::Audit,
}

impl HttpCap {
    pub fn new(
        client: reqwest::Client,
        policy: HttpPolicy,
        grants: Grants,
        pods: PodAddresses,
        denials: Denials,
    ) -> Self {
        HttpCap {
            client,
            policy,
            grants,
            pods,
            denials,
            gate: super::gate::Gate::default(),
            audit: crate::audit::Audit::default(),
        }
    }

    /// Every request, allowed or not, is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    async fn send(
        &self,
        method: Method,
        url: String,
        body: Option<String>,
    ) -> Result<Response, HttpError> {
        let target = format!("{} {url}", method_name(method));
        let trail_body = body.as_deref().map(crate::audit::body_for_trail);
        let started = std::time::Instant::now();
        let result = self.send_unaudited(method, url, body).await;
        let outcome = match &result {
            Ok(r) | Err(HttpError::Status(r)) => r.status.to_string(),
            Err(e) => error_kind(e).to_string(),
        };
        self.audit.record(
            crate::audit::Entry::call(
                "http",
                &target,
                &outcome,
                started.elapsed().as_millis() as u64,
            )
            .body(trail_body),
        );
        result
    }

    /// Every POST passes `gate` (plan mode, stop requests) after the policy checks.
    pub fn with_gate(mut self, gate: super::gate::Gate) -> Self {
        self.gate = gate;
        self
    }

    async fn send_unaudited(
        &self,
        method: Method,
        url: String,
        body: Option<String>,
    ) -> Result<Response, HttpError> {
        // The URL as the component wrote it: escaped for the log.
        let target = format!("{} {}", method_name(method), crate::text::escape(&url));
        let checked = self
            .policy
            .check(&url, &self.pods)
            .map_err(|rule| HttpError::Denied(self.denials.deny("http", &target, rule)))?;
        let granted_method = match method {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
        };
        self.grants
            .allows_http(granted_method, checked.path())
            .map_err(|rule| HttpError::Denied(self.denials.deny("http", &target, rule)))?;
        if let Some(body) = &body
            && body.len() > self.policy.max_request_bytes
        {
            let rule = format!(
                "request body of {} bytes is over the limit of {}",
                body.len(),
                self.policy.max_request_bytes
            );
            return Err(HttpError::Denied(self.denials.deny("http", &target, rule)));
        }
        if matches!(method, Method::Post) {
            self.gate.check(&target).map_err(HttpError::Denied)?;
        }
        let request = match method {
            Method::Get => self.client.get(checked),
            Method::Post => {
                let r = self.client.post(checked);
                match body {
                    Some(body) => r.header("content-type", "application/json").body(body),
                    None => r,
                }
            }
        };
        let started = std::time::Instant::now();
        let result = self.execute(request).await;
        tracing::debug!(
            target: "cmk_host::http",
            request = %target,
            elapsed_ms = started.elapsed().as_millis() as u64,
            outcome = %match &result { Ok(r) => r.status.to_string(), Err(e) => error_kind(e).to_string() },
            "http"
        );
        result
    }

    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<Response, HttpError> {
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let limit = self.policy.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(HttpError::Protocol(format!(
                "response body over the limit of {limit} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(HttpError::Protocol(format!(
                    "response body over the limit of {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let response = Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        if (200..300).contains(&status) {
            Ok(response)
        } else {
            Err(HttpError::Status(response))
        }
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
    }
}

fn error_kind(e: &HttpError) -> &'static str {
    match e {
        HttpError::Denied(_) => "denied",
        HttpError::Timeout => "timeout",
        HttpError::Connect(_) => "connect",
        HttpError::Tls(_) => "tls",
        HttpError::Status(_) => "status",
        HttpError::Protocol(_) => "protocol",
    }
}

/// Maps a transport error to the WIT variant the guest can act on.
fn classify(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    let chain = error_chain(&e);
    let tls = has_rustls_error(&e);
    if tls {
        HttpError::Tls(chain)
    } else if e.is_connect() {
        HttpError::Connect(chain)
    } else {
        HttpError::Protocol(chain)
    }
}

/// Whether a rustls error is anywhere in `e`'s chain. hyper and tokio-rustls hand it
/// over inside `io::Error`s, whose `source()` skips the wrapped error: look inside.
fn has_rustls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && has_rustls_error(inner)
    {
        return true;
    }
    e.source().is_some_and(has_rustls_error)
}

impl Host for HttpCap {
    async fn get(&mut self, url: String) -> Result<Response, HttpError> {
        self.send(Method::Get, url, None).await
    }

    async fn post(&mut self, url: String, body: Option<String>) -> Result<Response, HttpError> {
        self.send(Method::Post, url, body).await
    }

    async fn batch(&mut self, requests: Vec<Request>) -> Vec<Result<Response, HttpError>> {
        let this = &*self;
        futures::stream::iter(requests)
            .map(|r| this.send(r.method, r.url, r.body))
            .buffered(this.policy.max_concurrency)
            .collect()
            .await
    }
}
