//! The world's capabilities as plain Rust: the types of `wit/procedure.wit` (those
//! the status check shares come from [`guest_kit::types`]) and a [`Host`] trait, so
//! the procedure runs (and is tested) without the bindings.

use std::fmt;

pub use guest_kit::retry::Clock;
pub use guest_kit::types::{HttpError, Level, Method, Outcome, Pod, Request, Response, Step};

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
pub enum Mode {
    Apply,
    Plan,
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

/// What the procedure may do: the imports of the `rotation` world, plus the
/// [`Clock`] (std's, in the component) so that retries can be tested without waiting.
pub trait Host: Clock {
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
    /// The site's hooks, before `step` acts: `Err` is a veto, with its reason.
    fn hook_before(&mut self, step: &str, observed: &[(&str, &str)]) -> Result<(), String>;
    /// The site's hooks, after `step` ended.
    fn hook_after(&mut self, step: &str, outcome: Outcome, observed: &[(&str, &str)]);
}
