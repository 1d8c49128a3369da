//! The allow-list of `http`: which URLs a request may target.
//!
//! Only `https://<IP of a pod in this run's latest list>:<site port>`, the path
//! then checked against the run's [`Grants`](crate::grants::Grants),
//! with the IP written canonically (the URL parser also reads `2130706433`,
//! `0x7f.1` or `[::ffff:127.0.0.1]` as IPs; those are refused so that what the log
//! shows is what was meant).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::caps::PodAddresses;
use crate::frame::{SiteError, SiteFile};
use crate::grants::HttpMethod;

/// `[http]`: what `http` may send, and how much. Every key has a default that suits
/// the DSM cluster-key API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// Path prefixes requests may target (on segment boundaries).
    pub paths: Vec<String>,
    pub methods: Vec<HttpMethod>,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// Per request, connection included.
    pub timeout: Duration,
    /// Requests of one `batch` in flight at once.
    pub max_concurrency: usize,
    /// Requests in one `batch`; a larger batch is refused whole.
    pub max_batch: usize,
    /// Response bytes the host holds at once for one call (a batch's responses are
    /// all held until the batch returns).
    pub max_held_response_bytes: usize,
    /// Requests sent only with the host's own confirmation (`METHOD /path`).
    pub irreversible: Vec<(HttpMethod, String)>,
}

/// What the rotation's activate is: the one irreversible request of the DSM API.
pub const DEFAULT_IRREVERSIBLE: &str = "POST /cluster/v1/key/activate";

impl Default for Http {
    fn default() -> Self {
        Http {
            paths: vec!["/cluster/v1/key".to_string()],
            methods: vec![HttpMethod::Get, HttpMethod::Post],
            max_request_bytes: 64 << 10,
            max_response_bytes: 1 << 20,
            timeout: Duration::from_secs(30),
            max_concurrency: 64,
            max_batch: 512,
            max_held_response_bytes: 64 << 20,
            irreversible: vec![(HttpMethod::Post, "/cluster/v1/key/activate".to_string())],
        }
    }
}

/// Upper bounds a site may set: a response is held in host memory and then copied
/// into the guest's, so it must stay well below the memory limit.
const MAX_BODY_BYTES: usize = 64 << 20;
const MAX_TIMEOUT_SECS: u64 = 3600;
const MAX_CONCURRENCY: usize = 1024;
const MAX_BATCH: usize = 100_000;
/// What a guest's default memory limit could take in at once.
const MAX_HELD_BYTES: usize = 256 << 20;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    paths: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    max_request_bytes: Option<usize>,
    max_response_bytes: Option<usize>,
    timeout_secs: Option<u64>,
    max_concurrency: Option<usize>,
    max_batch: Option<usize>,
    max_held_response_bytes: Option<usize>,
    irreversible: Option<Vec<String>>,
}

