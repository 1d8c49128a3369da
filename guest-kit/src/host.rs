//! The world's imports as plain Rust traits, so that a procedure runs (and is tested)
//! without the bindings: [`crate::wasm`] implements them on the real imports, a test
//! on an in-memory cluster.
//!
//! Two traits, so that a procedure's bound says what it can do: [`Read`] looks
//! (pods, GET, log, step progress) and cannot change the cluster; [`Act`] adds what
//! changes it or the run's records. `guest-status` is written against `Read` alone.

pub use crate::retry::Clock;
use crate::types::{HttpError, Level, Outcome, Pod, PodsError, Request, Response, RestartError};

/// Looking at the cluster, and telling the host what the run does.
pub trait Read: Clock {
    /// `pods.list`; each call is also the run's new allow-list for `http`.
    fn list_pods(&mut self) -> Result<Vec<Pod>, PodsError>;
    fn get(&mut self, url: &str) -> Result<Response, HttpError>;
    /// GETs every url in one `http.batch`; results in the order of `urls`.
    fn get_all(&mut self, urls: &[String]) -> Vec<Result<Response, HttpError>>;
    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]);
    fn step_begin(&mut self, name: &str, detail: &str);
    fn step_end(&mut self, name: &str, outcome: Outcome, detail: &str);
}

/// The rest of the `rotation` world: what changes the cluster, the journal, and the
/// questions to the operator and the site's hooks.
pub trait Act: Read {
    fn post(&mut self, url: &str, body: Option<&str>) -> Result<Response, HttpError>;
    /// Results in the order of `requests`.
    fn batch(&mut self, requests: &[Request]) -> Vec<Result<Response, HttpError>>;
    /// Returns once every pod is Ready again; their IPs changed.
    fn rolling_restart(&mut self) -> Result<(), RestartError>;
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

/// The step progress a test fake records, as `begin NAME` and `end NAME Outcome`
/// lines: one spelling for every guest's unit tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProgressLog(pub Vec<String>);

impl ProgressLog {
    pub fn begin(&mut self, name: &str) {
        self.0.push(format!("begin {name}"));
    }

    pub fn end(&mut self, name: &str, outcome: Outcome) {
        self.0.push(format!("end {name} {outcome:?}"));
    }
}
