//! `http`: HTTPS to the pods, and nowhere else.
//!
//! A request is sent only to `https://<IP of a pod in this run's latest list>:<site
//! port><allowed path>`, written in canonical form. Everything else is denied before
//! a socket is opened. One `reqwest` client per run, with rustls; certificates are
//! verified against the site's CA unless the site file says `insecure = true`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use url::Url;

use super::{Denials, PodAddresses};
use crate::runtime::bindings::cmk::procedure::http::{Host, HttpError, Method, Request, Response};
use crate::site::{Site, Tls};

/// What the site allows `http` to do.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub port: u16,
    /// Path prefixes a request may start with (after normalisation of `.` and `..`).
    pub allowed_paths: Vec<String>,
    pub max_response_bytes: usize,
    pub max_request_bytes: usize,
    pub timeout: Duration,
    pub max_concurrency: usize,
}

impl HttpPolicy {
    pub fn from_site(site: &Site) -> Self {
        HttpPolicy {
            port: site.cluster.port,
            allowed_paths: vec!["/cluster/v1/key".into()],
            max_response_bytes: 1 << 20,
            max_request_bytes: 64 << 10,
            timeout: Duration::from_secs(30),
            max_concurrency: 64,
        }
    }

    /// Checks `url` against the policy and the current pod addresses. `Err` is the
    /// rule that denies it, for the guest and the log.
    pub fn check(&self, raw: &str, pods: &PodAddresses) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        if url.scheme() != "https" {
            return Err(format!("scheme {:?} not allowed: only https", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        let ip: IpAddr = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.into(),
            Some(url::Host::Ipv6(ip)) => ip.into(),
            Some(url::Host::Domain(d)) => {
                return Err(format!("host {d:?} is not a pod IP: names are not resolved"));
            }
            None => return Err("no host".into()),
        };
        // The URL parser reads `2130706433`, `0x7f.1` or `[::ffff:127.0.0.1]` as an IP;
        // only the canonical spelling is accepted, so what the log shows is what was meant.
        let written = raw_host(raw);
        let canonical = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        if written != canonical {
            return Err(format!(
                "host {written:?} is not written as a canonical IP address ({canonical})"
            ));
        }
        if ip.to_canonical() != ip || !pods.contains(&ip) {
            return Err(format!("{ip} is not the IP of a pod in the latest pod list"));
        }
        if url.port_or_known_default() != Some(self.port) {
            return Err(format!(
                "port {} not allowed: only the site's pod port {}",
                url.port_or_known_default().unwrap_or(0),
                self.port
            ));
        }
        if url.fragment().is_some() {
            return Err("fragments are not allowed".into());
        }
        let path = url.path();
        let allowed = self.allowed_paths.iter().any(|prefix| {
            path == prefix
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/') || prefix.ends_with('/'))
        });
        if !allowed {
            return Err(format!(
                "path {path:?} is outside the allowed prefixes {:?}",
                self.allowed_paths
            ));
        }
        Ok(url)
    }
}

/// The host part of `raw` as written (between `//` and the next `/`, `?`, `#`,
/// without userinfo and port).
fn raw_host(raw: &str) -> &str {
    let rest = raw.split_once("//").map_or(raw, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.find(']').map_or(host_port, |end| &host_port[..=end]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// Builds the run's one HTTPS client.
pub fn client(site: &Site, policy: &HttpPolicy) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &site.tls {
        Tls::Ca { path, pem } => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider)))
            .with_no_client_auth(),
    };
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
        .build()?)
}

/// The `http` capability of one run.
pub struct HttpCap {
    client: reqwest::Client,
    policy: HttpPolicy,
    pods: PodAddresses,
    denials: Denials,
}

impl HttpCap {
    pub fn new(client: reqwest::Client, policy: HttpPolicy, pods: PodAddresses, denials: Denials) -> Self {
        HttpCap {
            client,
            policy,
            pods,
            denials,
        }
    }

    async fn send(&self, method: Method, url: String, body: Option<String>) -> Result<Response, HttpError> {
        let target = format!("{} {url}", method_name(method));
        let checked = self
            .policy
            .check(&url, &self.pods)
            .map_err(|rule| HttpError::Denied(self.denials.deny("http", &target, rule)))?;
        if let Some(body) = &body {
            if body.len() > self.policy.max_request_bytes {
                let rule = format!(
                    "request body of {} bytes is over the limit of {}",
                    body.len(),
                    self.policy.max_request_bytes
                );
                return Err(HttpError::Denied(self.denials.deny("http", &target, rule)));
            }
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
    let tls = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut found = false;
        while let Some(s) = source {
            if s.downcast_ref::<rustls::Error>().is_some() {
                found = true;
                break;
            }
            source = s.source();
        }
        found
    };
    if tls {
        HttpError::Tls(chain)
    } else if e.is_connect() {
        HttpError::Connect(chain)
    } else {
        HttpError::Protocol(chain)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
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

/// `insecure = true`: accept any certificate, like `curl -k`. The handshake's
/// signatures are still checked, so the connection is at least to the holder of the
/// key the pod presented.
mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, Error, SignatureScheme};

    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HttpPolicy {
        HttpPolicy {
            port: 4444,
            allowed_paths: vec!["/cluster/v1/key".into()],
            max_response_bytes: 1024,
            max_request_bytes: 1024,
            timeout: Duration::from_secs(1),
            max_concurrency: 4,
        }
    }

    fn pods() -> PodAddresses {
        let pods = PodAddresses::default();
        pods.replace(vec!["127.1.2.3".parse().unwrap()]);
        pods
    }

    #[test]
    fn allows_a_listed_pod_on_the_site_port_and_path() {
        for url in [
            "https://127.1.2.3:4444/cluster/v1/key",
            "https://127.1.2.3:4444/cluster/v1/key/propose",
        ] {
            assert!(policy().check(url, &pods()).is_ok(), "{url}");
        }
    }

    #[test]
    fn denies_everything_else_with_the_rule() {
        let cases = [
            ("http://127.1.2.3:4444/cluster/v1/key", "scheme"),
            ("https://127.1.2.3:4445/cluster/v1/key", "port 4445"),
            ("https://127.1.2.3/cluster/v1/key", "port 443"),
            ("https://127.0.0.1:4444/cluster/v1/key", "not the IP of a pod"),
            ("https://127.1.2.3:4444/cluster/v1/keys", "outside the allowed"),
            ("https://127.1.2.3:4444/cluster/v1/key/../../admin", "outside the allowed"),
            ("https://127.1.2.3:4444/sys/admin", "outside the allowed"),
            ("https://u:p@127.1.2.3:4444/cluster/v1/key", "credentials"),
            ("https://2130838019:4444/cluster/v1/key", "canonical"),
            ("https://0x7f.1.2.3:4444/cluster/v1/key", "canonical"),
            ("https://127.001.2.3:4444/cluster/v1/key", "canonical"),
            ("https://[::ffff:127.1.2.3]:4444/cluster/v1/key", "not the IP of a pod"),
            ("https://pod.local:4444/cluster/v1/key", "names are not resolved"),
            ("not a url", "not a valid URL"),
        ];
        for (url, rule) in cases {
            let err = policy().check(url, &pods()).unwrap_err();
            assert!(err.contains(rule), "{url}: {err}");
        }
    }

    #[test]
    fn raw_host_reads_the_written_host() {
        assert_eq!(raw_host("https://a@1.2.3.4:5/x"), "1.2.3.4");
        assert_eq!(raw_host("https://[::1]:5/x"), "[::1]");
        assert_eq!(raw_host("https://0x7f.1?x"), "0x7f.1");
    }
}
