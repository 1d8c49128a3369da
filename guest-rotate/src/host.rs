//! The world's capabilities as plain Rust: the types of `wit/procedure.wit` and a
//! [`Host`] trait, so the procedure runs (and is tested) without the bindings.

use std::fmt;
use std::time::Duration;

/// A pod, as `pods.list` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    pub phase: String,
}

/// Why `pods.list` failed.
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

/// Why an http call failed.
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

/// Why the rolling restart failed.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Skipped,
    Planned,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Plan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub steps: Vec<Step>,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub pods: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: String,
    pub reason: String,
    pub safe_to_resume: bool,
    pub steps: Vec<Step>,
}

/// What the procedure may do: the imports of the `rotation` world, plus the clock
/// (std's, in the component) so that retries can be tested without waiting.
pub trait Host {
    fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError>;
    fn get(&mut self, url: &str) -> Result<Response, HttpError>;
    fn post(&mut self, url: &str, body: Option<&str>) -> Result<Response, HttpError>;
    /// Results in the order of `requests`.
    fn batch(&mut self, requests: &[Request]) -> Vec<Result<Response, HttpError>>;
    fn rolling_restart(&mut self) -> Result<(), RestartError>;
    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]);
    fn step_begin(&mut self, name: &str, detail: &str);
    fn step_end(&mut self, name: &str, outcome: Outcome, detail: &str);
    /// The cluster's journal, as the host keeps it across runs.
    fn journal_entries(&mut self) -> Vec<(String, String)>;
    /// Durable when `Ok`; the error says why not.
    fn journal_set(&mut self, key: &str, value: &str) -> Result<(), String>;
    fn journal_remove(&mut self, key: &str) -> Result<(), String>;
    /// Asks before an irreversible `action`; the error says why not and how to resume.
    fn confirm(&mut self, action: &str, details: &[(&str, &str)]) -> Result<(), String>;
    fn sleep(&mut self, duration: Duration);
    /// Monotonic time since some fixed point.
    fn now(&mut self) -> Duration;
}
