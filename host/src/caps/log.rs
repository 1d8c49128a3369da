//! `log`: the procedure's structured log lines and step progress.
//!
//! Log lines become `tracing` events (target `guest`), so they go wherever the
//! host's subscriber sends them. Steps go to the run's [`Progress`] (the terminal's
//! spinners, or plain lines) and are kept for the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Denials;
use crate::runtime::bindings::cmk::procedure::log::{Host, Level};
use crate::runtime::bindings::cmk::procedure::types::Outcome;
use crate::ui::Progress;

/// Longest log message or field the host accepts from a guest; longer ones are cut,
/// so a hostile guest cannot flood the terminal or the audit trail.
const MAX_TEXT: usize = 4096;

/// A step as the host saw it (begin and end), for the report.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub name: String,
    pub outcome: &'static str,
    pub detail: String,
    pub duration_ms: u64,
}

/// The `log` capability of one run.
pub struct LogCap {
    progress: Arc<dyn Progress>,
    /// Without the grant, lines and steps are dropped (one denial is recorded).
    granted: bool,
    denials: Denials,
    denied_once: bool,
    started: HashMap<String, Instant>,
    steps: Vec<StepRecord>,
    audit: crate::audit::Audit,
}

impl LogCap {
    pub fn new(progress: Arc<dyn Progress>, granted: bool, denials: Denials) -> Self {
        LogCap {
            progress,
            granted,
            denials,
            denied_once: false,
            started: HashMap::new(),
            steps: Vec::new(),
            audit: crate::audit::Audit::default(),
        }
    }

    /// Every step's end is recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }

    /// Whether the call may go on; records the first denial.
    fn permitted(&mut self, call: &str) -> bool {
        if !self.granted && !self.denied_once {
            self.denied_once = true;
            self.denials.deny(
                "log",
                call,
                "log is not granted (further calls dropped silently)",
            );
        }
        self.granted
    }
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Skipped => "skipped",
        Outcome::Planned => "planned",
        Outcome::Failed => "failed",
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl crate::runtime::bindings::cmk::procedure::types::Host for LogCap {}

impl Host for LogCap {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        if !self.permitted("log") {
            return;
        }
        let message = cut(message);
        let fields: String = fields
            .into_iter()
            .take(32)
            .map(|(k, v)| format!(" {}={}", cut(k), cut(v)))
            .collect();
        match level {
            Level::Trace => tracing::trace!(target: "guest", "{message}{fields}"),
            Level::Debug => tracing::debug!(target: "guest", "{message}{fields}"),
            Level::Info => tracing::info!(target: "guest", "{message}{fields}"),
            Level::Warn => tracing::warn!(target: "guest", "{message}{fields}"),
            Level::Error => tracing::error!(target: "guest", "{message}{fields}"),
        }
    }

    async fn step_begin(&mut self, name: String, detail: String) {
        if !self.permitted("step-begin") {
            return;
        }
        let (name, detail) = (cut(name), cut(detail));
        self.started.insert(name.clone(), Instant::now());
        self.progress.step_begin(&name, &detail);
    }

    async fn step_end(&mut self, name: String, outcome: Outcome, detail: String) {
        if !self.permitted("step-end") {
            return;
        }
        let (name, detail) = (cut(name), cut(detail));
        let elapsed = self
            .started
            .remove(&name)
            .map(|t| t.elapsed())
            .unwrap_or(Duration::ZERO);
        let outcome = outcome_name(outcome);
        self.progress.step_end(&name, outcome, &detail, elapsed);
        self.audit.record(crate::audit::Entry {
            kind: "step",
            capability: "log",
            target: &name,
            outcome,
            duration_ms: elapsed.as_millis() as u64,
            detail: Some(detail.clone()),
            body: None,
        });
        if self.steps.len() < 1024 {
            self.steps.push(StepRecord {
                name,
                outcome,
                detail,
                duration_ms: elapsed.as_millis() as u64,
            });
        }
    }
}
