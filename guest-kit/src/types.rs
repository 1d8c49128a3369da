//! The `wit/procedure.wit` types both procedures use, as plain Rust, so that the
//! procedures run (and are tested) without the bindings.

use std::fmt;

pub use crate::grants::Grants;

/// A pod, as `pods.list` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    pub phase: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Why an http call failed (the world's `http-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Denied(String),
    Timeout,
    Connect(String),
    Tls(String),
    Status(Response),
    Protocol(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "denied: {m}"),
            HttpError::Timeout => write!(f, "timeout"),
            HttpError::Connect(m) => write!(f, "connect: {m}"),
            HttpError::Tls(m) => write!(f, "tls: {m}"),
            HttpError::Status(r) if r.body.trim().is_empty() => write!(f, "status {}", r.status),
            HttpError::Status(r) => write!(f, "status {}: {}", r.status, r.body.trim()),
            HttpError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

/// Why `pods.list` failed (the world's `pods-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodsError {
    Denied(String),
    Unavailable(String),
}

impl fmt::Display for PodsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodsError::Denied(m) => write!(f, "denied: {m}"),
            PodsError::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

/// Why the rolling restart failed (the world's `restart-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartError {
    Denied(String),
    Failed(String),
    Timeout(String),
}

impl fmt::Display for RestartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartError::Denied(m) => write!(f, "denied: {m}"),
            RestartError::Failed(m) => write!(f, "failed: {m}"),
            RestartError::Timeout(m) => write!(f, "timeout: {m}"),
        }
    }
}

/// The world's log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// How a step ended (the world's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Skipped,
    Planned,
    Failed,
    /// Plan mode: the run's grants would refuse the step.
    Refused,
}

/// A step of the run, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// Apply carries the procedure out; plan reads and reports, changing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Plan,
}

/// What `procedure.run` receives (the world's `context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub mode: Mode,
    /// The site's `[params]` then the run's `--param K=V`.
    pub params: Vec<(String, String)>,
    /// The site's `[cluster] name`.
    pub cluster: String,
    pub grants: Grants,
}

/// What a run that ended well returns (the world's `report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub steps: Vec<Step>,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub pods: u32,
}

/// What a run that stopped returns (the world's `failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    pub reason: String,
    /// A rerun can safely continue from where the cluster stands.
    pub safe_to_resume: bool,
    /// The steps that ended before the failure.
    pub steps: Vec<Step>,
}

/// Borrowed `(key, value)` pairs as the owned `list<tuple<string, string>>` the
/// world's `log` and `confirm` take (and the run's parameters arrive as).
pub fn owned_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_owned_in_order() {
        assert_eq!(
            owned_pairs(&[("b", "1"), ("a", "2")]),
            vec![("b".to_string(), "1".to_string()), ("a".into(), "2".into())]
        );
    }

    #[test]
    fn http_errors_read_as_one_line() {
        let status = |code, body: &str| {
            HttpError::Status(Response {
                status: code,
                body: body.into(),
            })
        };
        assert_eq!(status(503, " \n").to_string(), "status 503");
        assert_eq!(status(500, "no key\n").to_string(), "status 500: no key");
        assert_eq!(HttpError::Timeout.to_string(), "timeout");
        assert_eq!(
            HttpError::Connect("refused".into()).to_string(),
            "connect: refused"
        );
    }
}
