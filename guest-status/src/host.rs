//! What the procedure may do, as plain Rust: list pods, GET, log and report steps,
//! and a clock for retries. There is deliberately no POST and no restart here: the
//! shared pieces ([`guest_kit`]) are types and a retry loop generic over how a read
//! is made, never a capability.

pub use guest_kit::retry::Clock;
pub use guest_kit::types::{HttpError, Level, Outcome, Pod, Response, Step};

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

pub trait Host: Clock {
    /// `pods.list`; the error is the world's `pods-error`, rendered.
    fn list_pods(&mut self) -> Result<Vec<Pod>, String>;
    /// GETs every url in one `http.batch`; results in the order of `urls`.
    fn get_all(&mut self, urls: &[String]) -> Vec<Result<Response, HttpError>>;
    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]);
    fn step_begin(&mut self, name: &str, detail: &str);
    fn step_end(&mut self, name: &str, outcome: Outcome, detail: &str);
}
