//! What the procedure may do, as plain Rust: list pods, GET, log and report steps,
//! and a clock for retries. There is deliberately no POST and no restart here.

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Why a GET failed (the world's `http-error`).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
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
    /// The version every pod reports (when they agree).
    pub version: Option<i64>,
    pub pods: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: String,
    pub reason: String,
    pub steps: Vec<Step>,
}

pub trait Host {
    /// `pods.list`; the error is the world's `pods-error`, rendered.
    fn list_pods(&mut self) -> Result<Vec<Pod>, String>;
    /// GETs every url in one `http.batch`; results in the order of `urls`.
    fn get_all(&mut self, urls: &[String]) -> Vec<Result<Response, HttpError>>;
    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]);
    fn step_begin(&mut self, name: &str, detail: &str);
    fn step_end(&mut self, name: &str, outcome: Outcome, detail: &str);
    fn sleep(&mut self, duration: Duration);
    /// Monotonic time since some fixed point.
    fn now(&mut self) -> Duration;
}