impl RawHttp {
    pub fn validate(self, file: &SiteFile<'_>) -> Result<Http, SiteError> {
        let mut http = Http::default();
        if let Some(paths) = self.paths {
            if paths.is_empty() {
                return Err(file.error(
                    "[http] paths",
                    "must name at least one path prefix (without [http] the default is [\"/cluster/v1/key\"])",
                ));
            }
            for path in &paths {
                check_prefix(path).map_err(|e| file.error("[http] paths", e))?;
            }
            http.paths = paths;
        }
        if let Some(methods) = self.methods {
            if methods.is_empty() {
                return Err(file.error("[http] methods", "must name at least one method"));
            }
            let mut parsed = Vec::new();
            for m in &methods {
                let method = match m.as_str() {
                    "GET" => HttpMethod::Get,
                    "POST" => HttpMethod::Post,
                    other => {
                        return Err(file.error(
                            "[http] methods",
                            format!("{other:?} is not a method `http` has: \"GET\" or \"POST\""),
                        ));
                    }
                };
                if !parsed.contains(&method) {
                    parsed.push(method);
                }
            }
            http.methods = parsed;
        }
        let bytes = |key: &str, value: Option<usize>, default: usize| match value {
            None => Ok(default),
            Some(n) if (1..=MAX_BODY_BYTES).contains(&n) => Ok(n),
            Some(n) => Err(file.error(
                format!("[http] {key}"),
                format!("must be 1..={MAX_BODY_BYTES}, not {n}"),
            )),
        };
        http.max_request_bytes = bytes(
            "max_request_bytes",
            self.max_request_bytes,
            http.max_request_bytes,
        )?;
        http.max_response_bytes = bytes(
            "max_response_bytes",
            self.max_response_bytes,
            http.max_response_bytes,
        )?;
        if let Some(secs) = self.timeout_secs {
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                return Err(file.error(
                    "[http] timeout_secs",
                    format!("must be 1..={MAX_TIMEOUT_SECS}, not {secs}"),
                ));
            }
            http.timeout = Duration::from_secs(secs);
        }
        if let Some(n) = self.max_concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return Err(file.error(
                    "[http] max_concurrency",
                    format!("must be 1..={MAX_CONCURRENCY}, not {n}"),
                ));
            }
            http.max_concurrency = n;
        }
        if let Some(n) = self.max_batch {
            if !(1..=MAX_BATCH).contains(&n) {
                return Err(file.error(
                    "[http] max_batch",
                    format!("must be 1..={MAX_BATCH}, not {n}"),
                ));
            }
            http.max_batch = n;
        }
        http.max_held_response_bytes = http.max_held_response_bytes.max(http.max_response_bytes);
        if let Some(n) = self.max_held_response_bytes {
            if !(http.max_response_bytes..=MAX_HELD_BYTES).contains(&n) {
                return Err(file.error(
                    "[http] max_held_response_bytes",
                    format!(
                        "must be {}..={MAX_HELD_BYTES} (at least max_response_bytes), not {n}",
                        http.max_response_bytes
                    ),
                ));
            }
            http.max_held_response_bytes = n;
        }
        if let Some(entries) = self.irreversible {
            let mut parsed = Vec::new();
            for entry in &entries {
                let request =
                    parse_request(entry).map_err(|e| file.error("[http] irreversible", e))?;
                parsed.push(request);
            }
            http.irreversible = parsed;
        }
        Ok(http)
    }
}

/// `METHOD /path` as `[http] irreversible` lists it.
fn parse_request(entry: &str) -> Result<(HttpMethod, String), String> {
    let (method, path) = entry.trim().split_once(' ').ok_or_else(|| {
        format!("{entry:?} is not `METHOD /path` (e.g. {DEFAULT_IRREVERSIBLE:?})")
    })?;
    let method = match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        other => {
            return Err(format!(
                "{entry:?}: {other:?} is not a method `http` has: \"GET\" or \"POST\""
            ));
        }
    };
    let path = path.trim();
    check_prefix(path).map_err(|e| format!("{entry:?}: {e}"))?;
    Ok((method, path.to_string()))
}

/// A path prefix as the site may write it: absolute, no dot segments, no query or
/// fragment, nothing a URL parser would rewrite.
fn check_prefix(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path.contains(['?', '#', '%', '\\'])
        || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{path:?} must be a plain path (no query, fragment, escapes or spaces)"
        ));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("{path:?} must not contain '.' or '..' segments"));
    }
    Ok(())
}

/// What the site allows `http` to do.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub port: u16,
    pub max_response_bytes: usize,
    pub max_request_bytes: usize,
    pub timeout: Duration,
    pub max_concurrency: usize,
    pub max_batch: usize,
    pub max_held_response_bytes: usize,
}

