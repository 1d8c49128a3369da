//! `http`: HTTPS to the pods, and nowhere else.
//!
//! [`policy`] decides which URLs are allowed; everything else is denied before a
//! socket is opened. [`tls`] builds the run's one `reqwest` client (rustls), which
//! verifies certificates against the site's CA unless the site says `insecure = true`.

pub mod policy;
pub mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;

use super::gate::{Call, Gate, Permit, Refusal};
use super::{Denials, PodAddresses};
use crate::chain::error_chain;
use crate::grants::HttpMethod;
use crate::wit::cmk::procedure::http::{Host, HttpError, Method, Request, Response};
pub use policy::HttpPolicy;
pub use tls::client;

/// The `http` capability of one run.
pub struct HttpCap {
    client: reqwest::Client,
    policy: HttpPolicy,
    pods: PodAddresses,
    denials: Denials,
    /// Every request passes it after the URL checks: grants, host calls, plan mode,
    /// stop requests, the Lease fence, guards and confirmations.
    gate: Gate,
    audit: crate::audit::Audit,
}

/// Response bytes held at once for one call (all of a batch's, until it returns).
struct Held {
    limit: usize,
    used: AtomicUsize,
}

impl Held {
    fn new(limit: usize) -> Held {
        Held {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Reserves `n` more bytes, or says which limit they are over.
    fn reserve(&self, n: usize) -> Result<(), HttpError> {
        let before = self.used.fetch_add(n, Ordering::SeqCst);
        if before + n > self.limit {
            self.used.fetch_sub(n, Ordering::SeqCst);
            return Err(HttpError::Protocol(format!(
                "the responses of this call are over the limit of {} bytes held at once \
                 ([http] max_held_response_bytes)",
                self.limit
            )));
        }
        Ok(())
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }
}

impl HttpCap {
    pub fn new(
        client: reqwest::Client,
        policy: HttpPolicy,
        gate: Gate,
        pods: PodAddresses,
        denials: Denials,
    ) -> Self {
        HttpCap {
            client,
            policy,
            pods,
            denials,
            gate,
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
        function: &'static str,
        request: Request,
        held: &Held,
    ) -> Result<Response, HttpError> {
        let target = format!("{} {}", method_name(request.method), request.url);
        let trail_body = request.body.as_deref().map(crate::audit::body_for_trail);
        let started = std::time::Instant::now();
        let result = self.send_unaudited(function, request, held).await;
        let outcome = match &result {
            Ok(r) | Err(Sent::Failed(HttpError::Status(r))) => r.status.to_string(),
            Err(Sent::Refused(refusal)) => refusal.outcome().to_string(),
            Err(Sent::Failed(e)) => error_kind(e).to_string(),
        };
        // Why it was refused or failed, for the reader of the trail.
        let detail = match &result {
            Err(Sent::Refused(refusal)) => Some(refusal.message().to_string()),
            Err(Sent::Failed(
                HttpError::Denied(m)
                | HttpError::Connect(m)
                | HttpError::Tls(m)
                | HttpError::Protocol(m),
            )) => Some(m.clone()),
            _ => None,
        };
        self.audit.record(
            crate::audit::Entry::call(
                "http",
                &target,
                &outcome,
                started.elapsed().as_millis() as u64,
            )
            .body(trail_body)
            .detail(detail),
        );
        result.map_err(Sent::into_error)
    }

    async fn send_unaudited(
        &self,
        function: &'static str,
        request: Request,
        held: &Held,
    ) -> Result<Response, Sent> {
        let Request { method, url, body } = request;
        // The URL as the component wrote it: escaped for the log.
        let target = format!("{} {}", method_name(method), crate::text::escape(&url));
        let denied = |rule: String| {
            Sent::Failed(HttpError::Denied(self.denials.deny("http", &target, rule)))
        };
        let checked = self.policy.check(&url, &self.pods).map_err(denied)?;
        if let Some(body) = &body
            && body.len() > self.policy.max_request_bytes
        {
            return Err(denied(format!(
                "request body of {} bytes is over the limit of {}",
                body.len(),
                self.policy.max_request_bytes
            )));
        }
        let granted_method = match method {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
        };
        let permit = self
            .gate
            .decide(Call::Http {
                function,
                method: granted_method,
                path: checked.path(),
                target: &target,
                ip: match checked.host() {
                    Some(url::Host::Ipv4(ip)) => Some(ip.into()),
                    Some(url::Host::Ipv6(ip)) => Some(ip.into()),
                    _ => None,
                },
            })
            .await
            .map_err(Sent::Refused)?;
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
        let irreversible = permit.irreversible();
        let started = std::time::Instant::now();
        let result = self.execute(permit, request, held).await;
        if irreversible {
            let outcome = match &result {
                Ok(r) | Err(HttpError::Status(r)) => r.status.to_string(),
                Err(e @ (HttpError::Connect(_) | HttpError::Tls(_))) => {
                    format!("{} (not delivered)", error_kind(e))
                }
                Err(e) => format!("{} (it may have landed)", error_kind(e)),
            };
            self.gate.sent_irreversible(&target, &outcome);
        }
        tracing::debug!(
            target: "cmk_host::http",
            request = %target,
            elapsed_ms = started.elapsed().as_millis() as u64,
            outcome = %match &result { Ok(r) => r.status.to_string(), Err(e) => error_kind(e).to_string() },
            "http"
        );
        result.map_err(Sent::Failed)
    }

    /// Sends `request`: only with the gate's [`Permit`].
    async fn execute(
        &self,
        _permit: Permit,
        request: reqwest::RequestBuilder,
        held: &Held,
    ) -> Result<Response, HttpError> {
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let limit = self.policy.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(HttpError::Protocol(format!(
                "response body over the limit of {limit} bytes"
            )));
        }
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > limit {
                    return Err(HttpError::Protocol(format!(
                        "response body over the limit of {limit} bytes"
                    )));
                }
                held.reserve(chunk.len())?;
                body.extend_from_slice(&chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = read {
            // What was read of a failed response is dropped now.
            held.release(body.len());
            return Err(e);
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

/// How a request ended before an answer: refused by the gate, or failed.
enum Sent {
    Refused(Refusal),
    Failed(HttpError),
}

impl Sent {
    fn into_error(self) -> HttpError {
        match self {
            Sent::Refused(r) => HttpError::Denied(r.into_message()),
            Sent::Failed(e) => e,
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
    if let Some(explained) = tls::explanation(&e) {
        return HttpError::Tls(explained);
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
        let request = Request {
            method: Method::Get,
            url,
            body: None,
        };
        let held = Held::new(self.policy.max_held_response_bytes);
        self.send("get", request, &held).await
    }

    async fn post(&mut self, url: String, body: Option<String>) -> Result<Response, HttpError> {
        let request = Request {
            method: Method::Post,
            url,
            body,
        };
        let held = Held::new(self.policy.max_held_response_bytes);
        self.send("post", request, &held).await
    }

    /// Each request counts as a host call and passes the gate as `get` or `post`
    /// would; a batch over `[http] max_batch` is refused whole, and the responses it
    /// holds at once stay within `[http] max_held_response_bytes`.
    async fn batch(&mut self, requests: Vec<Request>) -> Vec<Result<Response, HttpError>> {
        let n = requests.len();
        if n > self.policy.max_batch {
            let why = self.denials.deny(
                "http",
                format!("batch of {n} requests"),
                format!(
                    "over the limit of {} requests per batch ([http] max_batch): nothing sent",
                    self.policy.max_batch
                ),
            );
            self.audit.record(
                crate::audit::Entry::call("http", &format!("batch of {n} requests"), "denied", 0)
                    .detail(why.clone()),
            );
            return vec![Err(HttpError::Denied(why)); n];
        }
        let allowed = self.gate.charge_batch(n);
        let over = (allowed < n).then(|| {
            let budget = self.gate.budget();
            let why = self.denials.deny(
                "http",
                format!("requests {}..{n} of a batch of {n}", allowed + 1),
                format!(
                    "over the limit of {} host calls ([limits] host_calls; each request of a \
                     batch counts): not sent",
                    budget.limit()
                ),
            );
            self.audit.record(
                crate::audit::Entry::call("http", &format!("batch of {n} requests"), "denied", 0)
                    .detail(why.clone()),
            );
            why
        });
        let held = Held::new(self.policy.max_held_response_bytes);
        let this = &*self;
        let held = &held;
        let mut results: Vec<Result<Response, HttpError>> =
            futures::stream::iter(requests.into_iter().take(allowed))
                .map(|r| {
                    let function = match r.method {
                        Method::Get => "get",
                        Method::Post => "post",
                    };
                    this.send(function, r, held)
                })
                .buffered(this.policy.max_concurrency)
                .collect()
                .await;
        if let Some(why) = over {
            results.resize(n, Err(HttpError::Denied(why)));
        }
        results
    }
}