impl HttpPolicy {
    /// The policy of `[http]`, for pods listening on `[cluster] port`.
    pub fn new(http: &Http, port: u16) -> Self {
        HttpPolicy {
            port,
            max_response_bytes: http.max_response_bytes,
            max_request_bytes: http.max_request_bytes,
            timeout: http.timeout,
            max_concurrency: http.max_concurrency,
            max_batch: http.max_batch,
            max_held_response_bytes: http.max_held_response_bytes,
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
                return Err(format!(
                    "host {d:?} is not a pod IP: names are not resolved"
                ));
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
            return Err(format!(
                "{ip} is not the IP of a pod in the latest pod list"
            ));
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
        // The path as written and as parsed: the parser resolves `%2e%2e` segments,
        // so the written one is checked too.
        for path in [raw_path(raw), url.path()] {
            if let Some(what) = encoded_escape(path) {
                return Err(format!(
                    "path {path:?} holds {what}: encoded separators, dots, NUL and '%' are refused"
                ));
            }
        }
        Ok(url)
    }
}

/// The percent-encodings a pod's router may decode into a path separator, a dot
/// segment or a string terminator after the allow-list was checked on the raw path,
/// and the encoded '%' that turns any of them into one more decoding away.
const ENCODED: &[(&str, &str)] = &[
    ("%2f", "an encoded '/' (%2f)"),
    ("%5c", "an encoded '\\' (%5c)"),
    ("%2e", "an encoded '.' (%2e)"),
    ("%00", "an encoded NUL (%00)"),
    // Decoded twice (a proxy, then the router), `%252f` is a '/'.
    ("%25", "an encoded '%' (%25)"),
];

/// What forbidden percent-encoding `path` holds, in any case, if one.
fn encoded_escape(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    ENCODED
        .iter()
        .find(|(code, _)| lower.contains(code))
        .map(|(_, what)| *what)
}

/// The path of `raw` as written: after the authority, up to `?` or `#`.
fn raw_path(raw: &str) -> &str {
    let rest = raw.split_once("//").map_or(raw, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

/// The host part of `raw` as written (between `//` and the next `/`, `?`, `#`,
/// without userinfo and port).
fn raw_host(raw: &str) -> &str {
    let rest = raw.split_once("//").map_or(raw, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HttpPolicy {
        HttpPolicy {
            port: 4444,
            max_response_bytes: 1024,
            max_request_bytes: 1024,
            timeout: Duration::from_secs(1),
            max_concurrency: 4,
            max_batch: 8,
            max_held_response_bytes: 4096,
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
            (
                "https://127.0.0.1:4444/cluster/v1/key",
                "not the IP of a pod",
            ),
            ("https://u:p@127.1.2.3:4444/cluster/v1/key", "credentials"),
            ("https://2130838019:4444/cluster/v1/key", "canonical"),
            ("https://0x7f.1.2.3:4444/cluster/v1/key", "canonical"),
            ("https://127.001.2.3:4444/cluster/v1/key", "canonical"),
            (
                "https://[::ffff:127.1.2.3]:4444/cluster/v1/key",
                "not the IP of a pod",
            ),
            (
                "https://pod.local:4444/cluster/v1/key",
                "names are not resolved",
            ),
            ("not a url", "not a valid URL"),
        ];
        for (url, rule) in cases {
            let err = policy().check(url, &pods()).unwrap_err();
            assert!(err.contains(rule), "{url}: {err}");
        }
    }

    fn http(text: &str) -> Result<Http, SiteError> {
        let raw: RawHttp = toml::from_str(text).unwrap();
        raw.validate(&SiteFile {
            path: std::path::Path::new("site.toml"),
        })
    }

    #[test]
    fn http_section_defaults_and_overrides() {
        assert_eq!(http("").unwrap(), Http::default());
        let h = http(
            r#"paths = ["/cluster/v1/key", "/sys/v1/health"]
methods = ["GET"]
max_request_bytes = 10
max_response_bytes = 20
timeout_secs = 3
max_concurrency = 2"#,
        )
        .unwrap();
        assert_eq!(h.paths, ["/cluster/v1/key", "/sys/v1/health"]);
        assert_eq!(h.methods, [HttpMethod::Get]);
        assert_eq!(
            (h.max_request_bytes, h.max_response_bytes, h.max_concurrency),
            (10, 20, 2)
        );
        assert_eq!(h.timeout, Duration::from_secs(3));
    }

    #[test]
    fn http_section_errors_name_the_key() {
        for (text, key) in [
            ("paths = []", "[http] paths"),
            ("paths = [\"cluster\"]", "[http] paths"),
            ("paths = [\"/a/../admin\"]", "[http] paths"),
            ("paths = [\"/a?x=1\"]", "[http] paths"),
            ("methods = [\"DELETE\"]", "[http] methods"),
            ("methods = []", "[http] methods"),
            ("max_request_bytes = 0", "[http] max_request_bytes"),
            (
                "max_response_bytes = 1000000000",
                "[http] max_response_bytes",
            ),
            ("timeout_secs = 0", "[http] timeout_secs"),
            ("max_concurrency = 0", "[http] max_concurrency"),
            ("max_batch = 0", "[http] max_batch"),
            (
                "max_held_response_bytes = 10",
                "[http] max_held_response_bytes",
            ),
            ("irreversible = [\"activate\"]", "[http] irreversible"),
            ("irreversible = [\"PUT /a\"]", "[http] irreversible"),
            ("irreversible = [\"POST a\"]", "[http] irreversible"),
        ] {
            assert_eq!(http(text).unwrap_err().key, key, "{text}");
        }
    }

    #[test]
    fn batch_held_bytes_and_irreversible_have_defaults_and_overrides() {
        let h = http("").unwrap();
        assert_eq!((h.max_batch, h.max_held_response_bytes), (512, 64 << 20));
        assert_eq!(
            h.irreversible,
            [(HttpMethod::Post, "/cluster/v1/key/activate".to_string())]
        );
        let h = http(
            "max_batch = 5000\nmax_held_response_bytes = 2097152\nirreversible = [\"POST /a/b\", \"GET /c\"]",
        )
        .unwrap();
        assert_eq!((h.max_batch, h.max_held_response_bytes), (5000, 2 << 20));
        assert_eq!(
            h.irreversible,
            [
                (HttpMethod::Post, "/a/b".to_string()),
                (HttpMethod::Get, "/c".to_string())
            ]
        );
        assert!(http("irreversible = []").unwrap().irreversible.is_empty());
        // A larger response limit raises the default of what is held with it.
        let h = http("max_response_bytes = 67108864").unwrap();
        assert_eq!(h.max_held_response_bytes, 64 << 20);
    }

    #[test]
    fn denies_encoded_separators_dots_and_nul_in_any_case() {
        let key = "https://127.1.2.3:4444/cluster/v1/key";
        for (suffix, what) in [
            ("/..%2f..%2fadmin", "%2f"),
            ("/..%2F..%2Fadmin", "%2f"),
            ("/%2e%2e/%2e%2e/admin", "%2e"),
            ("/%2E%2e%2fadmin", "%2f"),
            ("/.%2E/admin", "%2e"),
            ("/..%5c..%5cadmin", "%5c"),
            ("/..%5C..%5Cadmin", "%5c"),
            ("/propose%00.json", "%00"),
            ("/..%252f..%252fadmin", "%25"),
            ("/%252E%252E/admin", "%25"),
        ] {
            let url = format!("{key}{suffix}");
            let err = policy().check(&url, &pods()).unwrap_err();
            assert!(
                err.contains(what) && err.contains("refused"),
                "{url}: {err}"
            );
        }
        // Other escapes, and encodings in the query, are not the path's business.
        assert!(policy().check(&format!("{key}/a%20b"), &pods()).is_ok());
        assert!(policy().check(&format!("{key}?x=%2f"), &pods()).is_ok());
        assert_eq!(raw_path("https://h:1/a/b?c#d"), "/a/b");
        assert_eq!(raw_path("https://h:1"), "");
    }

    #[test]
    fn raw_host_reads_the_written_host() {
        assert_eq!(raw_host("https://a@1.2.3.4:5/x"), "1.2.3.4");
        assert_eq!(raw_host("https://[::1]:5/x"), "[::1]");
        assert_eq!(raw_host("https://0x7f.1?x"), "0x7f.1");
    }
}
